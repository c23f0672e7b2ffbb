"""Classification metrics (macro-F1 is the headline) and what a run's Trainer log says about its
epochs: the per-epoch history, the run's mean training loss, the best epoch and why training stopped.

Example:
    >>> epoch_history([{"epoch": 1.0, "loss": 0.7}, {"epoch": 1.0, "eval_macro_f1": 0.8}])
    [{'epoch': 1.0, 'train_loss': 0.7, 'eval_macro_f1': 0.8}]
"""

from __future__ import annotations

from typing import Any, Sequence

from qubert.training.config import TrainingConfig


def classification_metrics(labels: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
    """Accuracy, macro-F1 (the headline), weighted F1, macro precision and macro recall.

    Example:
        >>> m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1])
        >>> m["accuracy"], round(m["macro_f1"], 3)
        (0.75, 0.733)
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(labels, predictions, average="weighted", zero_division=0)),
        "precision": float(precision_score(labels, predictions, average="macro", zero_division=0)),
        "recall": float(recall_score(labels, predictions, average="macro", zero_division=0)),
    }


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], n_classes: int) -> list[list[int]]:
    """Counts ``[true][predicted]`` over all ``n_classes`` classes.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 0, 1], 2)
        [[1, 0], [1, 1]]
    """
    from sklearn.metrics import confusion_matrix as sk_confusion

    return sk_confusion(labels, predictions, labels=list(range(n_classes))).tolist()


def compute_metrics(eval_pred) -> dict[str, float]:
    """The Trainer's ``compute_metrics``: :func:`classification_metrics` of the logits' argmax."""
    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    return classification_metrics(eval_pred.label_ids, logits.argmax(-1))


def epoch_history(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """One row per epoch: train loss and validation metrics from the Trainer's log."""
    rows: dict[float, dict[str, float]] = {}
    for entry in log_history:
        epoch = entry.get("epoch")
        if epoch is None or "train_runtime" in entry:
            continue
        row = rows.setdefault(round(float(epoch), 4), {"epoch": round(float(epoch), 4)})
        if "loss" in entry:
            row["train_loss"] = float(entry["loss"])
        for key, value in entry.items():
            if key.startswith("eval_") and isinstance(value, (int, float)):
                row[key] = float(value)
    return [rows[k] for k in sorted(rows)]


def run_train_loss(log_history: list[dict[str, Any]], default: float | None) -> float | None:
    """Mean training loss over every step of the run, also those before a resume.

    The Trainer's own ``train_loss`` covers only the steps of the last ``train()`` call; the
    per-epoch ``loss`` entries (restored from the checkpoint on resume) cover them all.
    """
    total, steps, previous = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            n = int(entry["step"]) - previous
            total, steps, previous = total + float(entry["loss"]) * n, steps + n, int(entry["step"])
    return total / steps if steps else default


def stopped_by(state, config: TrainingConfig) -> str:
    """Why training ended: ``patience`` (early stopping), ``epoch_cap`` or ``max_steps``.

    A run that ends at its cap may have been cut off while still improving (compare
    ``best_epoch`` with ``epochs_trained``); one stopped by patience had converged on validation.
    """
    if state.global_step < state.max_steps:
        return "patience"
    return "max_steps" if config.max_steps > 0 else "epoch_cap"


def best_epoch(history: list[dict[str, float]]) -> float:
    """The epoch with the best validation macro-F1 (NaN when none was scored)."""
    scored = [row for row in history if "eval_macro_f1" in row]
    return max(scored, key=lambda r: r["eval_macro_f1"])["epoch"] if scored else float("nan")
