"""Pooled encoder features, computed once and cached on disk for frozen-encoder training.

With the encoder frozen, every epoch, every head and every seed sees the same pooled vectors, so
they are computed once (eval mode, ``torch.inference_mode()``, batches sorted by length) and stored
as safetensors files under ``<cache_dir>/embeddings/``. The key covers everything the vectors
depend on: the encoder's identity (a hash of its weights), the pooling, the tokenisation length and
the data set split's fingerprint. Files are written atomically, one process at a time per key
(:meth:`EmbeddingCache.lock`: a second process waits, then reads the first one's file), and a file that does not match what
is asked for (wrong row count, unreadable) is recomputed, never trusted.

Example:
    >>> from qubert.embeddings import EmbeddingCache, cached_features
    >>> cache = EmbeddingCache("/tmp/qubert-cache")  # doctest: +SKIP
    >>> feats, hit = cached_features(model, tokenizer, texts, fingerprint=bundle.fingerprint("train"),
    ...                              split="train", cache=cache)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch

from qubert.files import atomic_path, exclusive_lock, is_disk_full

if TYPE_CHECKING:
    from qubert.modeling import QubertForSequenceClassification

__all__ = ["ENV_CACHE_DIR", "EmbeddingCache", "cache_key", "cached_features", "default_cache_dir", "encode_texts", "encoding_pass", "length_sorted_batches"]

ENV_CACHE_DIR = "QUBERT_CACHE_DIR"
_FORMAT_VERSION = "1"


def default_cache_dir() -> Path:
    """``$QUBERT_CACHE_DIR``, else ``~/.cache/qubert``.

    Example:
        >>> default_cache_dir().name in ("qubert",) or "QUBERT_CACHE_DIR" in os.environ
        True
    """
    value = os.environ.get(ENV_CACHE_DIR, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "qubert"


def cache_key(*, encoder_id: str, pooling: str, max_length: int, fingerprint: str, split: str, precision: str = "fp32") -> str:
    """File stem for one split's features: readable prefix + hash of everything they depend on.

    Features computed under bf16 autocast get their own key, so they never mix with fp32 ones.

    Example:
        >>> cache_key(encoder_id="ab12", pooling="mean", max_length=64, fingerprint="f00", split="train")[:14]
        'train-mean-64-'
    """
    parts = [_FORMAT_VERSION, encoder_id, pooling, str(max_length), fingerprint, split]
    if precision != "fp32":  # fp32 keeps the keys it always had
        parts.append(precision)
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]
    return f"{split}-{pooling}-{max_length}-{digest}"


class EmbeddingCache:
    """A folder of ``<key>.safetensors`` files, each one ``features`` tensor ``(N, hidden)``.

    Args:
        root: cache directory (default :func:`default_cache_dir`); files go to ``root/<subdir>``.
        subdir: ``embeddings`` (pooled features) or another kind of cached tensors
            (:mod:`qubert.layer_cache` keeps bottom-layer hidden states in ``hidden_states``).

    Example:
        >>> import tempfile
        >>> cache = EmbeddingCache(tempfile.mkdtemp())
        >>> path = cache.save("k", torch.ones(2, 3), {"split": "train"})
        >>> cache.load("k", n_rows=2).shape, cache.load("k", n_rows=5)
        (torch.Size([2, 3]), None)
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, subdir: str = "embeddings") -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.directory = self.root / subdir

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def lock(self, key: str):
        """An inter-process lock for ``key`` (a context manager): hold it while computing the entry.

        Example:
            >>> with cache.lock("k"):  # doctest: +SKIP
            ...     if cache.load("k") is None:
            ...         cache.save("k", compute_features())
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        return exclusive_lock(self.directory / f".{key}.lock")

    def load(self, key: str, n_rows: int | None = None) -> torch.Tensor | None:
        """The cached features, or ``None`` when absent, unreadable or of the wrong row count."""
        tensors = self.load_tensors(key)
        features = tensors.get("features") if tensors is not None else None
        if features is None or features.dim() != 2 or (n_rows is not None and features.shape[0] != n_rows):
            return None
        return features

    def save(self, key: str, features: torch.Tensor, metadata: dict[str, str] | None = None) -> Path:
        """Write atomically (temporary file, then ``os.replace``)."""
        return self.save_tensors(key, {"features": features.detach().float()}, metadata)

    def load_tensors(self, key: str) -> dict[str, torch.Tensor] | None:
        """All tensors of one file, or ``None`` when it is absent or unreadable."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError):
            return None  # a damaged file is recomputed and overwritten, never trusted

    def save_tensors(self, key: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
        """Write named tensors atomically (temporary file, then ``os.replace``)."""
        from safetensors.torch import save_file

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        try:
            with atomic_path(path, make_parents=False) as tmp:
                meta = {k: str(v) for k, v in (metadata or {}).items()}
                save_file({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, str(tmp), metadata=meta)
        except Exception as err:
            # safetensors reports a full disk as text without a file name: name the cache folder.
            if is_disk_full(err):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.directory)) from err
            raise
        return path


