"""Frozen-mode replicates: train one head on many replicates' rows of cached pool features.

One :class:`FrozenTask` is one (data set, head, look): the pool features, the head's settings and the
replicates' row draws. :func:`run_frozen_task` trains every replicate (with
:func:`qubert.lean.train_replicates`, several replicates batched into one model where it can; the
logistic-regression yardstick with scikit-learn) and returns per-replicate metrics and test
probabilities. The same function runs in process and as a Ray task, with the same number of torch
threads, so both give the same numbers.

Example:
    >>> outcomes = run_frozen_task(task)  # doctest: +SKIP
    >>> outcomes[0].metrics["test_macro_f1"], outcomes[0].probabilities.dtype  # doctest: +SKIP
    (0.91, dtype('float16'))
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qubert.bench.replicates import ReplicateDraw

__all__ = ["FrozenTask", "ReplicateOutcome", "cross_validate_head", "fold_trainer", "run_frozen_task"]


@dataclass
class FrozenTask:
    """What one (data set, head, look) needs; plain data and arrays, so it travels to a Ray worker.

    Attributes:
        head_type: ``linear``, ``mlp``, ``quantum`` or ``logreg``.
        settings: the head's TrainingConfig settings (tuned values in place); ``C`` for logreg.
        n_classes: classes of the data set.
        train_features, train_labels: the training pool (float32 ``(n, d)``, int64 ``(n,)``).
        test_features, test_labels: the test pool.
        draws: the replicates to train.
        num_threads: torch threads while training (the run's ``num_cpus``).
    """

    head_type: str
    settings: dict[str, Any]
    n_classes: int
    train_features: Any
    train_labels: Any
    test_features: Any
    test_labels: Any
    draws: list[ReplicateDraw]
    num_threads: int = 1


@dataclass
class ReplicateOutcome:
    """One finished replicate: flat metrics (as in ``metrics.json``) and the test draw's predictions."""

    replicate: int
    metrics: dict[str, Any]
    test_index: np.ndarray
    test_labels: np.ndarray
    probabilities: np.ndarray = field(repr=False)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads (what a Ray task with ``num_cpus=n`` gets), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_frozen_task(task: FrozenTask) -> list[ReplicateOutcome]:
    """Train ``task.head_type`` on every replicate of ``task``; see the module docstring."""
    with torch_threads(task.num_threads):
        if task.head_type == "logreg":
            return [_logistic_regression(task, draw) for draw in task.draws]
        return _heads(task)


def _split(task: FrozenTask, draw: ReplicateDraw) -> tuple[tuple[Any, Any], tuple[Any, Any], tuple[Any, Any]]:
    train_x, train_y = np.asarray(task.train_features), np.asarray(task.train_labels)
    test_x, test_y = np.asarray(task.test_features), np.asarray(task.test_labels)
    return ((train_x[draw.train], train_y[draw.train]), (train_x[draw.validation], train_y[draw.validation]),
            (test_x[draw.test], test_y[draw.test]))


def _outcome(draw: ReplicateDraw, metrics: Mapping[str, Any], test_y: np.ndarray, probabilities: Any) -> ReplicateOutcome:
    probabilities = np.asarray(probabilities, dtype=np.float32)
    return ReplicateOutcome(
        replicate=draw.replicate, metrics={**metrics, "train_samples": len(draw.train), "eval_samples": len(draw.validation),
                                           "test_samples": len(draw.test)},
        test_index=np.asarray(draw.test, dtype=np.int32), test_labels=np.asarray(test_y, dtype=np.int16),
        probabilities=probabilities.astype(np.float16),
    )


def _logistic_regression(task: FrozenTask, draw: ReplicateDraw) -> ReplicateOutcome:
    from sklearn.linear_model import LogisticRegression

    from qubert.training import classification_metrics

    (x, y), (xv, yv), (xt, yt) = _split(task, draw)
    start = time.perf_counter()
    classifier = LogisticRegression(C=float(task.settings.get("C", 1.0)), max_iter=5000, random_state=draw.replicate)
    classifier.fit(x, y)
    metrics: dict[str, Any] = {"train_runtime": round(time.perf_counter() - start, 4)}
    for prefix, (features, labels) in (("eval", (xv, yv)), ("test", (xt, yt))):
        predicted = classifier.predict(features)
        metrics.update({f"{prefix}_{k}": v for k, v in classification_metrics(labels, predicted).items()})
    # Columns for classes the draw lacked stay at 0, so every replicate's table has n_classes columns.
    probabilities = np.zeros((len(yt), task.n_classes), dtype=np.float32)
    probabilities[:, classifier.classes_] = classifier.predict_proba(xt)
    metrics.update({"trainable_params": int(classifier.coef_.size + classifier.intercept_.size),
                    "stopped_by": "converged" if int(np.max(classifier.n_iter_)) < 5000 else "epoch_cap"})
    return _outcome(draw, metrics, yt, probabilities)


def training_config(settings: Mapping[str, Any]) -> Any:
    """The :class:`qubert.training.TrainingConfig` of a head's settings (``C`` dropped, ``logreg`` read as linear)."""
    from qubert.training import TrainingConfig

    values = {k: v for k, v in settings.items() if k != "C"}
    if values.get("head") == "logreg":
        values["head"] = "linear"
    values.setdefault("dataset", "bench")
    return TrainingConfig(**values)


def _heads(task: FrozenTask) -> list[ReplicateOutcome]:
    from qubert.training import head_config_from

    config = training_config({**task.settings, "mode": "frozen"})
    head_config = {**head_config_from(config), "in_features": int(np.asarray(task.train_features).shape[1]),
                   "n_classes": task.n_classes}
    splits = [_split(task, draw) for draw in task.draws]
    runs = _train_replicates(head_config, config, splits, [d.replicate for d in task.draws])
    return [_outcome(draw, run.metrics(), split[2][1], run.test_probabilities)
            for draw, split, run in zip(task.draws, splits, runs)]


def _train_replicates(head_config: dict[str, Any], config: Any, splits: Sequence[Any], seeds: Sequence[int]) -> list[Any]:
    from qubert.lean import LeanSettings, train_replicates

    test = [s[2] for s in splits] if all(s[2] is not None for s in splits) else []
    return train_replicates(head_config, train=[s[0] for s in splits], validation=[s[1] for s in splits],
                            test=test, seeds=list(seeds), settings=LeanSettings.from_training_config(config))


def fold_trainer(head_type: str, settings: Mapping[str, Any], n_classes: int) -> Any:
    """``trainer(train, validation, seeds) -> [eval macro-F1 per fold]`` for
    :func:`qubert.bench.tuning.cross_validated_score`: the head trained as its replicates are
    (lean trainer, folds batched; scikit-learn for the logistic-regression yardstick)."""

    def trainer(train: Sequence[Any], validation: Sequence[Any], seeds: Sequence[int]) -> list[float]:
        if head_type == "logreg":
            from sklearn.linear_model import LogisticRegression

            from qubert.training import classification_metrics

            scores = []
            for (x, y), (xv, yv), seed in zip(train, validation, seeds):
                model = LogisticRegression(C=float(settings.get("C", 1.0)), max_iter=5000, random_state=seed).fit(x, y)
                scores.append(classification_metrics(yv, model.predict(xv))["macro_f1"])
            return scores
        from qubert.training import head_config_from

        config = training_config({**settings, "mode": "frozen"})
        head_config = {**head_config_from(config), "in_features": int(np.asarray(train[0][0]).shape[1]), "n_classes": n_classes}
        runs = _train_replicates(head_config, config, [(t, v, None) for t, v in zip(train, validation)], seeds)
        return [float(run.eval_macro_f1) for run in runs]

    return trainer


def cross_validate_head(head_type: str, settings: Mapping[str, Any], n_classes: int, features: Any, labels: Any,
                        folds: int, seed: int, num_threads: int = 1) -> dict[str, Any]:
    """A frozen tuning trial's metrics: :func:`qubert.bench.tuning.cross_validated_score` of the head
    (:func:`fold_trainer`) on these rows with ``num_threads`` torch threads; the same in process and
    as a Ray task.

    Example:
        >>> cross_validate_head("logreg", {"C": 1.0}, 2, x, y, folds=5, seed=0)["eval_macro_f1"]  # doctest: +SKIP
        0.87
    """
    from qubert.bench.tuning import cross_validated_score

    start = time.perf_counter()
    with torch_threads(num_threads):
        result = cross_validated_score(fold_trainer(head_type, settings, n_classes), features, labels, folds=folds, seed=seed)
    return {"eval_macro_f1": result.score, "fold_scores": list(result.fold_scores), "folds": result.folds,
            "train_runtime": round(time.perf_counter() - start, 4)}
