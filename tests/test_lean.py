"""Lean training (qubert.lean): agreement with the Trainer path, batched = single, early stopping, bad input."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pandas as pd
import pytest
import torch

from qubert.lean import LeanError, LeanSettings, split_metrics, train_replicates

HEADS = {
    "linear": {"type": "linear"},
    "mlp": {"type": "mlp", "hidden_sizes": [8]},
    "quantum": {"type": "quantum", "circuit": {"n_qubits": 4, "n_layers": 2}},
}


def noisy_replicates(n_replicates: int, n: int = 96, d: int = 12, n_classes: int = 3, seed: int = 0):
    """Replicates of overlapping Gaussian classes (several epochs to learn, never perfect)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, d, generator=g)

    def split(rows: int):
        y = torch.arange(rows) % n_classes
        return centers[y] * 0.6 + torch.randn(rows, d, generator=g), y

    return [split(n) for _ in range(n_replicates)], [split(48) for _ in range(n_replicates)], [split(40) for _ in range(n_replicates)]


def _write_noisy_words(root, sizes, seed=0):
    """Two-class texts whose words only lean towards a class: a frozen tiny encoder needs epochs."""
    rng = random.Random(seed)
    vocabulary = ["good", "great", "fine", "bad", "awful", "poor", "table", "chair", "river", "cloud"]
    for name, n in sizes.items():
        with open(root / f"{name}.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            for i in range(n):
                label = i % 2
                pool = vocabulary[:3] if label else vocabulary[3:6]
                words = [rng.choice(pool if rng.random() < 0.55 else vocabulary) for _ in range(4)]
                writer.writerow([" ".join(words), "pos" if label else "neg"])
    return root


# ---------------------------------------------------------------------------------------------
# Same seed: the Trainer path's frozen result
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def word_files(tmp_path_factory, save_tiny_bert):
    root = tmp_path_factory.mktemp("lean")
    model = save_tiny_bert(root / "tiny")
    data = root / "data"
    data.mkdir()
    _write_noisy_words(data, {"train": 120, "validation": 48, "test": 48})
    return root, model, data


@pytest.mark.parametrize("head", ["linear", "mlp", "quantum"])
def test_reproduces_the_trainer_frozen_run(word_files, head):
    """Same seed, same cached features: same best epoch, stop, scores; probabilities within 1e-6.

    Identical by construction: initialisation, batch order, optimizer, schedule, clipping, loss,
    early-stopping rule. Not identical: float order of whole-split evaluation (one pass instead
    of batches of 256), hence the tolerance on losses and probabilities.
    """
    from qubert.data import load_dataset_bundle
    from qubert.embeddings import EmbeddingCache, cached_features
    from qubert.modeling import QubertForSequenceClassification, load_tokenizer
    from qubert.training import TrainingConfig, head_config_from, run_training

    root, model_path, data = word_files
    extra = {"mlp": {"hidden_sizes": [8]}, "quantum": {"qubits": 4}}.get(head, {})
    config = TrainingConfig(
        train_file=str(data / "train.csv"), validation_file=str(data / "validation.csv"), test_file=str(data / "test.csv"),
        model=model_path, head=head, mode="frozen", output_dir=str(root / f"run-{head}"), cache_dir=str(root / "cache"),
        progress=False, seed=7, num_epochs=25, learning_rate=0.05, early_stopping_patience=3, **extra,
    )
    metrics = run_training(config)

    bundle = load_dataset_bundle(None, train_file=config.train_file, validation_file=config.validation_file, test_file=config.test_file, seed=7)
    model = QubertForSequenceClassification.from_encoder(model_path, head={"type": "linear"}, id2label=bundle.id2label, mode="frozen",
                                                         precision=config.resolved_precision)
    tokenizer, cache = load_tokenizer(model_path), EmbeddingCache(config.cache_dir)
    splits = {}
    for split in ("train", "validation", "test"):
        features, hit = cached_features(model, tokenizer, bundle.split(split).texts, fingerprint=bundle.fingerprint(split), split=split, cache=cache, progress=False)
        assert hit  # the very features the Trainer path trained on
        splits[split] = (features, torch.tensor(bundle.split(split).labels))
    head_config = {**head_config_from(config), "in_features": 32, "n_classes": 2}
    run = train_replicates(head_config, train=[splits["train"]], validation=[splits["validation"]], test=[splits["test"]], seeds=[7],
                           settings=LeanSettings.from_training_config(config))[0]

    history = json.loads((metrics.run_dir / "history.json").read_text())
    assert run.epochs_run == metrics["epochs_trained"] == len(history) and run.epochs_run >= 4
    assert (run.best_epoch, run.stopped_by) == (metrics["best_epoch"], metrics["stopped_by"])
    for ours, theirs in zip(run.history, history):
        assert ours["eval_macro_f1"] == pytest.approx(theirs["eval_macro_f1"], abs=1e-12)
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-6)
        assert ours["eval_loss"] == pytest.approx(theirs["eval_loss"], abs=1e-6)
    lean = run.metrics()
    for key in ("eval_macro_f1", "eval_accuracy", "test_macro_f1", "test_accuracy", "test_weighted_f1", "trainable_params"):
        assert lean[key] == pytest.approx(metrics[key], abs=1e-12), key
    assert lean["test_loss"] == pytest.approx(metrics["test_loss"], abs=1e-6)
    assert lean["train_loss"] == pytest.approx(metrics["train_loss"], abs=1e-6)
    predictions = pd.read_csv(metrics.run_dir / "predictions.csv")
    probabilities = predictions[[f"prob_{name}" for name in bundle.label_names]].to_numpy()
    np.testing.assert_allclose(run.test_probabilities, probabilities, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Batched replicates = single runs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["linear", "mlp", "quantum"])
