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

Two strategies share those steps and leave the backward pass to autograd:

- ``"fused"``: every input-independent (weight-only) run of steps is multiplied into one
  2**n x 2**n matrix, applied to the batch with one matmul;
- ``"gates"``: every step is applied to the batched state; nothing of size 4**n above 6 qubits.

Two more have a hand-written backward pass for the paper's kind of circuit (H/RY encoding, CNOTs,
RY layers): ``"analytic"`` (:mod:`qubert.quantum.analytic`) up to 10 qubits keeps the state
entering every layer; ``"adjoint"`` (:mod:`qubert.quantum.adjoint`), at any size, keeps a few
states per sample and recovers the others by running the circuit backwards. ``"auto"`` picks
analytic where it applies, adjoint from 11 qubits on, else fused up to 6 qubits and gates above.
A register that would not fit in memory is refused before anything is allocated.

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
from qubert.quantum.adjoint import estimate_adjoint_memory, run_adjoint
from qubert.quantum.analytic import MAX_QUBITS as ANALYTIC_MAX_QUBITS
from qubert.quantum.analytic import analytic_structure, estimate_analytic_memory, rotation_structure, run_analytic
from qubert.quantum.basis import cnot_permutation_and_inverse, half_expectations, half_signs, kron_index, observable_signs, product_index
from qubert.quantum.circuit import Circuit, Operation

STRATEGIES = ("auto", "analytic", "adjoint", "fused", "gates")
# Smallest register for which "auto" picks the adjoint strategy over the analytic one (measured:
# benchmarks/engine_scale.py, docs/benchmarks.md "Engine at 11-24 qubits").
ADJOINT_MIN_QUBITS = ANALYTIC_MAX_QUBITS + 1
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
# From this size on, <Z> and <ZZ> are read from the two halves' marginals (no (2**n, n) sign table).
HALF_READOUT_MIN_QUBITS = 11
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
            idx = self._index(("kron_t", self.n), kron_index, self.n, True)
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
            idx = self._index(("product", k), product_index, k)
            chunk = vectors[:, start : start + k].reshape(-1, 2 * k).index_select(-1, idx).view(-1, 2**k, k).prod(-1)
            state = chunk if state is None else (state.unsqueeze(-1) * chunk.unsqueeze(1)).reshape(chunk.shape[0], state.shape[1] * 2**k)
        return state

    def apply(self, state: torch.Tensor, step) -> torch.Tensor:
        if isinstance(step, _PermutationStep):
            return _BasisPermutation.apply(state, *self._permutation(step))
        mats = self.step_matrices(step)
        batch, n = state.shape[0], self.n
        for start, size in step.blocks:
            idx = self._index(("kron", size), kron_index, size)
            flat = mats[:, start : start + size].reshape(mats.shape[0], 4 * size)
            block = flat.index_select(-1, idx).view(-1, 2**size, 2**size, size).prod(-1)
            view = state.reshape(batch, 2**start, 2**size, 2 ** (n - start - size))
            # einsum picks the bmm layout; broadcasting matmul measured ~2x slower at 16 qubits.
            if block.shape[0] != 1:
                state = torch.einsum("bij,bajr->bair", block, view).reshape(batch, 2**n)
            else:
                state = torch.einsum("ij,bajr->bair", block[0], view).reshape(batch, 2**n)
        return state


def _constant_gates(dtype: torch.dtype) -> torch.Tensor:
    """The constant pool slots: identity and Hadamard."""
    return torch.stack([torch.eye(2, dtype=torch.float64), gates.hadamard((), torch.float64, torch.device("cpu"))]).to(dtype)


