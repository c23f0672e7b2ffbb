"""The ``"analytic"`` strategy: a hand-written backward pass for the paper's kind of circuit.

Why hand-written: at 4-10 qubits the arithmetic of a classification head is tiny and autograd's
per-operation bookkeeping is most of the cost. Circuits made of an H/RY angle encoding, CNOTs and
trainable RY layers (the paper's dressed circuit) have a structure that turns the whole backward
pass into a few matmuls and one gather:

- every angle enters exactly one RY gate, and dRY(t)/dt = RY(t) J / 2 with J = RY(pi) =
  [[0, -1], [1, 0]], which commutes with the RY it differentiates. So the derivative with respect
  to the angle on wire q of layer l is <h, J_q chi> / 2, where chi is the state the layer's
  rotations act on and h the gradient arriving there. J_q pairs up amplitudes and flips one sign of each pair: a
  gather. The input angles are the same with chi the encoded product state.
- every layer is a real orthogonal matrix (a Kronecker product of RYs after a CNOT permutation), so
  the gradient travels back through it with its transpose.

The forward pass keeps the state entering every layer; the backward pass sweeps the gradient back
through the layers and evaluates every inner product at once. Up to
:data:`FULL_LAYER_MAX_QUBITS` qubits a layer is one ``2**n x 2**n`` matrix (its CNOTs folded into
its rows); above, two Kronecker factors applied from both sides of the state seen as a matrix.

Example:
    >>> import torch
    >>> from qubert.quantum import Circuit, simulate
    >>> c = Circuit(n_qubits=8, n_layers=2)
    >>> analytic_structure(c) is not None
    True
    >>> simulate(c, torch.zeros(3, 8), c.init_weights(), strategy="analytic").shape
    torch.Size([3, 8])
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from qubert.quantum.basis import cnot_permutation_and_inverse, kron_index, observable_signs, product_index
from qubert.quantum.circuit import Circuit, Param

# Largest register of the analytic strategy: from 11 qubits on, the autograd "gates" strategy was
# as fast on the 2-core benchmark machine (batch 64, 2 layers: 5.0 vs 6.1 ms at 11 qubits).
MAX_QUBITS = 10
# Up to this size a layer is one 2**n x 2**n matrix; above, two Kronecker factors (no 4**n memory).
FULL_LAYER_MAX_QUBITS = 6


@dataclass(frozen=True)
class Structure:
    """A circuit the analytic strategy can run: ``H^hadamards[q] RY(x_q)`` on every wire q, then per
    layer l its CNOTs ``layers[l]`` (control, target) followed by RY(w[l, q]) on every wire q, then
    the ``trailing`` CNOTs."""

    n_qubits: int
    hadamards: tuple[int, ...]
    layers: tuple[tuple[tuple[int, int], ...], ...]
    trailing: tuple[tuple[int, int], ...]


@functools.lru_cache(maxsize=256)
def analytic_structure(circuit: Circuit) -> Structure | None:
    """The circuit as encoding + layers when the analytic strategy applies to it, else None: a
    circuit of :func:`rotation_structure` with at most :data:`MAX_QUBITS` qubits."""
    return None if circuit.n_qubits > MAX_QUBITS else rotation_structure(circuit)


@functools.lru_cache(maxsize=256)
def rotation_structure(circuit: Circuit) -> Structure | None:
    """The circuit as encoding + layers when it is of the paper's family (any size), else None.

    The family: real circuits without re-uploading whose encoding is H...H RY(x_q) on every wire q
    and whose layers are CNOTs, then RY(w[l, q]) on every wire q in any order (the paper's
    brickwork, and basic_entangler with ``rotation="ry"``, with any entanglement and
    initialisation). The ``analytic`` and ``adjoint`` strategies run it.
    """
    n = circuit.n_qubits
    if circuit.reupload or not circuit.is_real:
        return None
    ops = circuit.operations()
    hadamards, encoded, start = [0] * n, [False] * n, 0
    while not all(encoded):
        if start == len(ops):
            return None
        op, start = ops[start], start + 1
        q = op.wires[0]
        if op.name == "H" and not encoded[q]:
            hadamards[q] += 1
        elif op.name == "RY" and op.params[0] == Param("x", q) and not encoded[q]:
            encoded[q] = True
        else:
            return None
    layers, pairs, wires = [], [], set()  # wires: those rotated so far in the layer being read
    for op in ops[start:]:
        if op.name == "CNOT" and not wires:
            pairs.append(op.wires)
        elif op.name == "RY" and op.wires[0] not in wires and op.params[0] == Param("w", len(layers) * n + op.wires[0]):
            wires.add(op.wires[0])
            if len(wires) == n:
                layers.append(tuple(pairs))
                pairs, wires = [], set()
        else:
            return None
    if len(layers) * n != circuit.n_weights:
        return None
    return Structure(n, tuple(hadamards), tuple(layers), tuple(pairs))


def estimate_analytic_memory(circuit: Circuit, batch_size: int, itemsize: int) -> int:
    """Bytes the analytic strategy may hold at its peak (an upper bound; the measurement's sign table aside).

    Forward: the state entering every layer and the final state. Backward: the gradient arriving at
    every layer and, for one block, the stacked states, their partner amplitudes and signed products
    (``slots * n`` states each), for two blocks the stacked states and gradients and the copies their
    batch-summed products make; a few states of temporaries; the per-circuit index tables.
    """
    n, layers = circuit.n_qubits, circuit.n_layers
    dim, slots = 2**n, layers + 1
    if n <= FULL_LAYER_MAX_QUBITS:
        states = 2 * layers + 2 * slots + 3 * slots * n + 6
        tables = layers * dim * dim * (8 * n + itemsize) * 2 + 16 * slots * n * dim
    else:
        states = 6 * layers + 10
        tables = 40 * dim * slots
    return itemsize * batch_size * dim * states + tables


# ---------------------------------------------------------------------------- per-circuit tables
@dataclass
class _Tables:
    """Every constant the analytic strategy needs for one circuit, device and dtype (built once).

    Up to FULL_LAYER_MAX_QUBITS qubits the register is one block and each layer one matrix (its
    CNOTs folded into its rows); above, it is two blocks of wires (the state seen as a d1 x d2
    matrix) and a layer is a CNOT permutation, then a Kronecker factor per block.
    """

    n_qubits: int
    n_layers: int
    weight_shape: torch.Size
    blocks: list[int]  # wires per block (1 or 2 blocks)
    encoding_offset: torch.Tensor  # (n, 2): cos(x/2 + offset) = RY(x) H^k |0> per wire
    product_index: torch.Tensor  # per block (dim * wires) entries of the (n, 2) encoded vectors
    rotation_offset: torch.Tensor  # (4,): cos(t/2 + offset) = RY(t) entries [c, -s, s, c]
    factor_index: torch.Tensor  # one block: (layers * D * D * n,) into the RY entries; two: per block, concatenated
    permutations: list[tuple[torch.Tensor, torch.Tensor] | None]  # two blocks: per layer, CNOT perm and inverse
    readout: torch.Tensor | None  # (D, n_outputs) signs, trailing CNOTs folded in; None for probs
    readout_grad: torch.Tensor | None  # 2 * readout.T
    trailing: tuple[torch.Tensor, torch.Tensor] | None  # CNOTs after the last layer: perm, inverse
    derivative_index: torch.Tensor | None  # one block: ((layers + 1) * n * D,) into the stacked states (see _derivative_pairs)
    derivative_sign: torch.Tensor | None  # one block: the matching signs
    selection: torch.Tensor | None  # two blocks: (d1^2 + d2^2, n) pair selection (see pair_selection)

    @property
    def one_block(self) -> bool:
        return len(self.blocks) == 1


def _derivative_pairs(k: int, permutation: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(source, sign)``, each (k, 2**k), with ``<h, J_q chi> / 2 = sum_j sign[q, j] * chi[source[q, j]] * h[j]``.

    J = [[0, -1], [1, 0]] on wire q pairs each basis state with the one that differs in bit q,
    negated when bit q is 0. With ``permutation = (perm, inverse)``, chi and h are the state and its
    gradient before the CNOT permutation ``chi_after = chi[perm]`` that precedes the rotations (folded in).
    """
    d = 2**k
    inverse = torch.arange(d) if permutation is None else permutation[1]
    i = inverse[None, :].expand(k, d)  # index after the permutation of state entry j
    mask = 1 << (k - 1 - torch.arange(k))[:, None]
    source = i ^ mask if permutation is None else permutation[0][i ^ mask]
    return source, torch.where((i & mask) != 0, 0.5, -0.5).double()


def pair_selection(k: int) -> torch.Tensor:
    """(d * d, k) matrix W with ``(S.view(-1) @ W)[q] = <h, J_q chi> / 2`` for ``S[i, j] = chi[i] h[j]``
    (summed over any batch)."""
    source, sign = _derivative_pairs(k)
    d = 2**k
    selection = torch.zeros(d * d, k, dtype=torch.float64)
    selection[source * d + torch.arange(d), torch.arange(k)[:, None].expand(k, d)] = sign
    return selection


@functools.lru_cache(maxsize=64)
def _tables(circuit: Circuit, device: torch.device, dtype: torch.dtype) -> _Tables:
    structure = analytic_structure(circuit)
    n, dim, layers = circuit.n_qubits, 2**circuit.n_qubits, structure.layers
    blocks = [n] if n <= FULL_LAYER_MAX_QUBITS else [n - n // 2, n // 2]
    starts = [0, blocks[0]]
    hadamard_angle = torch.tensor([[math.pi / 4 * (k % 2)] for k in structure.hadamards], dtype=torch.float64)  # H|0> = (cos, sin)(pi/4)
    layer_perms = [cnot_permutation_and_inverse(n, list(pairs)) if pairs else None for pairs in layers]

    selection = None
    if len(blocks) == 1:
        # state[perm] @ K = state @ K[inverse]: the CNOTs before a layer go into its rows.
        base = kron_index(n, transpose=True).view(dim, dim, n)
        rows = [(base if p is None else base[p[1]]) + l * 4 * n for l, p in enumerate(layer_perms)]
        factor_index = torch.cat([r.reshape(-1) for r in rows]) if rows else torch.zeros(0, dtype=torch.long)
        # slot 0: the input angles (chi = the encoded state); slot l + 1: the rotations of layer l.
        pairs = [_derivative_pairs(n)] + [_derivative_pairs(n, p) for p in layer_perms]
        derivative_index = torch.cat([(source + slot * dim).reshape(-1) for slot, (source, _) in enumerate(pairs)])
        derivative_sign = torch.cat([sign.reshape(-1) for _, sign in pairs])
        permutations = []
    else:
        factor_index = torch.cat([kron_index(k, transpose=True) + 4 * start for k, start in zip(blocks, starts)])
        selection = torch.block_diag(*[pair_selection(k) for k in blocks])
        derivative_index = derivative_sign = None
        permutations = layer_perms
    product = torch.cat([product_index(k) + 2 * start for k, start in zip(blocks, starts)])

    readout = observable_signs(n, circuit.measurement)
    trailing = cnot_permutation_and_inverse(n, list(structure.trailing)) if structure.trailing else None
    if trailing is not None and readout is not None:
        readout = readout[trailing[1]]  # sum_i phi[perm[i]]^2 s[i] = sum_k phi[k]^2 s[inverse[k]]

    def real(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(device=device, dtype=dtype)

    def index(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(device)

    return _Tables(
        n_qubits=n,
        n_layers=len(layers),
        weight_shape=torch.Size(circuit.weight_shape),
        blocks=blocks,
        encoding_offset=real(hadamard_angle + torch.tensor([0.0, -math.pi / 2], dtype=torch.float64)),
        product_index=index(product),
        rotation_offset=real(torch.tensor([0.0, math.pi / 2, -math.pi / 2, 0.0], dtype=torch.float64)),
        factor_index=index(factor_index),
        permutations=[None if p is None else (index(p[0]), index(p[1])) for p in permutations],
        readout=real(readout),
        readout_grad=None if readout is None else real(2 * readout.T),
        trailing=None if trailing is None else (index(trailing[0]), index(trailing[1])),
        derivative_index=index(derivative_index),
        derivative_sign=real(derivative_sign),
        selection=real(selection),
    )


# ---------------------------------------------------------------------------- the function
def _block_products(tables: _Tables, gathered: torch.Tensor, square: bool) -> list[torch.Tensor]:
    """Per block, the product over its wires of gathered single-wire entries: ``gathered`` is
    (lead, sum over blocks of d * k) for vectors, (lead, sum of d * d * k) for matrices (``square``)."""
    lead = gathered.shape[0]
    shapes = [(2**k, 2**k, k) if square else (2**k, k) for k in tables.blocks]
    if len(shapes) == 1:
        return [gathered.view(lead, *shapes[0]).prod(-1)]
    if shapes[0] == shapes[1]:  # one prod for both blocks
        return list(gathered.view(lead, 2, *shapes[0]).prod(-1).unbind(1))
    return [part.view(lead, *shape).prod(-1) for part, shape in zip(gathered.split([math.prod(s) for s in shapes], dim=1), shapes)]


def _encode(tables: _Tables, x: torch.Tensor) -> list[torch.Tensor]:
    """Per block, the product state (B, 2**wires) of RY(x_q) H^k |0> over the block's wires."""
    vectors = torch.cos(torch.add(tables.encoding_offset, x.unsqueeze(-1), alpha=0.5))  # (B, n, 2)
    return _block_products(tables, vectors.view(x.shape[0], 2 * x.shape[1]).index_select(1, tables.product_index), square=False)


def _layer_factors(tables: _Tables, weights: torch.Tensor) -> list[torch.Tensor]:
    """The transposed Kronecker factors of every layer: one (L, D, D), or per block (L, d, d)."""
    n, layers = tables.n_qubits, tables.n_layers
    entries = torch.cos(torch.add(tables.rotation_offset, weights.reshape(layers, n, 1), alpha=0.5))  # (L, n, 4)
    if tables.one_block:  # each layer has its own index (its CNOTs are folded in)
        gathered = entries.view(-1).index_select(0, tables.factor_index).view(layers, -1)
    else:
        gathered = entries.view(layers, 4 * n).index_select(1, tables.factor_index)
    return _block_products(tables, gathered, square=True)


def _apply_layers(tables: _Tables, factors: list[torch.Tensor], state: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The final state, and the state each layer's rotations act on (after its CNOTs, which one
    block folds into the layer matrix: there it is the state entering the layer)."""
    kept = []
    if tables.one_block:
        for layer in range(tables.n_layers):
            kept.append(state)
            state = state @ factors[0][layer]
        return state, kept
    batch, dim = state.shape
    for layer, perm in enumerate(tables.permutations):
        if perm is not None:
            state = state.index_select(1, perm[0])
        kept.append(state)
        left, right = factors[0][layer], factors[1][layer]
        state = (left.mT @ (state.view(batch, left.shape[0], right.shape[0]) @ right)).view(batch, dim)
    return state, kept


def _sweep_back(tables: _Tables, factors: list[torch.Tensor], grad: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The gradient with respect to the encoded state, and the gradient arriving at each kept state."""
    arriving: list[torch.Tensor] = [grad] * tables.n_layers
    batch, dim = grad.shape
    for layer in reversed(range(tables.n_layers)):
        if tables.one_block:
            grad = arriving[layer] = grad @ factors[0][layer].mT
            continue
        left, right = factors[0][layer], factors[1][layer]
        grad = arriving[layer] = (left @ (grad.view(batch, left.shape[0], right.shape[0]) @ right.mT)).view(batch, dim)
        if tables.permutations[layer] is not None:
            grad = grad.index_select(1, tables.permutations[layer][1])
    return grad, arriving


def _one_block_derivatives(tables: _Tables, encoded: torch.Tensor, kept: list, grad: torch.Tensor, arriving: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, n) input and (L * n,) weight derivatives: every <h, J_q chi> / 2 from one gather of
    partner amplitudes (slot 0: the inputs on the encoded state; slot l + 1: layer l)."""
    batch, dim = encoded.shape
    states = torch.stack([encoded, *kept], 1).view(batch, (len(kept) + 1) * dim)  # (B, slots * D)
    partners = states.index_select(1, tables.derivative_index) * tables.derivative_sign
    values = (partners.view(batch, len(kept) + 1, tables.n_qubits, dim) * torch.stack([grad, *arriving], 1).unsqueeze(2)).sum(-1)
    return values[:, 0], values[:, 1:].sum(0).view(-1)


def _two_block_derivatives(tables: _Tables, encoded: list, kept: list, grad: torch.Tensor, arriving: list) -> tuple[torch.Tensor, torch.Tensor]:
    """As :func:`_one_block_derivatives` with the state as a (d1, d2) matrix: every <h, J_q chi> / 2
    is a signed sum of pair products chi[i] h[j] within one block, so per-sample pair products
    (inputs; the encoded state is a x b) and batch-summed ones (weights) go through one matmul."""
    a, b = encoded
    batch, d1, d2 = a.shape[0], a.shape[1], b.shape[1]
    h = grad.view(batch, d1, d2)
    env_a, env_b = (h * b.unsqueeze(1)).sum(2), (a.unsqueeze(-1) * h).sum(1)  # h contracted with b; with a
    rows = [torch.cat([(a.unsqueeze(-1) * env_a.unsqueeze(1)).view(batch, d1 * d1), (b.unsqueeze(-1) * env_b.unsqueeze(1)).view(batch, d2 * d2)], 1)]
    if kept:
        chi, h = torch.stack(kept).view(len(kept), batch, d1, d2), torch.stack(arriving).view(len(kept), batch, d1, d2)
        sums_a = (chi @ h.mT).sum(1)  # (L, d1, d1), summed over the batch
        sums_b = chi.view(len(kept), batch * d1, d2).mT @ h.view(len(kept), batch * d1, d2)  # (L, d2, d2)
        rows.append(torch.cat([sums_a.view(len(kept), -1), sums_b.view(len(kept), -1)], 1))
    values = torch.cat(rows) @ tables.selection
    return values[:batch], values[batch:].reshape(-1)


class _AnalyticCircuit(torch.autograd.Function):
    """(inputs, weights) -> measured values (``readout=True``) or the final real state, with the
    backward pass of the module docstring."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, tables: _Tables, readout: bool) -> torch.Tensor:
        encoded = _encode(tables, x)
        factors = _layer_factors(tables, w) if tables.n_layers else []
        start = encoded[0] if tables.one_block else (encoded[0].unsqueeze(-1) * encoded[1].unsqueeze(1)).view(x.shape[0], 2**tables.n_qubits)
        state, kept = _apply_layers(tables, factors, start)
        ctx.tables, ctx.readout, ctx.sizes = tables, readout, (len(encoded), len(kept))
        ctx.save_for_backward(state, *encoded, *kept, *factors)
        if readout and tables.readout is not None:
            return state.square() @ tables.readout
        out = state.square() if readout else state
        return out if tables.trailing is None else out.index_select(1, tables.trailing[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        tables, (n_encoded, n_kept) = ctx.tables, ctx.sizes
        state, *rest = ctx.saved_tensors
        encoded, kept, factors = rest[:n_encoded], rest[n_encoded : n_encoded + n_kept], rest[n_encoded + n_kept :]
        if ctx.readout and tables.readout is not None:
            grad = state * (grad_out @ tables.readout_grad)
        else:
            grad = grad_out if tables.trailing is None else grad_out.index_select(1, tables.trailing[1])
            grad = 2 * state * grad if ctx.readout else grad
        grad, arriving = _sweep_back(tables, factors, grad)
        if tables.one_block:
            grad_x, grad_w = _one_block_derivatives(tables, encoded[0], kept, grad, arriving)
        else:
            grad_x, grad_w = _two_block_derivatives(tables, encoded, kept, grad, arriving)
        return grad_x, grad_w.view(tables.weight_shape), None, None


def run_analytic(circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor, readout: bool = True) -> torch.Tensor:
    """Measured values ``(batch, n_outputs)`` (or with ``readout=False`` the final real state
    ``(batch, 2**n)``) of a circuit :func:`analytic_structure` accepts; inputs and weights are real
    tensors of one dtype on one device."""
    tables = _tables(circuit, inputs.device, inputs.dtype)
    return _AnalyticCircuit.apply(inputs, weights, tables, readout)
