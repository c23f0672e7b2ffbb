"""Checking texts and turning raw labels (class names or integer ids) into ids ``0..K-1``.

Every message names the file and its 1-based data rows, e.g. ``format_rows([3, 7])`` gives
``'rows 3, 7'``.

Example:
    >>> as_int("2.0"), as_int("spam")
    (2, None)
"""

from __future__ import annotations

from typing import Any, Sequence

from qubert.data.bundle import DataError
from qubert.data.tables import is_missing, RawSplit


MAX_LISTED_ROWS = 10


def format_rows(rows: Sequence[int]) -> str:
    """'row 3' / 'rows 3, 7' / 'rows 1, 2, ..., 10 and 5 more' (1-based data rows)."""
    shown = ", ".join(str(r) for r in rows[:MAX_LISTED_ROWS])
    more = f" and {len(rows) - MAX_LISTED_ROWS} more" if len(rows) > MAX_LISTED_ROWS else ""
    return f"{'row' if len(rows) == 1 else 'rows'} {shown}{more}"


def norm_label(value: Any) -> str | None:
    """A raw label as a stripped string; None when missing."""
    if is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def as_int(label: str) -> int | None:
    """A label string as an integer (``"2.0"`` too), else None."""
    try:
        return int(label)
    except ValueError:
        pass
    try:
        number = float(label)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def check_texts(raw: RawSplit, drop_empty: bool) -> RawSplit:
    """Refuse (or, with ``drop_empty``, drop) empty texts, naming their rows."""
    empty = [i for i, t in enumerate(raw.texts) if not t.strip()]
    if not empty:
        return raw
    if not drop_empty:
        raise DataError(
            f"{raw.origin}: {len(empty)} empty or whitespace-only text(s) at "
            f"{format_rows([raw.row(i) for i in empty])} (1-based data rows, header excluded); "
            "fix them or pass drop_empty=True / --drop-empty"
        )
    drop = set(empty)
    keep = [i for i in range(len(raw.texts)) if i not in drop]
    # Row numbers in later messages must still point into the file, so keep an index map.
    return RawSplit(
        [raw.texts[i] for i in keep],
        [raw.labels[i] for i in keep],
        raw.origin,
        [raw.row(i) for i in keep],
    )


def normalise_labels(raw: RawSplit) -> list[str]:
    """Labels as stripped strings; a missing label is an error naming its rows."""
    labels = [norm_label(v) for v in raw.labels]
    missing = [raw.row(i) for i, lab in enumerate(labels) if lab is None]
    if missing:
        raise DataError(f"{raw.origin}: missing label at {format_rows(missing)} (1-based data rows)")
    return labels  # type: ignore[return-value]


def encode_fixed(
    raw: RawSplit, labels: list[str], label_names: Sequence[str], source_ids: Sequence[int]
) -> list[int]:
    """Labels as source ids: integer ids in ``source_ids`` or exact class names."""
    by_name = {name: i for i, name in enumerate(label_names)}
    valid = set(source_ids)
    ids: list[int] = []
    bad: list[int] = []
    for i, label in enumerate(labels):
        value = as_int(label)
        if value is None:
            value = by_name.get(label)
        if value is None or value not in valid:
            bad.append(i)
            ids.append(-1)
        else:
            ids.append(value)
    if bad:
        example = labels[bad[0]]
        raise DataError(
            f"{raw.origin}: unparseable label {example!r} at {format_rows([raw.row(i) for i in bad])} "
            f"(expected an id in {min(valid)}..{max(valid)} or one of: {', '.join(label_names)})"
        )
    return ids


def infer_label_names(raw: RawSplit, labels: list[str]) -> tuple[list[str], bool]:
    """Class names from the reference split, sorted; True when the labels are integers."""
    as_ints = [as_int(label) for label in labels]
    n_int = sum(v is not None for v in as_ints)
    if n_int == len(labels):
        return [str(v) for v in sorted(set(as_ints))], True  # type: ignore[type-var]
    if n_int > len(labels) / 2:
        bad = [i for i, v in enumerate(as_ints) if v is None]
        raise DataError(
            f"{raw.origin}: unparseable label {labels[bad[0]]!r} at "
            f"{format_rows([raw.row(i) for i in bad])} (other labels are integers)"
        )
    if n_int:
        # {ham, spam, 0, 1} would silently become 4 classes: a mix of names and ids is a mistake.
        bad = [i for i, v in enumerate(as_ints) if v is not None]
        name = next(label for label, v in zip(labels, as_ints) if v is None)
        raise DataError(
            f"{raw.origin}: integer label {labels[bad[0]]!r} at {format_rows([raw.row(i) for i in bad])} "
            f"among class names (e.g. {name!r}); use class names or integer ids, not both"
        )
    return sorted(set(labels)), False


def encode_inferred(
    raw: RawSplit,
    labels: list[str],
    label_names: list[str],
    integer: bool,
    split: str,
    reference: str,
) -> list[int]:
    """Label ids from the inferred names; an unseen or unparseable label is an error naming its rows."""
    index = {name: i for i, name in enumerate(label_names)}
    ids: list[int] = []
    unparseable: list[int] = []
    unseen: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        key = label
        if integer:
            value = as_int(label)
            if value is None:
                unparseable.append(raw.row(i))
                ids.append(-1)
                continue
            key = str(value)
        if key not in index:
            unseen.setdefault(key, []).append(raw.row(i))
            ids.append(-1)
        else:
            ids.append(index[key])
    if unparseable:
        raise DataError(
            f"{raw.origin}: unparseable label at {format_rows(unparseable)} "
            f"({reference} labels are integers)"
        )
    if unseen:
        name, rows = next(iter(unseen.items()))
        others = f" (and {len(unseen) - 1} more unseen labels)" if len(unseen) > 1 else ""
        raise DataError(
            f"{raw.origin}: label {name!r} in the {split} split ({format_rows(rows)}) does not occur "
            f"in {reference}{others}; {reference} labels: {', '.join(label_names)}"
        )
    return ids
