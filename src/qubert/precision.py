"""Numeric precision of the encoder: ``fp32``, ``bf16`` or ``fp16`` autocast, and what ``auto`` means.

The encoder (feature extraction, frozen bottom layers, trainable layers) may run under
``torch.autocast``; the classification head never does: :class:`~qubert.modeling.QubertForSequenceClassification`
turns autocast off around it, so the quantum simulator always computes in float32 / float64.

``auto`` picks ``bf16`` where the hardware runs it natively (CPUs with AVX512-BF16 or AMX, CUDA
GPUs that report bfloat16 support) and ``fp32`` elsewhere. ``bf16`` asked of hardware without it
and ``fp16`` on a CPU are refused with :class:`PrecisionError`.

Example:
    >>> resolve_precision("fp32")
    'fp32'
    >>> resolve_precision("auto") in ("bf16", "fp32")
    True
    >>> with autocast("fp32", "cpu"):
    ...     torch.ones(2, 2) @ torch.ones(2, 2)
    tensor([[2., 2.],
            [2., 2.]])
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

__all__ = ["PRECISIONS", "PrecisionError", "autocast", "bf16_supported", "compute_dtype", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(ValueError):
    """A precision the hardware cannot run (one-line message)."""


def _cpu_has_native_bf16() -> bool:
    # torch.cpu exposes these checks (private names, stable since 2.1); /proc/cpuinfo is the fallback.
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, name, None)
        if check is not None and check():
            return True
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            flags = fh.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def bf16_supported(device: str | torch.device = "cpu") -> bool:
    """True when ``device`` computes bfloat16 natively (not emulated at a loss of speed)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return _cpu_has_native_bf16()


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precision(precision: str, device: str | torch.device | None = None) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``precision`` on ``device`` (default: CUDA if present, else CPU).

    Raises:
        PrecisionError: unknown name, ``bf16`` without hardware support, ``fp16`` without a GPU.
    """
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    device = torch.device(device) if device is not None else _default_device()
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if precision == "bf16" and not bf16_supported(device):
        where = "this GPU" if device.type == "cuda" else "this CPU (no AVX512-BF16 or AMX)"
        raise PrecisionError(f"precision bf16 is not supported natively on {where}; use --precision fp32 or auto")
    if precision == "fp16" and device.type != "cuda":
        raise PrecisionError("precision fp16 needs a CUDA GPU; on a CPU use --precision bf16 (where supported) or fp32")
    return precision


def compute_dtype(precision: str) -> torch.dtype:
    """The autocast dtype of a resolved precision (``fp32`` -> float32).

    Example:
        >>> compute_dtype("bf16")
        torch.bfloat16
    """
    return _DTYPES[precision]


@contextlib.contextmanager
def autocast(precision: str, device: str | torch.device) -> Iterator[None]:
    """``torch.autocast`` to the precision's dtype on ``device``; a no-op for ``fp32``."""
    device_type = torch.device(device).type
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device_type, dtype=compute_dtype(precision)):
        yield
