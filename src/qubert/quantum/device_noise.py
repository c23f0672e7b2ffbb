"""A device's calibrated noise in qubert's own density-matrix engine: per-qubit, per-gate channels.

:class:`DeviceNoiseModel` holds, for each wire of a head circuit placed on a device's physical
qubits, the channels that Qiskit Aer's ``NoiseModel.from_backend`` applies there, in Aer's
conventions, so that noise-aware training stays differentiable inside qubert:

- after each run of single-qubit gates on a wire (the transpiler fuses such a run into one
  ``rz sx rz sx rz``): two ``sx`` pulses, each a thermal-relaxation channel (amplitude damping
  ``1 - exp(-t/T1)``, phase damping so coherences decay as ``exp(-t/T2)``) followed by a
  depolarizing channel whose strength makes the pulse's average gate error the reported one;
- after each CNOT: thermal relaxation on both wires for the 2-qubit gate's duration and a
  *2-qubit* depolarizing channel ``rho -> (1 - l) rho + l Tr_ct(rho) (x) I/4`` sized the same way;
  routing is not simulated: the extra 2-qubit gates the transpiler inserted (SWAPs, 3 each) are
  counted in the transpiled circuit and their error and duration charged to the CNOTs between
  physical qubits that are not coupled (to all CNOTs when every pair starts coupled), while the
  SWAPs' effect on the other qubits they pass through and the moving layout are ignored;
- before measurement: each bit flips with the qubit's reported readout error.

Build one from a device with :func:`qubert.quantum.devices.device_noise_model` (needs
``qubert[devices]``); simulating it needs only torch.

Example:
    >>> import torch
    >>> from qubert.quantum import Circuit
    >>> from qubert.quantum.noise import gate_angles
    >>> c = Circuit(n_qubits=2, n_layers=1)
    >>> model = DeviceNoiseModel.uniform(c, depolarizing=0.001, two_qubit_depolarizing=0.01, readout=0.02)
    >>> probs = device_noise_probabilities(c, gate_angles(c, torch.zeros(3, 2), c.init_weights()), model)
    >>> probs.shape, bool(torch.allclose(probs.sum(-1), torch.ones(3)))
    (torch.Size([3, 4]), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from qubert.quantum.circuit import Circuit
from qubert.quantum.noise import apply_superoperator, check_density_memory, diagonal_index, density_dtypes, gate_matrices, qudit_cnot_permutation

# Largest register the device fast path simulates (its density matrix has 4**n entries per sample).
DEVICE_NOISE_MAX_QUBITS = 10


@dataclass(frozen=True)
class Relaxation:
    """One qubit's noise over one gate: thermal relaxation then depolarizing (Aer's order).

    ``amplitude_damping`` = 1 - exp(-t/T1); ``phase_damping`` such that coherences decay by
    exp(-t/T2) in all; ``depolarizing`` l in rho -> (1 - l) rho + l I/2 (Aer's parameter).
    """

    depolarizing: float = 0.0
    amplitude_damping: float = 0.0
    phase_damping: float = 0.0


@dataclass(frozen=True)
class PairNoise:
    """The noise after a CNOT between two wires: relaxation on each, then 2-qubit depolarizing."""

    depolarizing: float = 0.0
    control: Relaxation = Relaxation()
    target: Relaxation = Relaxation()
    routing_gates: float = 0.0  # extra native 2-qubit gates (routing SWAPs) charged to each occurrence of this CNOT


@dataclass(frozen=True)
class DeviceNoiseModel:
    """Per-wire and per-CNOT channels of a head circuit on a device (see the module notes).

    Args:
        device: the device's name (for messages and configs).
        physical_qubits: the physical qubit of each wire (the transpiler's initial layout).
        single: per wire, the noise of one single-qubit pulse (``sx``).
        pulses: pulses charged per run of single-qubit gates (2: a general rotation).
        pairs: ``((control, target), PairNoise)`` for every CNOT wire pair of the circuit.
        readout: per wire, the probability that a measured bit flips.
    """

    device: str
    physical_qubits: tuple[int, ...]
    single: tuple[Relaxation, ...]
    pairs: tuple[tuple[tuple[int, int], PairNoise], ...]
    readout: tuple[float, ...]
    pulses: int = 2

    @property
    def n_qubits(self) -> int:
        return len(self.physical_qubits)

    def pair(self, control: int, target: int) -> PairNoise:
        for wires, noise in self.pairs:
            if wires == (control, target):
                return noise
        raise ValueError(f"the device noise model of {self.device} has no CNOT on wires ({control}, {target}); build it for this circuit")

    @classmethod
    def uniform(cls, circuit: Circuit, *, depolarizing: float = 0.0, two_qubit_depolarizing: float = 0.0, readout: float = 0.0) -> DeviceNoiseModel:
        """The same channels on every wire and pair, no relaxation, one pulse per run: for tests and examples."""
        n = circuit.n_qubits
        pairs = sorted({op.wires for op in circuit.operations() if op.name == "CNOT"})
        one = Relaxation(depolarizing=depolarizing)
        return cls("uniform", tuple(range(n)), (one,) * n, tuple((p, PairNoise(two_qubit_depolarizing)) for p in pairs), (readout,) * n, pulses=1)

    def describe(self) -> str:
        return f"device noise of {self.device} on physical qubits {list(self.physical_qubits)}"


# ---------------------------------------------------------------------------- channels
def _relaxation_superoperator(noise: Relaxation) -> torch.Tensor:
    """4x4 superoperator (qudit basis (row bit, column bit)) of relaxation then depolarizing."""
    ga, gp, lam = noise.amplitude_damping, noise.phase_damping, noise.depolarizing
    # Amplitude + phase damping in the (00, 01, 10, 11) basis of rho entries.
    coherence = math.sqrt((1 - ga) * (1 - gp))
    relax = torch.tensor(
        [[1, 0, 0, ga], [0, coherence, 0, 0], [0, 0, coherence, 0], [0, 0, 0, 1 - ga]], dtype=torch.float64
    )
    trace_to_mixed = torch.outer(torch.tensor([0.5, 0, 0, 0.5], dtype=torch.float64), torch.tensor([1.0, 0, 0, 1], dtype=torch.float64))
    depolarize = (1 - lam) * torch.eye(4, dtype=torch.float64) + lam * trace_to_mixed
    return depolarize @ relax


def _two_qubit_depolarize(vec: torch.Tensor, lam: float, a: int, b: int, n: int) -> torch.Tensor:
    """rho -> (1 - lam) rho + lam Tr_ab(rho) (x) I/4 on qudits a, b of ``vec`` (rows, 4**n)."""
    if lam == 0:
        return vec
    lo, hi = min(a, b), max(a, b)
    rows = vec.shape[0]
    view = vec.reshape(rows, 4**lo, 4, 4 ** (hi - lo - 1), 4, 4 ** (n - hi - 1))
    traced = view[:, :, [0, 3]].sum(2, keepdim=True)[:, :, :, :, [0, 3]].sum(4, keepdim=True)  # Tr over both qudits
    mixed = torch.tensor([0.5, 0, 0, 0.5], dtype=vec.dtype, device=vec.device)
    filled = traced * mixed.view(1, 1, 4, 1, 1, 1) * mixed.view(1, 1, 1, 1, 4, 1)
    return ((1 - lam) * view + lam * filled).reshape(rows, 4**n)


def device_noise_probabilities(circuit: Circuit, angles: torch.Tensor, model: DeviceNoiseModel) -> torch.Tensor:
    """Measured basis-state probabilities ``(batch, 2**n)`` under ``model``, readout included; differentiable.

    Args:
        circuit: the circuit description (its CNOT pairs must be in ``model``).
        angles: per-sample gate angles from :func:`~qubert.quantum.noise.gate_angles`.
        model: the device noise model built for this circuit.
    """
    n, rows, device = circuit.n_qubits, angles.shape[0], angles.device
    if model.n_qubits != n:
        raise ValueError(f"the device noise model has {model.n_qubits} wires but the circuit has {n} qubits")
    if n > DEVICE_NOISE_MAX_QUBITS:
        raise ValueError(f"the device-noise density matrix is limited to {DEVICE_NOISE_MAX_QUBITS} qubits, the circuit has {n}; use device_simulator='aer'")
    dtype, real_dtype = density_dtypes(circuit, angles)
    check_density_memory(16 * rows * 4**n * 6, f"a {n}-qubit device-noise density matrix for batch {rows}", device)
    angles = angles.to(real_dtype)

    def superop(noise: Relaxation, times: int = 1) -> torch.Tensor:
        sup = torch.linalg.matrix_power(_relaxation_superoperator(noise), times)
        return sup.to(dtype=dtype, device=device)

    run_noise = [superop(noise, model.pulses) for noise in model.single]
    vec = torch.zeros(rows, 4**n, dtype=dtype, device=device)
    vec[:, 0] = 1
    open_run: set[int] = set()  # wires with single-qubit gates since their last noise
    column = 0
    for op in circuit.operations():
        if op.name != "CNOT":
            k, wire = len(op.params), op.wires[0]
            u = gate_matrices(op, angles[:, column : column + k], dtype)
            column += k
            sup = torch.einsum("nij,nab->niajb", u, u.conj()).reshape(-1, 4, 4)
            vec = apply_superoperator(vec, sup, wire, n)
            open_run.add(wire)
            continue
        control, target = op.wires
        for wire in (control, target):
            if wire in open_run:
                vec = apply_superoperator(vec, run_noise[wire], wire, n)
                open_run.discard(wire)
        vec = vec.index_select(1, qudit_cnot_permutation(n, control, target, device))
        pair = model.pair(control, target)
        vec = apply_superoperator(vec, superop(pair.control), control, n)
        vec = apply_superoperator(vec, superop(pair.target), target, n)
        vec = _two_qubit_depolarize(vec, pair.depolarizing, control, target, n)
    for wire in sorted(open_run):
        vec = apply_superoperator(vec, run_noise[wire], wire, n)
    diagonal = vec.index_select(1, diagonal_index(n, device))
    probs = diagonal.real if diagonal.is_complex() else diagonal
    return apply_readout(probs, model.readout)


def apply_readout(probs: torch.Tensor, readout: tuple[float, ...]) -> torch.Tensor:
    rows, n = probs.shape[0], len(readout)
    for wire, p in enumerate(readout):
        if p == 0:
            continue
        confusion = torch.tensor([[1 - p, p], [p, 1 - p]], dtype=probs.dtype, device=probs.device)
        view = probs.reshape(rows, 2**wire, 2, 2 ** (n - wire - 1))
        probs = torch.matmul(confusion, view).reshape(rows, 2**n)
    return probs