def _permutation_pair(n: int, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """The permutation of a CNOT run stacked with its inverse."""
    return torch.stack(cnot_permutation_and_inverse(n, pairs))


def _measurement_matrix(plan: _Plan, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
    """(2**n, n_outputs) eigenvalues of the measured observables per basis state; None for probs."""
    circuit, cache, key = plan.circuit, plan.device_cache, ("measurement", device, dtype)
    if circuit.n_qubits >= HALF_READOUT_MIN_QUBITS and circuit.measurement != "probs":
        return None
    if key not in cache:
        signs = observable_signs(circuit.n_qubits, circuit.measurement)
        cache[key] = None if signs is None else signs.to(device=device, dtype=dtype)
    return cache[key]


# ---------------------------------------------------------------------------- memory guard
def available_memory(device: torch.device) -> int:
    """Bytes free on ``device`` (CUDA: free device memory; CPU: MemAvailable)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown platform: do not refuse


def estimate_memory(circuit: Circuit, batch_size: int, strategy: str = "gates", dtype: torch.dtype = torch.complex64) -> int:
    """Bytes one forward + backward pass may hold at its peak: an upper bound for the state ``dtype``.

    It counts the states autograd keeps (one per block or matrix applied to the batch), the
    backward pass's gradients and temporaries, whole-register layer matrices (``fused``; ``gates``
    up to 6 qubits) and the first call's index and sign tables; ``adjoint``: a few states per
    sample of a batch chunk plus the ``probs`` readout (:func:`~.adjoint.estimate_adjoint_memory`).
    It bounds the live tensors after a warm-up call (a cold first call can peak 2-40 % higher),
    not an allocator's cache; ``tests/quantum/test_memory_estimate.py`` checks it.

    Example:
        >>> estimate_memory(Circuit(n_qubits=30), batch_size=64) > 2**40
        True
    """
    itemsize = dtype.itemsize
    n, dim = circuit.n_qubits, 2**circuit.n_qubits
    if strategy == "adjoint":  # real arithmetic only
        return estimate_adjoint_memory(circuit, batch_size, 8 if dtype in (torch.float64, torch.complex128) else 4)
    tables = _measurement_table_bytes(circuit, 8 if dtype in (torch.float64, torch.complex128) else 4)
    if strategy == "analytic":
        return estimate_analytic_memory(circuit, batch_size, itemsize) + tables
    kept = 0  # batch states saved for the backward pass
    layer_matrices = 0  # weight-only single-qubit layers built as 2**n x 2**n matrices
    blocks = 0  # bytes of per-sample Kronecker blocks (data-dependent steps) and their gathered entries
    plan = _plan_for(circuit)
    for kind, steps in plan.segments:
        singles = [step for step in steps if isinstance(step, _SingleQubitStep)]
        tables += 40 * dim * (len(steps) - len(singles))  # each CNOT run: permutation and inverse, and their build
        if kind == "weights" and (strategy == "fused" or n <= LAYER_MATRIX_MAX_QUBITS):
            layer_matrices += len(singles)
            kept += 1 if strategy == "fused" else len(steps)
        else:
            kept += sum(len(step.blocks) for step in singles)
            if kind == "data":
                # per block of k qubits: (batch, 4**k, k) gathered entries (kept by prod), the block,
                # and their gradients (about twice that for complex gates; see the layer matrices)
                factor = 4 if dtype.is_complex else 2
                blocks += sum(batch_size * 4**k * factor * (k + 2) * itemsize for step in singles for _, k in step.blocks)
    # Besides the kept states: the final state, the probabilities, and the gradient and copies the
    # backward pass holds at once; per sample, the (2**k, k) gathered entries of each product-state
    # chunk (kept by prod) and their gradient, and the gate matrices of the inputs.
    per_sample = dim * (kept + 6 + (circuit.measurement == "probs")) + 24 * sum(len(k.index) * len(k.index[0]) for k in plan.data_kinds)
    if plan.leading_product:
        per_sample += sum(4 * 2**k * k for k in (min(PRODUCT_CHUNK, n - start) for start in range(0, n, PRODUCT_CHUNK)))
    states = itemsize * batch_size * per_sample
    matrices = 0
    if layer_matrices:
        # Per layer: its (2**n, 2**n, n) gathered entries (kept by prod) and their gradient (complex
        # gates have zero entries, for which prod's backward takes about twice as much), the
        # matrix, its gradient and the fused products; once: the int64 Kronecker index and its build.
        per_entry = (4 * n + 14) if dtype.is_complex else (2 * n + 10)
        matrices = layer_matrices * dim * dim * itemsize * per_entry + 24 * n * dim * dim
    return states + blocks + matrices + tables


def _measurement_table_bytes(circuit: Circuit, real_itemsize: int) -> int:
    """Bytes of the measured observables' signs (2**n, n_outputs), cached per circuit, and of their int64 build."""
    if circuit.measurement == "probs":
        return 0
    if circuit.n_qubits >= HALF_READOUT_MIN_QUBITS:
        return 0  # two half-register tables of 2**(n/2) rows
    dim = 2**circuit.n_qubits
    return dim * (16 * circuit.n_qubits + real_itemsize * circuit.n_outputs)


def require_memory(need: int, what: str, device: torch.device | str, *, advice: str = "use fewer qubits or a smaller batch") -> None:
    """Raise :class:`RegisterTooLargeError` (one line naming ``what`` and ``advice``) when ``need``
    bytes exceed what ``device`` has free: the one memory check of every simulator here."""
    have = available_memory(torch.device(device))
    if need > have:
        raise RegisterTooLargeError(f"{what} needs about {need / 2**30:.3g} GiB but only {have / 2**30:.3g} GiB is available on {device}; {advice}")


def check_memory(circuit: Circuit, batch: int, strategy: str, dtype: torch.dtype, device: torch.device | str) -> None:
    """Refuse a state-vector simulation of ``circuit`` on ``batch`` samples that cannot fit on ``device``
    (``strategy`` resolved, ``dtype`` the state dtype of :func:`resolve_dtypes`); see ``check_head_memory``."""
    need = estimate_memory(circuit, batch, strategy, dtype)
    if need < _SMALL_BYTES:
        return
    require_memory(need, f"simulating {circuit.n_qubits} qubits with batch {batch} ({strategy} strategy, {dtype})", device)


def choose_strategy(circuit: Circuit, batch_size: int, dtype: torch.dtype = torch.complex64, device: torch.device | str = "cpu") -> str:
    """The strategy ``"auto"`` resolves to for this circuit and batch: for the paper's kind of
    circuit ``analytic`` up to 10 qubits and ``adjoint`` above; else ``fused`` up to 6 qubits and
    ``gates`` above (each only when it fits in memory).

    Example:
        >>> choose_strategy(Circuit(n_qubits=8), 64), choose_strategy(Circuit(n_qubits=16), 64)
        ('analytic', 'adjoint')
        >>> choose_strategy(Circuit(n_qubits=4, encoding="rx"), 64)
        'fused'
    """
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"choose_strategy: device {str(device)!r} asked for, but CUDA is not available on this machine")
    family = rotation_structure(circuit) is not None
    candidates = (
        (["analytic"] if analytic_structure(circuit) is not None else [])
        + (["adjoint"] if family and circuit.n_qubits >= ADJOINT_MIN_QUBITS else [])
        + (["fused"] if circuit.n_qubits <= FUSED_MAX_QUBITS else [])
    )
    for strategy in candidates:
        need = estimate_memory(circuit, batch_size, strategy, dtype)
        if need < _SMALL_BYTES or need <= available_memory(device):
            return strategy
    return "gates"


