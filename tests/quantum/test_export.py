"""Exports: every exported form, run in its own simulator, reproduces qubert's outputs."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from qubert.quantum import Circuit, simulate
from qubert.quantum.execution import execute
from qubert.quantum.export import (
    ExportError,
    bound_operations,
    export_circuit,
    pennylane_script,
    qiskit_measured_values,
    qiskit_observables,
    to_pennylane,
    to_qasm3,
    to_qiskit,
)

CIRCUITS = [
    Circuit(n_qubits=3, n_layers=2),
    Circuit(n_qubits=3, n_layers=2, ansatz="strongly_entangling", encoding="rx", reupload=True, measurement="zz"),
    Circuit(n_qubits=4, n_layers=2, ansatz="basic_entangler", rotation="rz", encoding="h_rz", entanglement="ring", measurement="probs"),
    Circuit(n_qubits=2, n_layers=3, ansatz="strongly_entangling", encoding="rz", init="identity"),
    Circuit(n_qubits=1, n_layers=1, encoding="ry", rotation="rx"),
]
IDS = ["paper", "strong-reupload-zz", "basic-rz-probs", "strong-identity", "one-qubit"]


def _problem(circuit: Circuit, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = (torch.rand(circuit.n_qubits, generator=generator, dtype=torch.float64) - 0.5) * 2 * math.pi
    weights = (torch.rand(circuit.weight_shape, generator=generator, dtype=torch.float64) - 0.5) * 2 * math.pi
    return inputs, weights


def _expected(circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
    return simulate(circuit, inputs[None], weights)[0].numpy()


def _qiskit_values(qc, circuit: Circuit) -> np.ndarray:
    """qubert's outputs from a Qiskit circuit, with the bit-order conversion written out here."""
    from qiskit.quantum_info import SparsePauliOp, Statevector

    n = circuit.n_qubits
    state = Statevector(qc.remove_final_measurements(inplace=False))
    if circuit.measurement == "probs":
        # Qiskit's index has qubit 0 as the least significant bit: reverse the qubits for qubert's order.
        return state.probabilities(qargs=list(range(n))[::-1])
    label = lambda wires: "".join("Z" if q in wires else "I" for q in range(n))[::-1]
    groups = [(q,) for q in range(n)] if circuit.measurement == "z" else [(q, q + 1) for q in range(n - 1)]
    return np.array([state.expectation_value(SparsePauliOp(label(g))).real for g in groups])


# ---------------------------------------------------------------------------- OpenQASM 3
def test_qasm3_text_layout() -> None:
    circuit = Circuit(n_qubits=2, n_layers=1, ansatz="strongly_entangling", encoding="h_ry")
    weights = torch.tensor([[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]])
    text = to_qasm3(circuit, weights, torch.tensor([1.5, -2.0]))
    lines = text.splitlines()
    assert lines[:2] == ["OPENQASM 3.0;", 'include "stdgates.inc";']
    assert "qubit[2] q;" in lines and "bit[2] c;" in lines
    assert lines[lines.index("qubit[2] q;") + 2 :][:4] == ["h q[0];", "ry(1.5) q[0];", "h q[1];", "ry(-2.0) q[1];"]
    # Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi): rz(phi) acts first.
    first_rot = lines.index("rz(0.10000000149011612) q[0];")
    assert lines[first_rot : first_rot + 3] == ["rz(0.10000000149011612) q[0];", "ry(0.20000000298023224) q[0];", "rz(0.30000001192092896) q[0];"]
    assert "cx q[0], q[1];" in lines
    assert not any("measure" in line for line in lines if not line.startswith("//"))
    assert to_qasm3(circuit, weights, measure=True).rstrip().endswith("c = measure q;")


@pytest.mark.reference
@pytest.mark.parametrize("circuit", CIRCUITS, ids=IDS)
def test_qasm3_parses_back_in_qiskit_and_reproduces_outputs(circuit: Circuit) -> None:
    pytest.importorskip("qiskit")
    pytest.importorskip("qiskit_qasm3_import")
    from qiskit import qasm3

    inputs, weights = _problem(circuit, 1)
    for measure in (False, True):
        qc = qasm3.loads(to_qasm3(circuit, weights, inputs, measure=measure))
        assert qc.num_qubits == circuit.n_qubits
        np.testing.assert_allclose(_qiskit_values(qc, circuit), _expected(circuit, inputs, weights), atol=1e-6, rtol=0)


def test_qasm3_without_inputs_binds_zeros() -> None:
    pytest.importorskip("qiskit_qasm3_import")
    from qiskit import qasm3

    circuit = CIRCUITS[0]
    _, weights = _problem(circuit, 2)
    qc = qasm3.loads(to_qasm3(circuit, weights))
    np.testing.assert_allclose(_qiskit_values(qc, circuit), _expected(circuit, torch.zeros(3, dtype=torch.float64), weights), atol=1e-6)


