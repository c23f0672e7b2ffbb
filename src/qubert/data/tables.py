"""Reading tables: the one CSV / TSV / JSON-lines reader of qubert (training data, ``qubert eval
--test-file``, ``qubert predict`` input files).

Example:
    >>> read_table("reviews.tsv", text_column="sentence")  # doctest: +SKIP
    (['a gripping film', ...], ['1', ...])
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qubert.data.bundle import DataError


TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zip")


@dataclass
class RawSplit:
    """One split as read: texts, raw labels, where it came from and its 1-based file rows."""
    texts: list[str]
    labels: list[Any]  # as read: str, int, float, None
    origin: str  # path or hub id/split, for messages
    row_numbers: list[int] | None = None  # 1-based file rows when some rows were dropped

    def row(self, i: int) -> int:
        return self.row_numbers[i] if self.row_numbers is not None else i + 1


def table_kind(path: Path) -> str | None:
    """``csv``, ``tsv``, ``jsonl`` or ``json`` from the file's suffixes (compression ignored), else None."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in TABLE_SUFFIXES:
        return suffixes[-1].lstrip(".")
    return None


def read_bytes(path: Path) -> bytes | None:
    """The file's (decompressed) bytes, or None when unreadable or zipped."""
    import bz2
    import gzip
    import lzma

    openers = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
    suffix = path.suffix.lower()
    try:
        if suffix in openers:
            with openers[suffix](path, "rb") as fh:
                return fh.read()
        return None if suffix == ".zip" else path.read_bytes()
    except OSError:
        return None


def utf8_error(path: Path, err: UnicodeDecodeError, has_header: bool) -> DataError:
    # pandas reports a position inside its read buffer; decode the whole file for the real offset.
    """A DataError naming the byte offset and line of the first invalid UTF-8 byte."""
    data = read_bytes(path)
    if data is not None:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exact:
            line = data.count(b"\n", 0, exact.start) + 1
            bad = data[exact.start : exact.start + 1].hex()
            header = ", header = line 1" if has_header else ""
            return DataError(
                f"{path} is not valid UTF-8: byte 0x{bad} at byte offset {exact.start} "
                f"(line {line}{header}); re-save the file as UTF-8"
            )
    return DataError(f"{path} is not valid UTF-8 ({err.reason}); re-save the file as UTF-8")


def read_table(
    path: str | os.PathLike[str], *, text_column: str = "text", label_column: str | None = "label"
) -> tuple[list[str], list[Any]]:
    """Read texts and raw labels from a CSV, TSV or JSON-lines file (optionally compressed).

    The type comes from the extension: ``.csv``, ``.tsv``, ``.jsonl``/``.json``, each optionally
    followed by ``.gz``/``.bz2``/``.xz``/``.zip``. CSV cells are read as strings, so texts such as
    ``NA`` or ``null`` stay texts and quoted newlines are kept. No validation beyond the columns.

    Args:
        path: the file.
        text_column: column holding the text.
        label_column: column holding the label (integer id or class name); None: texts only
            (the labels returned are then an empty list).

    Returns:
        ``(texts, labels)``; labels as read (strings for CSV/TSV, JSON values for JSON).

    Raises:
        DataError: missing file, unknown extension, bad encoding, malformed table, missing column.

    Example:
        >>> read_table("reviews.tsv", text_column="sentence")  # doctest: +SKIP
        (['a gripping film', ...], ['1', ...])
    """
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "not found"
        raise DataError(f"data file {path} {what}")
    kind = table_kind(path)
    if kind is None:
        raise DataError(
            f"{path}: unsupported file type; use .csv, .tsv, .jsonl or .json (optionally .gz)"
        )
    if label_column is not None and text_column == label_column:
        raise DataError(f"text_column and label_column are both {text_column!r}")
    try:
        if kind in ("csv", "tsv"):
            frame = pd.read_csv(
                path,
                sep="\t" if kind == "tsv" else ",",
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                encoding="utf-8",
                compression="infer",
            )
        else:
            # .json may hold one array of records instead of JSON lines.
            head = read_bytes(path) if kind == "json" else None
            lines = head is None or not head.lstrip().startswith(b"[")
            frame = pd.read_json(
                path, lines=lines, dtype=False, encoding="utf-8", compression="infer"
            )
    except UnicodeDecodeError as err:
        raise utf8_error(path, err, kind in ("csv", "tsv")) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty (no header row)") from None
    except (pd.errors.ParserError, ValueError, OSError, EOFError) as err:
        detail = " ".join(str(err).split()) or type(err).__name__
        raise DataError(f"cannot parse {path} as {kind.upper()}: {detail}") from None
    columns = [str(c) for c in frame.columns]
    for role, column, option in (
        ("text", text_column, "text_column / --text-column"),
        ("label", label_column, "label_column / --label-column"),
    ):
        if column is not None and column not in columns:
            found = ", ".join(repr(c) for c in columns) or "none"
            raise DataError(
                f"{path}: no {role} column {column!r}; columns found: {found} (set {option})"
            )
    texts = [cell_to_text(v) for v in frame[text_column].tolist()]
    return texts, (frame[label_column].tolist() if label_column is not None else [])


def read_texts(source: str | os.PathLike[str] | None, text_column: str = "text") -> list[str]:
    r"""Texts to classify: one per non-empty line of stdin (``None`` or ``"-"``) or of a plain text
    file, or the ``text_column`` of a table file (read by :func:`read_table`).

    Raises:
        DataError: a missing file, or a table that cannot be read or lacks the column.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "texts.txt"
        >>> _ = path.write_text("a fine film\n\nawful\n")
        >>> read_texts(path)
        ['a fine film', 'awful']
    """
    import sys

    if source is None or str(source) == "-":
        return [line.rstrip("\r\n") for line in sys.stdin.read().splitlines() if line.strip()]
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"input file {path} not found")
    if table_kind(path) is not None:
        return read_table(path, text_column=text_column, label_column=None)[0]
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def is_missing(value: Any) -> bool:
    """Whether a cell is missing (None or NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def cell_to_text(value: Any) -> str:
    """A cell as text (missing: the empty string)."""
    if is_missing(value):
        return ""
    return value if isinstance(value, str) else str(value)
