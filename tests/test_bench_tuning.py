"""Equal-budget tuning of `qubert bench` (qubert.bench.tuning and the runner), with a stand-in
training function: fast, and the scores are a known function of the settings tried."""

from __future__ import annotations

import dataclasses
import json
import math
import types

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("optuna")

from qubert.bench import BenchConfigError, parse_bench_config, run_bench  # noqa: E402
from qubert.bench.grid import expand_grid  # noqa: E402
from qubert.bench.tuning import (  # noqa: E402
    TuningError,
    cross_validated_score,
    parse_space,
    parse_tuning,
    space_for,
    tune_grid,
)


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


def test_no_tuning_trial_stands_in_for_a_replicate(tmp_path):
    # Bench v3: replicate r trains on its own data draw, which no tuning trial saw, so every replicate runs.
    config = _grid(tmp_path)
    calls = []
    run_bench(config, run_fn=lambda c: calls.append(c.output_dir) or fake_training(c), report=False)
    finals = [c for c in calls if "/tuning/" not in c]
    assert len(finals) == 12 and {c[-5:] for c in finals} == {"seed0", "seed1"}


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
        ({"startup": 0}, "tuning.startup"),
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


# ---------------------------------------------------------------------------------------------
# What each head tries: its defaults first, then quasi-random start-up points, then TPE
# ---------------------------------------------------------------------------------------------


def _trials(config) -> pd.DataFrame:
    run_bench(config, run_fn=fake_training, report=False)
    trials = pd.read_csv(config.output_dir / "tuning.csv")
    trials["params"] = trials["params"].map(json.loads)
    return trials


def test_trial_zero_of_every_head_is_its_documented_defaults(tmp_path):
    config = _grid(tmp_path, heads=["linear", "mlp", {"head": "quantum", "qubits": 2}], tuning={"trials": 3})
    trials = _trials(config)
    first = {(r.dataset, r.head): r.params for r in trials[trials["trial"] == 0].itertuples()}
    assert set(trials.loc[trials["trial"] == 0, "origin"]) == {"defaults"}
    assert set(trials.loc[trials["trial"] > 0, "origin"]) == {"sobol"}
    for dataset in ("sms_spam", "trec"):  # frozen: learning rate 1e-2, no weight decay, 256 hidden units, 2 layers, tanh * pi/2
        assert first[dataset, "linear"] == {"learning_rate": 0.01, "weight_decay": 0.0}
        assert first[dataset, "mlp"] == {"learning_rate": 0.01, "weight_decay": 0.0, "hidden_sizes": [256]}
        assert first[dataset, "quantum_q2"] == {"learning_rate": 0.01, "weight_decay": 0.0, "layers": 2, "scaling": "tanh_pi_2"}
    # A value the config sets is the head's default in this grid.
    configured = _trials(_grid(tmp_path / "lr", training={"model": "default", "learning_rate": 0.003}, heads=["linear"],
                               controls=[], tuning={"trials": 1}))
    assert configured["params"].map(lambda p: p["learning_rate"]).tolist() == [0.003, 0.003]


def test_start_up_trials_cover_the_space_and_differ_between_heads(tmp_path):
    config = _grid(tmp_path, heads=[{"head": "quantum", "qubits": 2}], tuning={"trials": 8, "startup": 8})
    trials = _trials(config)
    sobol = trials[trials["origin"] == "sobol"]
    assert sobol.groupby(["dataset", "head"]).size().tolist() == [7] * 4  # quantum_q2 and its matched MLP, 2 data sets
    for (dataset, head), group in sobol.groupby(["dataset", "head"]):
        rates = np.array([p["learning_rate"] for p in group["params"]])
        eighth = np.floor((np.log(rates) - np.log(1e-4)) / (np.log(1e-1) - np.log(1e-4)) * 8)
        assert len(set(eighth)) == 7, (dataset, head, rates)  # stratified: at most one point per eighth of the range
        if head == "quantum_q2":  # every choice of a categorical is tried
            assert {p["scaling"] for p in group["params"]} == {"tanh_pi_2", "tanh_pi", "pi"}
            assert {p["layers"] for p in group["params"]} == {1, 2, 4}
    firsts = sobol[sobol["trial"] == 1]["params"].map(lambda p: round(p["learning_rate"], 8))
    assert firsts.nunique() == 4  # no two heads share their start-up points
    # The same config proposes the same trials again (the scrambles are seeded).
    again = _trials(_grid(tmp_path / "again", heads=[{"head": "quantum", "qubits": 2}], tuning={"trials": 8, "startup": 8}))
    assert again["params"].tolist() == trials["params"].tolist()


