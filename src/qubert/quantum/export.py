"""Export a head's circuit to OpenQASM 3, Qiskit and PennyLane, to run it elsewhere or on hardware.

Every exporter walks ``circuit.operations()``, so the exports cannot disagree with the simulator.
The OpenQASM and Qiskit exports bind one sample: the circuit weights and one vector of encoding
angles (the output of the head's dressing layer; zeros when none is given) become numbers.
Gates: ``h``, ``rx``, ``ry``, ``rz``, ``cx``; ``Rot(phi, theta, omega)`` (= RZ(omega) RY(theta) RZ(phi),
PennyLane's definition) is written as ``rz(phi); ry(theta); rz(omega)`` in time order.

Bit order: qubert wire i is qubit ``q[i]`` / Qiskit qubit i / PennyLane wire i everywhere. Qubert and
PennyLane make wire 0 the *most* significant bit of a basis-state index; Qiskit makes qubit 0 the
*least* significant. <Z_i> means the same in all three, but Qiskit writes Pauli labels with
qubit 0 rightmost ("IIIZ" is Z on qubit 0; :func:`qiskit_observables` builds them), and qubert's
``probs`` equal ``Statevector(qc).probabilities(qargs=list(reversed(range(n))))``.

Only the circuit is exported: the dressing layers before it and the linear layer after it stay in
qubert (they are classical).

Example:
    >>> import torch
    >>> from qubert.quantum import Circuit
    >>> c = Circuit(n_qubits=2, n_layers=1)
    >>> print(to_qasm3(c, torch.zeros(c.weight_shape), torch.tensor([0.5, -0.25])), end="")  # doctest: +ELLIPSIS
    OPENQASM 3.0;
    include "stdgates.inc";
    // qubert head circuit; outputs: ...
    qubit[2] q;
    bit[2] c;
    h q[0];
    ry(0.5) q[0];
    h q[1];
    ry(-0.25) q[1];
    cx q[0], q[1];
    ry(0.0) q[0];
    ry(0.0) q[1];
"""

from __future__ import annotations

import json
from typing import Any

import torch

from qubert.quantum.circuit import Circuit
from qubert.quantum.noise import NoiseModel, parse_noise

FORMATS = ("qasm3", "qiskit", "pennylane")


class ExportError(ValueError):
    """The circuit cannot be exported with the given weights, inputs or options."""


def bound_operations(circuit: Circuit, weights: torch.Tensor, inputs: torch.Tensor | None = None) -> list[tuple[str, tuple[int, ...], tuple[float, ...]]]:
    """The gate list with numbers for angles: ``(name, wires, angles)`` per gate.

    Args:
        circuit: the circuit description.
        weights: circuit weights of shape ``circuit.weight_shape``.
        inputs: encoding angles of one sample, shape ``(n_qubits,)`` or ``(1, n_qubits)``; zeros if ``None``.

    Example:
        >>> c = Circuit(n_qubits=1, n_layers=1, encoding="rx")
        >>> bound_operations(c, torch.tensor([[0.5]]), torch.tensor([0.25]))
        [('RX', (0,), (0.25,)), ('RY', (0,), (0.5,))]
    """
    n = circuit.n_qubits
    if tuple(weights.shape) != circuit.weight_shape:
        raise ExportError(f"weights must have shape {circuit.weight_shape}, got {tuple(weights.shape)}")
    if inputs is None:
        inputs = torch.zeros(n)
    if inputs.dim() == 2 and inputs.shape[0] == 1:
        inputs = inputs[0]
    if tuple(inputs.shape) != (n,):
        raise ExportError(f"export binds one sample: inputs must have shape ({n},), got {tuple(inputs.shape)}")
    x = inputs.detach().double().tolist()
    w = weights.detach().double().reshape(-1).tolist()
    return [(op.name, op.wires, tuple(x[p.index] if p.source == "x" else w[p.index] for p in op.params)) for op in circuit.operations()]


def _number(value: float) -> str:
    return repr(float(value))  # shortest text that reads back as the same double


