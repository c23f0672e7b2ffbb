"""Bench data: which data sets a grid uses (:class:`DataEntry`), and the fixed pools replicates are drawn from.

A ``datasets:`` entry of a bench config is one of

- a registry name (``sms_spam``), read from ``data_dir`` as ``qubert train --dataset`` reads it;
- a folder name under ``data_dir`` (``mydata`` for ``<data_dir>/mydata/{train,test}.csv.gz``) or a
  folder path, holding ``train`` [``validation``] ``test`` tables (CSV/TSV/JSON/JSONL, gzip or not);
- a mapping ``{name, train_file, test_file, validation_file?, text_column?, label_column?}`` (paths
  relative to the working directory), plus any TrainingConfig settings for that data set.

Every entry is resolved to absolute paths when the config is read, so a Ray worker loads the same
rows without a registry lookup or an environment of its own. Data are read with qubert's own loader
(:func:`qubert.data.load_dataset_bundle`), so classes and label names are inferred as ``qubert train``
infers them.

**Pools.** Per data set the bench fixes a training pool (train + validation rows) and a test pool (the
test split), each capped at a stratified size with a fixed seed (``pool:`` in the config). Replicates
draw their rows from these pools (:mod:`qubert.bench.replicates`); frozen runs use the pools'
features, encoded once through the embedding cache (:func:`encode_pool`).

Example:
    >>> entry, settings = parse_data_entry({"name": "toy", "train_file": "t.csv", "test_file": "s.csv",
    ...                                     "max_length": 64}, check_files=False)
    >>> entry.name, settings
    ('toy', {'max_length': 64})
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DataEntry", "DataEntryError", "Pools", "build_pools", "encode_pool", "parse_data_entry", "stratified_sample"]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_FILE_KEYS = ("train_file", "validation_file", "test_file")
_ENTRY_KEYS = ("name", "dataset", *_FILE_KEYS, "text_column", "label_column")


class DataEntryError(ValueError):
    """A data entry that cannot be used; ``key`` is the offending sub-key (``""`` for the entry itself)."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class DataEntry:
    """One data set of a grid, resolved to what :func:`qubert.data.load_dataset_bundle` needs.

    Attributes:
        name: the data set's name in results, run directories and reports.
        dataset: a registry name, or an absolute folder path (None for an explicit-file entry).
        data_dir: the absolute data directory a registry name is read from.
        train_file, validation_file, test_file: absolute paths of an explicit-file entry.
        text_column, label_column: column names in the files.
    """

    name: str
    dataset: str | None = None
    data_dir: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    text_column: str = "text"
    label_column: str = "label"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_settings(self) -> dict[str, Any]:
        """The TrainingConfig data settings that load this entry (``dataset``, ``train_file``, ...)."""
        out = {k: v for k, v in self.to_dict().items() if k != "name"}
        if self.data_dir is None:
            out.pop("data_dir")
        return out

    def load(self, seed: int = 0, drop_empty: bool = False) -> Any:
        """The whole data set as a :class:`qubert.data.DatasetBundle` (no caps; ``seed`` carves missing splits)."""
        return _load(self, seed, drop_empty)


@functools.lru_cache(maxsize=16)
def _load(entry: DataEntry, seed: int, drop_empty: bool) -> Any:
    from qubert.data import load_dataset_bundle

    return load_dataset_bundle(
        entry.dataset, data_dir=entry.data_dir, train_file=entry.train_file, validation_file=entry.validation_file,
        test_file=entry.test_file, text_column=entry.text_column, label_column=entry.label_column, seed=seed,
        drop_empty=drop_empty,
    )


