"""Replicates: the rows every head of replicate ``r`` trains, validates and is tested on.

Replicate ``r`` of a data set is a fresh stratified draw of ``draws.train`` training rows and a
disjoint draw of ``draws.validation`` validation rows from the training pool, a fresh stratified draw
of ``draws.test`` rows from the test pool (or the whole test pool), and initialisation/batch-order
seed ``r``. The draws depend only on the data set's pools, the pool seed and ``r``, never on the
head, so every head sees the same rows in replicate ``r`` (the comparisons are paired by ``r``),
and a verdict generalises over training sets, test sets and initialisations, not only seeds.

Example:
    >>> import numpy as np
    >>> labels = np.array([0, 1] * 50)
    >>> a = draw_replicate(labels, labels, 0, n_train=20, n_validation=10, n_test=30)
    >>> b = draw_replicate(labels, labels, 1, n_train=20, n_validation=10, n_test=30)
    >>> len(a.train), len(set(a.train) & set(a.validation)), list(a.train) == list(b.train)
    (20, 0, False)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qubert.bench.data import stratified_sample

__all__ = ["ReplicateDraw", "draw_replicate"]


@dataclass(frozen=True)
class ReplicateDraw:
    """Row indices of one replicate: ``train`` and ``validation`` into the training pool, ``test`` into the test pool."""

    replicate: int
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def draw_replicate(train_labels: np.ndarray, test_labels: np.ndarray, replicate: int, *, n_train: int | None,
                   n_validation: int | None, n_test: int | None, seed: int = 0) -> ReplicateDraw:
    """The rows of replicate ``replicate`` (its own random stream: ``(seed, replicate)``).

    Args:
        train_labels, test_labels: labels of the training and test pools.
        replicate: the replicate index ``r`` (also its training seed).
        n_train: training rows (None: the whole pool less the validation draw's share).
        n_validation: validation rows, disjoint from the training rows.
        n_test: test rows (None: the whole test pool).
        seed: the pool seed.
    """
    train_labels = np.asarray(train_labels)
    rng = np.random.default_rng([int(seed), int(replicate), 7])
    if n_train is not None and n_validation is not None and n_train + n_validation > len(train_labels):
        # A small pool: keep the requested ratio.
        total = len(train_labels)
        n_validation = max(1, round(total * n_validation / (n_train + n_validation)))
        n_train = total - n_validation
    validation = stratified_sample(train_labels, n_validation if n_validation is not None else max(1, len(train_labels) // 5), rng)
    train = stratified_sample(train_labels, n_train, rng, exclude=validation)
    test = stratified_sample(np.asarray(test_labels), n_test, np.random.default_rng([int(seed), int(replicate), 11]))
    return ReplicateDraw(replicate=int(replicate), train=train, validation=validation, test=test)