# ---------------------------------------------------------------------------- OpenQASM 3
def to_qasm3(circuit: Circuit, weights: torch.Tensor, inputs: torch.Tensor | None = None, *, measure: bool = False) -> str:
    """OpenQASM 3 text of the circuit for one sample (``measure=True`` appends ``c = measure q;``).

    Parse it back with ``qiskit.qasm3.loads`` (needs ``qiskit-qasm3-import``).
    """
    n = circuit.n_qubits
    lines = [
        "OPENQASM 3.0;",
        'include "stdgates.inc";',
        f"// qubert head circuit; outputs: {_measurement_note(circuit)}; description: {circuit.to_json()}",
        f"qubit[{n}] q;",
        f"bit[{n}] c;",
    ]
    for name, wires, angles in bound_operations(circuit, weights, inputs):
        q = [f"q[{w}]" for w in wires]
        if name == "H":
            lines.append(f"h {q[0]};")
        elif name == "CNOT":
            lines.append(f"cx {q[0]}, {q[1]};")
        elif name == "Rot":
            phi, theta, omega = angles
            lines += [f"rz({_number(phi)}) {q[0]};", f"ry({_number(theta)}) {q[0]};", f"rz({_number(omega)}) {q[0]};"]
        else:
            lines.append(f"{name.lower()}({_number(angles[0])}) {q[0]};")
    if measure:
        lines.append("c = measure q;")
    return "\n".join(lines) + "\n"


def _measurement_note(circuit: Circuit) -> str:
    n = circuit.n_qubits
    if circuit.measurement == "z":
        return f"<Z_i> for qubits i = 0..{n - 1}"
    if circuit.measurement == "zz":
        return f"<Z_i Z_(i+1)> for i = 0..{n - 2}"
    return "probabilities of all basis states, wire 0 the most significant bit"


# ---------------------------------------------------------------------------- Qiskit
def to_qiskit(circuit: Circuit, weights: torch.Tensor, inputs: torch.Tensor | None = None, *, measure: bool = False):
    """A ``qiskit.QuantumCircuit`` for one sample; qubert wire i is Qiskit qubit i (see the module notes).

    ``metadata`` holds the qubert circuit description and the measurement.
    """
    from qiskit import QuantumCircuit

    n = circuit.n_qubits
    qc = QuantumCircuit(n, n, name="qubert_head")
    qc.metadata = {"qubert_circuit": circuit.to_dict(), "measurement": circuit.measurement}
    for name, wires, angles in bound_operations(circuit, weights, inputs):
        _append_qiskit_gate(qc, name, wires, angles)
    if measure:
        qc.measure(range(n), range(n))
    return qc


def to_qiskit_parametric(circuit: Circuit, *, measure: bool = True):
    """A ``qiskit.QuantumCircuit`` with every angle a ``Parameter``: ``(qc, x, w)``.

    ``x`` (a ``ParameterVector`` of ``n_qubits``) holds the encoding angles and ``w`` the flattened
    circuit weights, so one transpiled circuit serves every sample and weight update (bind with
    ``qc.assign_parameters`` or a Sampler's parameter array). Measurement writes qubit i to clbit i.

    Example:
        >>> qc, x, w = to_qiskit_parametric(Circuit(n_qubits=2, n_layers=1))  # doctest: +SKIP
        >>> len(x), len(w), qc.num_parameters                                 # doctest: +SKIP
        (2, 2, 4)
    """
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    n = circuit.n_qubits
    x, w = ParameterVector("x", n), ParameterVector("w", circuit.n_weights)
    qc = QuantumCircuit(n, n, name="qubert_head")
    qc.metadata = {"qubert_circuit": circuit.to_dict(), "measurement": circuit.measurement}
    for op in circuit.operations():
        _append_qiskit_gate(qc, op.name, op.wires, tuple(x[p.index] if p.source == "x" else w[p.index] for p in op.params))
    if measure:
        qc.measure(range(n), range(n))
    return qc, x, w


def _append_qiskit_gate(qc, name: str, wires: tuple[int, ...], angles: tuple) -> None:
    if name == "H":
        qc.h(wires[0])
    elif name == "CNOT":
        qc.cx(wires[0], wires[1])
    elif name == "Rot":
        phi, theta, omega = angles
        qc.rz(phi, wires[0])
        qc.ry(theta, wires[0])
        qc.rz(omega, wires[0])
    else:
        getattr(qc, name.lower())(angles[0], wires[0])


