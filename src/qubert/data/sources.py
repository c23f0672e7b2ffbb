"""Where a :class:`~qubert.data.DatasetBundle` comes from: a registry name, files, a folder or a
Hub id (:func:`load_dataset_bundle`), or data already in memory (:mod:`qubert.data.memory`).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Mapping

from qubert.data.bundle import DataError, DatasetBundle, SPLITS, TextDataset
from qubert.data.hub import try_hub
from qubert.data.labels import check_texts, encode_fixed, encode_inferred, format_rows, infer_label_names, normalise_labels
from qubert.data.registry import DatasetSpec, ENV_DATA_DIR, find_split_files, REGISTRY, resolve_data_dir, spec_local_files
from qubert.data.splits import fill_splits, SALT_SUB, stratified_subset, take_rows, TEST_FRACTION
from qubert.data.tables import RawSplit, read_table, table_kind


def read_local(
    files: Mapping[str, Path], text_column: str, label_column: str
) -> dict[str, RawSplit]:
    """Read ``{split: file}`` into raw splits."""
    out = {}
    for split, path in files.items():
        texts, labels = read_table(path, text_column=text_column, label_column=label_column)
        out[split] = RawSplit(texts, labels, str(path))
    return out


def unknown_name_error(name: str, data_dir: Path | None, hub_reason: str | None) -> DataError:
    """The error for a name that is no registry set, folder, file or reachable Hub id."""
    known = sorted(REGISTRY)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    where = f"; not a folder in {data_dir}" if data_dir else ""
    hub = f"; {hub_reason}" if hub_reason else ""
    return DataError(
        f"unknown data set {name!r}: {hint}known data sets: {', '.join(known)}{where}{hub}; "
        "or pass a .csv/.tsv/.jsonl file or a Hub id"
    )


def not_found_error(spec: DatasetSpec, data_dir: Path | None, hub_reason: str) -> DataError:
    """The error for a registry set found neither locally nor on the Hub."""
    layout = spec.file or "{train,validation,test}.csv.gz"
    if data_dir is None:
        looked = (
            f"no data directory (no --data-dir, no {ENV_DATA_DIR}, no shared/data above "
            f"{Path.cwd()})"
        )
    else:
        looked = f"looked for {data_dir / spec.folder / layout}"
    hub = hub_reason if spec.hub_id else "no Hub copy known"
    return DataError(
        f"data set {spec.name!r} not found: {looked}; {hub}. Provide the files with "
        f"--data-dir DIR or {ENV_DATA_DIR}=DIR (layout DIR/{spec.folder}/{layout})"
    )


# Long: the docstring is the data-loading contract (where names are looked for, how splits are carved).
def load_dataset_bundle(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    train_file: str | os.PathLike[str] | None = None,
    validation_file: str | os.PathLike[str] | None = None,
    test_file: str | os.PathLike[str] | None = None,
    text_column: str = "text",
    label_column: str = "label",
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 42,
    validation_fraction: float = 0.1,
    drop_empty: bool = False,
) -> DatasetBundle:
    """Load a data set as train/validation/test with integer labels ``0..K-1``.

    ``name_or_path`` is a registry name (see :data:`REGISTRY`), a table file (``.csv``, ``.tsv``,
    ``.jsonl``, ``.json``, optionally ``.gz``), a folder with ``train``/``validation``/``test``
    files, a folder name under the data directory, or a Hub id. With ``train_file`` /
    ``validation_file`` / ``test_file`` only those files are read; a registry name then only gives
    the bundle's name, label names and label mapping (e.g. ``twitter`` still drops neutral).

    Labels are integer ids, or class names for registry sets. Elsewhere string labels become ids in
    sorted order of the train split's names (integer labels: sorted values, names ``"0"``, ...).

    Missing splits are made by seeded, stratified carving (every class stays in train):

    - train + test: validation = ``validation_fraction`` of train.
    - train + validation (e.g. sst2, whose GLUE test labels are hidden): the given validation
      split becomes test, and validation is carved from train.
    - one pool only (a single file, the UCI sentence sets, ag_news offline): test = 10 % and
      validation = ``validation_fraction`` of the pool, the rest is train (80/10/10, seed 42).
    - validation + test, no train (tweet_eval_sentiment offline): train is carved from validation,
      keeping ``validation_fraction`` of it as validation (1,800 / 200 rows); test is untouched.

    The carving does not depend on ``max_*_samples``; those then take stratified seeded subsets
    (at least one row per class when the size allows), kept in file order. ``bundle.notes`` says
    what was derived.

    Args:
        name_or_path: registry name, file, folder or Hub id (may be None when ``train_file`` etc.
            are given).
        data_dir: data directory (default: see :func:`resolve_data_dir`).
        train_file, validation_file, test_file: explicit files.
        text_column, label_column: column names in files (and generic Hub sets).
        max_train_samples: cap on train rows (stratified subset); a validation split carved from
            train is capped in proportion (``max_train_samples * validation_fraction / train share``)
            unless ``max_eval_samples`` is given.
        max_eval_samples: cap on validation and on test rows (stratified subset).
        seed: seed of all carving and subsampling.
        validation_fraction: share carved for validation when there is no validation split.
        drop_empty: drop empty/whitespace-only texts instead of raising.

    Returns:
        The :class:`DatasetBundle`.

    Raises:
        DataError: anything wrong with the request or the data (one-line message).

    Example:
        >>> b = load_dataset_bundle("yelp", max_train_samples=100)  # doctest: +SKIP
        >>> len(b.train), len(b.validation), len(b.test), b.label_names  # doctest: +SKIP
        (100, 100, 100, ['negative', 'positive'])
    """
    if not 0 < validation_fraction < 1 - TEST_FRACTION:
        raise DataError(
            f"validation_fraction must be in (0, {1 - TEST_FRACTION}), got {validation_fraction}"
        )
    caps = {"max_train_samples": max_train_samples, "max_eval_samples": max_eval_samples}
    for option, value in caps.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise DataError(f"{option} must be a positive integer, got {value!r}")

    name_str = None if name_or_path is None else str(name_or_path)
    spec = REGISTRY.get(name_str) if name_str else None
    label_names: list[str] | None = list(spec.label_names) if spec else None
    label_map = spec.label_map if spec else None

    if name_str and spec is None and train_file is None and Path(name_str).expanduser().is_file():
        train_file, name_str = name_str, None
    given = (train_file, validation_file, test_file)
    explicit = {s: Path(f).expanduser() for s, f in zip(SPLITS, given) if f is not None}

    if explicit:
        raw = read_local(explicit, text_column, label_column)
        source = ", ".join(map(str, explicit.values()))
        name = name_str or next(iter(explicit.values())).name.split(".")[0]
    elif name_str is None:
        raise DataError("no data given: pass a data set name, a file path or --train-file")
    elif spec is not None:
        directory = resolve_data_dir(data_dir)
        files = spec_local_files(spec, directory) if directory else {}
        if files:
            raw = read_local(files, text_column, label_column)
            first = next(iter(files.values()))
            source = str(first if spec.file else first.parent)
        else:
            hub_reason = "no Hub copy known"
            hub_raw = None
            if spec.hub_id:
                # The registry's label names win over the Hub's ClassLabel names (e.g. '1'/'2').
                hub_raw, _, hub_reason = try_hub(
                    spec.hub_id, spec.hub_config, spec.hub_text_column, spec.hub_label_column
                )
            if hub_raw is None:
                raise not_found_error(spec, directory, hub_reason)
            raw, source = hub_raw, hub_reason
        name = spec.name
    else:
        path = Path(name_str).expanduser()
        directory = None if path.is_dir() else resolve_data_dir(data_dir)
        folder = path if path.is_dir() else (directory / name_str if directory else None)
        files = find_split_files(folder) if folder is not None else {}
        if files:
            raw = read_local(files, text_column, label_column)
            source, name = str(folder), folder.name  # type: ignore[union-attr]
        elif path.is_dir():
            raise DataError(f"folder {path} has no train/validation/test .csv/.tsv/.jsonl files")
        elif table_kind(path) is not None:
            raise DataError(f"data file {path} not found")
        else:
            hub_raw, hub_names, hub_reason = None, None, None
            # A near-miss of a registry name is a typo: answer at once instead of asking the Hub.
            typo = difflib.get_close_matches(name_str, list(REGISTRY), n=1, cutoff=0.6)
            if "/" in name_str or not typo:
                hub_raw, hub_names, hub_reason = try_hub(name_str, None, text_column, label_column)
            if hub_raw is None:
                raise unknown_name_error(name_str, directory, hub_reason)
            raw, source, name = hub_raw, hub_reason, name_str
            label_names = hub_names

    return build_bundle(
        name=name, raw=raw, label_names=label_names, label_map=label_map, source=source,
        seed=seed, validation_fraction=validation_fraction, drop_empty=drop_empty,
        max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
    )


# Long: label encoding, the single-class check, carving and subsetting pass the same split dicts along.
def build_bundle(
    *,
    name: str,
    raw: dict[str, RawSplit],
    label_names: list[str] | None,
    label_map: Mapping[int, int | None] | None,
    source: str,
    seed: int,
    validation_fraction: float,
    drop_empty: bool,
    max_train_samples: int | None,
    max_eval_samples: int | None,
) -> DatasetBundle:
    """Check texts, encode labels, carve missing splits and take subsets: raw splits to a bundle."""
    notes: list[str] = []
    raw = {s: check_texts(r, drop_empty) for s, r in raw.items()}
    labels = {s: normalise_labels(r) for s, r in raw.items()}
    # The split whose classes define the label set: train, else the pool train is carved from.
    reference = next(s for s in ("train", "validation", "test") if s in raw)

    encoded: dict[str, TextDataset] = {}
    if label_names is not None:
        source_ids = sorted(label_map) if label_map else list(range(len(label_names)))
        mapped: dict[str, list[int | None]] = {}
        for split, r in raw.items():
            ids = encode_fixed(r, labels[split], label_names, source_ids)
            mapped[split] = [label_map[v] for v in ids] if label_map else list(ids)
        seen = {v for v in mapped[reference] if v is not None}
        for split, r in raw.items():
            unseen = sorted({v for v in mapped[split] if v is not None} - seen)
            if unseen:
                rows = [r.row(i) for i, v in enumerate(mapped[split]) if v == unseen[0]]
                raise DataError(
                    f"{r.origin}: label {label_names[unseen[0]]!r} in the {split} split "
                    f"({format_rows(rows)}) does not occur in {reference}; "
                    f"{reference} labels: {', '.join(label_names[i] for i in sorted(seen))}"
                )
            keep = [i for i, v in enumerate(mapped[split]) if v is not None]
            encoded[split] = TextDataset(
                [r.texts[i] for i in keep], [mapped[split][i] for i in keep]  # type: ignore[misc]
            )
    else:
        label_names, integer = infer_label_names(raw[reference], labels[reference])
        for split, r in raw.items():
            ids = encode_inferred(r, labels[split], label_names, integer, split, reference)
            encoded[split] = TextDataset(r.texts, ids)

    n_ref_classes = len(set(encoded[reference].labels))
    if n_ref_classes < 2:
        only = encoded[reference].labels[0] if len(encoded[reference]) else None
        what = f"only label {label_names[only]!r}" if only is not None else "no rows"
        raise DataError(
            f"{raw[reference].origin}: the {reference} split has a single class ({what}); "
            "a classifier needs at least 2"
        )

    train, validation, test = fill_splits(encoded, seed, validation_fraction, notes)
    splits = {"train": train, "validation": validation, "test": test}
    for split, data in splits.items():
        if len(data) == 0:
            raise DataError(f"data set {name!r}: the {split} split is empty (too few rows)")

    caps = {"train": max_train_samples, "validation": max_eval_samples, "test": max_eval_samples}
    given = {s for s in SPLITS if encoded.get(s) is not None}
    if max_train_samples is not None and max_eval_samples is None and given != set(SPLITS):
        # Validation was carved from the training rows (see fill_splits): it shrinks with them.
        single_pool = "train" not in given and given != {"validation", "test"} or given == {"train"}
        train_share = 1 - validation_fraction - (TEST_FRACTION if single_pool else 0)
        proportional = max(round(max_train_samples * validation_fraction / train_share), n_ref_classes)
        caps["validation"] = proportional
    for split, cap in caps.items():
        data = splits[split]
        if cap is None or len(data) <= cap:
            continue
        n_classes = len(set(data.labels))
        if split == "train" and cap < n_classes:
            raise DataError(
                f"max_train_samples={cap} is fewer than the {n_classes} classes in train"
            )
        splits[split] = take_rows(data, stratified_subset(data.labels, cap, seed, SALT_SUB[split]))
        notes.append(f"{split}: stratified subset of {cap} of {len(data)} rows (seed {seed})")

    return DatasetBundle(
        name=name, label_names=list(label_names), train=splits["train"],
        validation=splits["validation"], test=splits["test"], source=source, notes=notes,
    )
