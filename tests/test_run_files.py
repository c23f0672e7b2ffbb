"""What a run leaves on disk and prints: history, metrics across resumes, kills, locks, permissions."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import threading

import pytest
import torch

pytest.importorskip("transformers")
from typer.testing import CliRunner  # noqa: E402

import qubert.embeddings as embeddings  # noqa: E402
import qubert.training as training  # noqa: E402
from qubert.cli import app  # noqa: E402
from qubert.files import LockHeld, exclusive_lock  # noqa: E402
from qubert.training import RunDirectoryError, TrainingConfig, run_training  # noqa: E402

runner = CliRunner()
WORDS = {0: ["bad", "awful", "terrible", "dreadful", "poor", "boring"], 1: ["good", "great", "excellent", "lovely", "superb", "fine"]}
RUNTIME_KEYS = ("runtime", "per_second")


@pytest.fixture(scope="module")
def env(tmp_path_factory, save_tiny_bert):
    root = tmp_path_factory.mktemp("run_files")
    save_tiny_bert(root / "encoder", num_hidden_layers=1)
    for name, n, seed in (("train", 48, 1), ("validation", 16, 2), ("test", 16, 3)):
        rng = random.Random(seed)
        with open(root / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            for i in range(n):
                writer.writerow([f"the film was {' and '.join(rng.sample(WORDS[i % 2], 3))}", "pos" if i % 2 else "neg"])
    return root


def _options(env, out, **overrides):
    base = dict(
        train_file=str(env / "train.csv"), validation_file=str(env / "validation.csv"), test_file=str(env / "test.csv"),
        model=str(env / "encoder"), max_length=16, head="linear", num_epochs=3, batch_size=16, learning_rate=0.05,
        output_dir=str(out), cache_dir=str(env / "cache"), progress=False, early_stopping_patience=None,
    )
    return {**base, **overrides}


def _config(env, out, **overrides):
    return TrainingConfig(**_options(env, out, **overrides))


def _without_runtimes(metrics):
    return {k: v for k, v in metrics.items() if not any(r in k for r in RUNTIME_KEYS)}


@pytest.fixture(scope="module")
def uninterrupted(env, tmp_path_factory):
    """Metrics of a plain 3-epoch run (the reference for resumed and killed runs)."""
    return run_training(_config(env, tmp_path_factory.mktemp("reference") / "run"))


# ------------------------------------------------------------------ history and metrics


def test_history_keeps_each_epochs_own_validation_scores(env, tmp_path, monkeypatch):
    calls = []
    real = training.metrics.compute_metrics

    def numbered(eval_pred):  # eval_call: which evaluation produced a logged row
        calls.append(len(calls) + 1)
        return {**real(eval_pred), "call": float(len(calls))}

    monkeypatch.setattr(training.metrics, "compute_metrics", numbered)
    run_training(_config(env, tmp_path / "run"))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    # Calls 1-3 are the epochs; call 4 re-evaluates the best model, call 5 is the test split.
    assert [row["eval_call"] for row in history] == [1.0, 2.0, 3.0]


def test_train_loss_after_resume_covers_the_whole_run(env, tmp_path, monkeypatch, uninterrupted, interrupt_evaluation):
    real = interrupt_evaluation(2)  # Ctrl-C during the second epoch's evaluation
    with pytest.raises(KeyboardInterrupt):
        run_training(_config(env, tmp_path / "run"))
    monkeypatch.setattr(training.metrics, "compute_metrics", real)
    resumed = run_training(_config(env, tmp_path / "run", resume=True))
    assert resumed["train_loss"] == pytest.approx(uninterrupted["train_loss"], rel=1e-9)
    assert _without_runtimes(resumed) == pytest.approx(_without_runtimes(uninterrupted))


def test_encode_runtime_only_where_something_is_encoded_ahead(env, tmp_path, uninterrupted):
    assert uninterrupted["encode_runtime"] >= 0
    metrics = run_training(_config(env, tmp_path / "full", mode="full", max_steps=1))
    assert "encode_runtime" not in metrics  # tokens only: nothing is encoded before training
    # (cached top<k> runs report it too: tests/test_layer_cache.py)


# ------------------------------------------------------------------ kills, locks, permissions


def test_kill_while_saving_the_model_then_resume(env, tmp_path, uninterrupted):
    run = tmp_path / "run"
    script = "import json, sys; from qubert.training import TrainingConfig, run_training; run_training(TrainingConfig(**json.loads(sys.argv[1])))"
    child_env = {**os.environ, "QUBERT_TEST_KILL_AT": "save_model", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(_options(env, run))], env=child_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert list(run.glob(".model.*.tmp")) and not (run / "metrics.json").exists()  # the hook fired mid-save

    resumed = run_training(_config(env, run, resume=True))
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert _without_runtimes(resumed) == pytest.approx(_without_runtimes(uninterrupted))
    assert resumed["train_loss"] == pytest.approx(uninterrupted["train_loss"], rel=1e-9)
    assert not list(tmp_path.glob(".*.lock"))


def test_stale_temporaries_are_removed_on_start(env, tmp_path):
    run = tmp_path / "run"
    (run / ".model.abc.tmp").mkdir(parents=True)
    (run / ".model.abc.tmp" / "model.safetensors").write_bytes(b"x")
    (run / ".metrics.json.abc.tmp").write_text("{")
    run_training(_config(env, run, num_epochs=1))  # only leftovers: not "an unfinished run"
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []


def test_a_second_process_on_the_same_run_directory_fails_with_one_line(env, tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from qubert.files import exclusive_lock\n"
         f"with exclusive_lock({str(tmp_path / '.run.lock')!r}):\n    print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirectoryError, match=rf"run directory {run} is in use by another qubert process \(pid {holder.pid}\)"):
            run_training(_config(env, run, num_epochs=1))
        result = runner.invoke(app, ["train", "--train-file", str(env / "train.csv"), "--validation-file", str(env / "validation.csv"),
                                     "--test-file", str(env / "test.csv"), "--model", str(env / "encoder"), "--no-progress",
                                     "--output-dir", str(run), "--cache-dir", str(env / "cache")])
        assert result.exit_code == 2
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and f"in use by another qubert process (pid {holder.pid})" in lines[0], result.output
        assert not run.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not (tmp_path / ".run.lock").exists()


def test_exclusive_lock_refuses_without_blocking_and_cleans_up(tmp_path):
    path = tmp_path / ".x.lock"
    with exclusive_lock(path):
        with pytest.raises(LockHeld) as info, exclusive_lock(path, blocking=False):
            pass
        assert info.value.pid == os.getpid()
    assert not path.exists()
    with exclusive_lock(path, blocking=False):  # free again
        pass


def test_a_second_encoder_of_the_same_split_waits_and_reads_the_cache(env, tmp_path, monkeypatch):
    from qubert.modeling import QubertForSequenceClassification, encoder_identity, load_tokenizer

    model = QubertForSequenceClassification.from_encoder(str(env / "encoder"), head={"type": "linear"}, id2label={0: "neg", 1: "pos"}, max_length=16)
    tokenizer = load_tokenizer(str(env / "encoder"))
    cache = embeddings.EmbeddingCache(tmp_path / "cache")
    texts = ["good film", "bad film", "fine"]
    encoded = []
    real_encode = embeddings.encode_texts
    monkeypatch.setattr(embeddings, "encode_texts", lambda *a, **k: encoded.append(1) or real_encode(*a, **k))

    waiting = threading.Event()
    real_lock = cache.lock

    def lock(key):
        waiting.set()  # the second caller found no file and is about to wait for the lock
        return real_lock(key)

    result = {}
    key = embeddings.cache_key(encoder_id=encoder_identity(model.encoder), pooling=model.config.pooling, max_length=16, fingerprint="fp", split="train")
    with real_lock(key):  # "the first process", busy encoding
        monkeypatch.setattr(cache, "lock", lock)
        second = threading.Thread(target=lambda: result.update(out=embeddings.cached_features(model, tokenizer, texts, fingerprint="fp", split="train", cache=cache, progress=False)))
        second.start()
        assert waiting.wait(timeout=60)
        cache.save(key, torch.full((3, 32), 7.0))
    second.join(timeout=60)
    features, hit = result["out"]
    assert hit and not encoded and torch.equal(features, torch.full((3, 32), 7.0))


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_run_files_follow_the_umask(env, tmp_path, umask):
    old = os.umask(umask)
    try:
        run = tmp_path / "run"
        run_training(_config(env, run, num_epochs=1, cache_dir=str(tmp_path / "cache")))
        result = runner.invoke(app, ["eval", str(run), "--test-file", str(env / "test.csv"), "--no-progress", "--output", str(tmp_path / "eval.json")])
        assert result.exit_code == 0, result.output
    finally:
        os.umask(old)
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    for path in (run / "metrics.json", run / "history.json", run / "config.yaml", run / "model" / "config.json", tmp_path / "eval.json",
                 *(tmp_path / "cache" / "embeddings").glob("*.safetensors")):
        assert path.stat().st_mode & 0o777 == file_mode, path
    assert (run / "model").stat().st_mode & 0o777 == dir_mode


# ------------------------------------------------------------------ what training prints


def test_progress_prints_one_plain_line_per_epoch_off_a_terminal(env, tmp_path, capfd):
    run_training(_config(env, tmp_path / "run", num_epochs=2, progress=True))
    err = capfd.readouterr().err
    epoch_lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2, err
    assert epoch_lines[0].startswith("epoch 1/2  train loss ") and " eval loss " in epoch_lines[0] and " eval macro-F1 " in epoch_lines[0]
    assert "\r" not in err and "{'loss'" not in err and "it/s" not in err


def test_progress_bar_over_steps_in_a_terminal(env, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich: treat stderr as a terminal
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    run_training(_config(env, tmp_path / "run", num_epochs=1, progress=True))
    err = capfd.readouterr().err
    assert "Training" in err and "steps" in err and "epoch 1/1" in err


def test_no_progress_prints_nothing_while_training(env, tmp_path, capfd):
    run_training(_config(env, tmp_path / "run", num_epochs=1))
    captured = capfd.readouterr()
    assert "epoch" not in captured.err and "\r" not in captured.err


def test_cli_train_ends_with_the_run_directory_and_its_config_makes_new_runs(env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["train", "--train-file", str(env / "train.csv"), "--validation-file", str(env / "validation.csv"), "--test-file", str(env / "test.csv"),
            "--model", str(env / "encoder"), "--max-length", "16", "--head", "linear", "--num-epochs", "1", "--no-progress", "--cache-dir", str(env / "cache")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    first = (tmp_path / "runs" / "train-linear-frozen-s42").resolve()
    assert result.stdout.strip().splitlines()[-1] == f"Run directory: {first}"
    import yaml

    assert yaml.safe_load((first / "config.yaml").read_text())["output_dir"] is None
    again = runner.invoke(app, ["train", "--config", str(first / "config.yaml"), "--seed", "8"])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "runs" / "train-linear-frozen-s8" / "metrics.json").is_file()
    resumed = runner.invoke(app, ["train", "--config", str(first / "config.yaml"), "--resume"])  # still the same run
    assert resumed.exit_code == 0, resumed.output


# ------------------------------------------------------------------ data caps


def test_max_train_samples_caps_a_validation_split_carved_from_train(env):
    from qubert.data import load_dataset_bundle

    bundle = load_dataset_bundle(None, train_file=str(env / "train.csv"), test_file=str(env / "test.csv"), max_train_samples=18)
    assert len(bundle.train) == 18 and len(bundle.validation) == 2  # round(18 * 0.1 / 0.9), was 5 of the 48 rows
    given = load_dataset_bundle(None, train_file=str(env / "train.csv"), validation_file=str(env / "validation.csv"), test_file=str(env / "test.csv"), max_train_samples=18)
    assert len(given.validation) == 16  # a validation split of its own is not touched


# ------------------------------------------------------------------ qubert eval


@pytest.fixture(scope="module")
def quantum_run(env, tmp_path_factory):
    run = tmp_path_factory.mktemp("quantum") / "run"
    metrics = run_training(_config(env, run, head="quantum", qubits=2, layers=1, num_epochs=1))
    return run, metrics


def test_eval_of_a_file_reuses_cached_features_of_a_frozen_model(env, quantum_run, monkeypatch):
    run, _ = quantum_run
    encoded = []
    real_encode = embeddings.encode_texts
    monkeypatch.setattr(embeddings, "encode_texts", lambda *a, **k: encoded.append(1) or real_encode(*a, **k))
    cache = str(env / "eval-cache")
    first = training.evaluate_model(run, test_file=str(env / "test.csv"), cache_dir=cache, progress=False)
    second = training.evaluate_model(run, test_file=str(env / "test.csv"), cache_dir=cache, progress=False)
    assert len(encoded) == 1 and first["test_macro_f1"] == second["test_macro_f1"]


def test_eval_defaults_to_the_runs_own_data_and_says_how_the_circuit_ran(env, quantum_run):
    run, metrics = quantum_run
    result = runner.invoke(app, ["eval", str(run), "--no-progress", "--cache-dir", str(env / "cache")])
    assert result.exit_code == 0, result.output
    assert "Data: train (test split), the run's own data" in result.stdout and "Quantum head: exact simulation" in result.stdout
    assert f"{metrics['test_macro_f1']:.4f}" in result.stdout
    noisy = runner.invoke(app, ["eval", str(run / "model"), "--no-progress", "--shots", "100", "--noise", "depolarizing:0.01", "--cache-dir", str(env / "cache")])
    assert noisy.exit_code == 0, noisy.output
    assert "Quantum head: 100 shots, noise depolarizing:0.01" in noisy.stdout


def test_training_curve_is_a_legible_figure(env, tmp_path):
    from PIL import Image

    run = tmp_path / "run"
    run_training(_config(env, run, num_epochs=2))
    width, height = Image.open(run / "training_curve.png").size
    assert height >= 420 and width >= 1000  # was 990 x 374 px with 8-pt legends over the data
