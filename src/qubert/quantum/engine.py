"""Batched, differentiable statevector simulation of a :class:`~qubert.quantum.circuit.Circuit`.

Why hand-written: at the sizes of a classification head (2-16 qubits, batches of 64) the cost of
a simulator is per-operation overhead, not arithmetic. General simulators apply one gate at a
time; this engine first compiles the gate list into few, large steps and then runs them batch-first
on the input's device:

- all gate matrices of a call come from two pools (weights, inputs), each gate kind evaluated
  once for all its occurrences (one cos/sin over all angles);
- runs of single-qubit gates become Kronecker products built with one gather + prod, applied
  with one matmul/einsum (whole-register matrices up to 6 qubits, 4-qubit blocks above);
- runs of CNOTs become one permutation of basis states (a gather, with a gather as backward);
- the first encoding layer acting on |0...0> is built directly as a product state;
- circuits of real gates only (H, RY, CNOT: the paper's circuit) run in real arithmetic.

Two strategies share those steps:

- ``"fused"``: every input-independent (weight-only) run of steps is multiplied into one
  2**n x 2**n matrix, applied to the batch with one matmul;
- ``"gates"``: every step is applied to the batched state; nothing of size 4**n above 6 qubits.

``"auto"`` picks fused up to 6 qubits. A register that would not fit in memory is refused
before anything is allocated.

Example:
    >>> import torch
    >>> from qubert.quantum import Circuit, simulate
    >>> c = Circuit(n_qubits=3, n_layers=2)
    >>> out = simulate(c, torch.rand(5, 3), c.init_weights())
    >>> out.shape
    torch.Size([5, 3])
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import torch

from qubert.quantum import gates
from qubert.quantum.circuit import Circuit, Operation

STRATEGIES = ("auto", "fused", "gates")
# Largest register for which "auto" may pick the fused strategy (2**n x 2**n matrices).
FUSED_MAX_QUBITS = 6
# Qubits per Kronecker block: 16x16 blocks are cheap to build and cut the passes over the state
# per layer by 4x compared with one gate at a time.
BLOCK_QUBITS = 4
# Up to this size the "gates" strategy applies each single-qubit layer as one 2**n x 2**n matrix
# (all layers built at once); above it, as Kronecker blocks of BLOCK_QUBITS qubits.
LAYER_MATRIX_MAX_QUBITS = 6
# Qubits per chunk of the product state built with one gather + prod (memory: batch * 2**c * c).
PRODUCT_CHUNK = 8
# Below this estimate the memory guard does not query the device.
_SMALL_BYTES = 1 << 30


class RegisterTooLargeError(ValueError):
    """The simulation would need more memory than the device has available."""


# ---------------------------------------------------------------------------- compiled plan
# Gate matrices of one call live in two "pools" of 2x2 matrices: a weight pool (shared by the
# batch: identity, Hadamard, then every weight-parameterised gate) and a data pool (per sample:
# every input-parameterised gate). Each gate kind is evaluated once for all its occurrences.
_IDENTITY_SLOT, _HADAMARD_SLOT, _CONSTANT_SLOTS = 0, 1, 2


@dataclass
class _GateKind:
    """All occurrences of one parameterised gate with one angle source, evaluated together."""

    name: str
    source: str  # "x" (inputs) or "w" (weights)
    index: list[list[int]]  # per gate parameter: the angle index of every occurrence


@dataclass
class _SingleQubitStep:
    """Single-qubit gates on distinct qubits; ``positions[j][q]`` is the pool slot of qubit q's j-th gate."""

    positions: list[list[int]]
    data_dependent: bool
    blocks: list[tuple[int, int]]  # (first qubit, number of qubits), covering every active qubit


@dataclass
class _PermutationStep:
    """A run of CNOTs, applied as one permutation of basis states."""

    pairs: list[tuple[int, int]]


@dataclass
class _Plan:
    circuit: Circuit
    steps: list
    real: bool
    weight_kinds: list[_GateKind]
    data_kinds: list[_GateKind]
    n_weight_slots: int
    device_cache: dict = field(default_factory=dict)

    @property
    def leading_product(self) -> bool:
        """The first step acts on |0...0> with single-qubit gates only: a product state."""
        return bool(self.steps) and isinstance(self.steps[0], _SingleQubitStep)

    @functools.cached_property
    def analytic(self) -> bool:
        return _analytic_eligible(self)

    def analytic_tables(self, device: torch.device, dtype: torch.dtype) -> _AnalyticTables:
        key = ("analytic", device, dtype)
        if key not in self.device_cache:
            self.device_cache[key] = _AnalyticTables.build(self, device, dtype)
        return self.device_cache[key]

    @functools.cached_property
    def segments(self) -> list[tuple[str, list]]:
        """Steps after the product state, as ("data", [step]) and ("weights", [steps...]) runs."""
        segments: list[tuple[str, list]] = []
        for step in self.steps[1:] if self.leading_product else self.steps:
            kind = "data" if isinstance(step, _SingleQubitStep) and step.data_dependent else "weights"
            if kind == "weights" and segments and segments[-1][0] == "weights":
                segments[-1][1].append(step)
            else:
                segments.append((kind, [step]))
        return segments