def test_batched_replicates_equal_single_runs(head, monkeypatch):
    import qubert.lean

    compactions = []
    real_keep = qubert.lean._StackedLayers.keep
    monkeypatch.setattr(qubert.lean._StackedLayers, "keep", lambda self, members, optimizer: (compactions.append(list(members)), real_keep(self, members, optimizer)))
    train, validation, test = noisy_replicates(4)
    config = {**HEADS[head], "in_features": 12, "n_classes": 3}
    settings = LeanSettings(learning_rate=0.03, batch_size=16, max_epochs=30, patience=3)
    seeds = [0, 1, 2, 3]
    together = train_replicates(config, train, validation, test, seeds, settings, batched=True)
    alone = train_replicates(config, train, validation, test, seeds, settings, batched=False)
    assert len({run.epochs_run for run in alone}) > 1  # replicates stop at different epochs inside the batch
    for a, b in zip(together, alone):
        assert (a.seed, a.best_epoch, a.epochs_run, a.stopped_by) == (b.seed, b.best_epoch, b.epochs_run, b.stopped_by)
        assert [r["eval_macro_f1"] for r in a.history] == [r["eval_macro_f1"] for r in b.history]
        np.testing.assert_allclose([r["train_loss"] for r in a.history], [r["train_loss"] for r in b.history], atol=1e-5)
        np.testing.assert_allclose(a.test_probabilities, b.test_probabilities, atol=1e-5)
        for key, value in b.state_dict.items():
            torch.testing.assert_close(a.state_dict[key], value, atol=1e-5, rtol=1e-5)
        assert a.test_macro_f1 == b.test_macro_f1
    if head != "quantum":  # the stacked model dropped the replicates that had stopped
        assert compactions and len(compactions[0]) <= 2


def test_replicates_differ_by_seed_and_data():
    train, validation, test = noisy_replicates(2)
    config = {**HEADS["linear"], "n_classes": 3}
    same_data = train_replicates(config, [train[0]] * 2, [validation[0]] * 2, [test[0]] * 2, [5, 6], LeanSettings(max_epochs=3))
    assert not torch.equal(same_data[0].state_dict["linear.weight"], same_data[1].state_dict["linear.weight"])
    again = train_replicates(config, [train[0]], [validation[0]], [test[0]], [5], LeanSettings(max_epochs=3))
    torch.testing.assert_close(again[0].state_dict["linear.weight"], same_data[0].state_dict["linear.weight"])


# ---------------------------------------------------------------------------------------------
# Early stopping and the best epoch
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batched", [False, True])
def test_early_stopping_restores_the_best_epoch(batched):
    train, validation, test = noisy_replicates(3, seed=1)
    config = {**HEADS["mlp"], "n_classes": 3}
    runs = train_replicates(config, train, validation, test, [0, 1, 2], LeanSettings(learning_rate=0.05, batch_size=16, max_epochs=40, patience=2), batched=batched)
    for run in runs:
        f1s = [row["eval_macro_f1"] for row in run.history]
        assert len(f1s) == run.epochs_run
        assert run.best_epoch == 1 + f1s.index(max(f1s))  # the first epoch reaching the maximum
        if run.stopped_by == "patience":
            assert run.epochs_run - run.best_epoch == 2
            assert all(f <= max(f1s) for f in f1s[run.best_epoch:])
        # the returned weights are the best epoch's: their validation score is the history's best
        x, y = validation[run.seed]
        with torch.no_grad():
            predicted = run.head()(x).argmax(-1)
        assert split_metrics(y, predicted, 3)["macro_f1"] == pytest.approx(max(f1s), abs=1e-12) == pytest.approx(run.eval_macro_f1, abs=1e-12)


