"""The registry of named benchmark data sets and where their files are found.

Example:
    >>> REGISTRY["sms_spam"].label_names
    ('ham', 'spam')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from qubert.data.bundle import DataError
from qubert.data.hub import hub_offline_reason, SPLIT_ALIASES
from qubert.data.labels import as_int, norm_label
from qubert.data.tables import COMPRESSION_SUFFIXES, read_table, TABLE_SUFFIXES


ENV_DATA_DIR = "QUBERT_DATA_DIR"


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """One named benchmark data set.

    Attributes:
        name: registry name (``--dataset``).
        folder: folder under the data directory.
        label_names: class names in label-id order (after ``label_map``).
        description: one line for listings.
        file: single file in ``folder`` holding all rows (no official split), else ``None`` for
            the ``{train,validation,test}.csv.gz`` layout.
        label_map: source label id -> our id; ``None`` drops the row (e.g. neutral tweets).
        hub_id, hub_config, hub_text_column, hub_label_column: where it lives on the Hub.
    """

    name: str
    folder: str
    label_names: tuple[str, ...]
    description: str
    file: str | None = None
    label_map: Mapping[int, int | None] | None = None
    hub_id: str | None = None
    hub_config: str | None = None
    hub_text_column: str = "text"
    hub_label_column: str = "label"

    @property
    def n_classes(self) -> int:
        return len(self.label_names)
_SENTIMENT2 = ("negative", "positive")
REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "imdb", "imdb", ("neg", "pos"),
            "IMDb movie reviews (Maas et al. 2011), binary sentiment, 25k train / 25k test.",
            hub_id="stanfordnlp/imdb",
        ),
        DatasetSpec(
            "sms_spam", "sms_spam", ("ham", "spam"),
            "SMS Spam Collection (UCI), ham vs spam, 80/20 stratified split.",
            hub_id="ucirvine/sms_spam", hub_text_column="sms",
        ),
        DatasetSpec(
            "sst2", "sst2", _SENTIMENT2,
            "SST-2 (GLUE) sentence/phrase sentiment; the GLUE dev set serves as test.",
            hub_id="stanfordnlp/sst2", hub_text_column="sentence",
        ),
        DatasetSpec(
            "yelp", "sentiment_sentences", _SENTIMENT2,
            "Yelp sentiment; offline: 1,000 UCI Yelp review sentences (split 80/10/10), "
            "Hub: yelp_polarity.",
            file="yelp.csv.gz", hub_id="fancyzhx/yelp_polarity",
        ),
        DatasetSpec(
            "twitter", "twitter_airline_sentiment", _SENTIMENT2,
            "Twitter US airline sentiment, binary: neutral tweets dropped (as in the paper).",
            label_map={0: 0, 1: None, 2: 1},
        ),
        DatasetSpec(
            "twitter3", "twitter_airline_sentiment", ("negative", "neutral", "positive"),
            "Twitter US airline sentiment, 3 classes (negative/neutral/positive).",
        ),
        DatasetSpec(
            "tweet_eval_sentiment", "tweet_eval_sentiment", ("negative", "neutral", "positive"),
            "TweetEval sentiment (SemEval-2017 4A); offline only validation+test, train is "
            "carved from validation.",
            hub_id="cardiffnlp/tweet_eval", hub_config="sentiment",
        ),
        DatasetSpec(
            "ag_news", "ag_news", ("World", "Sports", "Business", "Sci/Tech"),
            "AG News topics; offline only the 7,600-row test split (re-split 80/10/10).",
            hub_id="fancyzhx/ag_news",
        ),
        DatasetSpec(
            "trec", "trec", ("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"),
            "TREC question classification, 6 coarse classes.",
            hub_id="CogComp/trec", hub_label_column="coarse_label",
        ),
        DatasetSpec(
            "amazon", "sentiment_sentences", _SENTIMENT2,
            "1,000 UCI Amazon product-review sentences, binary sentiment (split 80/10/10).",
            file="amazon.csv.gz",
        ),
        DatasetSpec(
            "imdb_sentences", "sentiment_sentences", _SENTIMENT2,
            "1,000 UCI IMDb review sentences, binary sentiment (split 80/10/10).",
            file="imdb.csv.gz",
        ),
    )
}


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Find the local data directory.

    Order: ``data_dir``, else ``$QUBERT_DATA_DIR``, else the first ``shared/data`` folder in the
    current directory or one of its parents (so ``../shared/data`` beside a git checkout is found),
    else one beside the source checkout of this package.

    Args:
        data_dir: explicit directory; it must exist.

    Returns:
        The directory, or ``None`` when nothing was given or found.

    Raises:
        DataError: ``data_dir`` or ``$QUBERT_DATA_DIR`` names a directory that does not exist.

    Example:
        >>> resolve_data_dir("/nonexistent/dir")
        Traceback (most recent call last):
        ...
        qubert.data.DataError: data directory /nonexistent/dir does not exist (from --data-dir)
    """
    for value, origin in ((data_dir, "--data-dir"), (os.environ.get(ENV_DATA_DIR), ENV_DATA_DIR)):
        if value is None or str(value).strip() == "":
            continue
        path = Path(value).expanduser()
        if not path.is_dir():
            raise DataError(f"data directory {path} does not exist (from {origin})")
        return path.resolve()
    candidates = [d / "shared" / "data" for d in (Path.cwd(), *Path.cwd().parents)]
    # src/qubert/data/registry.py -> <checkout>/../shared/data, for runs from another working directory.
    here = Path(__file__).resolve().parents
    if len(here) > 4:
        candidates.append(here[4] / "shared" / "data")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return None


