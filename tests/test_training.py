"""TrainingConfig, metrics and run_training on a tiny random BERT and small CSV files."""

from __future__ import annotations

import csv
import json
import random

import pytest
import torch

pytest.importorskip("transformers")

import qubert.training as training  # noqa: E402
from qubert.modeling import QubertForSequenceClassification  # noqa: E402
from qubert.training import (  # noqa: E402
    RunDirectoryError,
    TrainingConfig,
    TrainingConfigError,
    TrainingInterrupted,
    classification_metrics,
    confusion_matrix,
    evaluate_model,
    head_config_from,
    load_model,
    predict_texts,
    run_training,
)

POSITIVE = ["good", "great", "excellent", "lovely", "superb", "fine"]
NEGATIVE = ["bad", "awful", "terrible", "dreadful", "poor", "boring"]
RUNTIME_KEYS = ("runtime", "per_second")


def _write_csv(path, n, seed):
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i in range(n):
            label = i % 2
            words = rng.sample(POSITIVE if label else NEGATIVE, 3)
            writer.writerow([f"the film was {' and '.join(words)}", "pos" if label else "neg"])


@pytest.fixture(scope="module")
def env(tmp_path_factory, save_tiny_bert):
    root = tmp_path_factory.mktemp("training")
    save_tiny_bert(root / "encoder")
    for name, n, seed in (("train", 64, 1), ("validation", 20, 2), ("test", 20, 3)):
        _write_csv(root / f"{name}.csv", n, seed)
    return root


def _config(env, tmp_path, **overrides):
    base = dict(
        train_file=str(env / "train.csv"), validation_file=str(env / "validation.csv"), test_file=str(env / "test.csv"),
        model=str(env / "encoder"), max_length=16, head="quantum", qubits=3, layers=1, num_epochs=3, batch_size=16,
        output_dir=str(tmp_path / "run"), cache_dir=str(env / "cache"), progress=False, early_stopping_patience=None,
    )
    return TrainingConfig(**{**base, **overrides})


def _without_runtimes(metrics):
    return {k: v for k, v in metrics.items() if not any(r in k for r in RUNTIME_KEYS)}


