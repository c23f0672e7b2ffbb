"""A trained head on an IBM device: calibration snapshots, transpilation, Aer with device noise, hardware.

The fake backends of ``qiskit-ibm-runtime`` (``FakeManilaV2``, ``FakeKyiv``, ...) carry calibration
snapshots inside the wheel: basis gates, coupling map, per-gate errors and durations, T1/T2 and
readout errors. With them this module

- lists the devices (:func:`list_devices`) and resolves a name (:func:`resolve_backend`:
  ``"fake_manila"``, ``"manila"`` or ``"FakeManilaV2"``; ``"ibm_<name>"`` is a real device reached
  through the user's saved IBM Quantum account, never stored by qubert);
- transpiles the head's parameterised circuit to the device's basis gates and coupling map once
  (:func:`transpile_head`: depth, 2-qubit gate count, layout);
- runs a batch of samples as ONE Sampler call, one parameter row per sample
  (:func:`run_transpiled`): Aer's ``SamplerV2`` with the device's noise model for a snapshot, or
  ``qiskit_ibm_runtime.SamplerV2`` for a real device; measured values come from the counts, bit i
  being virtual qubit i wherever the layout put it;
- maps the snapshot to qubert's own channels (:func:`device_noise_model`) for differentiable,
  noise-aware training in qubert's engine (:mod:`qubert.quantum.device_noise`).

Everything here needs ``pip install "qubert[devices]"`` (imported lazily).

Example:
    >>> import torch
    >>> from qubert.quantum import Circuit
    >>> c = Circuit(n_qubits=2, n_layers=1)
    >>> head = transpile_head(c, "fake_manila")                                     # doctest: +SKIP
    >>> run_transpiled(head, torch.zeros(3, 2), c.init_weights(), shots=512, seed=0).shape  # doctest: +SKIP
    torch.Size([3, 2])
"""

from __future__ import annotations

import difflib
import functools
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qubert.quantum.circuit import Circuit
from qubert.quantum.device_noise import DeviceNoiseModel, PairNoise, Relaxation

DEVICES_EXTRA = 'pip install "qubert[devices]"'
DEFAULT_DEVICE_SHOTS = 1024
OPTIMIZATION_LEVELS = (0, 1, 2, 3)
# Largest register simulated as a density matrix on Aer (exact per sample, then shots sampled);
# beyond it Aer's automatic method (trajectories, one per shot).
_AER_DENSITY_MATRIX_MAX_QUBITS = 10


class DeviceError(ValueError):
    """A device that cannot be used: unknown name, missing extra, head too wide, transpilation or simulation failure."""


def require_devices_extra() -> None:
    """Raise a one-line :class:`DeviceError` naming the extra when qiskit / Aer / runtime is missing."""
    for module in ("qiskit", "qiskit_aer", "qiskit_ibm_runtime"):
        try:
            __import__(module)
        except ImportError:
            raise DeviceError(f"device simulation needs {module.replace('_', '-')}, which is not installed: {DEVICES_EXTRA}") from None


# ---------------------------------------------------------------------------- names and backends
def _canonical(class_name: str) -> str:
    """``FakeManilaV2`` -> ``fake_manila`` (the backend's own ``name``)."""
    core = class_name.removeprefix("Fake").removesuffix("V2").removesuffix("Backend")
    return "fake_" + core.lower()


@functools.lru_cache(maxsize=1)
def fake_backend_classes() -> dict[str, str]:
    """``{"fake_manila": "FakeManilaV2", ...}``: every snapshot shipped with qiskit-ibm-runtime."""
    require_devices_extra()
    from qiskit_ibm_runtime import fake_provider

    names = [n for n in dir(fake_provider) if n.startswith("Fake") and not n.startswith("FakeProvider")]
    return {_canonical(n): n for n in sorted(names)}


def _normalise(name: str) -> str:
    text = name.strip().replace("-", "_")
    if text.startswith("Fake") and "_" not in text:  # a class name: FakeManilaV2
        return _canonical(text)
    text = text.lower().removesuffix("v2")
    return text if text.startswith("fake_") else "fake_" + text.removeprefix("fake")


def is_hardware_name(name: str) -> bool:
    """True for ``ibm_<name>``: a real device through IBM Quantum."""
    return name.strip().lower().startswith("ibm_")


