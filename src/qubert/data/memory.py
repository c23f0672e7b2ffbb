"""Data already in memory as a :class:`~qubert.data.DatasetBundle`: the ``data=`` of
:func:`qubert.training.run_training`.

A *memory source* is a small type (:class:`MemorySource`): a test for the objects it accepts and a
reader that turns one into raw splits. :func:`bundle_from_memory` finds the source for an object
and builds the bundle through the same checks, label encoding and stratified carving as files get
(:func:`qubert.data.load_dataset_bundle`), so the same bad data gets the same message. Built in:

- a :class:`~qubert.data.DatasetBundle` (used as is);
- a ``pandas.DataFrame`` with the text and label columns;
- a pair ``(texts, labels)`` of sequences;
- a Hugging Face ``datasets.Dataset`` (``ClassLabel`` names become the label names);
- a mapping ``{split: one of the above}`` or a ``datasets.DatasetDict`` with ``train`` and
  optionally ``validation`` / ``test`` splits.

A single pool is split 80/10/10 (stratified, seeded); missing splits are carved as for files.

Example:
    >>> texts = ["good", "great", "fine", "nice", "bad", "awful", "poor", "sad"] * 3
    >>> bundle = bundle_from_memory((texts, [1, 1, 1, 1, 0, 0, 0, 0] * 3), name="toy")
    >>> bundle.label_names, len(bundle.train) + len(bundle.validation) + len(bundle.test)
    (['0', '1'], 24)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from qubert.data.bundle import SPLITS, DataError, DatasetBundle
from qubert.data.hub import SPLIT_ALIASES
from qubert.data.sources import build_bundle
from qubert.data.tables import RawSplit, cell_to_text

__all__ = ["MEMORY_SOURCES", "MemorySource", "bundle_from_memory", "register_memory_source"]


@dataclass(frozen=True)
class MemorySource:
    """One kind of in-memory data.

    Attributes:
        name: shown in messages and as the bundle's source (``memory:<name>``).
        accepts: whether an object is of this kind.
        read: ``(obj, text_column, label_column, origin) -> (RawSplit, label names or None)``:
            one split's texts and raw labels.
    """

    name: str
    accepts: Callable[[Any], bool]
    read: Callable[[Any, str, str, str], tuple[RawSplit, list[str] | None]]


def _is_frame(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "columns")


def _is_hf_dataset(obj: Any) -> bool:
    return type(obj).__name__ == "Dataset" and hasattr(obj, "column_names") and hasattr(obj, "features")


def _is_pair(obj: Any) -> bool:
    return isinstance(obj, (tuple, list)) and len(obj) == 2 and all(hasattr(v, "__len__") and not isinstance(v, str) for v in obj)


def _columns_error(origin: str, role: str, column: str, found: list[str]) -> DataError:
    listed = ", ".join(repr(c) for c in found) or "none"
    option = "text_column / --text-column" if role == "text" else "label_column / --label-column"
    return DataError(f"{origin}: no {role} column {column!r}; columns found: {listed} (set {option})")


def _read_frame(frame: Any, text_column: str, label_column: str, origin: str) -> tuple[RawSplit, None]:
    columns = [str(c) for c in frame.columns]
    for role, column in (("text", text_column), ("label", label_column)):
        if column not in columns:
            raise _columns_error(origin, role, column, columns)
    texts = [cell_to_text(v) for v in frame[text_column].tolist()]
    return RawSplit(texts, frame[label_column].tolist(), origin), None


def _read_pair(pair: Any, text_column: str, label_column: str, origin: str) -> tuple[RawSplit, None]:
    texts, labels = list(pair[0]), list(pair[1])
    if len(texts) != len(labels):
        raise DataError(f"{origin}: {len(texts)} texts but {len(labels)} labels")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise DataError(f"{origin}: text {bad} is a {type(texts[bad]).__name__}, not a str")
    return RawSplit(texts, labels, origin), None


def _read_hf_dataset(ds: Any, text_column: str, label_column: str, origin: str) -> tuple[RawSplit, list[str] | None]:
    for role, column in (("text", text_column), ("label", label_column)):
        if column not in ds.column_names:
            raise _columns_error(origin, role, column, list(ds.column_names))
    feature = ds.features.get(label_column)
    names = list(feature.names) if getattr(feature, "names", None) else None
    texts = [cell_to_text(v) for v in ds[text_column]]
    return RawSplit(texts, list(ds[label_column]), origin), names


MEMORY_SOURCES: list[MemorySource] = [
    MemorySource("DataFrame", _is_frame, _read_frame),
    MemorySource("datasets.Dataset", _is_hf_dataset, _read_hf_dataset),
    MemorySource("(texts, labels)", _is_pair, _read_pair),
]


def register_memory_source(source: MemorySource) -> None:
    """Accept another kind of in-memory data in :func:`bundle_from_memory` (tried first).

    Example:
        >>> rows = MemorySource("rows", lambda o: isinstance(o, dict) and "rows" in o,
        ...                     lambda o, t, l, origin: (RawSplit([r[0] for r in o["rows"]], [r[1] for r in o["rows"]], origin), None))
        >>> register_memory_source(rows)  # doctest: +SKIP
    """
    MEMORY_SOURCES.insert(0, source)


def _source_for(obj: Any) -> MemorySource | None:
    return next((s for s in MEMORY_SOURCES if s.accepts(obj)), None)


def _split_mapping(data: Any) -> Mapping[str, Any] | None:
    """``{split: part}`` for a mapping or a ``DatasetDict`` (split aliases such as ``dev`` accepted)."""
    if not isinstance(data, Mapping) or _source_for(data) is not None:
        return None
    splits: dict[str, Any] = {}
    for key, part in data.items():
        split = next((s for s, aliases in SPLIT_ALIASES.items() if str(key) in aliases), None)
        if split is None:
            raise DataError(f"in-memory data: unknown split {key!r}; expected {', '.join(SPLITS)}")
        splits[split] = part
    return splits


def bundle_from_memory(
    data: Any,
    *,
    name: str = "memory",
    text_column: str = "text",
    label_column: str = "label",
    label_names: list[str] | None = None,
    seed: int = 42,
    validation_fraction: float = 0.1,
    drop_empty: bool = False,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
) -> DatasetBundle:
    """A :class:`~qubert.data.DatasetBundle` from data in memory (see the module for the kinds).

    Args:
        data: a bundle, a DataFrame, ``(texts, labels)``, a ``datasets.Dataset``, or a mapping /
            ``DatasetDict`` of splits of those.
        name: the bundle's name (run directory names and logs).
        text_column, label_column: columns of a DataFrame or Dataset.
        label_names: class names in id order when labels are ids (default: from a ``ClassLabel``,
            else inferred as for files).
        seed, validation_fraction, drop_empty, max_train_samples, max_eval_samples: as in
            :func:`qubert.data.load_dataset_bundle`.

    Raises:
        DataError: an unsupported object, a missing column, or bad texts/labels (one line).
    """
    if isinstance(data, DatasetBundle):
        return data
    parts = _split_mapping(data)
    if parts is None:
        parts = {"train": data}
    raw: dict[str, RawSplit] = {}
    for split, part in parts.items():
        source = _source_for(part)
        if source is None:
            kinds = ", ".join(s.name for s in MEMORY_SOURCES)
            raise DataError(f"in-memory data: cannot read a {type(part).__name__} ({split} split); expected one of: {kinds}, a DatasetBundle, or a mapping of splits")
        raw[split], names = source.read(part, text_column, label_column, f"memory:{name} [{split}]")
        label_names = label_names or names
    if "train" not in raw:
        raise DataError("in-memory data: no train split")
    return build_bundle(
        name=name, raw=raw, label_names=list(label_names) if label_names else None, label_map=None,
        source=f"memory ({', '.join(raw)})", seed=seed, validation_fraction=validation_fraction,
        drop_empty=drop_empty, max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
    )