# ---------------------------------------------------------------------------- Qiskit
@pytest.mark.reference
@pytest.mark.parametrize("circuit", CIRCUITS, ids=IDS)
def test_qiskit_circuit_reproduces_outputs(circuit: Circuit) -> None:
    pytest.importorskip("qiskit")
    inputs, weights = _problem(circuit, 3)
    qc = to_qiskit(circuit, weights, inputs)
    expected = _expected(circuit, inputs, weights)
    np.testing.assert_allclose(_qiskit_values(qc, circuit), expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(qiskit_measured_values(qc, circuit), expected, atol=1e-6, rtol=0)
    assert qc.metadata["qubert_circuit"] == circuit.to_dict()


def test_qiskit_bit_order_is_documented_behaviour() -> None:
    pytest.importorskip("qiskit")
    from qiskit.quantum_info import Statevector

    # RX(pi) on wire 0 only: qubert's basis state |100> (index 4); Qiskit's raw index is 1.
    circuit = Circuit(n_qubits=3, n_layers=0, encoding="rx", measurement="probs")
    inputs = torch.tensor([math.pi, 0.0, 0.0], dtype=torch.float64)
    weights = circuit.init_weights(dtype=torch.float64)
    assert _expected(circuit, inputs, weights).argmax() == 4
    raw = Statevector(to_qiskit(circuit, weights, inputs)).probabilities()
    assert raw.argmax() == 1
    labels = [op.paulis[0].to_label() for op in qiskit_observables(circuit.replace(measurement="zz"))]
    assert labels == ["IZZ", "ZZI"]
    with pytest.raises(ExportError, match="probs"):
        qiskit_observables(circuit)


def test_qiskit_measure_and_qpy_round_trip() -> None:
    pytest.importorskip("qiskit")
    from qiskit import qpy

    circuit = CIRCUITS[1]
    inputs, weights = _problem(circuit, 4)
    qc = to_qiskit(circuit, weights, inputs, measure=True)
    assert qc.count_ops()["measure"] == circuit.n_qubits
    buffer = io.BytesIO()
    qpy.dump(qc, buffer)
    buffer.seek(0)
    (loaded,) = qpy.load(buffer)
    np.testing.assert_allclose(_qiskit_values(loaded, circuit), _expected(circuit, inputs, weights), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------- PennyLane
@pytest.mark.reference
@pytest.mark.parametrize("circuit", CIRCUITS, ids=IDS)
def test_pennylane_qnode_reproduces_outputs(circuit: Circuit) -> None:
    pytest.importorskip("pennylane")
    generator = torch.Generator().manual_seed(5)
    inputs = torch.rand(4, circuit.n_qubits, generator=generator, dtype=torch.float64) * 2 * math.pi
    _, weights = _problem(circuit, 5)
    qnode = to_pennylane(circuit)
    result = qnode(inputs, weights)  # broadcast over the batch
    values = result if isinstance(result, torch.Tensor) else torch.stack(list(result), dim=-1)
    torch.testing.assert_close(values.to(torch.float64), simulate(circuit, inputs, weights), atol=1e-6, rtol=0)


@pytest.mark.reference
def test_pennylane_qnode_with_noise_matches_the_density_matrix() -> None:
    pytest.importorskip("pennylane")
    circuit = CIRCUITS[1]
    noise = "depolarizing:0.03,amplitude_damping:0.05,readout:0.04"
    inputs, weights = _problem(circuit, 6)
    values = torch.stack([torch.as_tensor(v) for v in to_pennylane(circuit, noise=noise)(inputs, weights)]).to(torch.float64)
    torch.testing.assert_close(values, execute(circuit, inputs[None], weights, noise=noise)[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("circuit", CIRCUITS, ids=IDS)
def test_pennylane_script_runs_and_reproduces_outputs(circuit: Circuit) -> None:
    pytest.importorskip("pennylane")
    inputs, weights = _problem(circuit, 7)
    namespace: dict = {"__name__": "exported"}
    exec(compile(pennylane_script(circuit, weights, inputs), "exported.py", "exec"), namespace)
    result = namespace["circuit"](namespace["INPUTS"], namespace["WEIGHTS"])
    np.testing.assert_allclose(np.asarray(result, dtype=float).reshape(-1), _expected(circuit, inputs, weights), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------- errors
def test_export_refuses_wrong_shapes_and_formats() -> None:
    circuit = Circuit(n_qubits=3, n_layers=2)
    weights = circuit.init_weights()
    with pytest.raises(ExportError, match=r"weights must have shape \(2, 3\)"):
        to_qasm3(circuit, torch.zeros(3, 2))
    with pytest.raises(ExportError, match="one sample"):
        to_qasm3(circuit, weights, torch.zeros(2, 3))
    with pytest.raises(ExportError, match="unknown export format 'quil'"):
        export_circuit(circuit, weights, format="quil")
    assert bound_operations(circuit, weights, torch.zeros(1, 3))[1] == ("RY", (0,), (0.0,))
