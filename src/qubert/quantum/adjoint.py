"""The ``"adjoint"`` strategy: the paper's kind of circuit at any size, a few states per sample in memory.

Why hand-written: from 11 qubits on, a state is large and autograd keeps one per gate block for
the backward pass (1.45 GB at 20 qubits, batch 8). The circuits of
:func:`~qubert.quantum.analytic.rotation_structure` (H/RY encoding, CNOTs, RY layers) are real and
every layer is orthogonal, so the backward pass can instead run the circuit backwards (adjoint
differentiation): it recovers the state entering each layer by applying the layer's transpose to
the final state while it sweeps the cotangent back. A pass holds a few states per sample
whatever the depth, and the batch runs in chunks of bounded size (:data:`CHUNK_BYTES`).

- A layer of RYs is a Kronecker product applied as blocks of at most :data:`BLOCK_QUBITS` wires.
  Each block acts on the least significant wires and is one batched matmul that writes its result
  transposed, so that those wires become the most significant: the next block's wires are then
  the least significant, and after all blocks the wire order is back. Every block is one pass over
  the state, without copies.
- dRY(t)/dt = RY(t) J / 2 with J = [[0, -1], [1, 0]], and J commutes with RY, so the derivative
  with respect to the angle on wire q of a layer is <g, J_q psi> / 2 for psi the state and g the
  cotangent anywhere inside the layer's rotations. For the wires of one block it is read off
  the block's d x d matrix ``psi^T g`` (one matmul summed over the batch and the other wires),
  taken when the block is the least significant.
- The input derivatives are the same on the encoded product state a (x) b (the register in two
  halves): g contracted with b (or a) is a vector of one half, where the pairs are cheap.
- The <Z_q> readout needs no (2**n, n) sign table: each Z_q depends on one half of the register,
  so it reads the half's marginal probabilities (and ZZ across the halves one rank-one term).

Example:
    >>> import torch
    >>> from qubert.quantum import Circuit, simulate
    >>> c = Circuit(n_qubits=12, n_layers=2)
    >>> simulate(c, torch.zeros(2, 12), c.init_weights(), strategy="adjoint").shape
    torch.Size([2, 12])
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from qubert.quantum.analytic import pair_selection, rotation_structure
from qubert.quantum.basis import cnot_permutation_and_inverse, half_expectations, half_signs, kron_index, product_index
from qubert.quantum.circuit import Circuit

# Wires per Kronecker block of a rotation layer. Measured at 16 qubits, batch 64, 1 thread, float64
# (3 calls each): blocks of 4 or 5 wires 2.3-2.6 s, 6 wires 2.5-2.9 s, 3 wires 3.6-4.3 s, 8 wires
# 3.7-4.3 s. Smaller blocks take more passes over the state, larger ones more arithmetic per pass.
BLOCK_QUBITS = 5
# Working memory of one chunk of the batch: the batch is split so that a chunk's WORK_STATES
# states per sample fit in it (at least one sample per chunk).
CHUNK_BYTES = 256 << 20
# States per sample a chunk holds at once: the state and the cotangent, the successor of one of
# them while it is being computed, and one for the readout's temporaries.
WORK_STATES = 4
# When the whole batch is one chunk and the states entering every layer's rotations take at most
# this many bytes, the forward pass keeps them: the backward pass then reads every weight
# derivative off them and sweeps only the cotangent back (no state sweep: about a third fewer
# passes; 16 qubits, batch 64, 2 layers, float32: 32 MiB kept).
LAYER_STATES_BYTES = 64 << 20


def chunk_size(n_qubits: int, batch_size: int, itemsize: int) -> int:
    """Samples per chunk of the batch (the whole batch when it fits in :data:`CHUNK_BYTES`).

    Example:
        >>> chunk_size(20, 64, 8), chunk_size(10, 64, 8)
        (8, 64)
    """
    per_sample = WORK_STATES * itemsize * 2**n_qubits
    return max(1, min(batch_size, CHUNK_BYTES // per_sample))


def keeps_layer_states(n_qubits: int, n_layers: int, batch_size: int, itemsize: int) -> bool:
    """Whether the forward pass keeps the states entering every layer (see :data:`LAYER_STATES_BYTES`).

    Example:
        >>> keeps_layer_states(16, 2, 64, 4), keeps_layer_states(20, 2, 64, 4)
        (True, False)
    """
    whole = chunk_size(n_qubits, batch_size, itemsize) >= batch_size
    return whole and n_layers * batch_size * itemsize * 2**n_qubits <= LAYER_STATES_BYTES


def estimate_adjoint_memory(circuit: Circuit, batch_size: int, itemsize: int, state_output: bool = False) -> int:
    """Bytes the adjoint strategy may hold at its peak (an upper bound).

    A chunk's working states; when the whole batch is one chunk, its final states (and, where
    :func:`keeps_layer_states`, the states entering every layer) kept for the backward pass; with ``state_output`` (:func:`~qubert.quantum.statevector`) the returned states
    and their gradient; the CNOT permutations (int32, with their int64 build) and per-chunk
    encodings and blocks.
    """
    n, dim = circuit.n_qubits, 2**circuit.n_qubits
    chunk = chunk_size(n, batch_size, itemsize)
    structure = rotation_structure(circuit)
    layers = len(structure.layers) if structure else 0
    kept = (1 + layers * keeps_layer_states(n, layers, batch_size, itemsize)) * batch_size if chunk == batch_size else 0
    states = (WORK_STATES + 1) * chunk + kept + (2 * batch_size if state_output else 0)
    patterns = {pairs for pairs in (*structure.layers, structure.trailing) if pairs} if structure else set()
    tables = 8 * dim * len(patterns) + 48 * dim  # int32 permutation + inverse each; the int64 build of one
    halves = sum(2**k * (k + 2) for k in (n - n // 2, n // 2))  # per sample: half-register products and gathers
    return itemsize * (dim * states + 4 * chunk * halves) + tables + (1 << 20)


# ---------------------------------------------------------------------------- per-circuit tables
@dataclass
class _Tables:
    """Every constant the adjoint strategy needs for one circuit, device and dtype (built once)."""

    n_qubits: int
    n_layers: int
    weight_shape: torch.Size
    halves: tuple[int, int]  # wires of the two halves of the register
    measurement: str
    encoding_offset: torch.Tensor  # (n, 2): cos(x/2 + offset) = RY(x) H^k |0> per wire
    product_index: tuple[torch.Tensor, torch.Tensor]  # per half: (2**k * k,) into the half's (k, 2) vectors
    rotation_offset: torch.Tensor  # (4,): cos(t/2 + offset) = RY(t) entries [c, -s, s, c]
    blocks: list[tuple[int, int]]  # (first wire, wires) in the order they are applied
    block_index: torch.Tensor  # (sum d*d*k,): the blocks' Kronecker entries in a layer's (n * 4) RY entries
    block_index_t: torch.Tensor  # the same, transposed blocks
    selections: list[torch.Tensor]  # per block: (d*d, k) pair selection (see analytic._pair_selection)
    permutations: list[tuple[torch.Tensor, torch.Tensor] | None]  # per layer: CNOT permutation and inverse
    trailing: tuple[torch.Tensor, torch.Tensor] | None  # CNOTs after the last layer
    signs: tuple[torch.Tensor, torch.Tensor]  # per half: (2**k, k) eigenvalues of Z on its wires

    @property
    def dim(self) -> int:
        return 2**self.n_qubits


def _block_layout(n: int, block_qubits: int) -> list[tuple[int, int]]:
    """Blocks of nearly equal size covering the wires, the least significant first."""
    count = math.ceil(n / block_qubits) if n else 0
    sizes = [n // count + (i < n % count) for i in range(count)]
    blocks, end = [], n
    for size in sizes:
        blocks.append((end - size, size))
        end -= size
    return blocks


@functools.lru_cache(maxsize=64)
def _tables(circuit: Circuit, device: torch.device, dtype: torch.dtype, block_qubits: int) -> _Tables:
    structure = rotation_structure(circuit)
    n = circuit.n_qubits
    halves = (n - n // 2, n // 2)
    hadamard_angle = torch.tensor([[math.pi / 4 * (k % 2)] for k in structure.hadamards], dtype=torch.float64).view(n, 1)

    cached: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def permutation(pairs: tuple) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not pairs:
            return None
        if pairs not in cached:  # layers with one pattern share it (int32: half the memory of int64)
            cached[pairs] = tuple(p.to(device=device, dtype=torch.int32) for p in cnot_permutation_and_inverse(n, list(pairs)))
        return cached[pairs]

    blocks = _block_layout(n, block_qubits)
    index = [kron_index(k) + 4 * start for start, k in blocks]
    index_t = [kron_index(k, transpose=True) + 4 * start for start, k in blocks]
    signs = [s.to(device=device, dtype=dtype) for s in half_signs(n)]
    return _Tables(
        n_qubits=n,
        n_layers=len(structure.layers),
        weight_shape=torch.Size(circuit.weight_shape),
        halves=halves,
        measurement=circuit.measurement,
        encoding_offset=(hadamard_angle + torch.tensor([0.0, -math.pi / 2], dtype=torch.float64)).to(device=device, dtype=dtype),
        product_index=tuple(product_index(k).to(device) for k in halves),
        rotation_offset=torch.tensor([0.0, math.pi / 2, -math.pi / 2, 0.0], dtype=torch.float64).to(device=device, dtype=dtype),
        blocks=blocks,
        block_index=torch.cat(index).to(device) if index else torch.zeros(0, dtype=torch.long, device=device),
        block_index_t=torch.cat(index_t).to(device) if index else torch.zeros(0, dtype=torch.long, device=device),
        selections=[pair_selection(k).to(device=device, dtype=dtype) for _, k in blocks],
        permutations=[permutation(pairs) for pairs in structure.layers],
        trailing=permutation(structure.trailing),
        signs=tuple(signs),
    )


# ---------------------------------------------------------------------------- the pieces
def _block_matrices(tables: _Tables, weights: torch.Tensor, transpose: bool) -> list[list[torch.Tensor]]:
    """Per layer, the Kronecker block of every block of wires (``transpose``: their transposes)."""
    layers, n = tables.n_layers, tables.n_qubits
    if not layers:
        return []
    entries = torch.cos(torch.add(tables.rotation_offset, weights.reshape(layers, n, 1), alpha=0.5)).view(layers, 4 * n)
    gathered = entries.index_select(1, tables.block_index_t if transpose else tables.block_index)
    sizes = [k for _, k in tables.blocks]
    parts = gathered.split([4**k * k for k in sizes], dim=1)
    mats = [part.view(layers, 2**k, 2**k, k).prod(-1) for part, k in zip(parts, sizes)]
    return [[m[layer] for m in mats] for layer in range(layers)]


class _Buffers:
    """Two (c, 2**n) states that the passes write into in turn instead of allocating a state per
    pass (allocating and touching fresh pages cost as much as a pass at 16 qubits, float64)."""

    def __init__(self, like: torch.Tensor) -> None:
        self.pair = (torch.empty_like(like), torch.empty_like(like))

    def other(self, state: torch.Tensor) -> torch.Tensor:
        """The buffer ``state`` is not in."""
        return self.pair[1] if state.data_ptr() == self.pair[0].data_ptr() else self.pair[0]


def _rotate(tables: _Tables, state: torch.Tensor, blocks: list[torch.Tensor], buffers: _Buffers | None = None) -> torch.Tensor:
    """``state`` (c, 2**n) after the blocks of one layer (see the module docstring); the result is
    in one of ``buffers`` when given (``state`` itself is left as it is)."""
    chunk = state.shape[0]
    for block in blocks:
        out = None if buffers is None else buffers.other(state).view(chunk, block.shape[0], -1)
        state = torch.matmul(block, state.view(chunk, -1, block.shape[0]).mT, out=out).view(chunk, -1)
    return state


def _permute(state: torch.Tensor, index: torch.Tensor, buffers: _Buffers | None = None) -> torch.Tensor:
    """``state[:, index]``, into one of ``buffers`` when given."""
    return torch.index_select(state, 1, index, out=buffers.other(state)) if buffers is not None else state.index_select(1, index)


def _halves(tables: _Tables, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoded product state's two factors: (c, 2**k1) and (c, 2**k2)."""
    vectors = torch.cos(torch.add(tables.encoding_offset, x.unsqueeze(-1), alpha=0.5))  # (c, n, 2)
    k1, k2 = tables.halves
    out = []
    for part, k, index in zip((vectors[:, :k1], vectors[:, k1:]), (k1, k2), tables.product_index):
        out.append(part.reshape(x.shape[0], 2 * k).index_select(1, index).view(x.shape[0], 2**k, k).prod(-1))
    return out[0], out[1]


