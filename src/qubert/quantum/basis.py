"""Index tables over computational basis states, shared by the simulators.

Wire 0 is the most significant bit of a basis-state index. Every table here is built once per
circuit (the simulators cache them) and turns a gate pattern into a single gather.

Example:
    >>> cnot_permutation(2, [(0, 1)]).tolist()   # |10> <-> |11>
    [0, 1, 3, 2]
"""

from __future__ import annotations

import torch


def basis_bits(n_qubits: int) -> torch.Tensor:
    """``(2**n, n)`` bits of every basis state, wire 0 first."""
    return (torch.arange(2**n_qubits)[:, None] >> torch.arange(n_qubits - 1, -1, -1)) & 1


def cnot_permutation(n_qubits: int, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """Index ``p`` with ``(CNOT_k ... CNOT_1 psi)[x] = psi[p[x]]`` for the CNOTs ``pairs`` in order."""
    index = torch.arange(2**n_qubits)
    for control, target in reversed(pairs):  # psi_k[x] = psi_{k-1}[f_k(x)]: compose right to left
        c_bit, t_bit = 1 << (n_qubits - 1 - control), 1 << (n_qubits - 1 - target)
        index = torch.where(index & c_bit != 0, index ^ t_bit, index)
    return index


def cnot_permutation_and_inverse(n_qubits: int, pairs: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`cnot_permutation` and its inverse (``state[perm][inverse] == state``)."""
    perm = cnot_permutation(n_qubits, pairs)
    return perm, torch.argsort(perm)


def product_index(k: int) -> torch.Tensor:
    """For (..., k, 2) vectors flattened to (..., 2k): entry [x, q] picks qubit q's amplitude of bit x_q,
    so gather + prod over q gives the product state."""
    return (torch.arange(k) * 2 + basis_bits(k)).reshape(-1)


def kron_index(k: int, transpose: bool = False) -> torch.Tensor:
    """For (..., k, 2, 2) matrices flattened to (..., 4k): entry [i, j, q] picks M_q[i_q, j_q]
    (``M_q[j_q, i_q]`` with ``transpose``), so gather + prod over q gives the Kronecker product."""
    bits = basis_bits(k)
    rows, cols = (bits[None, :, :], bits[:, None, :]) if transpose else (bits[:, None, :], bits[None, :, :])
    return (torch.arange(k) * 4 + rows * 2 + cols).reshape(-1)


def observable_signs(n_qubits: int, measurement: str) -> torch.Tensor | None:
    """``(2**n, n_outputs)`` eigenvalue of each measured observable on each basis state
    (``"z"``: Z_q; ``"zz"``: Z_q Z_{q+1}); None for ``"probs"``."""
    if measurement == "probs":
        return None
    signs = 1 - 2 * basis_bits(n_qubits)
    return signs if measurement == "z" else signs[:, :-1] * signs[:, 1:]


def half_signs(n_qubits: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Z eigenvalues ``(2**k, k)`` of each half of the register (wires ``0..k1-1`` and ``k1..n-1``,
    ``k1 = n - n // 2``): the readout of :func:`half_expectations` without a ``(2**n, n)`` table."""
    return tuple((1 - 2 * basis_bits(k)).to(dtype) for k in (n_qubits - n_qubits // 2, n_qubits // 2))


def half_expectations(probs: torch.Tensor, signs: tuple[torch.Tensor, torch.Tensor], measurement: str) -> torch.Tensor:
    """<Z_q> (``"z"``) or <Z_q Z_q+1> (``"zz"``) from probabilities ``(batch, 2**n)``: each Z_q
    depends on one half of the register, so it reads that half's marginal (ZZ across the halves
    is one rank-one term). ``signs``: :func:`half_signs` in the dtype of ``probs``.

    Example:
        >>> probs = torch.tensor([[0.0, 1.0, 0.0, 0.0]])   # |01>
        >>> half_expectations(probs, half_signs(2), "z").tolist(), half_expectations(probs, half_signs(2), "zz").tolist()
        ([[1.0, -1.0]], [[-1.0]])
    """
    s1, s2 = signs
    grid = probs.view(probs.shape[0], s1.shape[0], s2.shape[0])
    m1, m2 = grid.sum(2), grid.sum(1)
    if measurement == "z":
        return torch.cat([m1 @ s1, m2 @ s2], 1)
    parts = [m1 @ (s1[:, :-1] * s1[:, 1:])]
    if s2.shape[1]:
        parts.append(((grid @ s2[:, 0]) * s1[:, -1]).sum(1, keepdim=True))  # Z Z across the halves
        parts.append(m2 @ (s2[:, :-1] * s2[:, 1:]))
    return torch.cat(parts, 1)