def parse_data_entry(item: Any, *, data_dir: str | None = None, check_files: bool = True) -> tuple[DataEntry, dict[str, Any]]:
    """``(entry, settings)`` from one ``datasets:`` item; settings are the entry's TrainingConfig settings.

    Raises:
        DataEntryError: unknown name, missing folder or file, a bad name (the message says which).
    """
    from qubert.data import REGISTRY, DataError, available_datasets, resolve_data_dir

    if isinstance(item, str):
        item = {"dataset": item}
    if not isinstance(item, dict):
        raise DataEntryError(f"must be a data set name or a mapping, got {item!r}")
    item = dict(item)
    settings = {k: v for k, v in item.items() if k not in _ENTRY_KEYS}
    explicit = {k: item[k] for k in _FILE_KEYS if item.get(k) is not None}
    columns = {k: item[k] for k in ("text_column", "label_column") if k in item}
    for key, value in columns.items():
        if not isinstance(value, str) or not value:
            raise DataEntryError(f"must be a column name, got {value!r}", f".{key}")
    if explicit:
        if "dataset" in item:
            raise DataEntryError("give either dataset or train_file/test_file, not both", ".dataset")
        for key in ("train_file", "test_file"):
            if key not in explicit:
                raise DataEntryError(f"an explicit-file entry needs {key} (and name)", f".{key}")
        name = item.get("name")
        if name is None:
            raise DataEntryError("an explicit-file entry needs a name", ".name")
        _check_name(name, ".name")
        files = {}
        for key, value in explicit.items():
            path = Path(str(value)).expanduser().resolve()
            if check_files and not path.is_file():
                raise DataEntryError(f"file {value} not found" + (" (it is a folder)" if path.is_dir() else ""), f".{key}")
            files[key] = str(path)
        return DataEntry(name=str(name), **files, **columns), settings
    if "name" in item and "dataset" not in item:
        raise DataEntryError("needs a dataset (registry name or folder) or train_file and test_file", ".dataset")
    dataset = item.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise DataEntryError(f"must be a registry name or a folder, got {dataset!r}", ".dataset" if "dataset" in item else "")
    name = item.get("name", Path(dataset).name if dataset not in REGISTRY else dataset)
    _check_name(name, ".name")
    if dataset in REGISTRY:
        try:
            directory = resolve_data_dir(data_dir)
            found = {d["name"]: d["available"] for d in available_datasets(directory)} if check_files else {}
        except DataError as err:
            raise DataEntryError(str(err)) from None
        if found.get(dataset) == "missing":
            raise DataEntryError(f"data set {dataset!r} is not in {directory or 'any data directory'} (and the Hub is off)")
        resolved_dir = str(Path(directory).resolve()) if directory else None
        return DataEntry(name=str(name), dataset=dataset, data_dir=resolved_dir, **columns), settings
    folder = Path(dataset).expanduser()
    candidates = [folder] if folder.is_absolute() or folder.is_dir() else []
    if data_dir and not folder.is_absolute():
        candidates.append(Path(data_dir) / dataset)
    found_folder = next((c for c in candidates if c.is_dir()), None)
    if found_folder is None:
        near = difflib.get_close_matches(dataset, list(REGISTRY), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else f"; known names: {', '.join(REGISTRY)}"
        where = f" nor a folder under {data_dir}" if data_dir else " nor a folder"
        raise DataEntryError(f"unknown data set {dataset!r}: not a registry name{where}{hint}")
    return DataEntry(name=str(name), dataset=str(found_folder.resolve()), **columns), settings


def _check_name(name: Any, key: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise DataEntryError(f"must be letters, digits and _ . + - (no path), got {name!r}", key)


def check_entry(entry: DataEntry, seed: int = 0) -> Any:
    """Load ``entry`` once (files readable, columns present, labels usable); returns its bundle.

    Raises:
        DataEntryError: with the loader's one-line message.
    """
    from qubert.data import DataError

    try:
        return entry.load(seed)
    except (DataError, OSError, ValueError) as err:
        raise DataEntryError(" ".join(str(err).split())) from None


# ------------------------------------------------------------------------------------ pools


@dataclass(frozen=True)
class Pools:
    """A data set's fixed training and test pools (texts and integer labels), and its label names."""

    name: str
    label_names: tuple[str, ...]
    train_texts: tuple[str, ...]
    train_labels: np.ndarray
    test_texts: tuple[str, ...]
    test_labels: np.ndarray
    test_is_whole_split: bool

    @property
    def n_classes(self) -> int:
        return len(self.label_names)


def stratified_sample(labels: np.ndarray, size: int | None, rng: np.random.Generator,
                      exclude: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of a stratified random sample of ``size`` rows (``None``: every row).

    Classes get rows in proportion (largest remainder), at least one each when ``size`` allows;
    hand-written because scikit-learn's stratified splitters refuse classes with a single row and
    cannot draw a second disjoint sample from what is left.

    Example:
        >>> stratified_sample(np.array([0, 0, 0, 0, 1, 1]), 3, np.random.default_rng(0)).tolist()
        [2, 3, 4]
    """
    labels = np.asarray(labels)
    available = np.ones(len(labels), dtype=bool)
    if exclude is not None:
        available[exclude] = False
    candidates = np.flatnonzero(available)
    if size is None or size >= len(candidates):
        return candidates
    classes, counts = np.unique(labels[candidates], return_counts=True)
    share = counts * size / counts.sum()
    alloc = np.floor(share).astype(int)
    if size >= len(classes):
        alloc = np.maximum(alloc, 1)
    alloc = np.minimum(alloc, counts)
    remainder = share - np.floor(share)
    while alloc.sum() < size:
        room = np.where(alloc < counts, remainder, -np.inf)
        k = int(np.argmax(room))
        alloc[k] += 1
        remainder[k] = -np.inf if alloc[k] >= counts[k] else remainder[k] - 1
    while alloc.sum() > size:  # the one-row minimum overshot: take back from the largest classes
        alloc[int(np.argmax(alloc))] -= 1
    picked = [rng.choice(candidates[labels[candidates] == c], size=n, replace=False) for c, n in zip(classes, alloc) if n]
    return np.sort(np.concatenate(picked)) if picked else np.array([], dtype=int)


def build_pools(entry: DataEntry, *, train_size: int | None = None, test_size: int | None = None, seed: int = 0,
                drop_empty: bool = False) -> Pools:
    """The training pool (train + validation rows) and the test pool of ``entry``, stratified caps with ``seed``.

    Example:
        >>> pools = build_pools(DataEntry("sms_spam", dataset="sms_spam"), train_size=1000)  # doctest: +SKIP
        >>> len(pools.train_texts), pools.label_names  # doctest: +SKIP
        (1000, ('ham', 'spam'))
    """
    bundle = entry.load(seed, drop_empty)
    train_texts = list(bundle.train.texts) + list(bundle.validation.texts)
    train_labels = np.asarray(list(bundle.train.labels) + list(bundle.validation.labels), dtype=np.int64)
    rng = np.random.default_rng([seed, 1])
    keep = stratified_sample(train_labels, train_size, rng)
    test_labels_all = np.asarray(bundle.test.labels, dtype=np.int64)
    keep_test = stratified_sample(test_labels_all, test_size, np.random.default_rng([seed, 2]))
    return Pools(
        name=entry.name, label_names=tuple(bundle.label_names),
        train_texts=tuple(train_texts[i] for i in keep), train_labels=train_labels[keep],
        test_texts=tuple(bundle.test.texts[i] for i in keep_test), test_labels=test_labels_all[keep_test],
        test_is_whole_split=len(keep_test) == len(test_labels_all),
    )


def encode_pool(texts: Any, labels: Any, settings: Mapping[str, Any], *, split: str, label_names: Any) -> np.ndarray:
    """Frozen-encoder features (float32, ``(n, d)``) of a pool's texts, through the embedding cache.

    ``settings`` are TrainingConfig settings: ``model``, ``pooling``, ``max_length``, ``precision``,
    ``cache_dir`` and ``progress`` are used.
    """
    from qubert.data import TextDataset
    from qubert.embeddings import EmbeddingCache, cached_features
    from qubert.modeling import encoder_identity
    from qubert.training import TrainingConfig

    config = TrainingConfig(dataset="pool", mode="frozen", head="linear", **{
        k: settings[k] for k in ("model", "pooling", "max_length", "precision", "cache_dir", "progress") if k in settings})
    model, tokenizer = _encoder(config.model, config.pooling, config.max_length, config.resolved_precision, len(label_names))
    data = TextDataset(list(texts), [int(x) for x in labels])
    features, _ = cached_features(model, tokenizer, data.texts, fingerprint=data.fingerprint(), split=f"pool-{split}",
                                  cache=EmbeddingCache(config.cache_dir), encoder_id=encoder_identity(model.encoder),
                                  progress=config.progress)
    return features.float().numpy()


@functools.lru_cache(maxsize=2)
def _encoder(model_name: str, pooling: str, max_length: int, precision: str, n_classes: int) -> tuple[Any, Any]:
    from qubert.modeling import QubertForSequenceClassification, load_tokenizer

    model = QubertForSequenceClassification.from_encoder(
        model_name, head={"type": "linear"}, id2label={i: str(i) for i in range(n_classes)}, pooling=pooling,
        mode="frozen", max_length=max_length, seed=0, precision=precision)
    return model, load_tokenizer(model_name)
