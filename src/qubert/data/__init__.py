"""Text-classification data: a registry of benchmark sets and loaders for local files, the Hub and
data already in memory.

Everything here returns a :class:`DatasetBundle`: three splits of ``(texts, labels)`` with integer
labels ``0..K-1`` and the label names, so the mapping can be saved with a model. Bad input raises
:class:`DataError` with a one-line message (the CLI prints it and exits non-zero).

Where a registry name (``sms_spam``, ``imdb``, ...) is looked for, in order:

1. a data directory: ``data_dir`` argument, else ``$QUBERT_DATA_DIR``, else a ``shared/data``
   folder found in or above the current directory (e.g. ``../shared/data`` beside a git checkout),
   laid out as ``<folder>/{train,validation,test}.csv.gz`` (see :data:`REGISTRY` for the folders);
2. the Hugging Face Hub via ``datasets.load_dataset``, only when ``HF_HUB_OFFLINE`` /
   ``HF_DATASETS_OFFLINE`` are not set and the Hub answers within a few seconds;
3. otherwise a :class:`DataError` saying where files were looked for.

The package, one concept per module:

- :mod:`~qubert.data.bundle`: :class:`TextDataset`, :class:`DatasetBundle`, :class:`DataError`;
- :mod:`~qubert.data.registry`: the named data sets and the data directory;
- :mod:`~qubert.data.tables`: the one CSV / TSV / JSON-lines reader;
- :mod:`~qubert.data.hub`: the one Hub offline check and Hub loading;
- :mod:`~qubert.data.labels`: text checks and label encoding;
- :mod:`~qubert.data.splits`: stratified carving and subsets;
- :mod:`~qubert.data.sources`: :func:`load_dataset_bundle` (names, files, folders, Hub ids);
- :mod:`~qubert.data.memory`: :func:`bundle_from_memory` (DataFrames, lists, ``datasets``).

Example:
    >>> from qubert.data import load_dataset_bundle
    >>> bundle = load_dataset_bundle("sms_spam", max_train_samples=200)  # doctest: +SKIP
    >>> bundle.label_names, len(bundle.train)  # doctest: +SKIP
    (['ham', 'spam'], 200)
"""

from qubert.data.bundle import SPLITS, DataError, DatasetBundle, TextDataset
from qubert.data.hub import hub_available
from qubert.data.memory import MemorySource, bundle_from_memory, register_memory_source
from qubert.data.registry import ENV_DATA_DIR, REGISTRY, DatasetSpec, available_datasets, resolve_data_dir
from qubert.data.sources import load_dataset_bundle
from qubert.data.splits import TEST_FRACTION, stratified_holdout, stratified_subset
from qubert.data.tables import read_table, read_texts

__all__ = [
    "DataError",
    "DatasetBundle",
    "DatasetSpec",
    "ENV_DATA_DIR",
    "MemorySource",
    "REGISTRY",
    "SPLITS",
    "TEST_FRACTION",
    "TextDataset",
    "available_datasets",
    "bundle_from_memory",
    "hub_available",
    "load_dataset_bundle",
    "read_table",
    "read_texts",
    "register_memory_source",
    "resolve_data_dir",
    "stratified_holdout",
    "stratified_subset",
]