def length_sorted_batches(tokenizer, texts: Sequence[str], *, max_length: int, batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """``(row indices, padded batch)`` over ``texts``, longest first, each batch padded to its own
    longest text only (so little compute goes into padding).

    Example:
        >>> from transformers import AutoTokenizer  # doctest: +SKIP
        >>> [idx for idx, _ in length_sorted_batches(tokenizer, ["a", "a b c", "a b"], max_length=8, batch_size=2)]  # doctest: +SKIP
        [[1, 2], [0]]
    """
    encodings = tokenizer(list(texts), truncation=True, max_length=max_length)
    order = sorted(range(len(texts)), key=lambda i: len(encodings["input_ids"][i]), reverse=True)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encodings]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, tokenizer.pad({k: [encodings[k][i] for i in idx] for k in keys}, return_tensors="pt")


def encode_texts(
    model: "QubertForSequenceClassification",
    tokenizer,
    texts: Sequence[str],
    *,
    max_length: int | None = None,
    batch_size: int = 64,
    progress: bool = True,
    description: str = "Encoding",
) -> torch.Tensor:
    """Pooled encoder features ``(len(texts), hidden)`` in input order, as float32.

    Runs the encoder in eval mode under ``torch.inference_mode()`` (and in the model's
    ``config.precision``); texts are batched in order of token length so little time goes into
    padding. The model's train/eval state is restored.

    Example:
        >>> feats = encode_texts(model, tokenizer, ["good film", "bad film"], progress=False)  # doctest: +SKIP
        >>> feats.shape  # doctest: +SKIP
        torch.Size([2, 384])
    """
    texts = list(texts)
    max_length = int(max_length or model.config.max_length)
    hidden = model.config.encoder.hidden_size
    if not texts:
        return torch.zeros(0, hidden)
    device = next(model.parameters()).device
    out = torch.empty(len(texts), hidden)
    with encoding_pass(model, len(texts), progress=progress, description=description) as advance:
        for idx, batch in length_sorted_batches(tokenizer, texts, max_length=max_length, batch_size=batch_size):
            batch = {k: v.to(device) for k, v in batch.items()}
            feats = model.encode(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))
            out[torch.tensor(idx)] = feats.float().cpu()
            advance(len(idx))
    return out.clone()  # a normal tensor (not an inference tensor) that autograd may use


@contextlib.contextmanager
def encoding_pass(model: "QubertForSequenceClassification", total: int, *, progress: bool, description: str) -> Iterator[Callable[[int], None]]:
    """One pass of the encoder over ``total`` texts: eval mode, inference mode and (optionally) a
    progress bar; yields ``advance(n)`` for the bar. The model's train/eval state is restored.

    Example:
        >>> with encoding_pass(model, len(texts), progress=False, description="Encoding") as advance:  # doctest: +SKIP
        ...     advance(len(texts))
    """
    was_training = model.training
    model.eval()
    bar = _progress_bar(total, description) if progress and total else None
    try:
        with torch.inference_mode():
            yield (lambda n: bar[0].advance(bar[1], n)) if bar is not None else (lambda n: None)
    finally:
        if bar is not None:
            bar[0].stop()
        model.train(was_training)


def _progress_bar(total: int, description: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("texts"), TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
    )
    task = bar.add_task(description, total=total)
    bar.start()
    return bar, task


def cached_features(
    model: "QubertForSequenceClassification",
    tokenizer,
    texts: Sequence[str],
    *,
    fingerprint: str,
    split: str,
    cache: EmbeddingCache | None = None,
    encoder_id: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> tuple[torch.Tensor, bool]:
    """Features for one split from the cache, encoding and storing them on a miss.

    Args:
        model, tokenizer: the classifier whose (frozen) encoder and pooling make the features.
        texts: the split's texts, in order.
        fingerprint: the split's fingerprint (``DatasetBundle.fingerprint(split)``).
        split: split name (part of the key and the file name).
        cache: the cache (default: one at :func:`default_cache_dir`).
        encoder_id: precomputed :func:`qubert.modeling.encoder_identity` (hashing weights takes ~0.1 s).
        batch_size, progress: encoding options.

    Returns:
        ``(features, hit)``: hit is True when the features came from disk.
    """
    from qubert.modeling import encoder_identity

    cache = cache or EmbeddingCache()
    encoder_id = encoder_id or encoder_identity(model.encoder)
    max_length = int(model.config.max_length)
    precision = getattr(model.config, "precision", "fp32")
    key = cache_key(encoder_id=encoder_id, pooling=model.config.pooling, max_length=max_length, fingerprint=fingerprint, split=split, precision=precision)
    features = cache.load(key, n_rows=len(texts))
    if features is not None:
        return features, True
    with cache.lock(key):  # another process encoding the same split: wait, then read its file
        features = cache.load(key, n_rows=len(texts))
        if features is not None:
            return features, True
        features = encode_texts(model, tokenizer, texts, max_length=max_length, batch_size=batch_size, progress=progress, description=f"Encoding {split}")
        metadata = {
            "encoder": str(model.config.encoder_name_or_path), "encoder_id": encoder_id, "pooling": model.config.pooling,
            "max_length": str(max_length), "fingerprint": fingerprint, "split": split, "rows": str(len(texts)),
            "precision": precision,
        }
        cache.save(key, features, metadata)
    return features, False
