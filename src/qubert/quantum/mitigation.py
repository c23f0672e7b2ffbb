"""Error mitigation for a trained head on an IBM device: readout correction, zero-noise extrapolation, Pauli twirling.

A mitigated run still ends in the head's measured values (``<Z_i>``, ``<Z_i Z_i+1>`` or the
``2**n`` probabilities), one row per sample; they go through the head's trained output layer
(``head.post_net``) exactly as exact values would, so the logits and class probabilities keep
their meaning. Mitigation only changes how the measured values are estimated.

The methods (``--mitigation`` in ``qubert eval``):

- ``none``: the raw counts (the device's noise as it is).
- ``readout``: readout-error correction: mthree (matrix-free measurement mitigation) calibrated
  on the measured qubits, on a snapshot; TREX (``measure_mitigation``) on IBM hardware.
- ``zne``: zero-noise extrapolation: the 2-qubit gates folded (``G G^-1 G``, ...) to noise
  factors 1, 3, 5 by qiskit-mitigation's ``GateFoldingPass``, the measured values extrapolated
  to zero noise; on IBM hardware the runtime's own ``zne_mitigation`` (same factors and
  extrapolator).
- ``twirling``: Pauli twirling of the 2-qubit gates (qiskit's ``pauli_twirl_2q_gates``): coherent
  gate errors become Pauli noise; the shots are split evenly over the randomizations.
- ``all``: twirling, ZNE and readout correction together.

On a snapshot everything runs on Aer with the device's noise model, every circuit variant as one
parameter sweep (one PUB, one row per sample) in one Sampler call. On IBM hardware
(``ibm_<name>``) the mitigated values come from qiskit-ibm-runtime's ``EstimatorV2`` with its
resilience options, one PUB of all samples in batch mode.

Example:
    >>> Mitigation("zne", zne_factors=(1, 2, 3)).variants
    3
    >>> Mitigation("readout").readout, Mitigation("all").twirling
    (True, True)
    >>> extrapolate_to_zero([1.0, 3.0], torch.tensor([[0.8], [0.4]]), "linear")
    tensor([1.])
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qubert.quantum.shots import expectations_from_probabilities

MITIGATIONS = ("none", "readout", "zne", "twirling", "all")
# qiskit-ibm-runtime's own defaults for ZNE (noise factors and extrapolator), used on Aer as well.
DEFAULT_ZNE_FACTORS = (1.0, 3.0, 5.0)
ZNE_EXTRAPOLATORS = ("exponential", "linear")
DEFAULT_TWIRLS = 8


class MitigationError(ValueError):
    """An invalid mitigation request (unknown method, bad ZNE factors, a head it cannot serve)."""


@dataclass(frozen=True)
class Mitigation:
    """What to mitigate and how.

    Args:
        method: ``none``, ``readout``, ``zne``, ``twirling`` or ``all``.
        zne_factors: noise factors for ZNE, strictly increasing, the first ``>= 1``
            (odd integers fold every 2-qubit gate the same number of times).
        extrapolator: ``exponential`` (``y = a exp(-b x)``, the decay of ``<Z>`` under
            depolarizing noise; falls back to linear where the values are too close to 0 or
            change sign) or ``linear``.
        twirls: Pauli-twirl randomizations; the shots are split evenly over them.
    """

    method: str = "none"
    zne_factors: tuple[float, ...] = DEFAULT_ZNE_FACTORS
    extrapolator: str = "exponential"
    twirls: int = DEFAULT_TWIRLS

    def __post_init__(self) -> None:
        if self.method not in MITIGATIONS:
            raise MitigationError(f"unknown mitigation {self.method!r}; expected one of {', '.join(MITIGATIONS)}")
        factors = tuple(float(f) for f in self.zne_factors)
        object.__setattr__(self, "zne_factors", factors)
        if len(factors) < 2 or any(not math.isfinite(f) for f in factors) or factors[0] < 1 or any(b <= a for a, b in zip(factors, factors[1:])):
            raise MitigationError(
                f"ZNE noise factors must be at least two strictly increasing numbers starting at 1 or more, got {', '.join(map(str, factors)) or 'none'}"
            )
        if self.extrapolator not in ZNE_EXTRAPOLATORS:
            raise MitigationError(f"unknown ZNE extrapolator {self.extrapolator!r}; expected one of {', '.join(ZNE_EXTRAPOLATORS)}")
        if isinstance(self.twirls, bool) or not isinstance(self.twirls, int) or self.twirls < 1:
            raise MitigationError(f"twirl randomizations must be a positive integer, got {self.twirls!r}")

    @property
    def readout(self) -> bool:
        return self.method in ("readout", "all")

    @property
    def zne(self) -> bool:
        return self.method in ("zne", "all")

    @property
    def twirling(self) -> bool:
        return self.method in ("twirling", "all")

    @property
    def factors(self) -> tuple[float, ...]:
        """The noise factors run: ``zne_factors`` with ZNE, else ``(1.0,)``."""
        return self.zne_factors if self.zne else (1.0,)

    @property
    def variants(self) -> int:
        """Distinct circuits per noise factor times factors: what Aer runs (twirls share a circuit on hardware)."""
        return len(self.factors) * (self.twirls if self.twirling else 1)

    def describe(self) -> str:
        parts = []
        if self.twirling:
            parts.append(f"Pauli twirling ({self.twirls} randomizations)")
        if self.zne:
            parts.append(f"ZNE (factors {', '.join(f'{f:g}' for f in self.zne_factors)}, {self.extrapolator})")
        if self.readout:
            parts.append("readout correction")
        return " + ".join(parts) or "no mitigation"


def parse_zne_factors(text: str | None) -> tuple[float, ...]:
    """``"1,3,5"`` -> ``(1.0, 3.0, 5.0)``; ``None`` gives the default.

    Example:
        >>> parse_zne_factors("1, 2, 3")
        (1.0, 2.0, 3.0)
    """
    if text is None:
        return DEFAULT_ZNE_FACTORS
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise MitigationError(f"ZNE noise factors must be comma-separated numbers such as 1,3,5, got {text!r}") from None


@dataclass
class MitigatedRun:
    """Measured values of a mitigated run and what it took."""

    values: torch.Tensor  # (batch, n_outputs), through head.post_net like exact values
    mitigation: Mitigation
    pubs: int  # parameter sweeps submitted (one per circuit variant)
    rows: int  # parameter rows per sweep (= samples)
    shots: int  # shots per row of each sweep
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- extrapolation
def extrapolate_to_zero(factors, values: torch.Tensor, extrapolator: str = "exponential", *, floor: float = 0.0) -> torch.Tensor:
    """Zero-noise values from ``values`` ``(n_factors, ...)`` measured at noise ``factors``.

    ``linear``: the least-squares line through the points, read at 0. ``exponential``: a line
    through ``log|y|`` (so ``y = a exp(-b x)``, sign kept), used where all points share a sign and
    exceed ``floor`` in size, linear elsewhere. Hand-written: qiskit-mitigation keeps its
    extrapolators private and installing mitiq would downgrade numpy and pandas; the fit is
    two closed-form least-squares lines.
    """
    x = torch.as_tensor(factors, dtype=torch.float64)
    y = values.to(torch.float64)
    shape = (-1,) + (1,) * (y.dim() - 1)
    x = x.reshape(shape)

    def intercept(target: torch.Tensor) -> torch.Tensor:
        xm, ym = x.mean(0), target.mean(0)
        slope = ((x - xm) * (target - ym)).sum(0) / ((x - xm) ** 2).sum(0)
        return ym - slope * xm

    linear = intercept(y)
    if extrapolator == "linear":
        return linear.to(values.dtype)
    same_sign = (torch.sign(y) == torch.sign(y[0])).all(0) & (y.abs() > floor).all(0)
    exponential = torch.sign(y[0]) * torch.exp(intercept(torch.log(y.abs().clamp_min(1e-12))))
    return torch.where(same_sign, exponential, linear).to(values.dtype)


def physical_values(values: torch.Tensor, measurement: str) -> torch.Tensor:
    """Clip mitigated values to what the observable can take (``[-1, 1]``; probabilities renormalised)."""
    if measurement == "probs":
        clipped = values.clamp(0.0, 1.0)
        return clipped / clipped.sum(-1, keepdim=True).clamp_min(1e-12)
    return values.clamp(-1.0, 1.0)


# ---------------------------------------------------------------------------- the run
def mitigated_values(head, inputs: torch.Tensor, weights: torch.Tensor, mitigation: Mitigation, *, shots: int, seed: int | None = None) -> MitigatedRun:
    """Measured values of every sample on ``head``'s device under ``mitigation``.

    Args:
        head: a :class:`~qubert.quantum.devices.TranspiledHead`.
        inputs: encoding angles ``(batch, n_qubits)``; weights: the circuit weights.
        mitigation: what to mitigate (:class:`Mitigation`).
        shots: shots per sample (per noise factor for ZNE; split over the twirls).
        seed: seeds Aer, the twirls and the gate choice of fractional folds.
    """
    if head.runtime:
        return _runtime_values(head, inputs, weights, mitigation, shots=shots, seed=seed)
    return _aer_values(head, inputs, weights, mitigation, shots=shots, seed=seed)


def circuit_variants(head, mitigation: Mitigation, *, seed: int | None = None) -> list[list[Any]]:
    """Per noise factor, the ISA circuits to run on the device: folded, then twirled.

    Folding (qiskit-mitigation's ``GateFoldingPass``) replaces each 2-qubit gate ``G`` by
    ``G (G^-1 G)^k``; twirling (qiskit's ``pauli_twirl_2q_gates`` with the device's target)
    dresses each 2-qubit gate with random Paulis that cancel ideally, merged into the basis gates.
    """
    circuits = []
    for factor in mitigation.factors:
        folded = fold_gates(head.isa, factor, seed=seed)
        if mitigation.twirling:
            from qiskit.circuit import pauli_twirl_2q_gates

            twirled = pauli_twirl_2q_gates(folded, seed=seed, num_twirls=mitigation.twirls, target=head.backend.target)
            circuits.append(list(twirled) if isinstance(twirled, list) else [twirled])
        else:
            circuits.append([folded])
    return circuits


def fold_gates(circuit, factor: float, *, seed: int | None = None):
    """``circuit`` with every 2-qubit gate folded to noise ``factor`` (qiskit-mitigation's ``GateFoldingPass``)."""
    if math.isclose(factor, 1.0):
        return circuit
    from qiskit.transpiler import PassManager

    try:
        from qiskit_mitigation.zne import GateFoldingPass
    except ImportError:
        from qubert.quantum.devices import DEVICES_EXTRA

        raise MitigationError(f"ZNE needs qiskit-mitigation, which is not installed: {DEVICES_EXTRA}") from None

    folded = PassManager([GateFoldingPass(factor, method="random", seed=seed)]).run(circuit)
    folded.name = f"{circuit.name}_fold{factor:g}"
    return folded


def _aer_values(head, inputs, weights, mitigation: Mitigation, *, shots: int, seed: int | None) -> MitigatedRun:
    from qubert.quantum import devices

    start = time.perf_counter()
    n = head.circuit.n_qubits
    table = devices.parameter_table(head, inputs, weights)
    groups = circuit_variants(head, mitigation, seed=seed)
    per_twirl = max(1, shots // len(groups[0]))
    compact = [[devices.compact_circuit(c, head.active_qubits) for c in group] for group in groups]
    sampler = devices.aer_sampler(head.backend, seed, n, head.active_qubits)
    pubs = [(c, _table_for(c, head, table)) for group in compact for c in group]
    try:
        result = sampler.run(pubs, shots=per_twirl).result()
    except MemoryError:
        raise devices.DeviceError(devices.out_of_memory_message(head, len(table), shots)) from None
    register = head.isa.cregs[0].name
    bits_per_factor, k = [], 0
    for group in compact:
        bits = [devices.unpack_bits(result[k + j].data[register].array, n) for j in range(len(group))]
        bits_per_factor.append(np.concatenate(bits, axis=1))  # (batch, twirls x shots, n)
        k += len(group)
    mitigator = _readout_mitigator(head, seed) if mitigation.readout else None
    measured = []
    for bits in bits_per_factor:
        probs = readout_corrected_probabilities(bits, mitigator) if mitigator is not None else frequencies(bits)
        measured.append(expectations_from_probabilities(probs, head.circuit))
    if mitigation.zne:
        values = extrapolate_to_zero(mitigation.factors, torch.stack(measured), mitigation.extrapolator, floor=2 / math.sqrt(per_twirl * len(groups[0])))
    else:
        values = measured[0]
    values = physical_values(values, head.circuit.measurement) if mitigation.method != "none" else values
    return MitigatedRun(
        values=values.to(inputs.dtype), mitigation=mitigation, pubs=len(pubs), rows=len(table), shots=per_twirl, seconds=time.perf_counter() - start,
        details={"noise_factors": list(mitigation.factors), "unmitigated": measured[0].to(inputs.dtype)},
    )


def _table_for(circuit, head, table: np.ndarray) -> np.ndarray:
    """Columns of ``table`` reordered to ``circuit``'s parameters (folding and twirling keep the set, not always the order)."""
    order = {(p.vector.name, int(p.index)): k for k, p in enumerate(head.isa.parameters)}
    return table[:, [order[(p.vector.name, int(p.index))] for p in circuit.parameters]]


def frequencies(bits: np.ndarray) -> torch.Tensor:
    """Outcome frequencies ``(batch, 2**n)`` (wire 0 the most significant bit) from bits ``(batch, shots, n)``."""
    n = bits.shape[-1]
    index = (bits.astype(np.int64) << np.arange(n - 1, -1, -1)).sum(-1)
    counts = np.stack([np.bincount(row, minlength=2**n) for row in index]).astype(np.float64)
    return torch.from_numpy(counts / bits.shape[1])


def _readout_mitigator(head, seed: int | None):
    """mthree's M3Mitigation calibrated on the measured qubits, on Aer with the device's restricted noise model."""
    try:
        import mthree
    except ImportError:
        from qubert.quantum.devices import DEVICES_EXTRA

        raise MitigationError(f"readout mitigation needs mthree, which is not installed: {DEVICES_EXTRA}") from None
    from qiskit_aer import AerSimulator

    from qubert.quantum import devices

    sampler = devices.aer_sampler(head.backend, seed, head.circuit.n_qubits, head.active_qubits)
    model = sampler.options.backend_options["noise_model"]
    simulator = AerSimulator(noise_model=model, seed_simulator=seed)
    index = {q: i for i, q in enumerate(head.active_qubits)}
    qubits = [index[q] for q in head.final_layout]  # clbit i is measured on final_layout[i]
    mitigator = mthree.M3Mitigation(simulator)
    mitigator.cals_from_system(qubits, shots=max(4096, 0))
    return mitigator, qubits


def readout_corrected_probabilities(bits: np.ndarray, mitigator) -> torch.Tensor:
    """mthree's corrected quasi-probabilities ``(batch, 2**n)`` (wire 0 the most significant bit) from bits ``(batch, shots, n)``."""
    m3, qubits = mitigator
    n = bits.shape[-1]
    index = (bits.astype(np.int64) << np.arange(n)).sum(-1)  # qiskit's key: clbit 0 rightmost
    counts = [{format(k, f"0{n}b"): int(c) for k, c in enumerate(np.bincount(row, minlength=2**n)) if c} for row in index]
    quasis = m3.apply_correction(counts, qubits)
    out = np.zeros((len(counts), 2**n))
    for row, quasi in enumerate(quasis):
        for key, value in quasi.items():
            out[row, int(key[::-1], 2)] = value  # reversed key: wire 0 most significant
    return torch.from_numpy(out)


# ---------------------------------------------------------------------------- IBM hardware
def runtime_observables(head) -> list:
    """The head's measured observables as ISA ``SparsePauliOp``'s on the device's qubits (``z`` or ``zz``)."""
    from qiskit.quantum_info import SparsePauliOp

    circuit = head.circuit
    n = circuit.n_qubits
    if circuit.measurement == "probs":
        raise MitigationError("mitigation on IBM hardware needs a head measuring z or zz; this head measures probabilities")
    wires = [(i,) for i in range(n)] if circuit.measurement == "z" else [(i, i + 1) for i in range(n - 1)]
    labels = ["".join("Z" if (n - 1 - k) in pair else "I" for k in range(n)) for pair in wires]
    layout = head.isa.layout
    return [SparsePauliOp(label).apply_layout(layout) for label in labels]


def runtime_estimator(mode: Any, mitigation: Mitigation, *, shots: int, seed: int | None = None):
    """qiskit-ibm-runtime's ``EstimatorV2`` with the resilience options of ``mitigation`` (resilience level 0 plus those)."""
    from qiskit_ibm_runtime import EstimatorV2

    estimator = EstimatorV2(mode=mode)
    options = estimator.options
    options.default_shots = shots
    options.resilience_level = 0
    if mitigation.readout:
        options.resilience.measure_mitigation = True  # TREX
        options.twirling.enable_measure = True
    if mitigation.zne:
        options.resilience.zne_mitigation = True
        options.resilience.zne.noise_factors = mitigation.zne_factors
        options.resilience.zne.extrapolator = (mitigation.extrapolator, "linear") if mitigation.extrapolator != "linear" else "linear"
    if mitigation.twirling:
        options.twirling.enable_gates = True
        options.twirling.num_randomizations = mitigation.twirls
        options.twirling.shots_per_randomization = max(1, shots // mitigation.twirls)
    if seed is not None:
        from qubert.quantum.devices import is_fake_backend

        backend = getattr(mode, "_backend", mode)
        if is_fake_backend(backend):
            options.simulator.seed_simulator = seed
    return estimator


def _runtime_values(head, inputs, weights, mitigation: Mitigation, *, shots: int, seed: int | None) -> MitigatedRun:
    """One PUB of all samples in one job, inside a runtime ``Batch``: SamplerV2 without mitigation, EstimatorV2 with."""
    from qiskit_ibm_runtime import Batch

    from qubert.quantum import devices

    start = time.perf_counter()
    table = devices.parameter_table(head, inputs, weights)
    with Batch(backend=head.backend) as batch:
        if mitigation.method == "none":
            sampler = devices.runtime_sampler(batch, None)
            if seed is not None and devices.is_fake_backend(head.backend):
                sampler.options.simulator.seed_simulator = seed
            values = devices.run_transpiled(head, inputs, weights, shots=shots, seed=seed, sampler=sampler)
        else:
            observables = runtime_observables(head)
            circuit = head.isa.remove_final_measurements(inplace=False)
            estimator = runtime_estimator(batch, mitigation, shots=shots, seed=seed)
            try:
                result = estimator.run([(circuit, [observables], table[:, None, :])]).result()[0]
            except Exception as err:
                if type(err).__module__.startswith(("qiskit", "qiskit_aer", "qiskit_ibm_runtime")):
                    raise devices.DeviceError(f"running the head on {head.device} failed: {' '.join(str(err).split())[:300]}") from None
                raise
            values = physical_values(torch.as_tensor(np.asarray(result.data.evs), dtype=inputs.dtype), head.circuit.measurement)
    return MitigatedRun(values=values.to(inputs.dtype), mitigation=mitigation, pubs=1, rows=len(table), shots=shots, seconds=time.perf_counter() - start)


def mitigated_logits(quantum_head, features: torch.Tensor, transpiled, mitigation: Mitigation, *, shots: int, seed: int | None = None) -> tuple[torch.Tensor, MitigatedRun]:
    """Logits of a :class:`~qubert.heads.QuantumHead` on its device under ``mitigation``.

    The head's input layer gives the encoding angles, :func:`mitigated_values` the measured
    values, and the head's trained output layer (``post_net``) the logits: the mitigated
    ``<Z>`` (or probabilities) take the place of the exact ones.
    """
    with torch.no_grad():
        angles = quantum_head.angles(features.to(quantum_head.pre_net.weight.dtype))
        run = mitigated_values(transpiled, angles, quantum_head.q_weights, mitigation, shots=shots, seed=seed)
        return quantum_head.post_net(run.values.to(quantum_head.post_net.weight.dtype)), run
