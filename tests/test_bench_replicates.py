"""Bench v3 end to end on the user's own data: a folder data set and an explicit-file entry, paired
replicates, looks with sequential stopping, per-example predictions, resuming, and Ray agreeing
with the in-process run. A tiny random encoder keeps every grid to seconds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qubert import bench
from qubert.bench import parse_bench_config
from qubert.bench.data import build_pools, parse_data_entry
from qubert.bench.looks import DECISIONS_FILE
from qubert.bench.predictions import read_predictions
from qubert.bench.replicates import draw_replicate


@pytest.fixture(scope="module")
def user_data(tmp_path_factory, write_word_splits, save_tiny_bert):
    """``<root>/data/words/{train,test}.csv`` (a folder data set), ``<root>/files/*.csv`` (explicit files), a tiny encoder."""
    root = tmp_path_factory.mktemp("user-data")
    folder = root / "data" / "words"
    folder.mkdir(parents=True)
    write_word_splits(folder, {"train": 96, "test": 48}, seed=1)
    files = root / "files"
    files.mkdir()
    write_word_splits(files, {"train": 96, "test": 48}, seed=2)
    for name in ("train", "test"):  # other column names, as a user's export might have them
        frame = pd.read_csv(files / f"{name}.csv").rename(columns={"text": "sentence", "label": "sentiment"})
        frame.to_csv(files / f"{name}.csv", index=False)
    model = save_tiny_bert(root / "encoder")
    return root, model


def config_for(root: Path, model: str, output: Path, **changes):
    data = {
        "data_dir": str(root / "data"),
        "datasets": ["words", {"name": "mine", "train_file": str(root / "files" / "train.csv"),
                               "test_file": str(root / "files" / "test.csv"), "text_column": "sentence",
                               "label_column": "sentiment"}],
        "replicates": 4, "looks": [2, 4],
        "pool": {"train": 80, "test": 40}, "draws": {"train": 32, "validation": 16, "test": 24},
        "heads": ["linear", "logreg", {"head": "quantum", "qubits": 2, "layers": 1}],
        "controls": ["matched_mlp"],
        "training": {"model": model, "max_length": 8, "num_epochs": 3, "batch_size": 16, "early_stopping_patience": None,
                     "cache_dir": str(root / "cache")},
        "tuning": {"trials": 0},
        "statistics": {"n_resamples": 200},
        **changes,
    }
    return parse_bench_config(data, name="user", online=False, output_dir=output)


@pytest.fixture(scope="module")
def in_process(user_data, tmp_path_factory):
    root, model = user_data
    config = config_for(root, model, tmp_path_factory.mktemp("bench") / "in-process")
    return config, bench.run_bench(config)


def test_a_folder_and_an_explicit_file_entry_run_with_classes_inferred_as_qubert_train_does(in_process):
    config, result = in_process
    assert result.failed == {}
    assert [d["dataset"] for d in config.datasets] == ["words", "mine"]
    assert Path(config.datasets[0]["data"]["dataset"]).is_absolute()  # a Ray worker needs no data_dir lookup
    results = pd.read_csv(config.output_dir / "results.csv")
    assert set(results["dataset"]) == {"words", "mine"}
    assert results["test_macro_f1"].between(0, 1).all()
    assert set(results["train_samples"]) == {32} and set(results["test_samples"]) == {24}
    entry, _ = parse_data_entry({"name": "mine", "train_file": config.datasets[1]["data"]["train_file"],
                                 "test_file": config.datasets[1]["data"]["test_file"],
                                 "text_column": "sentence", "label_column": "sentiment"})
    pools = build_pools(entry, train_size=80, test_size=40)
    assert pools.label_names == ("neg", "pos")  # string labels, sorted, as `qubert train` infers them


def test_replicates_are_paired_across_heads_and_differ_across_replicates(in_process):
    config, _ = in_process
    runs = config.output_dir / "runs" / "words" / "frozen"
    index = {(head, r): read_predictions(runs / head / f"seed{r}")["test_index"].tolist()
             for head in ("linear", "logreg") for r in (0, 1)}
    assert index[("linear", 0)] == index[("logreg", 0)] and index[("linear", 1)] == index[("logreg", 1)]
    assert index[("linear", 0)] != index[("linear", 1)]
    predictions = read_predictions(runs / "quantum_q2_l1" / "seed0")
    assert predictions["probabilities"].dtype == np.float16 and predictions["probabilities"].shape == (24, 2)
    assert np.allclose(predictions["probabilities"].astype(float).sum(axis=1), 1, atol=1e-2)
    # The draws themselves: training rows differ across r, validation never overlaps training.
    labels = np.array([0, 1] * 40)
    a, b = (draw_replicate(labels, labels[:40], r, n_train=32, n_validation=16, n_test=24) for r in (0, 1))
    assert not set(a.train) & set(a.validation) and list(a.train) != list(b.train)
    assert list(draw_replicate(labels, labels[:40], 0, n_train=32, n_validation=16, n_test=24).train) == list(a.train)


def test_looks_decide_and_write_the_confirmatory_family(in_process):
    config, result = in_process
    decisions = pd.read_csv(config.output_dir / DECISIONS_FILE)
    confirmatory = decisions[decisions["family"] == "confirmatory"]
    assert set(confirmatory["kind"]) == {"matched_mlp", "best_classical"}
    assert set(decisions.loc[decisions["family"] == "exploratory", "kind"]) == {"classical"}
    assert decisions["verdict"].isin(["better", "worse", "equivalent", "inconclusive"]).all()
    results = pd.read_csv(config.output_dir / "results.csv")
    # A head stops only when every comparison it takes part in is decided: open ones ran all 4 replicates.
    for row in decisions.itertuples():
        if not row.decided:
            for head in (row.head, row.reference):
                assert len(results[(results["dataset"] == row.dataset) & (results["head"] == head)]) == 4


def test_a_resumed_sequential_grid_redoes_nothing(in_process, user_data):
    config, first = in_process
    before = {p: p.stat().st_mtime_ns for p in config.output_dir.rglob("metrics.json")}
    decisions = (config.output_dir / DECISIONS_FILE).read_text()
    again = bench.run_bench(config_for(*user_data, config.output_dir))
    assert again.ran == [] and again.failed == {}
    assert {p: p.stat().st_mtime_ns for p in config.output_dir.rglob("metrics.json")} == before
    assert (config.output_dir / DECISIONS_FILE).read_text() == decisions
    # One replicate lost: only it is trained again, with the same numbers.
    lost = config.output_dir / "runs" / "mine" / "frozen" / "linear" / "seed1"
    metrics = json.loads((lost / "metrics.json").read_text())
    (lost / "metrics.json").unlink()
    resumed = bench.run_bench(config_for(*user_data, config.output_dir))
    assert resumed.ran == ["mine/frozen/linear/seed1"]
    assert json.loads((lost / "metrics.json").read_text())["test_macro_f1"] == pytest.approx(metrics["test_macro_f1"])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install 'qubert[ray]')")
def test_ray_gives_the_same_results_and_decisions_as_in_process(in_process, user_data, tmp_path):
    config, _ = in_process
    on_ray = config_for(*user_data, tmp_path / "ray")
    result = bench.run_bench(on_ray, use_ray=True, ray_num_cpus=2)
    assert result.failed == {}
    timing = list(bench.TIMING_COLUMNS)
    ray_rows = pd.read_csv(on_ray.output_dir / "results.csv").drop(columns=timing)
    local_rows = pd.read_csv(config.output_dir / "results.csv").drop(columns=timing)
    pd.testing.assert_frame_equal(ray_rows, local_rows)
    pd.testing.assert_frame_equal(pd.read_csv(on_ray.output_dir / DECISIONS_FILE), pd.read_csv(config.output_dir / DECISIONS_FILE))


def test_cli_prints_the_verdict_table(in_process, user_data):
    from qubert.cli.bench import bench_app

    config, _ = in_process
    root, model = user_data
    path = config.output_dir / "user.yaml"
    import yaml

    path.write_text(yaml.safe_dump({
        "data_dir": str(root / "data"), "datasets": ["words"], "replicates": 4, "looks": [2, 4],
        "pool": {"train": 80, "test": 40}, "draws": {"train": 32, "validation": 16, "test": 24},
        "heads": ["linear", {"head": "quantum", "qubits": 2, "layers": 1}], "controls": [],
        "training": {"model": model, "max_length": 8, "num_epochs": 3, "batch_size": 16, "cache_dir": str(root / "cache")},
        "tuning": {"trials": 0}, "statistics": {"n_resamples": 200}}))
    result = CliRunner().invoke(bench_app, ["--config", str(path), "--output-dir", str(config.output_dir / "cli")])
    assert result.exit_code == 0, result.output
    assert "Verdicts" in result.output and "best_classical" in result.output
    assert "of 1 confirmatory comparisons decided" in result.output


def test_when_no_run_finishes_the_message_names_no_summary(user_data, tmp_path):
    from qubert.cli.bench import bench_app

    root, model = user_data
    import yaml

    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump({
        "data_dir": str(root / "data"), "datasets": ["words"], "replicates": 2,
        "pool": {"train": 80, "test": 40}, "draws": {"train": 32, "validation": 16, "test": 24},
        "heads": [{"head": "quantum", "qubits": 2, "layers": 1}], "controls": [],
        "training": {"model": model, "max_length": 8, "num_epochs": 2, "cache_dir": str(root / "cache")},
        "tuning": {"trials": 0}}))

    import qubert.bench.looks as looks

    def broken(task):
        raise RuntimeError("simulated failure")

    original = looks.run_frozen_task
    looks.run_frozen_task = broken
    try:
        result = CliRunner().invoke(bench_app, ["--config", str(path), "--output-dir", str(tmp_path / "out")])
    finally:
        looks.run_frozen_task = original
    assert result.exit_code == 1
    assert "summary.md" not in result.output and "no summary was written" in result.output
    assert not (tmp_path / "out" / "summary.md").exists()


# ---------------------------------------------------------------------------------------------
# Frozen tuning trials: k-fold cross-validation on the training pool, side by side on Ray
# ---------------------------------------------------------------------------------------------

# Trial 0 of logreg is C = 1 (its default); the start-up points try both choices, so one trial
# fails (scikit-learn refuses C = -1) and is recorded while the search goes on.
CV_TUNING = {"trials": 3, "batch": 2, "seed": 1,
             "space": {"common": {"learning_rate": {"low": 1e-3, "high": 1e-1, "log": True}}, "logreg": {"C": [-1.0, 1.0]}}}


def cv_config(user_data, output: Path):
    return config_for(*user_data, output, datasets=["words"], heads=["linear", "logreg"], controls=[],
                      replicates=2, looks=[2], tuning=CV_TUNING)


@pytest.fixture(scope="module")
def cv_in_process(user_data, tmp_path_factory):
    config = cv_config(user_data, tmp_path_factory.mktemp("cv") / "in-process")
    return config, bench.run_bench(config)


def test_frozen_trials_are_cross_validated_and_a_failing_one_is_recorded(cv_in_process):
    config, result = cv_in_process
    trials = pd.read_csv(config.output_dir / "tuning.csv")
    assert trials.groupby("head").size().to_dict() == {"linear": 3, "logreg": 3}
    failed = trials[trials["state"] == "failed"]
    assert list(failed["head"]) == ["logreg"] and json.loads(failed["params"].iloc[0]) == {"C": -1.0}
    (key,) = [k for k in result.failed if k.startswith("tuning/")]
    assert key == f"tuning/words/frozen/logreg/trial{int(failed['trial'].iloc[0]):02d}"
    assert "\n" not in result.failed[key] and "C" in result.failed[key]
    metrics = json.loads((config.output_dir / "tuning" / "runs" / "words" / "frozen" / "linear" / "trial00" / "metrics.json").read_text())
    assert metrics["folds"] == 5 and len(metrics["fold_scores"]) == 5  # k-fold, not one validation split
    choices = json.loads((config.output_dir / "tuning_choices.json").read_text())
    assert choices["words/frozen/logreg"]["params"] == {"C": 1.0} and choices["words/frozen/logreg"]["failed_trials"] == 1


def test_a_resumed_tuning_reads_finished_trials_back(cv_in_process, user_data, monkeypatch):
    config, _ = cv_in_process
    trials = sorted((config.output_dir / "tuning").rglob("metrics.json"))
    before = {p: p.stat().st_mtime_ns for p in trials}
    csv = (config.output_dir / "tuning.csv").read_text()
    import qubert.bench.looks as looks

    calls, real = [], looks.cross_validate_head
    monkeypatch.setattr(looks, "cross_validate_head", lambda *args: calls.append(args[:2]) or real(*args))
    again = bench.run_bench(cv_config(user_data, config.output_dir))
    assert calls == [("logreg", {**calls[0][1], "C": -1.0})]  # only the failed trial is tried again
    assert {p: p.stat().st_mtime_ns for p in trials} == before and again.ran == []
    assert (config.output_dir / "tuning.csv").read_text() == csv


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install 'qubert[ray]')")
def test_ray_cross_validates_side_by_side_and_tunes_exactly_as_in_process(cv_in_process, user_data, tmp_path, monkeypatch):
    import ray

    config, local = cv_in_process
    puts, real_put = [], ray.put
    monkeypatch.setattr(ray, "put", lambda value, **kw: puts.append(getattr(value, "shape", None)) or real_put(value, **kw))
    on_ray = cv_config(user_data, tmp_path / "ray")
    result = bench.run_bench(on_ray, use_ray=True, ray_num_cpus=2)
    for name in ("tuning.csv", "tuning_choices.json"):
        assert (on_ray.output_dir / name).read_text() == (config.output_dir / name).read_text()
    tuning_failures = {k: v for k, v in result.failed.items() if k.startswith("tuning/")}
    assert tuning_failures == {k: v for k, v in local.failed.items() if k.startswith("tuning/")} != {}
    # 6 trials in 2 rounds, 48 cross-validation rows: features and labels go to the object store
    # once per round, not once per trial.
    assert sum(1 for shape in puts if shape is not None and shape[0] == 48) == 4
