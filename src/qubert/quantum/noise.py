"""Noisy simulation of a :class:`~qubert.quantum.circuit.Circuit`: noise model, density matrix, trajectories.

The noise model (:class:`NoiseModel`) follows what a small superconducting device does to a head
circuit, in PennyLane's channel conventions:

- ``depolarizing`` p: after every gate, on every wire it touches (both wires of a CNOT),
  rho -> (1 - p) rho + p/3 (X rho X + Y rho Y + Z rho Z)  (``qml.DepolarizingChannel(p)``);
- ``amplitude_damping`` gamma: after the depolarizing channel, on the same wires, Kraus operators
  [[1, 0], [0, sqrt(1 - gamma)]] and [[0, sqrt(gamma)], [0, 0]]  (``qml.AmplitudeDamping(gamma)``);
- ``readout`` p: every measured bit is flipped with probability p, independently (a classical
  confusion matrix; the same as ``qml.BitFlip(p)`` on every wire just before measurement).

Two simulators take the gate angles per sample (``(batch, n_angles)``, one column per gate parameter
in ``circuit.operations()`` order; see :func:`gate_angles`), so any single gate occurrence can be
shifted on its own (the parameter-shift rule needs that for re-uploaded inputs):

- :func:`density_matrix_probabilities`: exact; the batched density matrix is kept as a vector over
  n four-level "qudits" (row bit, column bit), every gate and its channels applied as one 4x4
  superoperator; fully differentiable by autograd. Memory grows as 4**n: small registers only.
- :func:`trajectory_probabilities`: seeded Monte Carlo over pure states (memory 2**n per trajectory);
  for each sample and channel a Kraus operator is drawn with its probability and the state
  renormalised. The average over trajectories is an unbiased estimate of the density matrix's
  probabilities. Autograd follows the sampled branch (pathwise): unbiased for depolarizing noise,
  whose branch probabilities do not depend on the angles; with amplitude damping it misses the
  dependence of the branch probabilities and is biased; use ``gradient="parameter_shift"`` there.

Example:
    >>> import torch
    >>> from qubert.quantum import Circuit
    >>> c = Circuit(n_qubits=2, n_layers=1)
    >>> noise = parse_noise("depolarizing:0.01,readout:0.02")
    >>> angles = gate_angles(c, torch.zeros(3, 2), c.init_weights())
    >>> probs = density_matrix_probabilities(c, angles, noise)
    >>> probs.shape, bool(torch.allclose(probs.sum(-1), torch.ones(3)))
    (torch.Size([3, 4]), True)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch

from qubert.quantum import gates
from qubert.quantum.basis import cnot_permutation
from qubert.quantum.circuit import Circuit, Operation, Param
from qubert.quantum.engine import require_memory

CHANNELS = ("depolarizing", "amplitude_damping", "readout")
NOISE_METHODS = ("auto", "density_matrix", "trajectories")
# Largest register "auto" simulates with a density matrix (4**8 entries per sample); beyond it,
# trajectories (2**n entries per trajectory).
DENSITY_MATRIX_MAX_QUBITS = 8
DEFAULT_TRAJECTORIES = 100


class NoiseSpecError(ValueError):
    """A noise specification names an unknown channel or a probability outside [0, 1]."""


@dataclass(frozen=True)
class NoiseModel:
    """Error probabilities of a simple device model (all zero: noiseless).

    Example:
        >>> NoiseModel(depolarizing=0.01, readout=0.02).to_spec()
        'depolarizing:0.01,readout:0.02'
    """

    depolarizing: float = 0.0
    amplitude_damping: float = 0.0
    readout: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise NoiseSpecError(f"{f.name} probability must be a number in [0, 1], got {value!r}")
            object.__setattr__(self, f.name, float(value))

    @property
    def has_gate_noise(self) -> bool:
        """True when some channel acts after the gates (needs a density matrix or trajectories)."""
        return self.depolarizing > 0 or self.amplitude_damping > 0

    @property
    def is_noiseless(self) -> bool:
        return not self.has_gate_noise and self.readout == 0

    def to_spec(self) -> str:
        """The text form :func:`parse_noise` reads back (``"none"`` when noiseless)."""
        parts = [f"{f.name}:{getattr(self, f.name)!r}" for f in fields(self) if getattr(self, f.name) > 0]
        return ",".join(parts) if parts else "none"

    def __str__(self) -> str:
        return self.to_spec()


def parse_noise(spec: str | NoiseModel | Mapping[str, Any] | None) -> NoiseModel:
    """A :class:`NoiseModel` from ``"depolarizing:0.01,amplitude_damping:0.02,readout:0.02"``.

    Also accepts ``None``/``""``/``"none"`` (noiseless), a dict of channel -> probability, or a
    :class:`NoiseModel`. ``name=value`` works as well as ``name:value``.

    Raises:
        NoiseSpecError: an unknown or repeated channel, a missing or non-numeric probability, or a
            probability outside [0, 1]; the message names the channel.

    Example:
        >>> parse_noise("depolarizing:0.01, readout:0.02")
        NoiseModel(depolarizing=0.01, amplitude_damping=0.0, readout=0.02)
    """
    if spec is None:
        return NoiseModel()
    if isinstance(spec, NoiseModel):
        return spec
    if isinstance(spec, Mapping):
        unknown = [k for k in spec if k not in CHANNELS]
        if unknown:
            raise NoiseSpecError(f"unknown noise channel {unknown[0]!r}; expected one of {', '.join(CHANNELS)}")
        return NoiseModel(**spec)
    if not isinstance(spec, str):
        raise NoiseSpecError(f"noise must be a spec string like 'depolarizing:0.01,readout:0.02', got {spec!r}")
    text = spec.strip()
    if text.lower() in ("", "none"):
        return NoiseModel()
    values: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        separator = ":" if ":" in item else "="
        name, found, value = item.partition(separator)
        channel = name.strip().lower().replace("-", "_")
        if channel not in CHANNELS:
            raise NoiseSpecError(f"unknown noise channel {name.strip()!r} in {spec!r}; expected one of {', '.join(CHANNELS)}")
        if channel in values:
            raise NoiseSpecError(f"noise channel {channel!r} is given twice in {spec!r}")
        if not found:
            raise NoiseSpecError(f"noise channel {channel!r} needs a probability, e.g. '{channel}:0.01'")
        try:
            probability = float(value)
        except ValueError:
            raise NoiseSpecError(f"noise channel {channel!r} needs a numeric probability, got {value.strip()!r}") from None
        if not 0.0 <= probability <= 1.0:  # also rejects nan
            raise NoiseSpecError(f"{channel} probability must be in [0, 1], got {value.strip()}")
        values[channel] = probability
    return NoiseModel(**values)


# ---------------------------------------------------------------------------- angles per gate
def angle_sources(circuit: Circuit) -> list[Param]:
    """The parameter behind every gate angle, in ``circuit.operations()`` order (Rot: 3 each)."""
    return [p for op in circuit.operations() for p in op.params]


def gate_angles(circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Every gate's angles per sample, shape ``(batch, n_angles)``; differentiable.

    A re-uploaded input feature fills one column per occurrence, so autograd sums the occurrences.

    Example:
        >>> c = Circuit(n_qubits=2, n_layers=2, reupload=True)
        >>> gate_angles(c, torch.zeros(5, 2), c.init_weights()).shape   # 2 x (2 inputs + 2 weights)
        torch.Size([5, 8])
    """
    n = circuit.n_qubits
    if inputs.dim() != 2 or inputs.shape[-1] != n:
        raise ValueError(f"inputs must have shape (batch, {n}) for a {n}-qubit circuit, got {tuple(inputs.shape)}")
    if tuple(weights.shape) != circuit.weight_shape:
        raise ValueError(f"weights must have shape {circuit.weight_shape}, got {tuple(weights.shape)}")
    if inputs.is_complex() or weights.is_complex():
        raise ValueError("inputs and weights are real angles; got a complex tensor")
    columns = [p.index if p.source == "x" else n + p.index for p in angle_sources(circuit)]
    table = torch.cat([inputs, weights.reshape(1, -1).to(inputs.dtype).expand(inputs.shape[0], -1)], dim=1)
    return table.index_select(1, torch.tensor(columns, dtype=torch.long, device=inputs.device))