def resolve_backend(device: Any):
    """The backend for a name (``fake_manila``, ``manila``, ``FakeManilaV2``, ``ibm_kyiv``) or a backend object itself.

    Raises:
        DeviceError: unknown name (with a did-you-mean), missing extra, or no IBM Quantum account.
    """
    if not isinstance(device, str):
        return device
    require_devices_extra()
    if is_hardware_name(device):
        return _hardware_backend(device.strip().lower())
    return _fake_backend(_resolve_fake_name(device))


def _resolve_fake_name(name: str) -> str:
    classes = fake_backend_classes()
    key = _normalise(name)
    if key in classes:
        return key
    close = difflib.get_close_matches(key, list(classes), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise DeviceError(f"unknown device {name!r}{hint} (qubert devices lists the {len(classes)} snapshots; real devices are named ibm_<name>)")


@functools.lru_cache(maxsize=16)
def _fake_backend(name: str):
    import warnings

    from qiskit_ibm_runtime import fake_provider

    with warnings.catch_warnings():  # some snapshots warn that their values are not typical
        warnings.simplefilter("ignore")
        return getattr(fake_provider, fake_backend_classes()[name])()


def _runtime_service():
    """The user's saved IBM Quantum account (``QiskitRuntimeService.save_account``); qubert stores nothing."""
    from qiskit_ibm_runtime import QiskitRuntimeService

    return QiskitRuntimeService()


@functools.lru_cache(maxsize=8)
def _hardware_backend(name: str):
    try:
        service = _runtime_service()
        return service.backend(name)
    except Exception as err:  # the runtime raises its own account / network / lookup errors
        first = " ".join(str(err).split())[:300]
        raise DeviceError(
            f"cannot use IBM Quantum device {name!r}: {first or type(err).__name__}; save an account once with "
            "QiskitRuntimeService.save_account(...) (see docs/devices.md)"
        ) from None


def backend_name(backend: Any) -> str:
    return str(getattr(backend, "name", type(backend).__name__))


def uses_runtime(device: Any) -> bool:
    """True for ``ibm_<name>`` or a backend that is not a snapshot: run through qiskit-ibm-runtime's SamplerV2, not Aer."""
    if isinstance(device, str):
        return is_hardware_name(device)
    return not is_fake_backend(device)


def is_fake_backend(backend: Any) -> bool:
    from qiskit_ibm_runtime.fake_provider.fake_backend import FakeBackendV2

    return isinstance(backend, FakeBackendV2)


# ---------------------------------------------------------------------------- calibration summary
@dataclass(frozen=True)
class DeviceInfo:
    """Median calibration numbers of a device (``None`` where the snapshot has none)."""

    name: str
    n_qubits: int
    two_qubit_gate: str
    two_qubit_error: float | None
    one_qubit_error: float | None
    readout_error: float | None
    t1_us: float | None
    t2_us: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _median(values) -> float | None:
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    return statistics.median(values) if values else None


def _two_qubit_gates(target) -> list[str]:
    names = []
    for name in target.operation_names:
        op = target.operation_from_name(name)
        if getattr(op, "num_qubits", 0) == 2 and name not in ("swap",) and hasattr(op, "to_matrix"):
            names.append(name)
    return sorted(names)


def _single_pulse_gate(target) -> str | None:
    """The physical single-qubit pulse the transpiler uses (``sx``; ``u3`` on older devices)."""
    return next((g for g in ("sx", "u3", "u2") if g in target.operation_names), None)


def device_info(backend: Any) -> DeviceInfo:
    """Qubits and median errors of a device from its target."""
    target = backend.target
    gates2 = _two_qubit_gates(target)
    errors2 = [props.error for g in gates2 for props in target[g].values() if props is not None]
    pulse = _single_pulse_gate(target)
    errors1 = [props.error for props in target[pulse].values() if props is not None] if pulse else []
    readout = [props.error for props in target["measure"].values() if props is not None] if "measure" in target.operation_names else []
    qubits = [q for q in (target.qubit_properties or []) if q is not None]
    return DeviceInfo(
        name=backend_name(backend),
        n_qubits=int(backend.num_qubits),
        two_qubit_gate="/".join(gates2) or "-",
        two_qubit_error=_median(errors2),
        one_qubit_error=_median(errors1),
        readout_error=_median(readout),
        t1_us=None if (t1 := _median(q.t1 for q in qubits)) is None else t1 * 1e6,
        t2_us=None if (t2 := _median(q.t2 for q in qubits)) is None else t2 * 1e6,
    )


def list_devices() -> list[DeviceInfo]:
    """Every shipped snapshot with its qubit count and median errors, narrowest first."""
    infos = [device_info(_fake_backend(name)) for name in fake_backend_classes()]
    return sorted(infos, key=lambda info: (info.n_qubits, info.name))


# ---------------------------------------------------------------------------- transpilation
@dataclass(frozen=True)
class TranspiledHead:
    """A head circuit transpiled for one device, with the facts that decide how it will do there.

    ``layout[i]`` is the physical qubit wire i starts on, ``final_layout[i]`` the one it is
    measured on (they differ when routing inserted SWAPs); measurement writes wire i to clbit i.
    """

    circuit: Circuit
    device: str
    isa: Any = field(repr=False)
    columns: tuple[tuple[str, int], ...] = field(repr=False)  # per isa parameter: ("x", i) or ("w", k)
    depth: int
    two_qubit_gates: int
    gate_counts: dict[str, int]
    layout: tuple[int, ...]
    final_layout: tuple[int, ...]
    optimization_level: int
    seed: int
    backend: Any = field(repr=False, compare=False, hash=False)
    runtime: bool = False  # run through qiskit-ibm-runtime's SamplerV2 (real hardware), not Aer
    active_qubits: tuple[int, ...] = ()  # physical qubits the transpiled circuit touches
    compact: Any = field(default=None, repr=False, compare=False, hash=False)  # isa on active_qubits only, for Aer

    def summary(self) -> dict[str, Any]:
        return {
            "device": self.device, "depth": self.depth, "two_qubit_gates": self.two_qubit_gates, "layout": list(self.layout),
            "final_layout": list(self.final_layout), "optimization_level": self.optimization_level, "gate_counts": dict(self.gate_counts),
        }


def check_width(circuit: Circuit, backend: Any) -> None:
    width = int(backend.num_qubits)
    if circuit.n_qubits > width:
        raise DeviceError(
            f"the head has {circuit.n_qubits} qubits but {backend_name(backend)} has only {width}; "
            "choose a wider device (qubert devices lists them)"
        )


def check_optimization_level(level: Any) -> int:
    if isinstance(level, bool) or level not in OPTIMIZATION_LEVELS:
        raise DeviceError(f"optimization level must be 0, 1, 2 or 3, got {level!r}")
    return int(level)


def transpile_head(circuit: Circuit, device: Any, *, optimization_level: int = 1, seed: int = 0) -> TranspiledHead:
    """Transpile the head's parameterised circuit for ``device`` (a name or backend object).

    Inputs and weights stay parameters, so one transpilation serves every sample and weight.

    Raises:
        DeviceError: unknown device, missing extra, head wider than the device, or a transpiler failure.
    """
    backend = resolve_backend(device)
    optimization_level = check_optimization_level(optimization_level)
    check_width(circuit, backend)
    runtime = uses_runtime(device)
    key = (circuit, backend_name(backend), optimization_level, seed, runtime)
    cached = _TRANSPILED.get(key)
    if cached is not None and cached.backend is backend:
        return cached
    from qiskit import transpile
    from qiskit.exceptions import QiskitError

    from qubert.quantum.export import to_qiskit_parametric

    qc, _, _ = to_qiskit_parametric(circuit, measure=True)
    try:
        isa = transpile(qc, backend=backend, optimization_level=optimization_level, seed_transpiler=seed)
    except QiskitError as err:
        text = " ".join(str(getattr(err, "message", err)).split())  # QiskitError's str() quotes its message
        raise DeviceError(f"cannot transpile the head for {backend_name(backend)}: {text}") from None
    n = circuit.n_qubits
    layout = tuple(int(q) for q in isa.layout.initial_index_layout(filter_ancillas=True)[:n]) if isa.layout else tuple(range(n))
    final = tuple(int(q) for q in isa.layout.final_index_layout(filter_ancillas=True)[:n]) if isa.layout else layout
    columns = tuple((p.vector.name, int(p.index)) for p in isa.parameters)
    counts = {str(k): int(v) for k, v in isa.count_ops().items()}
    two_qubit = sum(1 for inst in isa.data if inst.operation.num_qubits == 2 and inst.operation.name not in ("barrier",))
    active = tuple(sorted({isa.find_bit(q).index for inst in isa.data for q in inst.qubits}))
    result = TranspiledHead(
        circuit=circuit, device=backend_name(backend), isa=isa, columns=columns, depth=int(isa.depth()), two_qubit_gates=two_qubit,
        gate_counts=counts, layout=layout, final_layout=final, optimization_level=optimization_level, seed=seed, backend=backend,
        runtime=runtime, active_qubits=active, compact=_compact(isa, active),
    )
    _TRANSPILED[key] = result
    return result


_TRANSPILED: dict[tuple, TranspiledHead] = {}


def _compact(isa, active: tuple[int, ...]):
    """The transpiled circuit on its active qubits only (renumbered 0..k-1), clbits unchanged.

    Aer would otherwise carry the whole device (127 qubits, its full noise model) through every
    experiment: 7-10x slower per sample on the 127/156-qubit snapshots (benchmarks/devices.py).
    """
    from qiskit import QuantumCircuit

    index = {q: i for i, q in enumerate(active)}
    compact = QuantumCircuit(len(active), name=isa.name)
    compact.add_register(isa.cregs[0])
    for inst in isa.data:
        compact.append(inst.operation, [index[isa.find_bit(q).index] for q in inst.qubits], [isa.find_bit(b).index for b in inst.clbits])
    return compact


# ---------------------------------------------------------------------------- running
def parameter_table(head: TranspiledHead, inputs: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
    """``(batch, n_parameters)`` values in the transpiled circuit's parameter order."""
    x = inputs.detach().to("cpu", torch.float64).numpy()
    w = weights.detach().to("cpu", torch.float64).reshape(-1).numpy()
    table = np.empty((x.shape[0], len(head.columns)))
    for column, (source, index) in enumerate(head.columns):
        table[:, column] = x[:, index] if source == "x" else w[index]
    return table


def aer_sampler(backend: Any, seed: int | None, n_qubits: int, active_qubits: tuple[int, ...] | None = None):
    """Aer's ``SamplerV2`` with the device's noise model (gate errors, T1/T2 relaxation, readout).

    With ``active_qubits`` the noise model is restricted to them, renumbered 0..k-1 (for the
    compact circuit of :class:`TranspiledHead`).
    """
    from qiskit_aer.primitives import SamplerV2

    model = _noise_model(backend) if active_qubits is None else _restricted_noise_model(backend, tuple(active_qubits))
    options: dict[str, Any] = {"noise_model": model}
    if n_qubits <= _AER_DENSITY_MATRIX_MAX_QUBITS:
        options["method"] = "density_matrix"
    return SamplerV2(seed=seed, options={"backend_options": options})


def _noise_model(backend: Any):
    from qiskit_aer.noise import NoiseModel

    name = backend_name(backend)
    if name not in _NOISE_MODELS or _NOISE_MODELS[name][0] is not backend:
        _NOISE_MODELS[name] = (backend, NoiseModel.from_backend(backend))
    return _NOISE_MODELS[name][1]


_NOISE_MODELS: dict[str, tuple[Any, Any]] = {}


@functools.lru_cache(maxsize=32)
def _restricted(name: str, active: tuple[int, ...]):
    from qiskit_aer.noise import NoiseModel

    full = _NOISE_MODELS[name][1]
    index = {q: i for i, q in enumerate(active)}
    small = NoiseModel(basis_gates=full.basis_gates)
    # Aer has no public per-qubit getters (and no remapping helper in 0.18): copy its local errors.
    for gate, errors in full._local_quantum_errors.items():
        for qubits, error in errors.items():
            if all(q in index for q in qubits):
                small.add_quantum_error(error, gate, [index[q] for q in qubits])
    for qubits, error in full._local_readout_errors.items():
        if all(q in index for q in qubits):
            small.add_readout_error(error, [index[q] for q in qubits])
    return small


def _restricted_noise_model(backend: Any, active: tuple[int, ...]):
    _noise_model(backend)
    if _NOISE_MODELS[backend_name(backend)][0] is not backend:
        _restricted.cache_clear()
    return _restricted(backend_name(backend), active)


def runtime_sampler(backend: Any, seed: int | None = None):
    """``qiskit_ibm_runtime.SamplerV2`` on ``backend``: the hardware path (a fake backend runs it locally)."""
    from qiskit_ibm_runtime import SamplerV2

    sampler = SamplerV2(mode=backend)
    if seed is not None and is_fake_backend(backend):
        sampler.options.simulator.seed_simulator = seed
    return sampler


def run_transpiled(
    head: TranspiledHead,
    inputs: torch.Tensor,
    weights: torch.Tensor,
    *,
    shots: int = DEFAULT_DEVICE_SHOTS,
    seed: int | None = None,
    sampler: Any = None,
) -> torch.Tensor:
    """Measured values ``(batch, n_outputs)`` of every sample, from ONE Sampler call (one parameter row each).

    Args:
        head: the transpiled circuit (:func:`transpile_head`).
        inputs: encoding angles ``(batch, n_qubits)``; weights: the circuit weights.
        shots: shots per sample.
        seed: the simulator's seed (a fixed seed reproduces the counts on Aer).
        sampler: a SamplerV2; default: Aer with the device noise for a snapshot, qiskit-ibm-runtime's
            SamplerV2 for a real device (``head.runtime``).
    """
    if inputs.dim() != 2 or inputs.shape[-1] != head.circuit.n_qubits:
        raise ValueError(f"inputs must have shape (batch, {head.circuit.n_qubits}), got {tuple(inputs.shape)}")
    if inputs.shape[0] == 0:
        return torch.zeros(0, head.circuit.n_outputs, dtype=inputs.dtype)
    if sampler is None:
        backend = head.backend
        sampler = runtime_sampler(backend, seed) if head.runtime else aer_sampler(backend, seed, head.circuit.n_qubits, head.active_qubits)
    # Aer's sampler runs the compact circuit (same parameters, same clbits); hardware needs the full ISA circuit.
    circuit = head.compact if (head.compact is not None and not head.runtime and _is_aer(sampler)) else head.isa
    table = parameter_table(head, inputs, weights)
    try:
        result = sampler.run([(circuit, table)], shots=shots).result()[0]
    except MemoryError:
        raise DeviceError(_out_of_memory(head, inputs.shape[0], shots)) from None
    except Exception as err:
        text = " ".join(str(err).split())
        if "memory" in text.lower():
            raise DeviceError(_out_of_memory(head, inputs.shape[0], shots)) from None
        if type(err).__module__.startswith(("qiskit", "qiskit_aer", "qiskit_ibm_runtime")):
            raise DeviceError(f"running the head on {head.device} failed: {text[:300]}") from None
        raise
    bits = _bits(result.data[head.isa.cregs[0].name].array, head.circuit.n_qubits)
    return measured_values_from_bits(bits, head.circuit).to(inputs.dtype)


def _is_aer(sampler: Any) -> bool:
    return type(sampler).__module__.startswith("qiskit_aer")


def _out_of_memory(head: TranspiledHead, batch: int, shots: int) -> str:
    return (
        f"Aer ran out of memory simulating {head.circuit.n_qubits} qubits on {head.device} for {batch} samples x {shots} shots; "
        "use fewer shots, a smaller --batch-size or --max-eval-samples, or a narrower head"
    )


def _bits(packed: np.ndarray, n: int) -> np.ndarray:
    """``(batch, shots, n)`` 0/1 array, column i = clbit i, from a BitArray's packed bytes (big-endian)."""
    unpacked = np.unpackbits(packed, axis=-1)  # the last bit of the last byte is clbit 0
    return unpacked[..., ::-1][..., :n]


def measured_values_from_bits(bits: np.ndarray, circuit: Circuit) -> torch.Tensor:
    """Qubert's outputs (``<Z_i>``, ``<Z_i Z_i+1>`` or probabilities) estimated from measured bits ``(batch, shots, n)``.

    Example:
        >>> bits = np.array([[[0, 1], [0, 1], [0, 0], [0, 0]]])       # 4 shots of 2 qubits
        >>> measured_values_from_bits(bits, Circuit(n_qubits=2))
        tensor([[1., 0.]], dtype=torch.float64)
    """
    signs = 1.0 - 2.0 * bits.astype(np.float64)
    if circuit.measurement == "z":
        out = signs.mean(axis=1)
    elif circuit.measurement == "zz":
        out = (signs[..., :-1] * signs[..., 1:]).mean(axis=1)
    else:
        n = circuit.n_qubits
        index = (bits.astype(np.int64) << np.arange(n - 1, -1, -1)).sum(-1)  # wire 0 = most significant bit
        out = np.stack([np.bincount(row, minlength=2**n) / row.size for row in index])
    return torch.from_numpy(np.ascontiguousarray(out))


# ---------------------------------------------------------------------------- mapping to qubert channels
def _relaxation(t1: float | None, t2: float | None, duration: float | None) -> tuple[float, float, float]:
    """(amplitude damping, phase damping, average gate fidelity) of T1/T2 relaxation over ``duration`` (Aer's convention)."""
    if not duration or t1 is None or not math.isfinite(t1) or t1 <= 0:
        return 0.0, 0.0, 1.0
    t2 = min(t2 if t2 and math.isfinite(t2) else 2 * t1, 2 * t1)  # Aer clamps T2 <= 2 T1 as well
    amplitude = 1 - math.exp(-duration / t1)
    coherence = math.exp(-duration / t2)
    phase = 1 - min(1.0, coherence**2 / (1 - amplitude)) if amplitude < 1 else 1.0
    process_fidelity = (1 + 2 * coherence + (1 - amplitude)) / 4
    return amplitude, max(phase, 0.0), process_fidelity


def _depolarizing_parameter(error: float | None, relax_process_fidelity: float, n_qubits: int) -> float:
    """Aer's depolarizing parameter so that relaxation + depolarizing has average gate error ``error``."""
    if not error:
        return 0.0
    dim = 2**n_qubits
    error = min(error, dim / (dim + 1))
    relax_fid = (dim * relax_process_fidelity + 1) / (dim + 1)  # average gate fidelity
    if error <= 1 - relax_fid:
        return 0.0
    return min(dim * (error - (1 - relax_fid)) / (dim * relax_fid - 1), 4**n_qubits / (4**n_qubits - 1))


def device_noise_model(circuit: Circuit, device: Any, *, optimization_level: int = 1, seed: int = 0) -> DeviceNoiseModel:
    """qubert's channels for ``circuit`` on ``device``, on the physical qubits the transpiler chose.

    Each wire gets its qubit's readout error and, per run of single-qubit gates, two ``sx`` pulses
    of that qubit; each CNOT pair the error and duration of the native 2-qubit gate between the two
    physical qubits (the device's median when they are not coupled). The extra 2-qubit gates routing
    added to the transpiled circuit are charged, at the median error and duration, to the CNOTs of
    uncoupled pairs (to every CNOT when all pairs start coupled), spread evenly per occurrence.
    """
    head = transpile_head(circuit, device, optimization_level=optimization_level, seed=seed)
    target = head.backend.target
    qubits = target.qubit_properties or []

    def t1t2(p: int) -> tuple[float | None, float | None]:
        props = qubits[p] if p < len(qubits) else None
        return (getattr(props, "t1", None), getattr(props, "t2", None))

    def props(gate: str | None, qargs: tuple[int, ...]):
        if gate is None or gate not in target.operation_names:
            return None
        return target[gate].get(qargs)

    pulse = _single_pulse_gate(target)
    single = []
    for p in head.layout:
        t1, t2 = t1t2(p)
        pulse_props = props(pulse, (p,))
        duration = getattr(pulse_props, "duration", None)
        amplitude, phase, fidelity = _relaxation(t1, t2, duration)
        single.append(Relaxation(_depolarizing_parameter(getattr(pulse_props, "error", None), fidelity, 1), amplitude, phase))
    # Routing may move a wire: it is read out on the qubit it ends on.
    readout = [float(getattr(props("measure", (p,)), "error", None) or 0.0) for p in head.final_layout]

    gates2 = _two_qubit_gates(target)
    median_error = _median(props_.error for g in gates2 for props_ in target[g].values() if props_ is not None) or 0.0
    median_duration = _median(props_.duration for g in gates2 for props_ in target[g].values() if props_ is not None) or 0.0
    occurrences: dict[tuple[int, int], int] = {}
    for op in circuit.operations():
        if op.name == "CNOT":
            occurrences[op.wires] = occurrences.get(op.wires, 0) + 1

    def native_props(control: int, target_wire: int):
        pc, pt = head.layout[control], head.layout[target_wire]
        return next((props(g, q) for g in gates2 for q in ((pc, pt), (pt, pc)) if props(g, q) is not None), None)

    extra = max(head.two_qubit_gates - sum(occurrences.values()), 0)
    uncoupled = [pair for pair in occurrences if native_props(*pair) is None]
    charged = uncoupled or list(occurrences)
    per_occurrence = extra / max(sum(occurrences[p] for p in charged), 1)
    pairs = []
    for control, target_wire in sorted(occurrences):
        pc, pt = head.layout[control], head.layout[target_wire]
        native = native_props(control, target_wire)
        error = (native.error or 0.0) if native is not None else median_error
        duration = (native.duration or 0.0) if native is not None else median_duration
        routing = per_occurrence if (control, target_wire) in charged else 0.0
        if routing:
            error = 1 - (1 - error) * (1 - median_error) ** routing
            duration += median_duration * routing
        (ac, phc, fc), (at, pht, ft) = (_relaxation(*t1t2(p), duration) for p in (pc, pt))
        depolarizing = _depolarizing_parameter(error, fc * ft, 2)
        pairs.append(((control, target_wire), PairNoise(depolarizing, Relaxation(0.0, ac, phc), Relaxation(0.0, at, pht), routing)))
    return DeviceNoiseModel(head.device, head.layout, tuple(single), tuple(pairs), tuple(readout))


def cached_device_noise_model(circuit: Circuit, device: Any, *, optimization_level: int = 1, seed: int = 0) -> DeviceNoiseModel:
    """:func:`device_noise_model`, built once per (circuit, device name, level, seed)."""
    backend = resolve_backend(device)
    key = (circuit, backend_name(backend), optimization_level, seed)
    cached = _DEVICE_NOISE.get(key)
    if cached is None or cached[0] is not backend:
        _DEVICE_NOISE[key] = (backend, device_noise_model(circuit, backend, optimization_level=optimization_level, seed=seed))
    return _DEVICE_NOISE[key][1]


_DEVICE_NOISE: dict[tuple, tuple[Any, DeviceNoiseModel]] = {}


def aer_expectations(head: TranspiledHead, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Exact measured values ``(batch, n_outputs)`` of the transpiled circuit under the device noise model (Aer density matrix).

    No shots: Aer's final density matrix of every sample, readout errors of the noise model applied
    to its measured qubits. The reference against which :func:`device_noise_model` is checked.
    """
    from qiskit_aer import AerSimulator

    from qubert.quantum.shots import expectations_from_probabilities

    circuit = head.circuit
    measured = head.isa.remove_final_measurements(inplace=False)
    physical = list(head.final_layout)
    measured.save_probabilities(qubits=physical[::-1])  # Aer's outcome index: first listed qubit least significant
    simulator = AerSimulator(method="density_matrix", noise_model=_noise_model(head.backend))
    table = parameter_table(head, inputs, weights)
    binds = [{p: table[:, k].tolist() for k, p in enumerate(measured.parameters)}]
    result = simulator.run(measured, parameter_binds=binds).result()
    probs = torch.tensor(np.stack([np.asarray(result.data(i)["probabilities"]) for i in range(len(table))]), dtype=torch.float64)
    readout = []
    model = _noise_model(head.backend)
    for p in physical:
        error = model._local_readout_errors.get((p,))  # Aer keeps no public getter for one qubit's readout error
        readout.append(float(error.probabilities[0][1]) if error is not None else 0.0)
    from qubert.quantum.device_noise import apply_readout

    return expectations_from_probabilities(apply_readout(probs, tuple(readout)), circuit)
