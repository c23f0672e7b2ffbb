"""Cached partial fine-tuning: the fixed bottom layers of a ``top<k>`` model run once per split.

In ``--mode top<k>`` only the last k encoder layers (and the head) train; the embeddings and the
bottom ``L - k`` layers never change, so their outputs are computed once per split (eval mode, so
no dropout; ``torch.inference_mode()``; length-sorted batches; the run's ``--precision``) and
stored in the on-disk cache under ``<cache_dir>/hidden_states/``. Training then runs only the top
k layers on them: what is computed is what the uncached ``top<k>`` path computes on the same batches.

Storage is ragged, not padded: one file per split holds ``hidden`` ``(sum of token counts,
hidden)`` with every row's real tokens packed one after another, and ``lengths`` ``(N,)``.
Rows are padded with zeros (and masked) to the longest row of each training batch only. The
tensors are stored in the compute precision (float32, or bfloat16 / float16 under bf16 / fp16).

The bottom layers can run in ONNX Runtime or OpenVINO instead of PyTorch
(:func:`qubert.runtimes.use_bottom_runtime`, ``--runtime``): the key's precision part is then the
runtime's tag (``onnx-fp32``, ``openvino-bf16``; torch keeps ``fp32`` / ``bf16``), so states from
different runtimes never mix; OpenVINO bf16 states are stored in bfloat16, the others in float32.

The key covers the encoder's identity (a hash of its weights), k, the tokenisation length, the
precision (or runtime) and the split's fingerprint; files are written atomically, and a file that
does not match (wrong row count, unreadable) is recomputed, never trusted.

Example:
    >>> from qubert.layer_cache import cached_hidden_states
    >>> states, hit = cached_hidden_states(model, tokenizer, texts, fingerprint=bundle.fingerprint("train"),
    ...                                    split="train", cache_dir=None)  # doctest: +SKIP
    >>> states.lengths.shape, states.hidden.shape  # doctest: +SKIP
    (torch.Size([4000]), torch.Size([98211, 384]))
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch

from qubert.embeddings import EmbeddingCache, encoding_pass, length_sorted_batches

if TYPE_CHECKING:
    from qubert.modeling import QubertForSequenceClassification

__all__ = ["HiddenStateDataset", "HiddenStates", "cached_hidden_states", "collate_hidden_states", "hidden_state_key", "storage_dtype"]

_FORMAT_VERSION = "1"
_STORAGE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def storage_dtype(precision: str) -> torch.dtype:
    """The dtype bottom-layer states computed under ``precision`` (a torch precision or a runtime
    tag, see :func:`qubert.runtimes.runtime_tag`) are stored in: the compute precision, float32 for
    int8 graphs (their outputs are float32).

    Example:
        >>> storage_dtype("bf16"), storage_dtype("openvino-bf16"), storage_dtype("onnx-int8")
        (torch.bfloat16, torch.bfloat16, torch.float32)
    """
    return _STORAGE_DTYPES.get(precision.rpartition("-")[2], torch.float32)


def hidden_state_key(*, encoder_id: str, top_k: int, max_length: int, fingerprint: str, split: str, precision: str) -> str:
    """File stem for one split's bottom-layer outputs.

    Example:
        >>> hidden_state_key(encoder_id="ab", top_k=2, max_length=64, fingerprint="f", split="train", precision="bf16")[:19]
        'train-top2-64-bf16-'
    """
    digest = hashlib.sha256(f"{_FORMAT_VERSION}|{encoder_id}|{top_k}|{max_length}|{fingerprint}|{split}|{precision}".encode()).hexdigest()[:20]
    return f"{split}-top{top_k}-{max_length}-{precision}-{digest}"


@dataclass
class HiddenStates:
    """Packed bottom-layer outputs of one split: row i is ``hidden[offsets[i]:offsets[i + 1]]``."""

    hidden: torch.Tensor
    lengths: torch.Tensor

    def __post_init__(self) -> None:
        self.offsets = torch.zeros(len(self.lengths) + 1, dtype=torch.long)
        torch.cumsum(self.lengths.long(), dim=0, out=self.offsets[1:])

    def __len__(self) -> int:
        return len(self.lengths)

    def row(self, i: int) -> torch.Tensor:
        return self.hidden[self.offsets[i] : self.offsets[i + 1]]


def _compute(model: "QubertForSequenceClassification", tokenizer, texts: Sequence[str], *, max_length: int, batch_size: int,
             precision: str, progress: bool, description: str) -> HiddenStates:
    device = next(model.parameters()).device
    per_row: list[torch.Tensor | None] = [None] * len(texts)
    lengths = torch.zeros(len(texts), dtype=torch.long)
    with encoding_pass(model, len(texts), progress=progress, description=description) as advance:
        for idx, batch in length_sorted_batches(tokenizer, texts, max_length=max_length, batch_size=batch_size):
            batch = {k: v.to(device) for k, v in batch.items()}
            hidden = model.encode_bottom(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))
            row_lengths = batch["attention_mask"].sum(dim=1).tolist()
            stored = hidden.to(storage_dtype(precision)).cpu()
            for j, i in enumerate(idx):
                per_row[i] = stored[j, : row_lengths[j]]
                lengths[i] = row_lengths[j]
            advance(len(idx))
    hidden_size = model.config.encoder.hidden_size
    packed = torch.cat(per_row) if texts else torch.zeros(0, hidden_size, dtype=storage_dtype(precision))
    return HiddenStates(packed.clone(), lengths)


def cached_hidden_states(
    model: "QubertForSequenceClassification",
    tokenizer,
    texts: Sequence[str],
    *,
    fingerprint: str,
    split: str,
    cache_dir: str | None = None,
    encoder_id: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> tuple[HiddenStates, bool]:
    """Bottom-layer outputs for one split from the cache, computing and storing them on a miss.

    Args:
        model, tokenizer: a ``top<k>`` classifier (its ``config.precision`` and ``max_length`` apply;
            so does its bottom runtime, :func:`qubert.runtimes.use_bottom_runtime`, when attached).
        texts: the split's texts, in order.
        fingerprint, split: the split's fingerprint and name (part of the key).
        cache_dir: cache root (default :func:`qubert.embeddings.default_cache_dir`).
        encoder_id: precomputed :func:`qubert.modeling.encoder_identity`.

    Returns:
        ``(states, hit)``; hit is True when the states came from disk.
    """
    from qubert.modeling import encoder_identity
    from qubert.runtimes import runtime_tag

    cache = EmbeddingCache(cache_dir, subdir="hidden_states")
    encoder_id = encoder_id or encoder_identity(model.encoder)
    max_length = int(model.config.max_length)
    precision = runtime_tag(model, bottom=True)  # torch's precision, or the runtime's tag: states never mix
    runtime = getattr(model, "bottom_runtime", None)
    top_k = int(model.trainable_layers)
    key = hidden_state_key(encoder_id=encoder_id, top_k=top_k, max_length=max_length, fingerprint=fingerprint, split=split, precision=precision)
    with cache.lock(key):  # another process building the same split: wait, then read its file
        stored = cache.load_tensors(key)
        if stored is not None and _valid(stored, len(texts), model.config.encoder.hidden_size):
            return HiddenStates(stored["hidden"], stored["lengths"]), True
        states = _compute(model, tokenizer, list(texts), max_length=max_length, batch_size=batch_size, precision=precision,
                          progress=progress, description=f"Bottom layers {split}")
        metadata = {
            "encoder": str(model.config.encoder_name_or_path), "encoder_id": encoder_id, "top_k": top_k,
            "max_length": max_length, "fingerprint": fingerprint, "split": split, "rows": len(texts), "precision": precision,
            "runtime": runtime.runtime if runtime is not None else "torch",
        }
        cache.save_tensors(key, {"hidden": states.hidden, "lengths": states.lengths}, {k: str(v) for k, v in metadata.items()})
    return states, False


def _valid(stored: dict[str, torch.Tensor], n_rows: int, hidden_size: int) -> bool:
    hidden, lengths = stored.get("hidden"), stored.get("lengths")
    return (
        hidden is not None and lengths is not None and lengths.dim() == 1 and len(lengths) == n_rows
        and hidden.dim() == 2 and hidden.shape[1] == hidden_size and int(lengths.sum()) == hidden.shape[0]
    )


class HiddenStateDataset(torch.utils.data.Dataset):
    """Cached bottom-layer outputs + labels for the Trainer; ``lengths`` feed length-grouped sampling."""

    def __init__(self, states: HiddenStates, labels: Sequence[int]) -> None:
        self.states = states
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.lengths = states.lengths.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"hidden_states": self.states.row(i), "labels": self.labels[i]}


def collate_hidden_states(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad a batch of ragged rows with zeros to its longest row, with the matching attention mask.

    Example:
        >>> batch = collate_hidden_states([{"hidden_states": torch.ones(3, 2), "labels": torch.tensor(0)},
        ...                                {"hidden_states": torch.ones(1, 2), "labels": torch.tensor(1)}])
        >>> batch["hidden_states"].shape, batch["attention_mask"].tolist()
        (torch.Size([2, 3, 2]), [[1, 1, 1], [1, 0, 0]])
    """
    longest = max(len(r["hidden_states"]) for r in rows)
    first = rows[0]["hidden_states"]
    hidden = first.new_zeros(len(rows), longest, first.shape[-1])
    mask = torch.zeros(len(rows), longest, dtype=torch.long)
    for j, r in enumerate(rows):
        n = len(r["hidden_states"])
        hidden[j, :n] = r["hidden_states"]
        mask[j, :n] = 1
    return {"hidden_states": hidden, "attention_mask": mask, "labels": torch.stack([torch.as_tensor(r["labels"]) for r in rows])}
