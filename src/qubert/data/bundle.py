"""What every data source produces: :class:`TextDataset` (one split) and :class:`DatasetBundle`
(train/validation/test with label names), and :class:`DataError`, the one-line error of bad data.

Example:
    >>> split = TextDataset(["good", "bad"], [1, 0])
    >>> DatasetBundle("toy", ["neg", "pos"], split, split, split, source="memory").n_classes
    2
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field


SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """Bad or missing data; the message is one line, meant to be shown to the user as is."""

    __module__ = "qubert.data"  # its public home: tracebacks and docs name qubert.data.DataError


@dataclass
class TextDataset:
    """One split: parallel lists of texts and integer labels.

    Example:
        >>> TextDataset(["good", "bad"], [1, 0]).class_counts()
        {0: 1, 1: 1}
    """

    texts: list[str]
    labels: list[int]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    def class_counts(self) -> dict[int, int]:
        """Rows per label id, sorted by id."""
        return dict(sorted(Counter(self.labels).items()))

    def fingerprint(self) -> str:
        """Short stable hash of texts and labels (16 hex digits), e.g. an embedding-cache key."""
        h = hashlib.sha256()
        for text in self.texts:
            raw = text.encode("utf-8")
            h.update(b"%d:" % len(raw))  # length prefix: no two text lists hash alike by concat
            h.update(raw)
        h.update(b"|labels:" + ",".join(map(str, self.labels)).encode("ascii"))
        return h.hexdigest()[:16]


@dataclass
class DatasetBundle:
    """Train/validation/test splits plus label names and provenance.

    Example:
        >>> tr = TextDataset(["a", "b"], [0, 1])
        >>> b = DatasetBundle("toy", ["neg", "pos"], tr, tr, tr, source="memory")
        >>> b.n_classes, b.id2label, b.label2id["pos"]
        (2, {0: 'neg', 1: 'pos'}, 1)
    """

    name: str
    label_names: list[str]
    train: TextDataset
    validation: TextDataset
    test: TextDataset
    source: str
    notes: list[str] = field(default_factory=list)  # how splits were derived, for logs

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    def split(self, split: str) -> TextDataset:
        """Return the split called ``train``, ``validation`` or ``test``."""
        if split not in SPLITS:
            raise KeyError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return getattr(self, split)

    def fingerprint(self, split: str) -> str:
        """Short stable hash of one split's texts and labels (:meth:`TextDataset.fingerprint`)."""
        return self.split(split).fingerprint()

    def summary(self) -> str:
        """One line for logs: name, split sizes, classes and source."""
        sizes = " / ".join(f"{s} {len(self.split(s)):,}" for s in SPLITS)
        classes = ", ".join(self.label_names)
        return f"{self.name}: {sizes}; {self.n_classes} classes ({classes}); from {self.source}"