def _analytic_eligible(plan: _Plan) -> bool:
    """The paper's kind of circuit, small: real gates, one encoding layer (feature i on wire i, once),
    then weight-only layers with one rotation per qubit. Such circuits get analytic Jacobians."""
    n = plan.circuit.n_qubits
    if not (plan.real and plan.leading_product and n <= FUSED_MAX_QUBITS):
        return False
    if any(kind == "data" for kind, _ in plan.segments) or len(plan.data_kinds) != 1:
        return False
    if plan.data_kinds[0].index[0] != list(range(n)):
        return False
    singles = [step for _, steps in plan.segments for step in steps if isinstance(step, _SingleQubitStep)]
    if not singles or any(len(step.positions) != 1 for step in singles):
        return False
    first = plan.steps[0]
    if any(_CONSTANT_SLOTS <= slot < plan.n_weight_slots for pos in first.positions for slot in pos):
        return False  # a weight gate merged into the encoding step (no CNOT in between)
    # each wire ends its encoding chain with RY(x_q), after constant gates only
    return plan.data_kinds[0].name == "RY" and first.positions[-1] == [plan.n_weight_slots + q for q in range(n)]


def _compile(circuit: Circuit) -> _Plan:
    """Group the gate list into steps and give every single-qubit gate a pool slot."""
    n = circuit.n_qubits
    kinds: dict[tuple[str, str], _GateKind] = {}

    def slot_of(op: Operation) -> tuple[str, tuple[str, str], int]:
        if op.name == "H":
            return ("const", ("H", ""), _HADAMARD_SLOT)
        source = op.params[0].source
        if any(p.source != source for p in op.params):
            raise ValueError(f"gate {op.name} mixes input and weight angles")
        key = (op.name, source)
        kind = kinds.setdefault(key, _GateKind(op.name, source, [[] for _ in op.params]))
        for k, p in enumerate(op.params):
            kind.index[k].append(p.index)
        return (source, key, len(kind.index[0]) - 1)

    raw_steps: list = []
    pending: dict[int, list[tuple]] = {}
    cnots: list[tuple[int, int]] = []
    for op in circuit.operations():
        if op.name == "CNOT":
            if pending:
                raw_steps.append(dict(pending))
                pending.clear()
            cnots.append(op.wires)
        else:
            if cnots:
                raw_steps.append(_PermutationStep(list(cnots)))
                cnots.clear()
            pending.setdefault(op.wires[0], []).append(slot_of(op))
    if pending:
        raw_steps.append(dict(pending))
    if cnots:
        raw_steps.append(_PermutationStep(list(cnots)))

    weight_kinds = [k for k in kinds.values() if k.source == "w"]
    data_kinds = [k for k in kinds.values() if k.source == "x"]
    # Slot numbers: weight pool = [I, H, weight kinds...]; data slots come after the weight pool.
    offsets: dict[tuple[str, str], int] = {}
    offset = _CONSTANT_SLOTS
    for kind in weight_kinds:
        offsets[(kind.name, kind.source)] = offset
        offset += len(kind.index[0])
    n_weight_slots = offset
    for kind in data_kinds:
        offsets[(kind.name, kind.source)] = offset
        offset += len(kind.index[0])

    steps: list = []
    for raw in raw_steps:
        if isinstance(raw, _PermutationStep):
            steps.append(raw)
            continue
        depth = max(len(chain) for chain in raw.values())
        positions = [[_IDENTITY_SLOT] * n for _ in range(depth)]
        data = False
        for q, chain in raw.items():
            padded = [None] * (depth - len(chain)) + chain  # identities first, gates last
            for j, entry in enumerate(padded):
                if entry is None:
                    continue
                source, key, position = entry
                positions[j][q] = position if source == "const" else offsets[key] + position
                data |= source == "x"
        steps.append(_SingleQubitStep(positions, data, _blocks(sorted(raw), n)))
    return _Plan(circuit, steps, circuit.is_real, weight_kinds, data_kinds, n_weight_slots)


def _blocks(active: list[int], n_qubits: int) -> list[tuple[int, int]]:
    """Contiguous blocks of at most BLOCK_QUBITS qubits covering every active qubit."""
    blocks, i = [], 0
    while i < len(active):
        start = active[i]
        size = min(BLOCK_QUBITS, n_qubits - start)
        blocks.append((start, size))
        while i < len(active) and active[i] < start + size:
            i += 1
    return blocks