def test_no_patience_runs_to_the_cap_and_keeps_the_best():
    train, validation, test = noisy_replicates(1, seed=2)
    run = train_replicates({**HEADS["linear"], "n_classes": 3}, train, validation, [], [0], LeanSettings(learning_rate=0.2, max_epochs=12, patience=None))[0]
    assert (run.epochs_run, run.stopped_by, len(run.history)) == (12, "epoch_cap", 12)
    assert run.eval_macro_f1 == pytest.approx(max(row["eval_macro_f1"] for row in run.history), abs=1e-12)
    assert run.test_probabilities is None and run.test_macro_f1 is None
    assert set(run.history[0]) >= {"epoch", "train_loss", "eval_loss", "eval_macro_f1", "eval_accuracy"}
    metrics = run.metrics()
    assert {"train_runtime", "eval_macro_f1", "best_epoch", "stopped_by", "trainable_params"} <= set(metrics) and not any(k.startswith("test_") and k != "test_samples" for k in metrics)


def test_split_metrics_match_scikit_learn(torch_rng):
    from qubert.training import classification_metrics

    for n_classes, labels_in in ((2, 2), (5, 3), (4, 4)):  # some classes absent from labels and predictions
        y = torch.randint(0, labels_in, (60,), generator=torch_rng)
        p = torch.randint(0, labels_in + (n_classes > labels_in), (60,), generator=torch_rng)
        ours, theirs = split_metrics(y, p, n_classes), classification_metrics(y.tolist(), p.tolist())
        for key, value in theirs.items():
            assert ours[key] == pytest.approx(value, abs=1e-12), key


# ---------------------------------------------------------------------------------------------
# Bad settings and input: one line each
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"learning_rate": 0}, "learning_rate must be a positive number"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"batch_size": 2.5}, "batch_size must be a positive integer"),
        ({"max_epochs": 0}, "max_epochs must be a positive integer"),
        ({"patience": 0}, "patience must be a positive integer or None"),
        ({"weight_decay": -1}, "weight_decay must be a non-negative number"),
        ({"lr_scheduler_type": "lineer"}, "unknown lr_scheduler_type 'lineer'"),
        ({"adam_beta2": 1.0}, "adam_beta2 must be in [0, 1)"),
    ],
)
def test_bad_settings_are_refused_in_one_line(settings, message):
    with pytest.raises(LeanError, match=r"^" + message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")) as err:
        LeanSettings(**settings)
    assert "\n" not in str(err.value)


def _inputs():
    train, validation, test = noisy_replicates(2, n=20)
    return {"head_config": {"type": "linear", "in_features": 12, "n_classes": 3}, "train": train, "validation": validation, "test": test, "seeds": [0, 1]}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(seeds=[0]), r"train \(2\), validation \(2\) and seeds \(1\) must have one entry per replicate"),
        (lambda a: a.update(seeds=[0, 1.5]), "seeds must be integers"),
        (lambda a: a.update(test=a["test"][:1]), "test must be empty or have one entry per replicate"),
        (lambda a: a.update(head_config={"type": "linear"}), "head_config must give n_classes"),
        (lambda a: a.update(head_config={"type": "cnn", "n_classes": 3}), "head_config: unknown head type 'cnn'"),
        (lambda a: a["train"].__setitem__(1, (a["train"][1][0][:, :5], a["train"][1][1])), r"train\[1\]: features have 5 columns but the head's in_features is 12"),
        (lambda a: a["validation"].__setitem__(0, (a["validation"][0][0], a["validation"][0][1] + 3)), r"validation\[0\]: labels must lie in 0..2"),
        (lambda a: a["train"][0][0].__setitem__((0, 0), float("nan")), r"train\[0\]: features hold NaN or inf"),
        (lambda a: a["test"].__setitem__(0, (a["test"][0][0], a["test"][0][1].float())), r"test\[0\]: labels must be a 1-D integer tensor"),
        (lambda a: a.update(batched="yes"), "batched must be None, True or False"),
    ],
)
def test_bad_input_is_refused_in_one_line(change, message):
    arguments = _inputs()
    change(arguments)
    with pytest.raises(LeanError, match=message) as err:
        train_replicates(settings=LeanSettings(max_epochs=1), **arguments)
    assert "\n" not in str(err.value)


def test_batched_true_needs_equal_training_sizes():
    arguments = _inputs()
    arguments["train"][1] = (arguments["train"][1][0][:10], arguments["train"][1][1][:10])
    with pytest.raises(LeanError, match="batched=True needs the same number of training rows"):
        train_replicates(settings=LeanSettings(max_epochs=1), batched=True, **arguments)
    runs = train_replicates(settings=LeanSettings(max_epochs=2), **arguments)  # batched=None: one by one
    assert [run.train_samples for run in runs] == [20, 10]


def test_the_callers_random_state_is_left_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_replicates(settings=LeanSettings(max_epochs=2), **_inputs())
    assert torch.equal(torch.rand(3), expected)
