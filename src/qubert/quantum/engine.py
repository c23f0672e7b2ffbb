"""Batched, differentiable statevector simulation of a :class:`~qubert.quantum.circuit.Circuit`.

Why hand-written: at the sizes of a classification head (2-16 qubits, batches of 64) the cost of
a simulator is per-operation overhead, not arithmetic. General simulators apply one gate at a
time; this engine first compiles the gate list into few, large steps and then runs them batch-first
on the input's device:

- runs of single-qubit gates become one Kronecker-product block per group of qubits, applied
  with one matmul on a reshaped state (the gates of a whole layer and batch are built at once);
- runs of CNOTs become one permutation of basis states (a gather);
- the first encoding layer acting on |0...0> is built directly as a product state;
- circuits of real gates only (H, RY, CNOT: the paper's circuit) run in real arithmetic.

Two strategies share those steps:

- ``"fused"``: the input-independent (weight-only) runs of steps are multiplied into one
  2**n x 2**n matrix (by running the steps on the identity), applied to the batch with one matmul;
- ``"gates"``: every step is applied to the batched state, never materialising 2**n x 2**n.

``"auto"`` picks fused for small registers. A register that would not fit in memory is refused
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
import math
import os
from dataclasses import dataclass, field

import torch

from qubert.quantum import gates
from qubert.quantum.circuit import Circuit, Operation

STRATEGIES = ("auto", "fused", "gates")
# Largest register for which "auto" picks the fused strategy (2**n x 2**n block matrices).
FUSED_MAX_QUBITS = 8
# Qubits per Kronecker block: 2**4 = 16x16 blocks keep block construction cheap while cutting the
# number of full-state passes per layer by 4x compared with one gate at a time.
BLOCK_QUBITS = 4


class RegisterTooLargeError(ValueError):
    """The simulation would need more memory than the device has available."""


# ---------------------------------------------------------------------------- compiled plan
@dataclass
class _SingleQubitStep:
    """Single-qubit gates on distinct qubits (each qubit's gates in time order)."""

    chains: dict[int, list[Operation]]
    data_dependent: bool
    n_qubits: int
    # (qubits, gate names, [per position: [per parameter: (source, index tensor as list)]])
    groups: list[tuple[list[int], tuple[str, ...], list[list[tuple[str, list[int]]]]]] = field(default_factory=list)
    blocks: list[tuple[int, int]] = field(default_factory=list)  # (first qubit, number of qubits)


@dataclass
class _PermutationStep:
    """A run of CNOTs, applied as one permutation of basis states."""

    pairs: list[tuple[int, int]]


@dataclass
class _Plan:
    circuit: Circuit
    steps: list
    real: bool
    _device_cache: dict = field(default_factory=dict)


def _compile(circuit: Circuit) -> _Plan:
    steps: list = []
    pending: dict[int, list[Operation]] = {}
    cnots: list[tuple[int, int]] = []

    def flush_single() -> None:
        if pending:
            data = any(op.is_data_dependent for chain in pending.values() for op in chain)
            steps.append(_SingleQubitStep(dict(pending), data, circuit.n_qubits))
            pending.clear()

    for op in circuit.operations():
        if op.name == "CNOT":
            flush_single()
            cnots.append(op.wires)
        else:
            if cnots:
                steps.append(_PermutationStep(list(cnots)))
                cnots.clear()
            pending.setdefault(op.wires[0], []).append(op)
    flush_single()
    if cnots:
        steps.append(_PermutationStep(list(cnots)))

    for step in steps:
        if isinstance(step, _SingleQubitStep):
            _group_chains(step, circuit.n_qubits)
    return _Plan(circuit, steps, circuit.is_real)


def _group_chains(step: _SingleQubitStep, n_qubits: int) -> None:
    """Group qubits whose gate chains have the same shape, so each group is built vectorised."""
    by_signature: dict[tuple, list[int]] = {}
    for q in sorted(step.chains):
        signature = tuple((op.name, tuple(p.source for p in op.params)) for op in step.chains[q])
        by_signature.setdefault(signature, []).append(q)
    for signature, qubits in by_signature.items():
        names = tuple(name for name, _ in signature)
        positions = []
        for pos, (_, sources) in enumerate(signature):
            params = [(src, [step.chains[q][pos].params[k].index for q in qubits]) for k, src in enumerate(sources)]
            positions.append(params)
        step.groups.append((qubits, names, positions))
    # Contiguous blocks of at most BLOCK_QUBITS qubits covering every qubit with a gate.
    qubits = sorted(step.chains)
    i = 0
    while i < len(qubits):
        start = qubits[i]
        size = min(BLOCK_QUBITS, n_qubits - start)
        step.blocks.append((start, size))
        while i < len(qubits) and qubits[i] < start + size:
            i += 1


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


# ---------------------------------------------------------------------------- running steps
def _step_matrices(step: _SingleQubitStep, x: torch.Tensor, w: torch.Tensor, dtype: torch.dtype, cache: dict) -> torch.Tensor:
    """2x2 matrices of every qubit's gate chain, shape (Bx, n_qubits, 2, 2) with Bx = batch or 1.

    Qubits without a gate in this step get the identity.
    """
    built = []
    for qubits, names, positions in step.groups:
        mats = None
        for name, params in zip(names, positions):
            angles = []
            for source, index in params:
                key = ("idx", tuple(index))
                idx = cache.get(key)
                if idx is None:
                    idx = cache[key] = torch.tensor(index, device=x.device)
                angles.append(x.index_select(-1, idx) if source == "x" else w.index_select(0, idx).unsqueeze(0))
            if name == "H":
                m = _constant_hadamard(dtype, x.device, cache)
            else:
                m = gates.gate_matrix(name, angles, dtype, (1, len(qubits)), x.device)
            mats = m if mats is None else m @ mats
        built.append((qubits, mats))
    if len(built) == 1 and built[0][0] == list(range(step.n_qubits)):
        return built[0][1].expand(-1, step.n_qubits, 2, 2) if built[0][1].shape[1] == 1 else built[0][1]
    # Several gate shapes, or idle qubits: assemble in qubit order with one gather.
    key = ("order", id(step))
    parts = [m.expand(-1, len(q), 2, 2) for q, m in built]
    bx = max(p.shape[0] for p in parts)
    eye = torch.eye(2, dtype=dtype, device=x.device).expand(bx, 1, 2, 2)
    stacked = torch.cat([p.expand(bx, -1, 2, 2) for p in parts] + [eye], dim=1)
    if key not in cache:
        position = {q: i for i, q in enumerate(q for qubits, _ in built for q in qubits)}
        identity_slot = len(position)
        cache[key] = torch.tensor([position.get(q, identity_slot) for q in range(step.n_qubits)], device=x.device)
    return stacked.index_select(1, cache[key])


def _constant_hadamard(dtype: torch.dtype, device: torch.device, cache: dict) -> torch.Tensor:
    key = ("H", dtype)
    if key not in cache:
        cache[key] = gates.hadamard((1, 1), dtype, device)
    return cache[key]


def _kron(mats: torch.Tensor) -> torch.Tensor:
    """Kronecker product along dim -3: (..., k, 2, 2) -> (..., 2**k, 2**k), first factor most significant."""
    factors = mats.unbind(-3)
    out = factors[0]
    for m in factors[1:]:
        size = out.shape[-1] * 2
        out = (out[..., :, None, :, None] * m[..., None, :, None, :]).reshape(*out.shape[:-2], size, size)
    return out


def _apply_single(state: torch.Tensor, n: int, step: _SingleQubitStep, mats: torch.Tensor) -> torch.Tensor:
    """Apply a step's gates as Kronecker blocks of adjacent qubits, one matmul per block."""
    batch = state.shape[0]
    for start, size in step.blocks:
        block = _kron(mats[:, start : start + size])  # (Bx, 2^k, 2^k)
        view = state.reshape(batch, 2**start, 2**size, 2 ** (n - start - size))
        block = block.unsqueeze(1) if block.shape[0] > 1 else block[0]
        state = torch.matmul(block, view).reshape(batch, 2**n)
    return state


def _product_state(mats: torch.Tensor) -> torch.Tensor:
    """The state G_0|0> x ... x G_{n-1}|0> built as a batched outer product."""
    vectors = mats[..., :, 0].unbind(1)  # column 0 of each gate: G|0>
    state = vectors[0]
    for v in vectors[1:]:
        bx = max(state.shape[0], v.shape[0])
        state = (state[:, :, None] * v[:, None, :]).reshape(bx, -1)
    return state


def _measurement_matrix(circuit: Circuit, device: torch.device, dtype: torch.dtype, cache: dict) -> torch.Tensor | None:
    key = ("meas", device, dtype)
    if key not in cache:
        n = circuit.n_qubits
        if circuit.measurement == "probs":
            cache[key] = None
        else:
            bits = (torch.arange(2**n, device=device)[:, None] >> torch.arange(n - 1, -1, -1, device=device)) & 1
            signs = (1 - 2 * bits).to(dtype)  # (2^n, n): eigenvalue of Z_q on each basis state
            cache[key] = signs if circuit.measurement == "z" else signs[:, :-1] * signs[:, 1:]
    return cache[key]


# ---------------------------------------------------------------------------- memory guard
def _available_bytes(device: torch.device) -> int:
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
    itemsize = torch.empty((), dtype=dtype).element_size()
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
    have = _available_bytes(device)
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
        if need <= _available_bytes(torch.device(device)):
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
    single = inputs.dim() == 1
    if single:
        inputs = inputs.unsqueeze(0)
    _validate(circuit, inputs, weights, strategy)
    plan = _plan_for(circuit)
    state_dtype, real_dtype = _resolve_dtypes(inputs, dtype, plan.real)
    batch, n, device = inputs.shape[0], circuit.n_qubits, inputs.device
    if strategy == "auto":
        strategy = choose_strategy(circuit, batch, state_dtype, device)
    _check_memory(circuit, batch, strategy, state_dtype, device)

    cache = plan._device_cache.setdefault(device, {})
    x = inputs.to(real_dtype)
    w = weights.to(real_dtype).reshape(-1)
    steps = plan.steps

    # The leading single-qubit step acts on |0...0>: build it as a product state.
    if steps and isinstance(steps[0], _SingleQubitStep):
        state = _product_state(_step_matrices(steps[0], x, w, state_dtype, cache))
        steps = steps[1:]
    else:
        state = torch.zeros(1, 2**n, dtype=state_dtype, device=device)
        state[:, 0] = 1
    if state.shape[0] != batch:
        state = state.expand(batch, -1)

    def run(state: torch.Tensor, step) -> torch.Tensor:
        if isinstance(step, _PermutationStep):
            key = ("perm", id(step))
            if key not in cache:
                perm = _permutation(n, step.pairs).to(device)
                cache[key] = (perm, torch.argsort(perm))
            return _BasisPermutation.apply(state, *cache[key])
        return _apply_single(state, n, step, _step_matrices(step, x, w, state_dtype, cache))

    if strategy == "gates":
        for step in steps:
            state = run(state, step)
    else:
        fused_run: list = []
        for step in steps + [None]:
            if step is not None and not (isinstance(step, _SingleQubitStep) and step.data_dependent):
                fused_run.append(step)
                continue
            if fused_run:  # one 2^n x 2^n matrix for the whole weight-only run: rows are U^T
                matrix = torch.eye(2**n, dtype=state_dtype, device=device)
                for s in fused_run:
                    matrix = run(matrix, s)
                state = state @ matrix
                fused_run = []
            if step is not None:
                state = run(state, step)
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
    state = statevector(circuit, inputs, weights, strategy=strategy, dtype=dtype)
    probs = state.square() if not state.is_complex() else torch.view_as_real(state).square().sum(-1)
    single = probs.dim() == 1
    probs2 = probs.unsqueeze(0) if single else probs
    plan = _plan_for(circuit)
    matrix = _measurement_matrix(circuit, probs2.device, probs2.dtype, plan._device_cache.setdefault(probs2.device, {}))
    out = probs2 if matrix is None else probs2 @ matrix
    return out[0] if single else out