# ---------------------------------------------------------------------------- public API
def resolve_dtypes(inputs: torch.Tensor, dtype: torch.dtype | None, real: bool) -> tuple[torch.dtype, torch.dtype]:
    """``(state dtype, real dtype)`` a simulation of ``inputs`` runs in (float64 inputs: double
    precision unless ``dtype`` says otherwise; ``real``: the circuit keeps the state real).

    Example:
        >>> resolve_dtypes(torch.zeros(2, dtype=torch.float64), None, real=False)
        (torch.complex128, torch.float64)
    """
    if dtype is None:
        dtype = torch.complex128 if inputs.dtype == torch.float64 else torch.complex64
    if dtype not in (torch.complex64, torch.complex128, torch.float32, torch.float64):
        raise ValueError(f"dtype must be complex64 or complex128, got {dtype}")
    real_dtype = torch.float64 if dtype in (torch.complex128, torch.float64) else torch.float32
    complex_dtype = torch.complex128 if real_dtype == torch.float64 else torch.complex64
    return (real_dtype if real else complex_dtype), real_dtype


def check_strategy(circuit: Circuit, strategy: str) -> None:
    """Raise a ValueError naming the problem when ``strategy`` is unknown or cannot run ``circuit``.

    Example:
        >>> check_strategy(Circuit(n_qubits=3, encoding="rx"), "analytic")
        Traceback (most recent call last):
        ...
        ValueError: strategy 'analytic' needs at most 10 qubits, ... got 3 qubits, encoding rx, ...
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if strategy == "adjoint" and rotation_structure(circuit) is None:
        c = circuit
        raise ValueError(
            "strategy 'adjoint' needs an h_ry or ry encoding without re-uploading and an ansatz of CNOTs and RY "
            f"rotations (brickwork or basic_entangler with rotation ry); got encoding {c.encoding}"
            f"{' with re-uploading' if c.reupload else ''}, ansatz {c.ansatz}, rotation {c.rotation}; use strategy 'auto'"
        )
    if strategy == "analytic" and analytic_structure(circuit) is None:
        c = circuit
        raise ValueError(
            f"strategy 'analytic' needs at most {ANALYTIC_MAX_QUBITS} qubits, an h_ry or ry encoding without re-uploading "
            "and an ansatz of CNOTs and RY rotations (brickwork or basic_entangler with rotation ry); got "
            f"{c.n_qubits} qubits, encoding {c.encoding}{' with re-uploading' if c.reupload else ''}, ansatz {c.ansatz}, "
            f"rotation {c.rotation}; use strategy 'auto'"
        )


def _validate(circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor, strategy: str) -> None:
    check_strategy(circuit, strategy)
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
    state_dtype, real_dtype = resolve_dtypes(inputs, dtype, plan.real)
    if strategy == "auto":
        strategy = choose_strategy(circuit, inputs.shape[0], state_dtype, inputs.device)
    check_memory(circuit, inputs.shape[0], strategy, state_dtype, inputs.device)
    return single, inputs, plan, strategy, state_dtype, real_dtype


def _evolve(plan: _Plan, inputs: torch.Tensor, weights: torch.Tensor, strategy: str, state_dtype: torch.dtype, real_dtype: torch.dtype) -> torch.Tensor:
    """The final states ``(batch, 2**n)`` under the ``fused`` or ``gates`` strategy (autograd)."""
    batch, n, device = inputs.shape[0], plan.circuit.n_qubits, inputs.device
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
    return state


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
        strategy: one of :data:`STRATEGIES`; ``"auto"`` picks with :func:`choose_strategy`.
        dtype: ``torch.complex64`` or ``torch.complex128``; default follows the inputs' precision.
    """
    single, inputs, plan, strategy, state_dtype, real_dtype = _prepare(circuit, inputs, weights, strategy, dtype)
    if strategy == "analytic":
        state = run_analytic(circuit, inputs.to(real_dtype), weights.to(real_dtype), readout=False)
    elif strategy == "adjoint":
        state = run_adjoint(circuit, inputs.to(real_dtype), weights.to(real_dtype), readout=False)
    else:
        state = _evolve(plan, inputs, weights, strategy, state_dtype, real_dtype)
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
    Arguments as for :func:`statevector`.

    Second derivatives (``create_graph=True``) need ``strategy="gates"`` or ``"fused"``.
    """
    single, inputs, plan, strategy, state_dtype, real_dtype = _prepare(circuit, inputs, weights, strategy, dtype)
    if strategy == "analytic":
        out = run_analytic(circuit, inputs.to(real_dtype), weights.to(real_dtype))
    elif strategy == "adjoint":
        out = run_adjoint(circuit, inputs.to(real_dtype), weights.to(real_dtype))
    else:
        state = _evolve(plan, inputs, weights, strategy, state_dtype, real_dtype)
        probs = state.square() if not state.is_complex() else torch.view_as_real(state).square().sum(-1)
        matrix = _measurement_matrix(plan, probs.device, probs.dtype)
        if matrix is not None:
            out = probs @ matrix
        elif circuit.measurement == "probs":
            out = probs
        else:
            key = ("half signs", probs.device, probs.dtype)
            if key not in plan.device_cache:
                plan.device_cache[key] = tuple(t.to(device=probs.device, dtype=probs.dtype) for t in half_signs(circuit.n_qubits))
            out = half_expectations(probs, plan.device_cache[key], circuit.measurement)
    return out[0] if single else out