def _pauli_label(n: int, z_wires: tuple[int, ...]) -> str:
    """Qiskit Pauli label with Z on ``z_wires`` (qubit 0 is the rightmost character)."""
    return "".join("Z" if q in z_wires else "I" for q in reversed(range(n)))


def qiskit_observables(circuit: Circuit) -> list:
    """``SparsePauliOp`` observables whose expectations are qubert's outputs (``z`` and ``zz`` measurements).

    Example:
        >>> [op.paulis[0].to_label() for op in qiskit_observables(Circuit(n_qubits=3, measurement="zz"))]  # doctest: +SKIP
        ['IZZ', 'ZZI']
    """
    from qiskit.quantum_info import SparsePauliOp

    n = circuit.n_qubits
    if circuit.measurement == "probs":
        raise ExportError("the 'probs' measurement has no observables; use Statevector.probabilities (see qubert.quantum.export)")
    groups = [(q,) for q in range(n)] if circuit.measurement == "z" else [(q, q + 1) for q in range(n - 1)]
    return [SparsePauliOp(_pauli_label(n, g)) for g in groups]


def qiskit_measured_values(qc, circuit: Circuit):
    """Qubert's outputs for an exported Qiskit circuit, from its exact statevector (a numpy array).

    Example:
        >>> c = Circuit(n_qubits=2, n_layers=1)
        >>> qiskit_measured_values(to_qiskit(c, torch.zeros(c.weight_shape)), c)  # doctest: +SKIP
        array([0., 0.])
    """
    import numpy as np
    from qiskit.quantum_info import Statevector

    state = Statevector(qc.remove_final_measurements(inplace=False))
    if circuit.measurement == "probs":
        return np.asarray(state.probabilities(qargs=list(reversed(range(circuit.n_qubits)))))
    return np.array([state.expectation_value(op).real for op in qiskit_observables(circuit)])


# ---------------------------------------------------------------------------- PennyLane
def _pennylane_ops(circuit: Circuit, noise: NoiseModel) -> list[tuple[str, list[tuple[str, float]], int | list[int]]]:
    """(qml operation name, arguments, wires) for every gate and channel in order.

    An argument is ``("x", i)`` (input feature i), ``("w", k)`` (flattened weight k) or ``("p", value)``.
    """
    names = {"H": "Hadamard", "RX": "RX", "RY": "RY", "RZ": "RZ", "Rot": "Rot", "CNOT": "CNOT"}
    channels = [("DepolarizingChannel", noise.depolarizing), ("AmplitudeDamping", noise.amplitude_damping)]
    out: list = []
    for op in circuit.operations():
        args = [(p.source, p.index) for p in op.params]
        out.append((names[op.name], args, op.wires[0] if len(op.wires) == 1 else list(op.wires)))
        out += [(name, [("p", p)], wire) for wire in op.wires for name, p in channels if p > 0]
    if noise.readout:
        out += [("BitFlip", [("p", noise.readout)], wire) for wire in range(circuit.n_qubits)]
    return out


def _pennylane_argument_text(arg: tuple[str, float]) -> str:
    kind, value = arg
    return {"x": f"inputs[..., {value}]", "w": f"weights[{value}]", "p": _number(value)}[kind]


def _pennylane_return(circuit: Circuit) -> str:
    n = circuit.n_qubits
    if circuit.measurement == "z":
        return "[" + ", ".join(f"qml.expval(qml.PauliZ({q}))" for q in range(n)) + "]"
    if circuit.measurement == "zz":
        return "[" + ", ".join(f"qml.expval(qml.PauliZ({q}) @ qml.PauliZ({q + 1}))" for q in range(n - 1)) + "]"
    return f"qml.probs(wires=range({n}))"