def _evolve(tables: _Tables, x: torch.Tensor, blocks: list[list[torch.Tensor]], entering: list | None = None, buffers: _Buffers | None = None) -> torch.Tensor:
    """The final states (c, 2**n) of a chunk, trailing CNOTs included; appends the states entering
    every layer's rotations to ``entering`` when given. With ``buffers``, the passes write into
    them (the final state may be one of them)."""
    a, b = _halves(tables, x)
    state = (a.unsqueeze(2) * b.unsqueeze(1)).view(x.shape[0], tables.dim)
    for perm, layer in zip(tables.permutations, blocks):
        if perm is not None:
            state = _permute(state, perm[0], None if entering is not None else buffers)  # a kept state gets its own memory
        if entering is not None:
            if buffers is not None and any(state.data_ptr() == buf.data_ptr() for buf in buffers.pair):
                state = state.clone()  # a layer without CNOTs: the state it enters must outlive the buffers' reuse
            entering.append(state)
        state = _rotate(tables, state, layer, buffers)
    if tables.trailing is not None:
        state = _permute(state, tables.trailing[0], buffers)
    return state


def _readout(tables: _Tables, state: torch.Tensor) -> torch.Tensor:
    """Measured values of a chunk's final states."""
    probs = state.square()
    return probs if tables.measurement == "probs" else half_expectations(probs, tables.signs, tables.measurement)


