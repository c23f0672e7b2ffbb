"""Vectorised single-qubit gate matrices, PennyLane's conventions.

Every function takes a tensor of angles of any shape ``S`` and returns matrices of shape
``S + (2, 2)``, so one call builds the gates of a whole layer (and a whole batch) at once.

Example:
    >>> import torch
    >>> ry(torch.tensor([0.0, 3.14159265])).shape
    torch.Size([2, 2, 2])
"""

from __future__ import annotations

import math

import torch

_SQRT_HALF = 1.0 / math.sqrt(2.0)


def _stack(entries: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(entries, dim=-1).unflatten(-1, (2, 2))


def ry_cs(c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """RY from the cosine and sine of half the angle (lets a caller evaluate trig once per call)."""
    return _stack([c, -s, s, c])


def rx_cs(c: torch.Tensor, s: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    zero = torch.zeros_like(c)
    return torch.complex(_stack([c, zero, zero, c]), _stack([zero, -s, -s, zero])).to(dtype)


def rz_cs(c: torch.Tensor, s: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    zero = torch.zeros_like(c)
    return torch.complex(_stack([c, zero, zero, c]), _stack([-s, zero, zero, s])).to(dtype)


def ry(theta: torch.Tensor) -> torch.Tensor:
    """RY(theta) = [[cos, -sin], [sin, cos]](theta / 2); real."""
    return ry_cs(torch.cos(theta / 2), torch.sin(theta / 2))


def rx(theta: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """RX(theta) = [[cos, -i sin], [-i sin, cos]](theta / 2)."""
    return rx_cs(torch.cos(theta / 2), torch.sin(theta / 2), dtype)


def rz(theta: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """RZ(theta) = diag(exp(-i theta / 2), exp(i theta / 2))."""
    return rz_cs(torch.cos(theta / 2), torch.sin(theta / 2), dtype)


def rot(phi: torch.Tensor, theta: torch.Tensor, omega: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi), as ``qml.Rot``."""
    return rz(omega, dtype) @ ry(theta).to(dtype) @ rz(phi, dtype)


def hadamard(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The Hadamard matrix broadcast to ``shape + (2, 2)``."""
    h = torch.tensor([[_SQRT_HALF, _SQRT_HALF], [_SQRT_HALF, -_SQRT_HALF]], dtype=torch.float64, device=device).to(dtype)
    return h.expand(*shape, 2, 2)


def gate_matrix(name: str, angles: list[torch.Tensor], dtype: torch.dtype, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Matrices of gate ``name`` for a stack of angle tensors (one tensor per gate parameter)."""
    if name == "H":
        return hadamard(shape, dtype, device)
    if name == "RY":
        return ry(angles[0]).to(dtype)
    if name == "RX":
        return rx(angles[0], dtype)
    if name == "RZ":
        return rz(angles[0], dtype)
    if name == "Rot":
        return rot(*angles, dtype)
    raise ValueError(f"unknown single-qubit gate {name!r}")