@functools.lru_cache(maxsize=256)
def _plan_for(circuit: Circuit) -> _Plan:
    return _compile(circuit)


def _permutation(n_qubits: int, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """Index ``p`` with ``(CNOT_k ... CNOT_1 psi)[x] = psi[p[x]]``."""
    index = torch.arange(2**n_qubits)
    for control, target in reversed(pairs):  # psi_k[x] = psi_{k-1}[f_k(x)]: compose right to left
        c_bit, t_bit = 1 << (n_qubits - 1 - control), 1 << (n_qubits - 1 - target)
        index = torch.where(index & c_bit != 0, index ^ t_bit, index)
    return index


def _product_index(k: int) -> torch.Tensor:
    """For (..., k, 2) vectors flattened to (..., 2k): entry [x, q] picks qubit q's amplitude of bit x_q."""
    bits = (torch.arange(2**k)[:, None] >> torch.arange(k - 1, -1, -1)) & 1
    return (torch.arange(k) * 2 + bits).reshape(-1)


def _kron_index(k: int, transpose: bool = False) -> torch.Tensor:
    """For (..., k, 2, 2) matrices flattened to (..., 4k): entry [i, j, q] picks M_q[i_q, j_q]
    (``M_q[j_q, i_q]`` with ``transpose``), so gather + prod over q gives the Kronecker product."""
    bits = (torch.arange(2**k)[:, None] >> torch.arange(k - 1, -1, -1)) & 1
    rows, cols = (bits[None, :, :], bits[:, None, :]) if transpose else (bits[:, None, :], bits[None, :, :])
    return (torch.arange(k) * 4 + rows * 2 + cols).reshape(-1)


def _replaced_product_index(k: int) -> torch.Tensor:
    """For a (..., 4k) table [v (2k), v' (2k)]: entry [r, x, q] picks v'_q if q == r else v_q, so
    gather + prod gives, for every r, the product state with qubit r's vector differentiated."""
    base = _product_index(k).view(2**k, k)
    replaced = torch.arange(k)[:, None, None] == torch.arange(k)  # (k, 1, k)
    return (base + replaced * 2 * k).reshape(-1)


def _replaced_kron_index(k: int, transpose: bool = False) -> torch.Tensor:
    """As :func:`_replaced_product_index` for matrices: a (..., 8k) table [M (4k), M' (4k)] gives,
    for every r, the Kronecker product with factor r replaced by its derivative."""
    base = _kron_index(k, transpose).view(2**k, 2**k, k)
    replaced = torch.arange(k)[:, None, None, None] == torch.arange(k)  # (k, 1, 1, k)
    return (base + replaced * 4 * k).reshape(-1)


class _BasisPermutation(torch.autograd.Function):
    """``state[..., perm]`` whose backward is a gather with the inverse permutation (no scatter)."""

    @staticmethod
    def forward(ctx, state: torch.Tensor, perm: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        return state.index_select(-1, perm)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(-1, inverse), None, None


# ---------------------------------------------------------------------------- one call
class _Run:
    """The tensors of one simulation call: gate pools, cached indices, step application."""

    def __init__(self, plan: _Plan, x: torch.Tensor, w: torch.Tensor, dtype: torch.dtype) -> None:
        self.plan, self.n, self.dtype, self.device = plan, plan.circuit.n_qubits, dtype, x.device
        self.cache = plan.device_cache.setdefault((x.device, dtype), {})
        self.weight_pool = self._weight_pool(w)
        self.data_pool = self._pool(plan.data_kinds, x, batched=True) if plan.data_kinds else None

    def _index(self, key, build, *args, **kwargs) -> torch.Tensor:
        """A constant tensor (index, identity...) built once per device and dtype."""
        value = self.cache.get(key)
        if value is None:
            value = self.cache[key] = build(*args, **kwargs).to(self.device)
        return value

    def _pool(self, kinds: list[_GateKind], angles: torch.Tensor, batched: bool) -> torch.Tensor:
        half = angles * 0.5
        cos, sin = torch.cos(half), torch.sin(half)
        dim = -1 if batched else 0
        mats = []
        for kind in kinds:
            cs = []
            for k, index in enumerate(kind.index):
                if index == list(range(angles.shape[-1])):
                    cs.append((cos, sin))
                    continue
                idx = self._index(("angles", kind.source, tuple(index)), torch.tensor, index)
                cs.append((cos.index_select(dim, idx), sin.index_select(dim, idx)))
            mats.append(self._matrices(kind.name, cs))
        return mats[0] if len(mats) == 1 else torch.cat(mats, dim=-3)

    def _matrices(self, name: str, cs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        if name == "RY":
            return gates.ry_cs(*cs[0]).to(self.dtype)
        if name == "RX":
            return gates.rx_cs(*cs[0], self.dtype)
        if name == "RZ":
            return gates.rz_cs(*cs[0], self.dtype)
        if name == "Rot":  # Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)
            return gates.rz_cs(*cs[2], self.dtype) @ gates.ry_cs(*cs[1]).to(self.dtype) @ gates.rz_cs(*cs[0], self.dtype)
        raise ValueError(f"unknown gate {name!r}")

    def _weight_pool(self, w: torch.Tensor) -> torch.Tensor:
        constants = self._index("constants", _constant_gates, self.dtype)
        if not self.plan.weight_kinds:
            return constants.unsqueeze(0)
        return torch.cat([constants, self._pool(self.plan.weight_kinds, w, batched=False)], dim=0).unsqueeze(0)

    def identity(self) -> torch.Tensor:
        return self._index("identity", torch.eye, 2**self.n, dtype=self.dtype)

    def step_matrices(self, step: _SingleQubitStep) -> torch.Tensor:
        """(Bx, n, 2, 2): each qubit's gate chain multiplied out; Bx is the batch or 1."""
        weight_pool, data_pool = self.weight_pool, self.data_pool
        mats = None
        n_weight = self.plan.n_weight_slots
        for slots in step.positions:
            if max(slots) < n_weight:  # weights and constants only
                pool, local = weight_pool, slots
            elif min(slots) >= n_weight:  # inputs only
                pool, local = data_pool, [s - n_weight for s in slots]
            else:
                pool = torch.cat([weight_pool.expand(data_pool.shape[0], -1, 2, 2), data_pool], dim=1)
                local = slots
            m = self._gather_slots(pool, 1, local)
            mats = m if mats is None else m @ mats
        return mats

    def _gather_slots(self, pool: torch.Tensor, dim: int, slots: list[int]) -> torch.Tensor:
        """``pool`` entries ``slots`` along ``dim``: a slice when they are contiguous (cheaper backward)."""
        first = slots[0]
        if slots == list(range(first, first + len(slots))):
            return pool.narrow(dim, first, len(slots))
        idx = self._index(("slots", tuple(slots)), torch.tensor, slots)
        return pool.index_select(dim, idx)

    def layer_factors(self, steps: list) -> list[torch.Tensor | _PermutationStep]:
        """A run of weight-only steps as right factors: ``state @ F_1 @ F_2 ...`` applies the run.

        Every single-qubit layer becomes its full-register Kronecker matrix (transposed), all built
        in one gather + prod; a CNOT run right before a layer is folded into that layer's rows
        (``I[:, p] @ F = F[p^-1]``); other CNOT runs stay permutation steps.
        """
        singles = [s for s in steps if isinstance(s, _SingleQubitStep)]
        kron_t = None
        if singles:
            depth = max(len(s.positions) for s in singles)
            mats = None
            for level in range(depth):
                slots = [slot for s in singles for slot in self._level(s, level, depth)]
                m = self._gather_slots(self.weight_pool[0], 0, slots).view(len(singles), self.n, 2, 2)
                mats = m if mats is None else m @ mats
            idx = self._index(("kron_t", self.n), _kron_index, self.n, True)
            dim = 2**self.n
            kron_t = mats.reshape(len(singles), 4 * self.n).index_select(-1, idx).view(len(singles), dim, dim, self.n).prod(-1)
        factors: list = []
        i = 0
        for k, step in enumerate(steps):
            if isinstance(step, _SingleQubitStep):
                factor = kron_t[i]
                i += 1
                if factors and isinstance(factors[-1], _PermutationStep):
                    factor = factor.index_select(0, self._permutation(factors.pop())[1])
                factors.append(factor)
            else:
                factors.append(step)
        return factors

    def apply_factors(self, state: torch.Tensor, factors: list) -> torch.Tensor:
        for factor in factors:
            state = self.apply(state, factor) if isinstance(factor, _PermutationStep) else state @ factor
        return state

    def fused_matrix(self, steps: list) -> torch.Tensor:
        """T = U^T for a run of weight-only steps (its layer factors multiplied out)."""
        factors = self.layer_factors(steps)
        first = factors[0]
        matrix = self.apply(self.identity(), first) if isinstance(first, _PermutationStep) else first
        return self.apply_factors(matrix, factors[1:])

    @staticmethod
    def _level(step: _SingleQubitStep, level: int, depth: int) -> list[int]:
        offset = depth - len(step.positions)  # chains are padded with identities at the start
        return step.positions[level - offset] if level >= offset else [_IDENTITY_SLOT] * len(step.positions[0])

    def _permutation(self, step: _PermutationStep) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self._index(("perm", tuple(step.pairs)), _permutation_pair, self.n, step.pairs)
        return pair[0], pair[1]

    def product_state(self, mats: torch.Tensor) -> torch.Tensor:
        """G_0|0> x ... x G_{n-1}|0>: one gather + prod per chunk of qubits, outer products between chunks."""
        vectors = mats[..., :, 0]  # (Bx, n, 2): column 0 of each gate is G|0>
        state = None
        for start in range(0, self.n, PRODUCT_CHUNK):
            k = min(PRODUCT_CHUNK, self.n - start)
            idx = self._index(("product", k), _product_index, k)
            chunk = vectors[:, start : start + k].reshape(-1, 2 * k).index_select(-1, idx).view(-1, 2**k, k).prod(-1)
            state = chunk if state is None else (state.unsqueeze(-1) * chunk.unsqueeze(1)).reshape(chunk.shape[0], -1)
        return state

    def apply(self, state: torch.Tensor, step) -> torch.Tensor:
        if isinstance(step, _PermutationStep):
            return _BasisPermutation.apply(state, *self._permutation(step))
        mats = self.step_matrices(step)
        batch, n = state.shape[0], self.n
        for start, size in step.blocks:
            idx = self._index(("kron", size), _kron_index, size)
            flat = mats[:, start : start + size].reshape(mats.shape[0], 4 * size)
            block = flat.index_select(-1, idx).view(-1, 2**size, 2**size, size).prod(-1)
            view = state.reshape(batch, 2**start, 2**size, 2 ** (n - start - size))
            # einsum picks the bmm layout; broadcasting matmul measured ~2x slower at 16 qubits.
            if block.shape[0] > 1:
                state = torch.einsum("bij,bajr->bair", block, view).reshape(batch, 2**n)
            else:
                state = torch.einsum("ij,bajr->bair", block[0], view).reshape(batch, 2**n)
        return state


def _constant_gates(dtype: torch.dtype) -> torch.Tensor:
    """The constant pool slots: identity and Hadamard."""
    return torch.stack([torch.eye(2, dtype=torch.float64), gates.hadamard((), torch.float64, torch.device("cpu"))]).to(dtype)


def _permutation_pair(n: int, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """The permutation of a CNOT run stacked with its inverse."""
    perm = _permutation(n, pairs)
    return torch.stack([perm, torch.argsort(perm)])


def _measurement_matrix(plan: _Plan, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
    """(2**n, n_outputs) eigenvalues of the measured observables per basis state; None for probs."""
    circuit, cache, key = plan.circuit, plan.device_cache, ("measurement", device, dtype)
    if key not in cache:
        n = circuit.n_qubits
        if circuit.measurement == "probs":
            cache[key] = None
        else:
            bits = (torch.arange(2**n, device=device)[:, None] >> torch.arange(n - 1, -1, -1, device=device)) & 1
            signs = (1 - 2 * bits).to(dtype)  # (2^n, n): eigenvalue of Z_q on each basis state
            cache[key] = signs if circuit.measurement == "z" else signs[:, :-1] * signs[:, 1:]
    return cache[key]


@dataclass
class _AnalyticTables:
    """Per-plan constants of :class:`_AnalyticSimulation`: every index is built once, with the CNOT
    permutations folded into the Kronecker gathers, so a call is a few dozen tensor ops."""

    encoded: torch.Tensor  # (2, n): u = (constant gates before RY(x_q)) |0> per wire
    angle_index: torch.Tensor  # (layers * n,) into [weights, 0]: 0 where a wire has no gate
    kron_index: torch.Tensor  # (layers, D * D * n) into [M (4n) | dM (4n)] per layer: F_l
    d_kron_index: torch.Tensor  # (layers, n * D * D * n): F_l with wire r's factor differentiated
    product_index: torch.Tensor  # (D * n,) into [v (2n) | dv (2n)]: the product state
    d_product_index: torch.Tensor  # (n * D * n,): the product state with wire r differentiated
    factors: list  # right factors in order: ("layer", l) or ("perm", matrix)
    layer_weights: list[tuple[torch.Tensor, torch.Tensor]]  # per layer: wires with a gate, their flat weight index

    @staticmethod
    def build(plan: _Plan, device: torch.device, dtype: torch.dtype) -> _AnalyticTables:
        n, dim = plan.circuit.n_qubits, 2**plan.circuit.n_qubits
        first = plan.steps[0]
        hadamard = gates.hadamard((), torch.float64, torch.device("cpu"))
        encoded = []
        for q in range(n):
            u = torch.tensor([1.0, 0.0], dtype=torch.float64)
            for pos in first.positions[:-1]:
                u = hadamard @ u if pos[q] == _HADAMARD_SLOT else u
            encoded.append(u)
        steps = plan.segments[0][1]
        sentinel = plan.circuit.n_weights
        angle_index, layer_weights, kron_rows, d_kron_rows, factors = [], [], [], [], []
        base, d_base = _kron_index(n, True).view(dim, dim, n), _replaced_kron_index(n, True).view(n, dim, dim, n)
        pending = None
        for step in steps:
            if isinstance(step, _PermutationStep):
                if pending is not None:
                    factors.append(("perm", torch.eye(dim, dtype=dtype).index_select(0, pending)))
                pending = _permutation_pair(n, step.pairs)[1]
                continue
            slots = step.positions[0]
            wires = [q for q in range(n) if slots[q] >= _CONSTANT_SLOTS]
            index = [plan.weight_kinds[0].index[0][slots[q] - _CONSTANT_SLOTS] for q in wires]
            angle_index += [index[wires.index(q)] if q in wires else sentinel for q in range(n)]
            layer_weights.append((torch.tensor(wires, device=device), torch.tensor(index, device=device)))
            rows = pending if pending is not None else torch.arange(dim)  # I[:, p] @ F = F[p^-1]
            kron_rows.append(base[rows].reshape(-1))
            d_kron_rows.append(d_base[:, rows].reshape(-1))
            factors.append(("layer", len(layer_weights) - 1))
            pending = None
        if pending is not None:
            factors.append(("perm", torch.eye(dim, dtype=dtype).index_select(0, pending)))
        return _AnalyticTables(
            encoded=torch.stack(encoded, dim=1).to(device=device, dtype=dtype),
            angle_index=torch.tensor(angle_index, device=device),
            kron_index=torch.stack(kron_rows).to(device),
            d_kron_index=torch.stack(d_kron_rows).to(device),
            product_index=_product_index(n).to(device),
            d_product_index=_replaced_product_index(n).to(device),
            factors=[(kind, value.to(device) if kind == "perm" else value) for kind, value in factors],
            layer_weights=layer_weights,
        )


class _AnalyticSimulation(torch.autograd.Function):
    """Measured values of a small real circuit, with a hand-written backward.

    Why: at a few qubits, autograd's per-node cost is most of the time. For circuits that
    :func:`_analytic_eligible` accepts (the paper's), every angle enters exactly one RY gate, and
    dRY/dtheta = RY(theta + pi) / 2. So the forward pass also builds, in forward mode, the state's
    Jacobian w.r.t. every input (the product state with one vector differentiated) and the
    transfer matrix's derivative w.r.t. every weight (one Kronecker factor differentiated,
    between the prefix and suffix products of the other layers). The backward is then a handful
    of matmuls. Checked against PennyLane and ``gradcheck`` like the other strategies.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, plan: _Plan, dtype: torch.dtype) -> torch.Tensor:
        n, dim, batch = plan.circuit.n_qubits, 2**plan.circuit.n_qubits, x.shape[0]
        tables = plan.analytic_tables(x.device, dtype)

        # Encoding: v_q = RY(x_q) u_q and dv_q = RY(x_q + pi) u_q / 2 = (-v_q1, v_q0) / 2.
        cos, sin = torch.cos(x * 0.5), torch.sin(x * 0.5)
        u0, u1 = tables.encoded
        v0, v1 = cos * u0 - sin * u1, sin * u0 + cos * u1
        vectors = torch.cat([torch.stack([v0, v1], -1), torch.stack([-0.5 * v1, 0.5 * v0], -1)], dim=1).reshape(batch, 4 * n)
        psi0 = vectors.index_select(1, tables.product_index).view(batch, dim, n).prod(-1)
        jac_x = vectors.index_select(1, tables.d_product_index).view(batch, n, dim, n).prod(-1)

        # Weight layers: RY entries [c, -s, s, c] and derivatives [-s, -c, c, -s] / 2, one row per layer.
        theta = torch.cat([w.reshape(-1), w.new_zeros(1)]).index_select(0, tables.angle_index) * 0.5
        c, s = torch.cos(theta), torch.sin(theta)
        n_layers = len(tables.layer_weights)
        table = torch.cat([torch.stack([c, -s, s, c], -1).view(n_layers, 4 * n), torch.stack([-s, -c, c, -s], -1).view(n_layers, 4 * n) * 0.5], dim=1)
        kron_t = torch.gather(table, 1, tables.kron_index).view(n_layers, dim, dim, n).prod(-1)
        d_kron_t = torch.gather(table, 1, tables.d_kron_index).view(n_layers, n, dim, dim, n).prod(-1)

        matrices = [kron_t[value] if kind == "layer" else value for kind, value in tables.factors]
        prefixes, product = [], None
        for matrix in matrices:
            prefixes.append(product)
            product = matrix if product is None else product @ matrix
        transfer, suffix, d_parts, weight_index = product, None, [], []
        for (kind, value), matrix, prefix in zip(reversed(tables.factors), reversed(matrices), reversed(prefixes)):
            if kind == "layer":
                wires, index = tables.layer_weights[value]
                d = d_kron_t[value] if len(wires) == n else d_kron_t[value].index_select(0, wires)
                d = d if prefix is None else prefix @ d
                d_parts.append(d if suffix is None else d @ suffix)
                weight_index.append(index)
            suffix = matrix if suffix is None else matrix @ suffix

        phi = psi0 @ transfer
        signs = _measurement_matrix(plan, x.device, x.dtype)
        probs = phi.square()
        ctx.save_for_backward(psi0, jac_x, transfer, torch.cat(d_parts), phi, signs if signs is not None else phi.new_zeros(0), torch.cat(weight_index))
        ctx.weight_shape = w.shape
        return probs if signs is None else probs @ signs

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        psi0, jac_x, transfer, d_transfer, phi, signs, weight_index = ctx.saved_tensors
        grad_probs = grad_out if signs.numel() == 0 else grad_out @ signs.T
        grad_phi = 2 * phi * grad_probs
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_psi0 = grad_phi @ transfer.T
            grad_x = (jac_x @ grad_psi0.unsqueeze(-1)).squeeze(-1)
        if ctx.needs_input_grad[1]:
            grad_transfer = psi0.T @ grad_phi
            values = d_transfer.reshape(d_transfer.shape[0], -1) @ grad_transfer.reshape(-1)
            grad_w = grad_transfer.new_zeros(ctx.weight_shape.numel()).index_add_(0, weight_index, values).view(ctx.weight_shape)
        return grad_x, grad_w, None, None


# ---------------------------------------------------------------------------- memory guard
def available_memory(device: torch.device) -> int:
    """Bytes free on ``device`` (CUDA: free device memory; CPU: MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown platform: do not refuse


def estimate_memory(circuit: Circuit, batch_size: int, strategy: str = "gates", dtype: torch.dtype = torch.complex64) -> int:
    """Bytes a forward + backward pass is expected to hold at its peak (an upper-bound estimate).

    Example:
        >>> estimate_memory(Circuit(n_qubits=30), batch_size=64) > 2**40
        True
    """
    itemsize = dtype.itemsize
    n_steps = len(_plan_for(circuit).steps)
    dim = 2**circuit.n_qubits
    # Autograd keeps about one state per step, plus the input, the output and the probabilities.
    total = itemsize * batch_size * dim * (n_steps + 4)
    if strategy == "fused":
        total += itemsize * dim * dim * (n_steps + 2)
    if circuit.measurement == "probs":
        total += itemsize * batch_size * dim
    return total


def _check_memory(circuit: Circuit, batch: int, strategy: str, dtype: torch.dtype, device: torch.device) -> None:
    need = estimate_memory(circuit, batch, strategy, dtype)
    if need < _SMALL_BYTES:
        return
    have = available_memory(device)
    if need > have:
        raise RegisterTooLargeError(
            f"simulating {circuit.n_qubits} qubits with batch {batch} ({strategy} strategy, {dtype}) "
            f"needs about {need / 2**30:.3g} GiB but only {have / 2**30:.3g} GiB is available on {device}; "
            "use fewer qubits or a smaller batch"
        )


def choose_strategy(circuit: Circuit, batch_size: int, dtype: torch.dtype = torch.complex64, device: torch.device | str = "cpu") -> str:
    """The strategy ``"auto"`` resolves to for this circuit and batch."""
    if circuit.n_qubits <= FUSED_MAX_QUBITS:
        need = estimate_memory(circuit, batch_size, "fused", dtype)
        if need < _SMALL_BYTES or need <= available_memory(torch.device(device)):
            return "fused"
    return "gates"


# ---------------------------------------------------------------------------- public API
def _resolve_dtypes(inputs: torch.Tensor, dtype: torch.dtype | None, real: bool) -> tuple[torch.dtype, torch.dtype]:
    """(state dtype, real dtype) for this call."""
    if dtype is None:
        dtype = torch.complex128 if inputs.dtype == torch.float64 else torch.complex64
    if dtype not in (torch.complex64, torch.complex128, torch.float32, torch.float64):
        raise ValueError(f"dtype must be complex64 or complex128, got {dtype}")
    real_dtype = torch.float64 if dtype in (torch.complex128, torch.float64) else torch.float32
    complex_dtype = torch.complex128 if real_dtype == torch.float64 else torch.complex64
    return (real_dtype if real else complex_dtype), real_dtype


def _validate(circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor, strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if inputs.dim() != 2 or inputs.shape[-1] != circuit.n_qubits:
        raise ValueError(
            f"inputs must have shape (batch, {circuit.n_qubits}) for a {circuit.n_qubits}-qubit circuit, "
            f"got {tuple(inputs.shape)}"
        )
    if tuple(weights.shape) != circuit.weight_shape:
        raise ValueError(f"weights must have shape {circuit.weight_shape}, got {tuple(weights.shape)}")
    if inputs.is_complex() or weights.is_complex():
        raise ValueError("inputs and weights are real angles; got a complex tensor")


def _prepare(circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor, strategy: str, dtype: torch.dtype | None):
    """Validate a call; resolve the strategy and dtypes; refuse a register that does not fit."""
    single = inputs.dim() == 1
    if single:
        inputs = inputs.unsqueeze(0)
    _validate(circuit, inputs, weights, strategy)
    plan = _plan_for(circuit)
    state_dtype, real_dtype = _resolve_dtypes(inputs, dtype, plan.real)
    if strategy == "auto":
        strategy = choose_strategy(circuit, inputs.shape[0], state_dtype, inputs.device)
    _check_memory(circuit, inputs.shape[0], strategy, state_dtype, inputs.device)
    return single, inputs, plan, strategy, state_dtype, real_dtype


def statevector(
    circuit: Circuit,
    inputs: torch.Tensor,
    weights: torch.Tensor,
    *,
    strategy: str = "auto",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Final state of every sample, shape ``(batch, 2**n)`` (real dtype for real-only circuits).

    Args:
        circuit: the circuit description.
        inputs: encoding angles, shape ``(batch, n_qubits)`` (or ``(n_qubits,)`` for one sample).
        weights: trainable angles, shape ``circuit.weight_shape``.
        strategy: ``"auto"``, ``"fused"`` or ``"gates"``.
        dtype: ``torch.complex64`` or ``torch.complex128``; default follows the inputs' precision.
    """
    single, inputs, plan, strategy, state_dtype, real_dtype = _prepare(circuit, inputs, weights, strategy, dtype)
    batch, n, device = inputs.shape[0], circuit.n_qubits, inputs.device
    run = _Run(plan, inputs.to(real_dtype), weights.to(real_dtype).reshape(-1), state_dtype)
    # The leading single-qubit step acts on |0...0>: build it as a product state.
    if plan.leading_product:
        state = run.product_state(run.step_matrices(plan.steps[0]))
    else:
        state = torch.zeros(1, 2**n, dtype=state_dtype, device=device)
        state[:, 0] = 1
    if state.shape[0] != batch:
        state = state.expand(batch, -1)
    for kind, steps in plan.segments:
        if kind == "weights" and strategy == "fused":
            state = state @ run.fused_matrix(steps)
        elif kind == "weights" and n <= LAYER_MATRIX_MAX_QUBITS:
            state = run.apply_factors(state, run.layer_factors(steps))
        else:
            for step in steps:
                state = run.apply(state, step)
    return state[0] if single else state


def simulate(
    circuit: Circuit,
    inputs: torch.Tensor,
    weights: torch.Tensor,
    *,
    strategy: str = "auto",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Measured values of every sample: shape ``(batch, circuit.n_outputs)``, real.

    ``measurement="z"`` gives <Z_i>, ``"zz"`` gives <Z_i Z_{i+1}>, ``"probs"`` the basis-state
    probabilities (wire 0 most significant). Differentiable with respect to inputs and weights.
    """
    needs_grad = torch.is_grad_enabled() and (inputs.requires_grad or weights.requires_grad)
    if needs_grad and strategy != "gates" and _plan_for(circuit).analytic:
        single, inputs2, plan, resolved, state_dtype, real_dtype = _prepare(circuit, inputs, weights, strategy, dtype)
        if resolved == "fused":  # small real circuits: forward-mode Jacobians, matmul backward
            out = _AnalyticSimulation.apply(inputs2.to(real_dtype), weights.to(real_dtype), plan, state_dtype)
            return out[0] if single else out
    state = statevector(circuit, inputs, weights, strategy=strategy, dtype=dtype)
    probs = state.square() if not state.is_complex() else torch.view_as_real(state).square().sum(-1)
    single = probs.dim() == 1
    probs2 = probs.unsqueeze(0) if single else probs
    plan = _plan_for(circuit)
    matrix = _measurement_matrix(plan, probs2.device, probs2.dtype)
    out = probs2 if matrix is None else probs2 @ matrix
    return out[0] if single else out