def to_pennylane(circuit: Circuit, *, noise: NoiseModel | str | None = None, device: Any = None, interface: str = "auto"):
    """A PennyLane QNode ``qnode(inputs, weights)`` of the circuit (with its noise channels, if any).

    ``inputs`` are encoding angles of shape ``(n_qubits,)`` or ``(batch, n_qubits)`` (broadcast);
    ``weights`` has ``circuit.weight_shape``. Without gate or readout noise it runs on
    ``default.qubit``, with noise on ``default.mixed``; pass ``device`` to choose another.

    Example:
        >>> c = Circuit(n_qubits=2, n_layers=1)
        >>> qnode = to_pennylane(c)                                     # doctest: +SKIP
        >>> qnode(torch.zeros(2), torch.zeros(c.weight_shape))          # doctest: +SKIP
        [tensor(0., dtype=torch.float64), tensor(0., dtype=torch.float64)]
    """
    import pennylane as qml

    noise = parse_noise(noise)
    if device is None:
        device = qml.device("default.qubit" if noise.is_noiseless else "default.mixed", wires=circuit.n_qubits)
    ops = _pennylane_ops(circuit, noise)
    measurement = circuit.measurement
    n = circuit.n_qubits

    def qubert_circuit(inputs, weights):
        flat = weights.reshape(-1)
        for name, args, wires in ops:
            values = [inputs[..., v] if kind == "x" else flat[v] if kind == "w" else v for kind, v in args]
            getattr(qml, name)(*values, wires=wires)
        if measurement == "z":
            return [qml.expval(qml.PauliZ(q)) for q in range(n)]
        if measurement == "zz":
            return [qml.expval(qml.PauliZ(q) @ qml.PauliZ(q + 1)) for q in range(n - 1)]
        return qml.probs(wires=range(n))

    return qml.QNode(qubert_circuit, device, interface=interface)


def pennylane_script(circuit: Circuit, weights: torch.Tensor, inputs: torch.Tensor | None = None, *, noise: NoiseModel | str | None = None) -> str:
    """A runnable Python script that rebuilds the circuit as a PennyLane QNode and prints its outputs.

    The weights and one sample's encoding angles (zeros if ``None``) are written into the script.
    """
    noise = parse_noise(noise)
    n = circuit.n_qubits
    bound_operations(circuit, weights, inputs)  # validates the shapes
    x = (torch.zeros(n) if inputs is None else inputs.detach().reshape(-1)).double().tolist()
    w = weights.detach().double().reshape(-1).tolist()
    device = "default.qubit" if noise.is_noiseless else "default.mixed"
    body = "".join(
        f"    qml.{name}({', '.join([_pennylane_argument_text(a) for a in args] + [f'wires={wires}'])})\n"
        for name, args, wires in _pennylane_ops(circuit, noise)
    )
    return f'''"""A qubert head circuit as a PennyLane QNode (exported by qubert).

Circuit: {circuit.to_json()}
Noise: {noise.to_spec()}
Outputs: {_measurement_note(circuit)}.
INPUTS are the encoding angles of one sample (the head's dressing-layer output); WEIGHTS are the
circuit weights, flattened from shape {tuple(circuit.weight_shape)}.
"""

import pennylane as qml
from pennylane import numpy as np

N_QUBITS = {n}
INPUTS = np.array({json.dumps([float(v) for v in x])}, requires_grad=False)
WEIGHTS = np.array({json.dumps([float(v) for v in w])})

dev = qml.device("{device}", wires=N_QUBITS)


@qml.qnode(dev)
def circuit(inputs, weights):
{body}    return {_pennylane_return(circuit)}


if __name__ == "__main__":
    print(circuit(INPUTS, WEIGHTS))
'''


def export_circuit(
    circuit: Circuit, weights: torch.Tensor, inputs: torch.Tensor | None = None, *, format: str, measure: bool = False, noise: NoiseModel | str | None = None
):
    """Dispatch on ``format`` (``qasm3`` -> text, ``qiskit`` -> QuantumCircuit, ``pennylane`` -> script text)."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; expected one of {', '.join(FORMATS)}")
    if format == "qasm3":
        return to_qasm3(circuit, weights, inputs, measure=measure)
    if format == "qiskit":
        return to_qiskit(circuit, weights, inputs, measure=measure)
    return pennylane_script(circuit, weights, inputs, noise=noise)
