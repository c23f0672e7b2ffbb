"""Seeded, stratified splitting and subsampling (every class keeps at least one row where it can).

Example:
    >>> kept, held = stratified_holdout([0, 0, 0, 0, 1, 1, 1, 1], 0.25, seed=0, salt=1)
    >>> len(kept), len(held)
    (6, 2)
    >>> stratified_subset([0, 0, 0, 1, 1, 1], 2, seed=0, salt=1)  # one row per class
    [2, 4]
"""

from __future__ import annotations

from typing import Sequence

from qubert.data.bundle import SPLITS, TextDataset


TEST_FRACTION = 0.1  # share of a single pool that becomes the test split (80/10/10 by default)


# Salts keep the random streams of the different carving/subsampling steps independent.
SALT_TEST, SALT_VALIDATION, SALT_TRAIN_FROM_VAL = 1, 2, 3
SALT_SUB = {"train": 11, "validation": 12, "test": 13}


def allocate(counts: list[int], total: int, caps: list[int]) -> list[int]:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder), within
    ``caps``, giving each class with room at least one when ``total`` allows."""
    n = sum(counts)
    total = max(0, min(total, sum(caps)))
    if total == 0 or n == 0:
        return [0] * len(counts)
    ideal = [total * c / n for c in counts]
    eligible = [k for k, cap in enumerate(caps) if cap > 0]
    floor_min = 1 if total >= len(eligible) else 0
    alloc = [
        min(cap, max(floor_min, int(want))) if cap > 0 else 0
        for cap, want in zip(caps, ideal)
    ]
    while sum(alloc) < total:
        open_ = (k for k in eligible if alloc[k] < caps[k])
        k = max(open_, key=lambda k: (ideal[k] - alloc[k], -k))
        alloc[k] += 1
    while sum(alloc) > total:
        k = max(
            (k for k in eligible if alloc[k] > floor_min), key=lambda k: (alloc[k] - ideal[k], -k)
        )
        alloc[k] -= 1
    return alloc


def by_class(labels: Sequence[int]) -> dict[int, list[int]]:
    """Row indices per label, labels sorted."""
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    return dict(sorted(groups.items()))


def pick_per_class(labels: Sequence[int], alloc_of: dict[int, int], seed: int, salt: int) -> list[int]:
    """Seeded pick of ``alloc_of[label]`` rows of every class, in input order."""
    import numpy as np

    rng = np.random.default_rng([seed, salt])
    chosen: list[int] = []
    for label, idx in by_class(labels).items():
        chosen.extend(int(i) for i in rng.permutation(idx)[: alloc_of[label]])
    return sorted(chosen)  # file order inside each split


def stratified_holdout(
    labels: Sequence[int], fraction: float, seed: int, salt: int
) -> tuple[list[int], list[int]]:
    """Hold out about ``fraction`` of every class: ``(kept, held)`` row indices, each in input order.

    Args:
        labels: label id per row.
        fraction: share of the rows to hold out (0 holds out none).
        seed, salt: the random stream (``salt`` keeps different carving steps independent).

    ``kept`` keeps at least one row of every class.
    """
    groups = by_class(labels)
    counts = [len(v) for v in groups.values()]
    total = max(1, round(fraction * len(labels))) if fraction > 0 else 0
    alloc = allocate(counts, total, caps=[c - 1 for c in counts])
    held = pick_per_class(labels, dict(zip(groups, alloc)), seed, salt)
    held_set = set(held)
    return [i for i in range(len(labels)) if i not in held_set], held


def stratified_subset(labels: Sequence[int], size: int, seed: int, salt: int) -> list[int]:
    """Indices (in input order) of a seeded subset of ``size`` rows, classes in proportion and each
    class represented when ``size`` allows."""
    groups = by_class(labels)
    counts = [len(v) for v in groups.values()]
    return pick_per_class(labels, dict(zip(groups, allocate(counts, size, caps=counts))), seed, salt)


def take_rows(data: TextDataset, idx: Sequence[int]) -> TextDataset:
    """The rows ``idx`` of ``data``."""
    return TextDataset([data.texts[i] for i in idx], [data.labels[i] for i in idx])


def fill_splits(
    data: dict[str, TextDataset], seed: int, validation_fraction: float, notes: list[str]
) -> tuple[TextDataset, TextDataset, TextDataset]:
    """Carve the missing splits (rules in :func:`load_dataset_bundle`)."""
    train, validation, test = (data.get(s) for s in SPLITS)
    pct = f"{validation_fraction:.0%}"
    if train is not None and validation is not None and test is not None:
        return train, validation, test
    if train is None and validation is not None and test is not None:
        kept, held = stratified_holdout(
            validation.labels, validation_fraction, seed, SALT_TRAIN_FROM_VAL
        )
        notes.append(
            f"no train split: train carved from validation ({len(kept)} rows), "
            f"{pct} kept as validation (seed {seed})"
        )
        return take_rows(validation, kept), take_rows(validation, held), test
    if train is None or (validation is None and test is None):
        which = next(s for s in SPLITS if s in data)
        pool = data[which]
        rest, test_idx = stratified_holdout(pool.labels, TEST_FRACTION, seed, SALT_TEST)
        rest_data = take_rows(pool, rest)
        share = validation_fraction / (1 - TEST_FRACTION)  # of the rest, so of the whole pool
        kept, held = stratified_holdout(rest_data.labels, share, seed, SALT_VALIDATION)
        notes.append(
            f"single pool ({which}, {len(pool)} rows) split stratified "
            f"{1 - TEST_FRACTION - validation_fraction:.0%}/{pct}/{TEST_FRACTION:.0%} "
            f"train/validation/test (seed {seed})"
        )
        return take_rows(rest_data, kept), take_rows(rest_data, held), take_rows(pool, test_idx)
    if test is None:
        notes.append("no test split: the given validation split is used as test")
        test = validation
    kept, held = stratified_holdout(train.labels, validation_fraction, seed, SALT_VALIDATION)
    notes.append(f"validation carved from train: {pct} stratified (seed {seed})")
    return take_rows(train, kept), take_rows(train, held), test  # type: ignore[return-value]