# ---------------------------------------------------------------------------- shared kernels
def density_dtypes(circuit: Circuit, angles: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """(state dtype, real dtype): real arithmetic for circuits of real gates, else complex."""
    real = torch.float64 if angles.dtype == torch.float64 else torch.float32
    complex_ = torch.complex128 if real == torch.float64 else torch.complex64
    return (real if circuit.is_real else complex_), real


def gate_matrices(op: Operation, angles: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(rows, 2, 2) matrices of a single-qubit gate, one per row of ``angles`` (rows, n_params)."""
    if op.name == "H":
        return gates.hadamard((1,), dtype, angles.device)
    return gates.gate_matrix(op.name, list(angles.unbind(1)), dtype, (angles.shape[0],), angles.device)


@functools.lru_cache(maxsize=512)
def _cnot_permutation(n_qubits: int, control: int, target: int, device: torch.device) -> torch.Tensor:
    """Index ``p`` with ``(CNOT psi)[x] = psi[p[x]]`` (wire 0 = most significant bit), on ``device``."""
    return cnot_permutation(n_qubits, [(control, target)]).to(device)


def _apply_one_qubit(state: torch.Tensor, mats: torch.Tensor, wire: int, n_qubits: int) -> torch.Tensor:
    """Apply (rows or 1, 2, 2) matrices to ``wire`` of pure states (rows, 2**n)."""
    rows = state.shape[0]
    view = state.reshape(rows, 2**wire, 2, 2 ** (n_qubits - wire - 1))
    return torch.matmul(mats.unsqueeze(1), view).reshape(rows, 2**n_qubits)


def _kraus(noise: NoiseModel, dtype: torch.dtype) -> list[list[torch.Tensor]]:
    """Kraus operators of each gate-noise channel in the order they act (complex128, 2x2)."""
    channels = []
    p = noise.depolarizing
    if p > 0:
        paulis = torch.tensor([[[1, 0], [0, 1]], [[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], dtype=torch.complex128)
        weights = torch.tensor([1 - p, p / 3, p / 3, p / 3], dtype=torch.float64).sqrt()
        channels.append(list(paulis * weights[:, None, None]))
    g = noise.amplitude_damping
    if g > 0:
        channels.append(
            [
                torch.tensor([[1, 0], [0, math.sqrt(1 - g)]], dtype=torch.complex128),
                torch.tensor([[0, math.sqrt(g)], [0, 0]], dtype=torch.complex128),
            ]
        )
    return channels


# ---------------------------------------------------------------------------- density matrix
# Layout: rho (2**n x 2**n) is held as a vector over n "qudits" of dimension 4, qudit q being the
# pair (row bit q, column bit q), wire 0 most significant. A single-qubit gate U followed by its
# channels is then one 4x4 superoperator on one qudit, sum_k (K U) (x) conj(K U), applied like a
# gate to a statevector. Per-wire superoperators are kept pending and multiplied together until a
# CNOT touches the wire, and runs of CNOTs are composed into one permutation, so most gates cost
# no pass over the (batch, 4**n) tensor; the gates before the first CNOT build a product state.


def _superoperator(kraus: list[torch.Tensor]) -> torch.Tensor:
    """sum_k K (x) conj(K): a 4x4 matrix over (row bit, column bit) pairs."""
    return sum(torch.kron(k, k.conj()) for k in kraus)


def apply_superoperator(vec: torch.Tensor, sup: torch.Tensor, wire: int, n_qubits: int) -> torch.Tensor:
    """Apply a (4, 4) or (rows, 4, 4) superoperator to qudit ``wire`` of ``vec`` (rows, 4**n)."""
    rows = vec.shape[0]
    view = vec.reshape(rows, 4**wire, 4, 4 ** (n_qubits - wire - 1))
    if sup.dim() == 3 and sup.shape[0] == 1:
        sup = sup[0]
    if sup.dim() == 2:
        return torch.einsum("ij,nljr->nlir", sup, view).reshape(rows, 4**n_qubits)
    return torch.einsum("nij,nljr->nlir", sup, view).reshape(rows, 4**n_qubits)


@functools.lru_cache(maxsize=512)
def qudit_cnot_permutation(n_qubits: int, control: int, target: int, device: torch.device) -> torch.Tensor:
    """Index ``p`` with ``vec(CNOT rho CNOT)[x] = vec(rho)[p[x]]`` in the qudit layout."""
    index = torch.arange(4**n_qubits, device=device)
    c_shift, t_shift = 2 * (n_qubits - 1 - control), 2 * (n_qubits - 1 - target)
    # The control's row bit flips the target's row bit; its column bit flips the column bit.
    return index ^ (((index >> c_shift) & 3) << t_shift)


def check_density_memory(need: int, what: str, device: torch.device) -> None:
    """Refuse a density-matrix simulation needing ``need`` bytes that ``device`` does not have free."""
    require_memory(need, what, device, advice="use fewer qubits, a smaller batch, or noise_method='trajectories' with fewer trajectories")


def estimate_density_matrix_memory(circuit: Circuit, batch_size: int, dtype: torch.dtype = torch.complex64) -> int:
    """Bytes the density-matrix simulation may hold at its peak (autograd included; an upper bound).

    Example:
        >>> estimate_density_matrix_memory(Circuit(n_qubits=20), 64) > 2**40
        True
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    passes = sum(len(op.wires) + 1 for op in circuit.operations() if op.name == "CNOT") + circuit.n_qubits + 4
    return itemsize * batch_size * 4**circuit.n_qubits * passes


def density_matrix_probabilities(circuit: Circuit, angles: torch.Tensor, noise: NoiseModel) -> torch.Tensor:
    """Exact basis-state probabilities ``(batch, 2**n)`` under the gate noise of ``noise``.

    Readout error is not applied here (see :func:`apply_readout_error`). Differentiable.

    Args:
        circuit: the circuit description.
        angles: per-sample gate angles from :func:`gate_angles`, shape ``(batch, n_angles)``.
        noise: the noise model; float64 angles give complex128 (or float64) arithmetic.
    """
    vec = _evolve_density(circuit, angles, noise)
    diagonal = vec.index_select(1, diagonal_index(circuit.n_qubits, vec.device))
    return diagonal.real if diagonal.is_complex() else diagonal


@functools.lru_cache(maxsize=64)
def diagonal_index(n_qubits: int, device: torch.device) -> torch.Tensor:
    """Positions of rho[r, r] in the qudit layout: qudit value 3 (binary 11) where bit q of r is 1."""
    n = n_qubits
    bits = (torch.arange(2**n, device=device)[:, None] >> torch.arange(n - 1, -1, -1, device=device)) & 1
    return (3 * bits * 4 ** torch.arange(n - 1, -1, -1, device=device)).sum(1)


def density_matrix(circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor, noise: NoiseModel | str | None = None) -> torch.Tensor:
    """The final density matrices ``(batch, 2**n, 2**n)`` of a noisy circuit (before readout).

    Example:
        >>> c = Circuit(n_qubits=1, n_layers=0, encoding="ry")
        >>> rho = density_matrix(c, torch.zeros(1, 1), c.init_weights(), "depolarizing:0.3")
        >>> rho[0]                            # (1 - p) |0><0| + p/3 (2 |1><1| + |0><0|)
        tensor([[0.8000, 0.0000],
                [0.0000, 0.2000]])
    """
    noise = parse_noise(noise)
    n = circuit.n_qubits
    vec = _evolve_density(circuit, gate_angles(circuit, inputs, weights), noise)
    # (r0, c0, r1, c1, ...) -> (r0, r1, ..., c0, c1, ...)
    order = [0] + [1 + 2 * q for q in range(n)] + [2 + 2 * q for q in range(n)]
    return vec.reshape(vec.shape[0], *([2] * 2 * n)).permute(order).reshape(vec.shape[0], 2**n, 2**n)


def _evolve_density(circuit: Circuit, angles: torch.Tensor, noise: NoiseModel) -> torch.Tensor:
    n, rows, device = circuit.n_qubits, angles.shape[0], angles.device
    dtype, real_dtype = density_dtypes(circuit, angles)
    check_density_memory(estimate_density_matrix_memory(circuit, rows, dtype), f"a {n}-qubit density matrix for batch {rows}", device)
    angles = angles.to(real_dtype)
    channel = None
    if noise.has_gate_noise:
        channel = torch.eye(4, dtype=torch.complex128)
        for kraus in _kraus(noise, dtype):
            channel = _superoperator(kraus) @ channel
        channel = (channel if dtype.is_complex else channel.real).to(dtype=dtype, device=device)

    pending: dict[int, torch.Tensor] = {}  # wire -> superoperator still to apply (after `perm`)
    perm: torch.Tensor | None = None  # CNOTs still to apply, composed into one permutation
    perm_wires: set[int] = set()
    vec: torch.Tensor | None = None  # None: |0..0><0..0| with `pending` on top (a product state)

    def flush_perm() -> torch.Tensor:
        nonlocal perm
        if perm is not None:
            out = vec.index_select(1, perm)
            perm = None
            perm_wires.clear()
            return out
        return vec

    column = 0
    for op in circuit.operations():
        if op.name != "CNOT":
            k = len(op.params)
            u = gate_matrices(op, angles[:, column : column + k], dtype)
            column += k
            sup = torch.einsum("nij,nab->niajb", u, u.conj()).reshape(-1, 4, 4)
            if channel is not None:
                sup = channel @ sup
            wire = op.wires[0]
            pending[wire] = sup @ pending[wire] if wire in pending else sup
            continue
        if vec is None:
            vec = _product_density(pending, n, rows, dtype, device)
            pending.clear()
        elif any(w in pending for w in op.wires):
            # Superoperators on these wires act after the pending CNOTs: apply those first unless
            # they touch other wires (then the two commute).
            if perm_wires & set(op.wires):
                vec = flush_perm()
            for wire in op.wires:
                if wire in pending:
                    vec = apply_superoperator(vec, pending.pop(wire), wire, n)
        step = qudit_cnot_permutation(n, *op.wires, device)
        perm = step if perm is None else perm[step]  # (CNOT_2 CNOT_1 v)[x] = v[p1[p2[x]]]
        perm_wires.update(op.wires)
        if channel is not None:
            for wire in op.wires:
                pending[wire] = channel
    if vec is None:
        return _product_density(pending, n, rows, dtype, device)
    vec = flush_perm()
    for wire, sup in sorted(pending.items()):
        vec = apply_superoperator(vec, sup, wire, n)
    return vec


def _product_density(pending: dict[int, torch.Tensor], n: int, rows: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The product state (x)_q S_q |0><0| from each wire's pending superoperator S_q."""
    vec = None
    for wire in range(n):
        if wire in pending:
            factor = pending[wire][..., :, 0].expand(rows, 4)  # S |0><0|: column 0 of S
        else:
            factor = torch.zeros(rows, 4, dtype=dtype, device=device)
            factor[:, 0] = 1
        vec = factor if vec is None else (vec[:, :, None] * factor[:, None, :]).reshape(rows, 4 * vec.shape[1])
    return vec


# ---------------------------------------------------------------------------- trajectories
def estimate_trajectory_memory(circuit: Circuit, batch_size: int, trajectories: int, dtype: torch.dtype = torch.complex64) -> int:
    """Bytes the trajectory simulation is expected to hold at its peak (autograd included)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    steps = 3 * sum(len(op.wires) for op in circuit.operations()) + 4
    return itemsize * batch_size * trajectories * 2**circuit.n_qubits * steps


def trajectory_probabilities(
    circuit: Circuit,
    angles: torch.Tensor,
    noise: NoiseModel,
    trajectories: int = DEFAULT_TRAJECTORIES,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Basis-state probabilities ``(batch, 2**n)`` averaged over seeded Monte Carlo trajectories.

    Without gate noise this is the exact pure-state simulation (one trajectory per sample).
    Readout error is not applied here (see :func:`apply_readout_error`).

    Args:
        circuit: the circuit description.
        angles: per-sample gate angles from :func:`gate_angles`, shape ``(batch, n_angles)``.
        noise: the noise model.
        trajectories: pure-state trajectories per sample; the statistical error of a probability p
            is about sqrt(p (1 - p) / trajectories).
        generator: a CPU ``torch.Generator`` for the Kraus-operator draws (seed it to reproduce).
    """
    if isinstance(trajectories, bool) or not isinstance(trajectories, int) or trajectories < 1:
        raise ValueError(f"trajectories must be a positive integer, got {trajectories!r}")
    n, batch, device = circuit.n_qubits, angles.shape[0], angles.device
    dtype, real_dtype = density_dtypes(circuit, angles)
    per_sample = trajectories if noise.has_gate_noise else 1
    rows = batch * per_sample
    check_density_memory(
        estimate_trajectory_memory(circuit, batch, per_sample, dtype),
        f"{per_sample} trajectories of {n} qubits for batch {batch}",
        device,
    )
    angles = angles.to(real_dtype).repeat_interleave(per_sample, dim=0)
    kraus = _trajectory_kraus(noise, dtype, device)
    ops = circuit.operations()
    first_cnot = next((i for i, op in enumerate(ops) if op.name == "CNOT"), len(ops))
    # Before the first CNOT every trajectory is a product state: evolve one 2-vector per wire.
    wires = [torch.zeros(rows, 2, dtype=dtype, device=device) for _ in range(n)]
    for wire_state in wires:
        wire_state[:, 0] = 1
    column = 0
    for op in ops[:first_cnot]:
        k, wire = len(op.params), op.wires[0]
        wires[wire] = _apply_one_qubit(wires[wire], gate_matrices(op, angles[:, column : column + k], dtype), 0, 1)
        column += k
        if noise.has_gate_noise:
            wires[wire] = _sample_channels(wires[wire], 0, 1, noise, kraus, generator)
    state = wires[0]
    for wire_state in wires[1:]:
        state = (state[:, :, None] * wire_state[:, None, :]).reshape(rows, 2 * state.shape[1])
    for op in ops[first_cnot:]:
        if op.name == "CNOT":
            state = state.index_select(1, _cnot_permutation(n, *op.wires, device))
        else:
            k = len(op.params)
            state = _apply_one_qubit(state, gate_matrices(op, angles[:, column : column + k], dtype), op.wires[0], n)
            column += k
        for wire in op.wires if noise.has_gate_noise else ():
            state = _sample_channels(state, wire, n, noise, kraus, generator)
    probs = state.abs().square() if state.is_complex() else state.square()
    return probs.reshape(batch, per_sample, 2**n).mean(dim=1)


def _trajectory_kraus(noise: NoiseModel, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    out = {}
    if noise.depolarizing > 0:
        # Paulis without their weights (the draw picks one); in real arithmetic Y is replaced by
        # -iY = [[0, -1], [1, 0]]: a global phase per trajectory, invisible in its probabilities.
        y = [[0, -1j], [1j, 0]] if dtype.is_complex else [[0, -1], [1, 0]]
        out["paulis"] = torch.tensor([[[1, 0], [0, 1]], [[0, 1], [1, 0]], y, [[1, 0], [0, -1]]], dtype=dtype, device=device)
    if noise.amplitude_damping > 0:
        g = noise.amplitude_damping
        out["damping"] = torch.tensor([[[1, 0], [0, math.sqrt(1 - g)]], [[0, 1], [0, 0]]], dtype=dtype, device=device)
    return out


def _uniform(rows: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(rows, generator=generator, dtype=torch.float64).to(device)


def _sample_channels(
    state: torch.Tensor, wire: int, n: int, noise: NoiseModel, kraus: dict[str, torch.Tensor], generator: torch.Generator | None
) -> torch.Tensor:
    rows = state.shape[0]
    p = noise.depolarizing
    if p > 0:
        u = _uniform(rows, generator, state.device)
        # Branch 0 (identity) with probability 1 - p, each Pauli with p / 3.
        branch = (u >= 1 - p).long() + (u >= 1 - 2 * p / 3).long() + (u >= 1 - p / 3).long()
        state = _apply_one_qubit(state, kraus["paulis"][branch], wire, n)
    g = noise.amplitude_damping
    if g > 0:
        view = state.detach().reshape(rows, 2**wire, 2, 2 ** (n - wire - 1))[:, :, 1]
        excited = (view.abs().square() if view.is_complex() else view.square()).sum(dim=(1, 2))
        jump = _uniform(rows, generator, state.device) < g * excited.double()
        state = _apply_one_qubit(state, kraus["damping"][jump.long()], wire, n)
        norm = (state.abs().square() if state.is_complex() else state.square()).sum(dim=1, keepdim=True).sqrt()
        state = state / norm.clamp_min(torch.finfo(norm.dtype).tiny)
    return state


# ---------------------------------------------------------------------------- readout and dispatch
def apply_readout_error(probs: torch.Tensor, n_qubits: int, p: float) -> torch.Tensor:
    """Probabilities after each measured bit flips with probability ``p`` (per-qubit 2x2 confusion).

    Example:
        >>> apply_readout_error(torch.tensor([[1.0, 0.0]]), 1, 0.1)
        tensor([[0.9000, 0.1000]])
    """
    if p == 0:
        return probs
    confusion = torch.tensor([[1 - p, p], [p, 1 - p]], dtype=probs.dtype, device=probs.device)
    rows = probs.shape[0]
    for wire in range(n_qubits):
        view = probs.reshape(rows, 2**wire, 2, 2 ** (n_qubits - wire - 1))
        probs = torch.matmul(confusion, view).reshape(rows, 2**n_qubits)
    return probs


def resolve_noise_method(circuit: Circuit, method: str = "auto") -> str:
    """``"density_matrix"`` or ``"trajectories"``: what ``method`` means for this circuit.

    ``"auto"`` picks the exact density matrix up to :data:`DENSITY_MATRIX_MAX_QUBITS` qubits.
    """
    if method not in NOISE_METHODS:
        raise ValueError(f"unknown noise_method {method!r}; expected one of {', '.join(NOISE_METHODS)}")
    if method == "auto":
        return "density_matrix" if circuit.n_qubits <= DENSITY_MATRIX_MAX_QUBITS else "trajectories"
    return method


def noisy_probabilities(
    circuit: Circuit,
    angles: torch.Tensor,
    noise: NoiseModel,
    *,
    method: str = "auto",
    trajectories: int = DEFAULT_TRAJECTORIES,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Measured basis-state probabilities ``(batch, 2**n)`` under ``noise``, readout error included."""
    if resolve_noise_method(circuit, method) == "density_matrix" and noise.has_gate_noise:
        probs = density_matrix_probabilities(circuit, angles, noise)
    else:
        probs = trajectory_probabilities(circuit, angles, noise, trajectories, generator)
    return apply_readout_error(probs, circuit.n_qubits, noise.readout)