def _readout_cotangent(tables: _Tables, state: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The cotangent of a chunk's final states, given the cotangent of its measured values."""
    if tables.measurement == "probs":
        return 2 * state * grad
    chunk, (k1, k2), (s1, s2) = state.shape[0], tables.halves, tables.signs
    ones1, ones2 = s1.new_ones(chunk, 2**k1, 1), s2.new_ones(chunk, 1, 2**k2)
    # d<O>/d psi = 2 psi * v with v[i, j] = v1[i] + v2[j] (+ cross[i] s2[j, 0]): one bmm of rank 2 or 3.
    if tables.measurement == "z":
        left = [(grad[:, :k1] @ s1.T).unsqueeze(2), ones1]
        right = [ones2, (grad[:, k1:] @ s2.T).unsqueeze(1)]
    else:  # "zz" (at least 2 wires, so both halves have one): pairs in the first half, across, in the second
        left = [(grad[:, : k1 - 1] @ (s1[:, :-1] * s1[:, 1:]).T).unsqueeze(2), ones1, (grad[:, k1 - 1 : k1] * s1[:, -1]).unsqueeze(2)]
        right = [ones2, (grad[:, k1:] @ (s2[:, :-1] * s2[:, 1:]).T).unsqueeze(1), s2[:, 0].expand(chunk, 1, -1)]
    v = torch.cat(left, 2).mul_(2) @ torch.cat(right, 1)
    return v.view(chunk, -1).mul_(state)


def _pair_derivatives(vector: torch.Tensor, env: torch.Tensor, wires: int) -> torch.Tensor:
    """(c, wires): <env, J_q vector> / 2 for every wire q of a (c, 2**wires) pair of vectors."""
    out = []
    for q in range(wires):
        v, e = vector.view(vector.shape[0], 2**q, 2, -1), env.view(env.shape[0], 2**q, 2, -1)
        out.append((e[:, :, 1] * v[:, :, 0] - e[:, :, 0] * v[:, :, 1]).sum((1, 2)))
    return torch.stack(out, 1) * 0.5 if out else vector.new_zeros(vector.shape[0], 0)


def _sweep_back(tables: _Tables, state: torch.Tensor, grad: torch.Tensor, inverse: list[list[torch.Tensor]], grad_w: torch.Tensor | None) -> torch.Tensor:
    """The cotangent of the encoded state; adds the chunk's weight derivatives into ``grad_w`` (L, n).

    ``state`` and ``grad`` are the chunk's final state and its cotangent (trailing CNOTs included).
    """
    if tables.trailing is not None:
        inv = tables.trailing[1]
        grad = grad.index_select(1, inv)
        state = state.index_select(1, inv) if grad_w is not None else None
    for layer in reversed(range(tables.n_layers)):
        for block, (start, k), selection in zip(inverse[layer], tables.blocks, tables.selections):
            d = block.shape[0]
            if grad_w is not None:
                pairs = state.view(-1, d).mT @ grad.view(-1, d)  # (d, d): psi^T g summed over batch and other wires
                grad_w[layer, start : start + k] += pairs.view(-1) @ selection
                state = torch.matmul(block, state.view(state.shape[0], -1, d).mT).view(state.shape[0], -1)
            grad = torch.matmul(block, grad.view(grad.shape[0], -1, d).mT).view(grad.shape[0], -1)
        perm = tables.permutations[layer]
        if perm is not None:
            grad = grad.index_select(1, perm[1])
            if grad_w is not None and layer:
                state = state.index_select(1, perm[1])
    return grad


def _block_pairs(state: torch.Tensor, grad: torch.Tensor, start: int, k: int) -> torch.Tensor:
    """(d, d) ``psi^T g`` over the block of wires ``start .. start+k-1`` of states in wire order,
    summed over the batch and the other wires."""
    d = 2**k
    if start + k == state.shape[1].bit_length() - 1:  # the least significant wires: one matmul
        return state.view(-1, d).mT @ grad.view(-1, d)
    rows = state.shape[0] << start
    return (state.view(rows, d, -1) @ grad.view(rows, d, -1).mT).sum(0)


def _sweep_back_kept(tables: _Tables, entering: list[torch.Tensor], grad: torch.Tensor, inverse: list[list[torch.Tensor]], grad_w: torch.Tensor | None) -> torch.Tensor:
    """:func:`_sweep_back` with the states entering every layer kept: only the cotangent sweeps back,
    and each layer's weight derivatives are read off its entering state and the cotangent there."""
    buffers = _Buffers(grad)
    if tables.trailing is not None:
        grad = _permute(grad, tables.trailing[1], buffers)
    for layer in reversed(range(tables.n_layers)):
        grad = _rotate(tables, grad, inverse[layer], buffers)
        if grad_w is not None:
            for (start, k), selection in zip(tables.blocks, tables.selections):
                grad_w[layer, start : start + k] += _block_pairs(entering[layer], grad, start, k).view(-1) @ selection
        perm = tables.permutations[layer]
        if perm is not None:
            grad = _permute(grad, perm[1], buffers)
    return grad


def _input_derivatives(tables: _Tables, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """(c, n) input derivatives from the cotangent of the encoded state a (x) b."""
    a, b = _halves(tables, x)
    grid = grad.view(x.shape[0], a.shape[1], b.shape[1])
    env_a = (grid @ b.unsqueeze(2)).squeeze(2)  # g contracted with b: a vector of the first half
    env_b = (a.unsqueeze(1) @ grid).squeeze(1)
    k1, k2 = tables.halves
    return torch.cat([_pair_derivatives(a, env_a, k1), _pair_derivatives(b, env_b, k2)], 1)


# ---------------------------------------------------------------------------- the function
class _AdjointCircuit(torch.autograd.Function):
    """(inputs, weights) -> measured values (``readout=True``) or the final real states, with the
    adjoint backward pass of the module docstring."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, tables: _Tables, readout: bool, chunk: int) -> torch.Tensor:
        ctx.empty = not x.shape[0]
        if ctx.empty:
            n = tables.n_qubits
            width = {"z": n, "zz": n - 1}.get(tables.measurement, tables.dim) if readout else tables.dim
            ctx.save_for_backward(x, w)
            return x.new_zeros(0, width)
        blocks = _block_matrices(tables, w, transpose=False)
        entering = [] if chunk >= x.shape[0] and keeps_layer_states(tables.n_qubits, tables.n_layers, x.shape[0], x.dtype.itemsize) else None
        outs, finals = [], []
        buffers = None
        for xc in x.split(chunk):
            if buffers is None or buffers.pair[0].shape[0] != xc.shape[0] or not readout or chunk >= x.shape[0]:
                buffers = _Buffers(xc.new_empty(xc.shape[0], tables.dim))  # a kept final state keeps its buffer
            state = _evolve(tables, xc, blocks, entering, buffers)
            outs.append(_readout(tables, state) if readout else state)
            if readout and chunk >= x.shape[0]:
                finals.append(state)  # one chunk: keep the final states instead of recomputing them
            del state
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        ctx.tables, ctx.readout, ctx.chunk, ctx.kept = tables, readout, chunk, bool(finals) or not readout
        ctx.entering = entering is not None
        ctx.save_for_backward(x, w, *(finals if readout else [out]), *(entering or []))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        if ctx.empty:
            x, w = ctx.saved_tensors
            return torch.zeros_like(x), torch.zeros_like(w), None, None, None
        tables, chunk = ctx.tables, ctx.chunk
        x, w, *kept = ctx.saved_tensors
        entering = kept[1:] if ctx.entering else None
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        blocks = _block_matrices(tables, w, transpose=False) if not ctx.kept else None
        inverse = _block_matrices(tables, w, transpose=True)
        grad_w = torch.zeros(tables.n_layers, tables.n_qubits, dtype=w.dtype, device=w.device) if need_w else None
        grads_x = []
        for start in range(0, x.shape[0], chunk):
            xc, gc = x[start : start + chunk], grad_out[start : start + chunk]
            state = kept[0][start : start + chunk] if ctx.kept else _evolve(tables, xc, blocks)
            grad = _readout_cotangent(tables, state, gc) if ctx.readout else gc
            if entering is not None:  # one chunk: the whole batch
                grad = _sweep_back_kept(tables, entering, grad, inverse, grad_w)
            else:
                grad = _sweep_back(tables, state, grad, inverse, grad_w)
            del state
            if need_x:
                grads_x.append(_input_derivatives(tables, xc, grad))
            del grad
        grad_x = (grads_x[0] if len(grads_x) == 1 else torch.cat(grads_x)) if need_x else None
        return grad_x, None if grad_w is None else grad_w.view(tables.weight_shape), None, None, None


def run_adjoint(circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor, readout: bool = True, chunk: int | None = None) -> torch.Tensor:
    """Measured values ``(batch, n_outputs)`` (or with ``readout=False`` the final real states
    ``(batch, 2**n)``) of a circuit :func:`~qubert.quantum.analytic.rotation_structure` accepts;
    inputs and weights are real tensors of one dtype on one device. ``chunk``: samples per chunk
    (default :func:`chunk_size`)."""
    tables = _tables(circuit, inputs.device, inputs.dtype, BLOCK_QUBITS)
    if chunk is None:
        chunk = chunk_size(circuit.n_qubits, inputs.shape[0], inputs.dtype.itemsize)
    return _AdjointCircuit.apply(inputs, weights, tables, readout, max(1, chunk))