def find_split_files(folder: Path) -> dict[str, Path]:
    """``{split: path}`` for ``train``/``validation`` (or valid/val/dev)/``test`` table files."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for split, aliases in SPLIT_ALIASES.items():
        for alias in aliases:
            for suffix in TABLE_SUFFIXES:
                for comp in ("", *COMPRESSION_SUFFIXES):
                    path = folder / f"{alias}{suffix}{comp}"
                    if split not in found and path.is_file():
                        found[split] = path
    return found


def spec_local_files(spec: DatasetSpec, data_dir: Path) -> dict[str, Path]:
    """The registry set's local files ``{split: path}`` under ``data_dir`` (empty when absent)."""
    folder = data_dir / spec.folder
    if spec.file is not None:
        path = folder / spec.file
        return {"train": path} if path.is_file() else {}
    return find_split_files(folder)


def available_datasets(data_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Describe the registry and where each data set would come from.

    Args:
        data_dir: data directory (default: see :func:`resolve_data_dir`).

    Returns:
        One dict per registry entry: ``name``, ``description``, ``n_classes``, ``label_names``,
        ``available`` (the local folder or file, ``"hub"`` when it would be fetched from the Hub,
        i.e. a Hub id is known and the Hub is not disabled, without probing the network, or
        ``"missing"``) and ``rows`` (``{split: rows}`` of the local files as loaded, e.g. after
        ``twitter`` drops neutral tweets; a single file is reported as ``train``; ``None`` when
        not local).

    Example:
        >>> [d["name"] for d in available_datasets()][:3]  # doctest: +SKIP
        ['imdb', 'sms_spam', 'sst2']
    """
    directory = resolve_data_dir(data_dir)
    out = []
    for spec in REGISTRY.values():
        files = spec_local_files(spec, directory) if directory else {}
        rows: dict[str, int] | None = None
        if files:
            first = next(iter(files.values()))
            available = str(first if spec.file else first.parent)
            rows = {s: count_rows(p, spec) for s, p in files.items()}
        elif spec.hub_id and not hub_offline_reason():
            available = "hub"
        else:
            available = "missing"
        out.append(
            {
                "name": spec.name,
                "description": spec.description,
                "n_classes": spec.n_classes,
                "label_names": list(spec.label_names),
                "available": available,
                "rows": rows,
            }
        )
    return out


def count_rows(path: Path, spec: DatasetSpec) -> int | None:
    """Rows of one local file as loaded (after the set's label map), None when unreadable."""
    try:
        _, labels = read_table(path)
    except DataError:
        return None
    if not spec.label_map:
        return len(labels)
    ids = (as_int(lab) for lab in map(norm_label, labels) if lab is not None)
    return sum(1 for v in ids if v is not None and spec.label_map.get(v) is not None)