# ------------------------------------------------------------------ config and metrics


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"head": "svm"}, "unknown head 'svm'"),
        ({"mode": "partial"}, "unknown mode"),
        ({"pooling": "max"}, "unknown pooling"),
        ({"qubits": 0}, "qubits must be a positive integer"),
        ({"layers": -1}, "layers must be"),
        ({"learning_rate": 0}, "learning_rate must be a positive number"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"max_steps": 0}, "max_steps"),
        ({"ansatz": "zigzag"}, "quantum head: unknown ansatz"),
        ({"scaling": "cubic"}, "unknown scaling"),
        ({"strategy": "fast"}, "unknown strategy 'fast'"),
        ({"strategy": "analytic", "encoding": "rx"}, "strategy 'analytic' needs .*encoding rx"),
        ({"hidden_sizes": []}, "hidden_sizes"),
        ({"dropout": 1.5}, "dropout"),
        ({"dataset": None}, "no data given"),
        ({"lr_scheduler_type": "zigzag"}, "lr_scheduler_type"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(TrainingConfigError, match=message):
        TrainingConfig(**{"dataset": "sms_spam", **changes})


def test_config_defaults_depend_on_mode():
    frozen, full = TrainingConfig(dataset="x"), TrainingConfig(dataset="x", mode="full")
    assert (frozen.resolved_batch_size, frozen.resolved_num_epochs, frozen.resolved_learning_rate) == (64, 100.0, 1e-2)
    assert frozen.early_stopping_patience == 5  # the high frozen cap is a cap: early stopping ends the run
    assert (full.resolved_batch_size, full.resolved_num_epochs, full.resolved_learning_rate) == (16, 3.0, 1e-3)
    assert frozen.run_name("sms_spam") == "sms_spam-quantum-frozen-s42"
    assert all(f.metadata.get("help") for f in __import__("dataclasses").fields(TrainingConfig))


def test_config_from_dict_and_yaml(tmp_path):
    with pytest.raises(TrainingConfigError, match="did you mean 'qubits'"):
        TrainingConfig.from_dict({"dataset": "x", "qubit": 4})
    path = tmp_path / "run.yaml"
    path.write_text("dataset: sst2\nhead: mlp\nhidden-sizes: [16, 8]\nnum_epochs: 2\n")
    cfg = TrainingConfig.from_yaml(path, seed=7)
    assert (cfg.dataset, cfg.head, cfg.hidden_sizes, cfg.num_epochs, cfg.seed) == ("sst2", "mlp", [16, 8], 2, 7)
    path.write_text("- just a list\n")
    with pytest.raises(TrainingConfigError, match="mapping"):
        TrainingConfig.from_yaml(path)


def test_head_config_from_config():
    q = head_config_from(TrainingConfig(dataset="x", qubits=4, layers=3, ansatz="strongly_entangling", scaling="pi"))
    assert q["type"] == "quantum" and q["circuit"]["n_qubits"] == 4 and q["circuit"]["n_layers"] == 3
    assert q["circuit"]["ansatz"] == "strongly_entangling" and q["scaling"] == "pi"
    assert head_config_from(TrainingConfig(dataset="x", head="linear", dropout=0.1)) == {"type": "linear", "dropout": 0.1}


def test_metrics_match_hand_computed_values():
    labels, predicted = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    m = classification_metrics(labels, predicted)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per-class F1: 0.8, 0.5, 2/3
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert m["precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert confusion_matrix(labels, predicted, 4) == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]


# ------------------------------------------------------------------ run_training


def test_run_writes_a_complete_run_directory(env, tmp_path):
    metrics = run_training(_config(env, tmp_path))
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.json", "confusion_matrix.json", "predictions.csv", "history.json", "training_curve.png", "model/config.json", "model/model.safetensors", "model/tokenizer.json"):
        assert (run / name).is_file(), name
    assert not list(run.rglob("*.tmp"))
    assert json.loads((run / "metrics.json").read_text()) == metrics
    for split in ("test", "eval"):
        for key in ("macro_f1", "accuracy", "weighted_f1", "precision", "recall", "runtime"):
            assert f"{split}_{key}" in metrics
    assert metrics["train_runtime"] > 0 and metrics["trainable_params"] == QubertForSequenceClassification.from_pretrained(run / "model").head.trainable_params
    assert metrics["encoder_trainable_params"] == 0 and metrics["test_samples"] == 20

    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1.0, 2.0, 3.0]
    assert all("train_loss" in row and "eval_macro_f1" in row for row in history)
    # The best epoch's model is the one kept and scored.
    assert metrics["eval_macro_f1"] == pytest.approx(max(row["eval_macro_f1"] for row in history))
    checkpoint = training.rundir.complete_checkpoints(run / "checkpoints")[-1]
    assert (checkpoint / "model.safetensors").stat().st_size < 100_000  # frozen encoder: head-only checkpoints
    matrix = json.loads((run / "confusion_matrix.json").read_text())
    assert matrix["labels"] == ["neg", "pos"] and sum(map(sum, matrix["matrix"])) == 20

    import pandas as pd

    predictions = pd.read_csv(run / "predictions.csv")
    assert list(predictions.columns) == ["text", "label", "predicted", "prob_neg", "prob_pos"]
    assert len(predictions) == 20
    assert ((predictions["label"] == predictions["predicted"]).mean()) == pytest.approx(metrics["test_accuracy"])
    # The saved model reproduces the run's test predictions.
    names, labels, probs = predict_texts(run, predictions["text"].tolist())
    assert labels == predictions["predicted"].tolist()
    assert torch.allclose(probs, torch.tensor(predictions[["prob_neg", "prob_pos"]].to_numpy(), dtype=torch.float32), atol=1e-5)


def test_same_seed_gives_same_metrics(env, tmp_path):
    a = run_training(_config(env, tmp_path, output_dir=str(tmp_path / "a"), num_epochs=2))
    b = run_training(_config(env, tmp_path, output_dir=str(tmp_path / "b"), num_epochs=2))
    assert _without_runtimes(a) == _without_runtimes(b)
    c = run_training(_config(env, tmp_path, output_dir=str(tmp_path / "c"), num_epochs=2, seed=3))
    assert _without_runtimes(c)["train_loss"] != _without_runtimes(a)["train_loss"]


def test_run_directory_is_protected_and_resumable(env, tmp_path):
    first = run_training(_config(env, tmp_path, head="linear", num_epochs=1))
    with pytest.raises(RunDirectoryError, match="already holds a finished run"):
        run_training(_config(env, tmp_path, head="linear", num_epochs=1))
    assert run_training(_config(env, tmp_path, head="linear", num_epochs=1, resume=True)) == first
    with pytest.raises(RunDirectoryError, match="options differ.*head"):
        run_training(_config(env, tmp_path, head="mlp", num_epochs=1, resume=True))
    again = run_training(_config(env, tmp_path, head="mlp", num_epochs=1, overwrite_output_dir=True))
    assert again["trainable_params"] != first["trainable_params"]
    with pytest.raises(RunDirectoryError, match="nothing to resume"):
        run_training(_config(env, tmp_path, output_dir=str(tmp_path / "fresh"), resume=True))


def test_interrupted_run_resumes_from_its_last_checkpoint(env, tmp_path, monkeypatch, interrupt_evaluation):
    real = interrupt_evaluation(2)  # Ctrl-C during the second epoch's evaluation
    config = _config(env, tmp_path, head="linear", num_epochs=3)
    with pytest.raises(TrainingInterrupted) as info:
        run_training(config)
    run = tmp_path / "run"
    assert info.value.run_dir == run
    assert not (run / "metrics.json").exists() and not (run / "model").exists()
    assert [p.name for p in training.rundir.complete_checkpoints(run / "checkpoints")] == ["checkpoint-4"]
    with pytest.raises(RunDirectoryError, match="unfinished run.*--resume"):
        run_training(config)

    monkeypatch.setattr(training.metrics, "compute_metrics", real)
    metrics = run_training(_config(env, tmp_path, head="linear", num_epochs=3, resume=True))
    assert metrics["epoch"] == 3.0
    assert [row["epoch"] for row in json.loads((run / "history.json").read_text())] == [1.0, 2.0, 3.0]


def test_full_and_top_k_modes_train_the_encoder(env, tmp_path):
    initial = QubertForSequenceClassification.from_encoder(str(env / "encoder"), head={"type": "linear"}, id2label={0: "neg", 1: "pos"})
    before = {k: v.clone() for k, v in initial.encoder.state_dict().items()}
    run_training(_config(env, tmp_path, mode="full", head="linear", max_steps=2, encoder_learning_rate=1e-3, output_dir=str(tmp_path / "full")))
    full, _ = load_model(tmp_path / "full", device="cpu")
    after = full.encoder.state_dict()
    assert not torch.equal(before["embeddings.word_embeddings.weight"], after["embeddings.word_embeddings.weight"])
    metrics = run_training(_config(env, tmp_path, mode="top1", head="linear", max_steps=2, encoder_learning_rate=1e-3, output_dir=str(tmp_path / "top1")))
    top1, _ = load_model(tmp_path / "top1", device="cpu")
    after = top1.encoder.state_dict()
    assert torch.equal(before["encoder.layer.0.output.dense.weight"], after["encoder.layer.0.output.dense.weight"])
    assert not torch.equal(before["encoder.layer.1.output.dense.weight"], after["encoder.layer.1.output.dense.weight"])
    assert metrics["encoder_trainable_params"] > 0


def test_evaluate_model_on_a_labelled_file(env, tmp_path):
    run_training(_config(env, tmp_path, head="linear", num_epochs=1))
    metrics = evaluate_model(tmp_path / "run", test_file=str(env / "test.csv"), progress=False)
    assert 0 <= metrics["test_macro_f1"] <= 1 and metrics["test_samples"] == 20
    assert sum(map(sum, metrics["confusion_matrix"])) == 20
    with pytest.raises(TrainingConfigError, match="need a quantum head"):
        evaluate_model(tmp_path / "run", test_file=str(env / "test.csv"), shots=100, progress=False)
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,maybe\n")
    with pytest.raises(ValueError, match="label 'maybe' is not one of the model's classes"):
        evaluate_model(tmp_path / "run", test_file=str(bad), progress=False)
    with pytest.raises(ValueError, match="not a saved qubert model"):
        evaluate_model(tmp_path, test_file=str(env / "test.csv"), progress=False)


def test_metrics_say_why_training_stopped(env, tmp_path):
    capped = run_training(_config(env, tmp_path, head="linear", num_epochs=1, output_dir=str(tmp_path / "cap")))
    assert capped["stopped_by"] == "epoch_cap" and capped["epochs_trained"] == 1
    stepped = run_training(_config(env, tmp_path, head="linear", max_steps=2, output_dir=str(tmp_path / "steps")))
    assert stepped["stopped_by"] == "max_steps"
    patient = run_training(_config(env, tmp_path, head="linear", num_epochs=40, early_stopping_patience=1, output_dir=str(tmp_path / "patience")))
    assert patient["stopped_by"] == "patience" and patient["epochs_trained"] < 40
    assert patient["best_epoch"] < patient["epochs_trained"]



def test_data_seed_fixes_the_subsets_while_seed_varies_the_rest(env, tmp_path):
    from qubert.training.datasets import load_bundle as _load_bundle

    def train_rows(**changes):
        return _load_bundle(_config(env, tmp_path, max_train_samples=20, **changes)).train.texts

    assert train_rows(seed=1) != train_rows(seed=2)  # the seed picks the subset...
    assert train_rows(seed=1, data_seed=0) == train_rows(seed=2, data_seed=0)  # ...unless data_seed fixes it


def test_the_old_device_keyword_for_a_quantum_backend_warns_and_still_works():
    from qubert.evaluation import deprecated_backend_keyword

    with pytest.warns(DeprecationWarning, match=r"evaluate_model\(device=...\) is deprecated"):
        assert deprecated_backend_keyword(None, "fake_manila", "evaluate_model") == "fake_manila"
    assert deprecated_backend_keyword("fake_manila", None, "evaluate_model") == "fake_manila"
    with pytest.raises(TypeError, match="not both"):
        deprecated_backend_keyword("fake_manila", "fake_manila", "evaluate_model")
