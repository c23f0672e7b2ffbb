"""Parameter-shift gradients: how a quantum device differentiates a circuit, as a ``torch.autograd.Function``.

A device cannot backpropagate; it can only run circuits. For a gate exp(-i theta P / 2) with a
Pauli word P (RX, RY, RZ, and each of Rot's three rotations) every measured value is
a + b cos(theta) + c sin(theta) in theta, also with noise channels after the gate, so

    d f / d theta = [f(theta + pi/2) - f(theta - pi/2)] / 2      (exact, not a finite difference)

The backward pass evaluates the circuit at every shifted angle: ``2 * n_angles`` circuits per
sample, all in one batch. Angles are taken per gate occurrence (:func:`~qubert.quantum.noise.gate_angles`),
so an input re-uploaded in several gates is shifted in each gate separately and autograd sums the
occurrences. Whatever ``evaluate`` does (shots, noise, trajectories) the shifted circuits get too,
so with shots the gradient carries shot noise, as on hardware.

Example:
    >>> import torch
    >>> angles = torch.tensor([[0.3, 1.2]], dtype=torch.float64, requires_grad=True)
    >>> parameter_shift(torch.cos, angles).sum().backward()      # <Z> after RX(a) on |0> is cos(a)
    >>> torch.allclose(angles.grad, -torch.sin(angles))
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SHIFT = math.pi / 2

Evaluate = Callable[[torch.Tensor], torch.Tensor]


def parameter_shift(evaluate: Evaluate, angles: torch.Tensor, *, max_rows: int | None = None) -> torch.Tensor:
    """``evaluate(angles)``, differentiable by the parameter-shift rule instead of autograd.

    Args:
        evaluate: measured values ``(rows, n_outputs)`` of circuits with per-row gate angles
            ``(rows, n_angles)``; called without autograd.
        angles: gate angles ``(batch, n_angles)``; gradients flow back to whatever built them.
        max_rows: evaluate the ``2 * n_angles * batch`` shifted circuits in chunks of at most this
            many rows (bounds memory; ``None``: one call).
    """
    if angles.dim() != 2:
        raise ValueError(f"angles must have shape (batch, n_angles), got {tuple(angles.shape)}")
    return _ParameterShift.apply(angles, evaluate, max_rows)


def parameter_shift_jacobian(evaluate: Evaluate, angles: torch.Tensor, *, max_rows: int | None = None) -> torch.Tensor:
    """d evaluate / d angles by the shift rule, shape ``(batch, n_angles, n_outputs)``.

    Example:
        >>> jac = parameter_shift_jacobian(torch.sin, torch.zeros(1, 2, dtype=torch.float64))
        >>> jac[0]
        tensor([[1., 0.],
                [0., 1.]], dtype=torch.float64)
    """
    batch, n_angles = angles.shape
    angles = angles.detach()
    if n_angles == 0:
        with torch.no_grad():
            n_outputs = evaluate(angles).shape[-1]
        return angles.new_zeros(batch, 0, n_outputs)
    shifts = torch.eye(n_angles, dtype=angles.dtype, device=angles.device) * SHIFT
    shifted = (angles[:, None, None, :] + torch.stack([shifts, -shifts])[None]).reshape(-1, n_angles)
    rows = shifted.shape[0] if max_rows is None else max(1, int(max_rows))
    with torch.no_grad():
        values = torch.cat([evaluate(part) for part in shifted.split(rows)])
    values = values.reshape(batch, 2, n_angles, values.shape[-1])
    return (values[:, 0] - values[:, 1]) / 2


class _ParameterShift(torch.autograd.Function):
    @staticmethod
    def forward(ctx, angles: torch.Tensor, evaluate: Evaluate, max_rows: int | None) -> torch.Tensor:
        ctx.evaluate, ctx.max_rows = evaluate, max_rows
        ctx.save_for_backward(angles)
        return evaluate(angles.detach())

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (angles,) = ctx.saved_tensors
        jacobian = parameter_shift_jacobian(ctx.evaluate, angles, max_rows=ctx.max_rows)
        grad = torch.einsum("bso,bo->bs", jacobian, grad_output.to(jacobian.dtype))
        return grad.to(angles.dtype), None, None