@dataclasses.dataclass
class _Head:
    dataset: str = "toy"
    mode: str = "frozen"
    head: str = "linear"


def test_tpe_takes_over_after_the_start_up_and_homes_in():
    space = parse_space({"common": {"learning_rate": {"low": 1e-4, "high": 1e-1, "log": True}}})
    tuning = parse_tuning({"trials": 24, "startup": 8, "batch": 2, "space": {"common": {"learning_rate": {"low": 1e-4, "high": 1e-1, "log": True}}}},
                          run_seed=0)
    dims = space_for(space, "linear", "frozen")

    def run_trials(batch):
        return [{"eval_macro_f1": 0.9 - 0.1 * abs(math.log10(params["learning_rate"]) + 2)} for _, _, params in batch]

    (result,) = tune_grid([(_Head(), dims)], tuning, run_trials, defaults=[{"learning_rate": 0.05}])
    origins = [t["origin"] for t in result.trials]
    assert origins == ["defaults"] + ["sobol"] * 7 + ["tpe"] * 16
    distance = [abs(math.log10(t["params"]["learning_rate"]) + 2) for t in result.trials]
    assert result.trials[0]["params"] == {"learning_rate": 0.05}
    assert np.median(distance[8:]) < 0.75 * np.median(distance[1:8])  # TPE searches nearer the optimum, Sobol everywhere
    assert abs(math.log10(result.best_params["learning_rate"]) + 2) < 0.1


def test_the_plan_is_written_to_the_bench_config(tmp_path):
    config = _grid(tmp_path, tuning={"trials": 10, "startup": 4})
    plan = config.to_dict()["tuning"]["plan"]
    assert plan == "10 trials per head: trial 0 the head's defaults, 3 scrambled-Sobol trials, 6 multivariate-TPE trials; no pruning"
    assert parse_tuning({"trials": 1}, run_seed=0).describe() == "1 trial per head: trial 0 the head's defaults; no pruning"


# ---------------------------------------------------------------------------------------------
# Cross-validation on the training pool
# ---------------------------------------------------------------------------------------------


def test_cross_validation_trains_every_fold_at_once_on_disjoint_stratified_folds():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [10, 20, 30])
    X = np.c_[np.arange(60), rng.normal(size=60)].astype(np.float32)  # column 0 identifies the row
    calls = []

    def trainer(train, validation, seeds):
        calls.append((train, validation, seeds))
        return [0.5 + 0.1 * j for j in range(len(train))]

    cv = cross_validated_score(trainer, X, y, folds=5, seed=3)
    assert len(calls) == 1
    train, validation, seeds = calls[0]
    assert seeds == [3, 4, 5, 6, 7] and len(train) == len(validation) == 5
    held_out = np.concatenate([Xv[:, 0] for Xv, _ in validation])
    assert sorted(held_out.astype(int)) == list(range(60))  # every row scored exactly once
    for (Xt, yt), (Xv, yv) in zip(train, validation):
        assert not set(Xt[:, 0]) & set(Xv[:, 0]) and len(Xt) + len(Xv) == 60
        assert np.bincount(yv).tolist() == [2, 4, 6]  # stratified
        assert (yv == y[Xv[:, 0].astype(int)]).all()
    assert cv.fold_scores == pytest.approx((0.5, 0.6, 0.7, 0.8, 0.9)) and cv.score == pytest.approx(0.7)
    assert cv.metrics()["eval_macro_f1"] == pytest.approx(0.7) and cv.metrics()["cv_folds"] == 5


def test_cross_validation_keeps_torch_tensors_and_reads_run_objects():
    import torch

    X, y = torch.randn(12, 3), torch.tensor([0, 1] * 6)

    def trainer(train, validation, seeds):
        assert all(isinstance(Xt, torch.Tensor) and isinstance(yv, torch.Tensor) for (Xt, _), (_, yv) in zip(train, validation))
        return [types.SimpleNamespace(eval_macro_f1=float(len(yv)) / 10) for _, yv in validation]

    assert cross_validated_score(trainer, X, y, folds=3).score == pytest.approx(0.4)


@pytest.mark.parametrize(("labels", "folds", "message"), [
    ([0] * 10 + [1] * 2, 3, "folds: class 1 has 2 row"),
    ([0, 1] * 5, 1, "folds must be an integer >= 2"),
])
def test_cross_validation_refuses_folds_it_cannot_make(labels, folds, message):
    with pytest.raises(ValueError, match=message):
        cross_validated_score(lambda **kw: [], np.zeros((len(labels), 2)), np.array(labels), folds=folds)
