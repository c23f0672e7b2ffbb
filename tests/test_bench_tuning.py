"""Equal-budget tuning of `qubert bench` (qubert.bench.tuning and the runner), with a stand-in
training function: fast, and the scores are a known function of the settings tried."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

pytest.importorskip("optuna")

from qubert.bench import BenchConfigError, parse_bench_config, run_bench  # noqa: E402
from qubert.bench.grid import expand_grid  # noqa: E402
from qubert.bench.tuning import TuningError, parse_space, space_for  # noqa: E402


def fake_training(config) -> dict:
    """Validation F1 peaks at learning_rate 0.01; test F1 follows it (module level: Ray can ship it)."""
    score = 0.9 - 0.1 * abs(math.log10(config.learning_rate or 0.01) + 2)
    return {"eval_macro_f1": score, "test_macro_f1": score - 0.01, "test_accuracy": score, "trainable_params": 10,
            "epochs_trained": 3, "stopped_by": "patience", "train_runtime": 0.0}


def _grid(tmp_path, **overrides):
    data = {
        "datasets": ["sms_spam", "trec"], "seeds": [0, 1], "controls": ["matched_mlp"],
        "heads": ["linear", {"head": "quantum", "qubits": 2}],
        "training": {"model": "default", "max_length": 16},
        "tuning": {"trials": 3, "batch": 2, "seed": 5},
        **overrides,
    }
    return parse_bench_config(data, online=False, output_dir=tmp_path / "bench")


def test_every_head_gets_the_same_number_of_trials_and_its_choice_runs_on_every_seed(tmp_path):
    config = _grid(tmp_path)
    run_bench(config, run_fn=fake_training, report=False)
    trials = pd.read_csv(config.output_dir / "tuning.csv")
    per_head = trials.groupby(["dataset", "mode", "head"]).size()
    assert len(per_head) == 6 and set(per_head) == {3}  # linear, quantum_q2 and its matched MLP, on 2 data sets
    choices = json.loads((config.output_dir / "tuning_choices.json").read_text())
    results = pd.read_csv(config.output_dir / "results.csv")
    assert len(results) == 12
    for row in results.itertuples():
        chosen = choices[f"{row.dataset}/{row.mode}/{row.head}"]
        assert row.learning_rate == pytest.approx(chosen["params"]["learning_rate"], rel=1e-5)  # csv keeps 6 digits
        best = trials[(trials["dataset"] == row.dataset) & (trials["head"] == row.head)]["eval_macro_f1"].max()
        assert chosen["eval_macro_f1"] == pytest.approx(best)  # the best validation score was chosen


def test_a_resumed_tuned_grid_redoes_nothing_finished(tmp_path):
    config = _grid(tmp_path)
    run_bench(config, run_fn=fake_training, report=False)
    calls = []
    run_bench(config, run_fn=lambda c: calls.append(c) or fake_training(c), report=False)
    assert calls == []


def test_the_tuning_seed_run_reuses_its_best_trial(tmp_path):
    config = _grid(tmp_path)
    calls = []
    run_bench(config, run_fn=lambda c: calls.append(c.output_dir) or fake_training(c), report=False)
    finals = [c for c in calls if "/tuning/" not in c]
    assert len(finals) == 6 and all(c.endswith("seed1") for c in finals)  # seed 0 (the tuning seed) was copied


def test_search_keys_an_entry_sets_are_not_searched(tmp_path):
    config = _grid(tmp_path, heads=[{"head": "quantum", "qubits": 2, "layers": 1}], controls=[])
    (spec, *_) = expand_grid(config)
    assert "layers" not in spec.search and "scaling" in spec.search and spec.head == "quantum_q2_l1"
    untuned = _grid(tmp_path, tuning={"trials": 0}, heads=["linear"], controls=[])
    assert all(s.search == () for s in expand_grid(untuned))


def test_fine_tuned_modes_also_search_the_encoder_learning_rate():
    space = parse_space({"common": {"learning_rate": [0.1]}, "fine_tuned": {"encoder_learning_rate": [1e-5, 3e-5]}})
    assert set(space_for(space, "linear", "top2")) == {"learning_rate", "encoder_learning_rate"}
    assert set(space_for(space, "linear", "frozen")) == {"learning_rate"}


@pytest.mark.parametrize(
    ("tuning", "key"),
    [
        ({"trials": -1}, "tuning.trials"),
        ({"trials": "many"}, "tuning.trials"),
        ({"batch": 0}, "tuning.batch"),
        ({"budget": 3}, "budget"),
        ({"space": {"common": {"learning_rat": [0.1]}}}, "learning_rat"),
        ({"space": {"common": {"learning_rate": {"low": 0.1, "high": 0.01}}}}, "learning_rate: empty range"),
        ({"space": {"common": {"learning_rate": []}}}, "learning_rate: empty list"),
        ({"space": {"common": {"learning_rate": {"low": 0, "high": 1, "log": True}}}}, "log range needs low > 0"),
        ({"space": {"transformer": {}}}, "unknown group 'transformer'"),
    ],
)
def test_bad_tuning_configs_fail_before_any_run_naming_the_key(tmp_path, tuning, key):
    with pytest.raises(BenchConfigError, match=key):
        _grid(tmp_path, tuning=tuning)


@pytest.mark.parametrize(
    ("statistics", "key"),
    [({"margin": 0}, "statistics.margin"), ({"margin": -0.01}, "statistics.margin"), ({"alpha": 0.9}, "statistics.alpha"),
     ({"correction": "bonferonni"}, "statistics.correction")],
)
def test_bad_statistics_fail_naming_the_key(tmp_path, statistics, key):
    with pytest.raises(BenchConfigError, match=key):
        _grid(tmp_path, statistics=statistics)


def test_a_head_whose_trials_all_fail_is_reported_not_run_untuned(tmp_path):
    def failing(config):
        if config.head == "linear":
            raise RuntimeError("diverged")
        return fake_training(config)

    config = _grid(tmp_path, datasets=["sms_spam"], controls=[])
    result = run_bench(config, run_fn=failing, report=False)
    assert {k for k in result.failed if not k.startswith("tuning/")} == {"sms_spam/frozen/linear/seed0", "sms_spam/frozen/linear/seed1"}
    assert all("chose nothing" in result.failed[k] for k in ("sms_spam/frozen/linear/seed0",))
    assert set(pd.read_csv(config.output_dir / "results.csv")["head"]) == {"quantum_q2"}


def test_tuning_error_is_a_value_error():
    assert issubclass(TuningError, ValueError)


@pytest.mark.slow
@pytest.mark.skipif(__import__("importlib").util.find_spec("ray") is None, reason="Ray is not installed")
def test_ray_tunes_like_the_sequential_grid(tmp_path, monkeypatch):
    import os
    from pathlib import Path

    # Local Ray workers start with this environment: let them import this module's fake_training.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    sequential, on_ray = _grid(tmp_path / "seq"), _grid(tmp_path / "ray")
    run_bench(sequential, run_fn=fake_training, report=False)
    run_bench(on_ray, run_fn=fake_training, report=False, use_ray=True, ray_num_cpus=2)
    columns = ["dataset", "head", "trial", "params", "eval_macro_f1", "state"]
    assert (pd.read_csv(on_ray.output_dir / "tuning.csv")["state"] == "complete").all()
    pd.testing.assert_frame_equal(pd.read_csv(on_ray.output_dir / "tuning.csv")[columns],
                                  pd.read_csv(sequential.output_dir / "tuning.csv")[columns])
