"""`qubert bench`: config validation, grid expansion with controls, real runs of the tiny grid,
resuming, and the Ray path giving the same results.csv as the sequential one."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from qubert import bench
from qubert.bench import BenchConfigError, expand_grid, parse_bench_config
from qubert.heads import QuantumHead, matched_mlp_head
from qubert.quantum import Circuit

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"


def grid(**overrides):
    data = {"datasets": ["sms_spam"], "heads": ["linear"], "tuning": {"trials": 0}, **overrides}  # labels as given
    if "replicates" not in data:
        data.setdefault("seeds", [0, 1])
    return parse_bench_config(data, online=False, output_dir="/tmp/qubert-bench-unused")


# ---------------------------------------------------------------------------------------------
# Bad configs fail before any run, naming the key
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"datasets": ["sms_spamm"]}, "datasets[0]"),
        ({"datasets": []}, "datasets"),
        ({"heads": ["linear", "transformer"]}, "heads[1].head"),
        ({"heads": [{"head": "quantum", "qubits": 0}]}, "heads[0].qubits"),
        ({"heads": [{"head": "quantum", "qubits": [2, 0]}]}, "heads[0].qubits"),
        ({"heads": [{"head": "quantum", "qubits": []}]}, "heads[0].qubits"),
        ({"heads": []}, "heads"),
        ({"seeds": []}, "seeds"),
        ({"seeds": [0, 0]}, "seeds"),
        ({"seeds": [-3]}, "seeds"),
        ({"seeds": 1_000_000_000}, "seeds"),
        ({"replicates": 1}, "replicates"),
        ({"replicates": 4, "looks": [2, 2, 4]}, "looks"),
        ({"replicates": 4, "looks": [3, 2, 4]}, "looks"),
        ({"replicates": 4, "looks": [2, 3]}, "looks"),
        ({"statistics": {"margin": 0}}, "statistics.margin"),
        ({"statistics": {"margin": -0.01}}, "statistics.margin"),
        ({"statistics": {"method": "bonferroni_spending"}}, "statistics.method"),
        ({"confirmatory": ["matched_mlp", "vibes"]}, "confirmatory"),
        ({"pool": {"train": 0}}, "pool.train"),
        ({"draws": {"tests": 10}}, "draws.tests"),
        ({"name": "../escape"}, "name"),
        ({"training": {"num_epochs": float("inf")}}, "training.num_epochs"),
        ({"datasets": [{"name": "mine", "train_file": "/nonexistent/train.csv", "test_file": "/nonexistent/test.csv"}]},
         "datasets[0].train_file"),
        ({"datasets": [{"train_file": "/nonexistent/train.csv", "test_file": "/nonexistent/test.csv"}]}, "datasets[0].name"),
        ({"datasets": [{"name": "../up", "dataset": "sms_spam"}]}, "datasets[0].name"),
        ({"controls": ["matched_mlp", "placebo"]}, "controls"),
        ({"modes": ["thawed"]}, "modes[0]"),
        ({"training": {"learning_rat": 0.1}}, "training.learning_rat"),
        ({"training": {"seed": 3}}, "training.seed"),
        ({"resources": {"num_tpus": 1}}, "resources.num_tpus"),
        ({"statistics": {"n_resamples": 10}}, "statistics.n_resamples"),
        ({"epochs": 3}, "epochs"),
        ({"data_dir": "/nonexistent/qubert-data"}, "data_dir"),
    ],
)
def test_bad_config_names_the_key(overrides, key):
    with pytest.raises(BenchConfigError, match=rf"(^|: ){__import__('re').escape(key)}: "):
        expand_grid(grid(**overrides))


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"modes": ["top99"]}, r"modes|top99.*encoder has 6"),
        ({"training": {"max_length": 100000}}, r"max_length 100000 exceeds the encoder's limit of 512"),
        ({"tuning": {"trials": 2, "space": {"common": {"learning_rate": ["abc"]}}}}, r"learning_rate"),
    ],
)
def test_run_settings_are_checked_as_qubert_train_checks_them_before_any_run(overrides, pattern):
    with pytest.raises(BenchConfigError, match=pattern):
        expand_grid(grid(**overrides))


def test_a_data_set_missing_from_the_data_dir_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(BenchConfigError, match=r"datasets\[0\]: data set 'sms_spam' is not in"):
        parse_bench_config({"datasets": ["sms_spam"], "heads": ["linear"], "data_dir": str(tmp_path / "data")}, online=False)


def test_an_entry_whose_column_is_missing_is_refused_before_any_run(tmp_path, write_word_splits):
    folder = write_word_splits(tmp_path, {"train": 20, "test": 10})
    config = grid(datasets=[{"name": "words", "train_file": str(folder / "train.csv"), "test_file": str(folder / "test.csv"),
                             "text_column": "sentence"}])
    with pytest.raises(BenchConfigError, match=r"datasets: words: .*sentence"):
        expand_grid(config)


def test_option_errors_found_by_training_config_fail_before_any_run():
    config = grid(heads=[{"head": "quantum", "qubits": 2, "ansatz": "spiral"}])
    with pytest.raises(BenchConfigError, match=r"heads\[0\].*spiral"):
        expand_grid(config)
    with pytest.raises(BenchConfigError, match=r"heads\[0\]"):
        expand_grid(grid(heads=[{"head": "mlp", "pooling": "max"}]))


def test_unreadable_config_file(tmp_path):
    with pytest.raises(BenchConfigError, match="not found"):
        bench.load_bench_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [sms_spam\n")
    with pytest.raises(BenchConfigError, match="not valid YAML"):
        bench.load_bench_config(bad)


# ---------------------------------------------------------------------------------------------
# Grid expansion
# ---------------------------------------------------------------------------------------------


def test_grid_expands_data_sets_modes_heads_and_seeds_in_order():
    config = grid(datasets=["sms_spam", "twitter"], modes=["frozen", "full"], seeds=[0, 1],
                  heads=["linear", {"head": "mlp", "hidden_sizes": [64]}, {"head": "quantum", "qubits": [2, 4], "layers": [1, 2]}])
    specs = expand_grid(config)
    assert len(specs) == 2 * 2 * (2 + 4) * 2
    assert [s.run_id for s in specs[:4]] == [
        "sms_spam/frozen/linear/seed0", "sms_spam/frozen/linear/seed1",
        "sms_spam/frozen/mlp_64/seed0", "sms_spam/frozen/mlp_64/seed1",
    ]
    quantum = [s for s in specs if s.head_type == "quantum" and s.seed == 0 and s.dataset == "twitter" and s.mode == "full"]
    assert [(s.settings["qubits"], s.settings["layers"]) for s in quantum] == [(2, 1), (2, 2), (4, 1), (4, 2)]
    assert all("qubits" not in s.settings for s in specs if s.head_type != "quantum")
    assert len({s.run_id for s in specs}) == len(specs)


def test_controls_are_the_matched_mlp_the_unentangled_and_the_frozen_circuit():
    config = grid(datasets=["twitter3"], controls=list(bench.CONTROLS),
                  heads=[{"head": "quantum", "qubits": 6, "layers": 3, "ansatz": "strongly_entangling"}])
    specs = {s.control: s for s in expand_grid(config)}
    assert set(specs) == {"", "matched_mlp", "no_entanglement", "frozen_circuit"}
    quantum = specs[""]
    expected = matched_mlp_head(QuantumHead(384, 3, circuit=Circuit(n_qubits=6, n_layers=3, ansatz="strongly_entangling")))
    mlp = specs["matched_mlp"]
    assert mlp.head_type == "mlp" and mlp.settings["hidden_sizes"] == list(expected.hidden_sizes)
    assert "qubits" not in mlp.settings
    assert specs["no_entanglement"].settings == {**quantum.settings, "entanglement": "none"}
    assert specs["frozen_circuit"].settings == {**quantum.settings, "freeze_circuit": True}
    assert {s.base_head for c, s in specs.items() if c} == {quantum.head}


def test_a_head_entry_can_choose_its_own_controls():
    config = grid(controls=["frozen_circuit"], heads=[
        {"head": "quantum", "qubits": 2},
        {"head": "quantum", "qubits": 4, "controls": ["matched_mlp"]},
        {"head": "quantum", "qubits": 6, "controls": []},
    ])
    heads = list(dict.fromkeys(s.head for s in expand_grid(config)))
    assert heads == ["quantum_q2_l2", "quantum_q2_l2_frozen", "quantum_q4_l2", "matched_mlp_q4_l2", "quantum_q6_l2"]


def test_two_different_heads_may_not_share_a_label():
    config = grid(heads=[{"head": "mlp", "name": "small", "hidden_sizes": [8]}, {"head": "mlp", "name": "small", "hidden_sizes": [16]}])
    with pytest.raises(BenchConfigError, match="small"):
        expand_grid(config)


def test_online_and_offline_alternatives_are_resolved():
    data = {"datasets": ["sms_spam"], "heads": ["linear"],
            "training": {"model": {"online": "bert-base-uncased", "offline": "default"},
                         "pooling": {"online": "pooler", "offline": "mean"}}}
    offline = parse_bench_config(data, online=False)
    online = parse_bench_config(data, online=True)
    assert (offline.training["model"], offline.training["pooling"]) == ("default", "mean")
    assert (online.training["model"], online.training["pooling"]) == ("bert-base-uncased", "pooler")


def test_offline_switch_selects_the_offline_alternative(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = bench.load_bench_config(REPO / "configs" / "paper.yaml")
    assert config.online is False and config.training["model"] == "default"


def test_shipped_configs_are_valid():
    from conftest import shared_data_path

    for name, runs in (("paper", 2500), ("quick", 2800), ("finetune", 150), ("tiny", 32)):
        config = bench.load_bench_config(REPO / "configs" / f"{name}.yaml", online=False, data_dir=shared_data_path())
        assert len(expand_grid(config)) == runs, name
        assert config.tuning.enabled and all(s.search for s in expand_grid(config)), name  # every head is tuned
    quick = bench.load_bench_config(REPO / "configs" / "quick.yaml", online=False, data_dir=shared_data_path())
    assert quick.modes == [{"mode": "frozen"}] and quick.seeds == list(range(50)) and quick.looks == [10, 20, 30, 40, 50]
    assert quick.confirmatory == ["matched_mlp", "no_entanglement", "best_classical"]
    assert {"trec", "ag_news", "twitter3", "tweet_eval_sentiment"} <= {d["dataset"] for d in quick.datasets}  # multiclass
    finetune = bench.load_bench_config(REPO / "configs" / "finetune.yaml", online=False, data_dir=shared_data_path())
    assert finetune.modes == [{"mode": "top2"}]
    assert {d["dataset"] for d in finetune.datasets} == {"imdb", "sms_spam", "sst2", "yelp", "twitter"}


def test_finished_means_metrics_and_the_same_settings(tmp_path):
    spec = expand_grid(grid())[0]
    run_dir = spec.run_dir(tmp_path)
    assert not bench.is_finished(spec, tmp_path)
    bench.execute_run(spec, str(tmp_path), run_fn=lambda cfg: {"test_macro_f1": 0.5})
    assert bench.is_finished(spec, tmp_path)
    assert json.loads((run_dir / "metrics.json").read_text()) == {"test_macro_f1": 0.5}
    changed = expand_grid(grid(training={"learning_rate": 0.05}))[0]
    assert changed.run_id == spec.run_id and not bench.is_finished(changed, tmp_path)
    quieter = expand_grid(grid(training={"progress": True}))[0]  # how a run is shown does not count
    assert bench.is_finished(quieter, tmp_path)


def test_a_failing_run_is_reported_and_the_grid_goes_on(tmp_path):
    config = parse_bench_config({"datasets": ["sms_spam"], "heads": ["linear", "mlp"], "seeds": [0, 1], "tuning": {"trials": 0}},
                                online=False, output_dir=tmp_path)

    def run_fn(cfg):
        if cfg.head == "mlp" and cfg.seed == 1:
            raise RuntimeError("out of memory\nwhile training")
        return {"test_macro_f1": 0.8 + 0.01 * cfg.seed, "test_accuracy": 0.9, "test_weighted_f1": 0.85,
                "trainable_params": 10, "train_runtime": 1.0}

    result = bench.run_bench(config, run_fn=run_fn)
    assert result.failed == {"sms_spam/frozen/mlp/seed1": "RuntimeError: out of memory while training"}
    assert len(result.results) == 3
    assert "## Failed runs" in result.summary.read_text()


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_bad_config_is_a_red_one_line_error_with_exit_code_2(tmp_path):
    from qubert.cli.bench import bench_app

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"datasets": ["sms_spam"], "heads": [{"head": "quantum", "qubits": 0}]}))
    result = CliRunner().invoke(bench_app, ["--config", str(bad), "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "heads[0].qubits" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mount", ["sub_app", "command"])
def test_cli_works_mounted_in_a_parent_app(tmp_path, mount):
    import typer

    from qubert.cli.bench import bench as bench_command
    from qubert.cli.bench import bench_app

    parent = typer.Typer()
    parent.command("other")(lambda: None)
    if mount == "sub_app":
        parent.add_typer(bench_app, name="bench")
    else:
        parent.command("bench")(bench_command)
    result = CliRunner().invoke(parent, ["bench", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "nope.yaml not found" in result.output


def test_cli_dry_run_lists_the_grid(tmp_path, shared_data_dir):
    from qubert.cli.bench import bench_app

    result = CliRunner().invoke(bench_app, ["--config", str(TINY), "--output-dir", str(tmp_path), "--data-dir",
                                            str(shared_data_dir), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "sms_spam/frozen/quantum_q2_l1/seed1" in result.output
    assert "0 finished, 32 to run" in result.output
    assert not (tmp_path / "results.csv").exists()


# ---------------------------------------------------------------------------------------------
# The tiny grid, for real (shared embedding cache across the tests of this module)
# ---------------------------------------------------------------------------------------------


def tiny_config(output_dir: Path, data_dir: Path, cache_dir: Path, **changes) -> bench.BenchConfig:
    data = yaml.safe_load(TINY.read_text())
    data.update(cache_dir=str(cache_dir), data_dir=str(data_dir), **changes)
    return parse_bench_config(data, name="tiny", online=False, output_dir=output_dir)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, shared_data_dir):
    """The tiny grid run once, sequentially, with the real run_training."""
    root = tmp_path_factory.mktemp("bench")
    config = tiny_config(root / "sequential", shared_data_dir, root / "cache")
    result = bench.run_bench(config)
    return config, result


def comparable(csv_path: Path) -> pd.DataFrame:
    frame = pd.read_csv(csv_path)
    return frame.drop(columns=[c for c in bench.TIMING_COLUMNS if c in frame.columns])


@pytest.mark.slow
def test_tiny_grid_tunes_then_runs_replicates_in_looks(tiny_run):
    config, result = tiny_run
    assert result.failed == {}
    results = pd.read_csv(config.output_dir / "results.csv")
    assert 16 <= len(results) <= 32 and list(results.columns) == list(bench.RESULT_COLUMNS)
    assert set(results["head"]) == {"linear", "mlp_32", "quantum_q2_l1", "matched_mlp_q2_l1"}
    assert results["test_macro_f1"].between(0, 1).all()
    # A quantum head with 2 qubits and 1 layer: 384*2+2 in, 2 circuit weights, 2*2+2 out.
    assert set(results.loc[results["head"] == "quantum_q2_l1", "trainable_params"]) == {770 + 2 + 6}
    assert (config.output_dir / "summary.md").is_file() and (config.output_dir / "decisions.csv").is_file()
    # Tuning: every head got the same number of trials, scored on validation, and its choice ran on every replicate.
    trials = pd.read_csv(config.output_dir / "tuning.csv")
    assert trials.groupby(["dataset", "head"]).size().tolist() == [2] * 8
    chosen = trials[trials["chosen"]].drop_duplicates(["dataset", "head"]).set_index(["dataset", "head"])
    for row in results.itertuples():
        params = json.loads(chosen.loc[(row.dataset, row.head), "params"])
        assert row.learning_rate == pytest.approx(params["learning_rate"], rel=1e-5)
    # Only small result files are kept: metrics and the test draw's predictions.
    run_dir = config.output_dir / results["run_dir"][0]
    assert (run_dir / "metrics.json").is_file() and (run_dir / "predictions.npz").is_file()
    assert not (run_dir / "model").exists()
