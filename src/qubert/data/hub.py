"""The Hugging Face Hub: the one offline check (``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE``,
``TRANSFORMERS_OFFLINE``), a bounded reachability probe, and loading a data set from it.

Example:
    >>> source = "hub" if hub_available() else "local files"
"""

from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlparse

from qubert.data.bundle import DataError
from qubert.data.tables import cell_to_text, is_missing, RawSplit


HUB_PROBE_TIMEOUT_S = 3.0
SPLIT_ALIASES = {
    "train": ("train",),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test",),
}


def hub_available() -> bool:
    """True when the Hugging Face Hub may be used: no offline flag is set and its endpoint answers.

    Example:
        >>> source = "hub" if hub_available() else "local files"
    """
    return hub_offline_reason() is None and hub_reachable()


OFFLINE_VARIABLES = {
    "datasets": ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"),
    "models": ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"),
}


def hub_offline_reason(what: str = "datasets") -> str | None:
    """The offline flag that forbids the Hub for ``what`` (``VAR=value``), or None.

    ``datasets`` honours ``HF_HUB_OFFLINE`` and ``HF_DATASETS_OFFLINE``, ``models`` (encoders,
    tokenizers) ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE``, as the Hugging Face libraries do.

    Example:
        >>> OFFLINE_VARIABLES["models"]
        ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE')
        >>> reason = hub_offline_reason("datasets")  # e.g. 'HF_DATASETS_OFFLINE=1', or None
    """
    for var in OFFLINE_VARIABLES[what]:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var}={os.environ[var]}"
    return None


def hub_unreachable_reason(what: str = "models", timeout: float = 1.0) -> str | None:
    """Why the Hub cannot be used now for ``what``: ``offline: VAR=value`` (a flag), ``offline``
    (no answer within ``timeout`` seconds), or None when it can."""
    offline = hub_offline_reason(what)
    if offline is not None:
        return f"offline: {offline}"
    return None if hub_reachable(timeout=timeout) else "offline"


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Probe the Hub endpoint in a daemon thread, so neither DNS nor connect can hang us."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(ok)


def load_hub(
    hub_id: str, config: str | None, text_column: str, label_column: str
) -> tuple[dict[str, RawSplit], list[str] | None]:
    """Splits from ``datasets.load_dataset`` and the ClassLabel names, if the label has them."""
    import datasets

    dsd = datasets.load_dataset(hub_id, config) if config else datasets.load_dataset(hub_id)
    origin_base = f"hub:{hub_id}" + (f"/{config}" if config else "")
    out: dict[str, RawSplit] = {}
    names: list[str] | None = None
    for split, aliases in SPLIT_ALIASES.items():
        hub_split = next((a for a in aliases if a in dsd), None)
        if hub_split is None:
            continue
        ds = dsd[hub_split]
        for role, column in (("text", text_column), ("label", label_column)):
            if column not in ds.column_names:
                found = ", ".join(repr(c) for c in ds.column_names)
                raise DataError(
                    f"{origin_base} [{hub_split}]: no {role} column {column!r}; "
                    f"columns found: {found}"
                )
        labels = list(ds[label_column])
        # Hidden test labels are stored as -1 (e.g. GLUE); such a split is not labelled data.
        if all(is_missing(v) or v == -1 for v in labels):
            continue
        feature = ds.features.get(label_column)
        if names is None and getattr(feature, "names", None):
            names = list(feature.names)
        texts = [cell_to_text(v) for v in ds[text_column]]
        out[split] = RawSplit(texts, labels, f"{origin_base} [{hub_split}]")
    return out, names


def try_hub(
    hub_id: str, config: str | None, text_column: str, label_column: str
) -> tuple[dict[str, RawSplit] | None, list[str] | None, str]:
    """Hub splits, or ``(None, None, reason)`` when offline/unreachable/failing."""
    offline = hub_offline_reason()
    if offline:
        return None, None, f"Hub skipped ({offline})"
    if not hub_reachable():
        return None, None, "Hub unreachable"
    try:
        splits, names = load_hub(hub_id, config, text_column, label_column)
    except DataError:
        raise
    except Exception as err:  # any failure of the Hub path falls through to the local error
        detail = " ".join(str(err).split())[:200]
        return None, None, f"Hub load of {hub_id!r} failed: {type(err).__name__}: {detail}"
    if not splits:
        return None, None, f"Hub data set {hub_id!r} has no labelled train/validation/test split"
    return splits, names, f"hub:{hub_id}" + (f"/{config}" if config else "")
