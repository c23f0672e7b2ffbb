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
