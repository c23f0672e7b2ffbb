"""The measurement step: measured values from basis-state probabilities, exactly or from finite shots.

A device does not return <Z>; it returns ``shots`` bit strings. :func:`estimate_from_shots` draws
them from the probabilities (one batched ``torch.multinomial`` with a seeded generator) and
computes every measured value from the counts, as one would from a device's histogram:
<Z_i> = (n(bit i = 0) - n(bit i = 1)) / shots, <Z_i Z_{i+1}> from the parity of bits i, i+1, and
probabilities as frequencies. The standard error of <Z> is sqrt((1 - <Z>**2) / shots).

Example:
    >>> import torch
    >>> from qubert.quantum import Circuit
    >>> c = Circuit(n_qubits=1, n_layers=0)                       # H RY(x): <Z> = -sin(x)
    >>> probs = torch.tensor([[0.5, 0.5]])
    >>> expectations_from_probabilities(probs, c)
    tensor([[0.]])
    >>> g = torch.Generator().manual_seed(0)
    >>> estimate_from_shots(probs, c, shots=1000, generator=g).abs().item() < 0.2
    True
"""

from __future__ import annotations

import torch

from qubert.quantum.circuit import Circuit

# Upper bound on sampled indices held at once (rows x shots), so a million shots stay in memory.
_MAX_SAMPLES_PER_CHUNK = 1 << 24


class ShotsError(ValueError):
    """An invalid number of shots."""


def check_shots(shots: int | None) -> int | None:
    """``shots`` if it is ``None`` (exact) or a positive integer, else a :class:`ShotsError`.

    Example:
        >>> check_shots(1024)
        1024
    """
    if shots is None:
        return None
    if isinstance(shots, bool) or not isinstance(shots, int) or shots <= 0:
        raise ShotsError(f"shots must be a positive integer (or None for exact expectation values), got {shots!r}")
    return shots


def make_generator(seed: int | torch.Generator | None) -> torch.Generator:
    """A CPU generator: ``seed`` itself if it is one, seeded by ``seed``, or (``None``) by torch's global RNG.

    Seeding from the global RNG keeps runs reproducible under ``torch.manual_seed``.
    """
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, a torch.Generator or None, got {seed!r}")
    return torch.Generator().manual_seed(seed)


def measurement_matrix(circuit: Circuit, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
    """(2**n, n_outputs) eigenvalues of the measured observables on each basis state (``None`` for probs).

    Example:
        >>> measurement_matrix(Circuit(n_qubits=2, measurement="zz"))
        tensor([[ 1.],
                [-1.],
                [-1.],
                [ 1.]])
    """
    if circuit.measurement == "probs":
        return None
    n = circuit.n_qubits
    bits = (torch.arange(2**n, device=device)[:, None] >> torch.arange(n - 1, -1, -1, device=device)) & 1
    signs = (1 - 2 * bits).to(dtype)  # eigenvalue of Z on wire q (wire 0 = most significant bit)
    return signs if circuit.measurement == "z" else signs[:, :-1] * signs[:, 1:]


def expectations_from_probabilities(probs: torch.Tensor, circuit: Circuit) -> torch.Tensor:
    """Exact measured values ``(batch, n_outputs)`` from probabilities ``(batch, 2**n)``; differentiable."""
    matrix = measurement_matrix(circuit, probs.device, probs.dtype)
    return probs if matrix is None else probs @ matrix


def sample_counts(probs: torch.Tensor, shots: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Counts ``(batch, 2**n)`` (in ``probs``' dtype) of ``shots`` samples per row, drawn on the CPU.

    Tiny negative probabilities from rounding are clipped to zero; rows need not sum exactly to one.
    """
    check_shots(shots)
    weights = probs.detach().to("cpu", torch.float64).clamp_min(0)
    rows, dim = weights.shape
    counts = torch.zeros(rows, dim, dtype=torch.float64)
    chunk = max(1, _MAX_SAMPLES_PER_CHUNK // max(rows, 1))
    done = 0
    while done < shots:
        size = min(chunk, shots - done)
        samples = torch.multinomial(weights, size, replacement=True, generator=generator)
        counts.scatter_add_(1, samples, torch.ones(samples.shape, dtype=torch.float64))
        done += size
    return counts.to(device=probs.device, dtype=probs.dtype)


def estimate_from_shots(probs: torch.Tensor, circuit: Circuit, shots: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Measured values ``(batch, n_outputs)`` estimated from ``shots`` samples of ``probs`` (not differentiable)."""
    frequencies = sample_counts(probs, shots, generator) / shots
    return expectations_from_probabilities(frequencies, circuit)


def straight_through(exact: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
    """``sampled`` in the forward pass, the gradient of ``exact`` in the backward pass.

    Training with shots then sees the shot noise in the loss value while the gradient is that of
    the infinite-shot expectation (the estimate is unbiased, so the two agree on average); it costs
    no extra circuit evaluations. For gradients that carry shot noise too, as on a device, use the
    parameter-shift rule, which evaluates the shifted circuits with shots.
    """
    return exact + (sampled - exact).detach()
