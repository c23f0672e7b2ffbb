"""Device-realistic execution: snapshot names, transpilation, Aer with device noise, the qubert mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("qiskit_aer")
pytest.importorskip("qiskit_ibm_runtime")

from qubert.heads import QuantumHead  # noqa: E402
from qubert.quantum import Circuit, simulate  # noqa: E402
from qubert.quantum import devices  # noqa: E402
from qubert.quantum.device_noise import DeviceNoiseModel, device_noise_probabilities  # noqa: E402
from qubert.quantum.noise import density_matrix_probabilities, gate_angles, parse_noise  # noqa: E402
from qubert.quantum.shots import expectations_from_probabilities  # noqa: E402


def _weights(circuit: Circuit, seed: int = 0) -> torch.Tensor:
    return torch.rand(circuit.weight_shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 * math.pi


def _inputs(n: int, batch: int = 4, seed: int = 1) -> torch.Tensor:
    return (torch.rand(batch, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) - 0.5) * math.pi


def test_names_resolve_and_an_unknown_one_gets_a_did_you_mean() -> None:
    names = {devices.backend_name(devices.resolve_backend(name)) for name in ("fake_manila", "manila", "FakeManilaV2", "Fake_Manila")}
    assert names == {"fake_manila"}
    with pytest.raises(devices.DeviceError, match="unknown device 'fake_manilla'; did you mean 'fake_manila'"):
        devices.resolve_backend("fake_manilla")


def test_a_head_wider_than_the_device_is_refused() -> None:
    with pytest.raises(devices.DeviceError, match="the head has 6 qubits but fake_manila has only 5"):
        devices.transpile_head(Circuit(n_qubits=6), "fake_manila")
    with pytest.raises(devices.DeviceError, match="optimization level must be 0, 1, 2 or 3"):
        devices.transpile_head(Circuit(n_qubits=2), "fake_manila", optimization_level=4)


@pytest.mark.parametrize("level", [0, 3])
def test_transpiled_circuit_is_the_original_unitary_up_to_layout(level) -> None:
    from qiskit.quantum_info import Operator

    # A ring on manila's line (0-1-2-3-4) needs routing SWAPs, so the final layout is a permutation.
    circuit = Circuit(n_qubits=5, n_layers=2, ansatz="basic_entangler", rotation="rx")
    head = devices.transpile_head(circuit, "fake_manila", optimization_level=level)
    assert head.two_qubit_gates >= 10 and len(set(head.layout)) == 5
    weights, x = _weights(circuit), _inputs(5, batch=1)[0]
    table = devices.parameter_table(head, x[None], weights)[0]
    bound = head.isa.remove_final_measurements(inplace=False).assign_parameters(dict(zip(head.isa.parameters, table)))
    from qubert.quantum.export import to_qiskit

    original = Operator(to_qiskit(circuit, weights, x))
    assert Operator.from_circuit(bound).equiv(original, atol=1e-8)


def test_measured_values_follow_the_final_layout() -> None:
    """Noise off: <Z> of the transpiled circuit (on 5 physical qubits, with routing) is qubert's to 1e-8."""
    from qiskit.quantum_info import Statevector

    circuit = Circuit(n_qubits=3, n_layers=2, entanglement="ring", measurement="zz")
    head = devices.transpile_head(circuit, "fake_manila", optimization_level=1)
    weights, x = _weights(circuit), _inputs(3, batch=2)
    exact = simulate(circuit, x, weights)
    for row in range(2):
        table = devices.parameter_table(head, x[row : row + 1], weights)[0]
        bound = head.isa.remove_final_measurements(inplace=False).assign_parameters(dict(zip(head.isa.parameters, table)))
        probs = Statevector(bound).probabilities(qargs=list(head.final_layout)[::-1])
        values = expectations_from_probabilities(torch.tensor(probs)[None], circuit)[0]
        torch.testing.assert_close(values, exact[row], atol=1e-8, rtol=0)


def test_device_run_is_reproducible_with_a_seed_and_matches_aer_exact_values() -> None:
    circuit = Circuit(n_qubits=3, n_layers=2, entanglement="ring")
    head = devices.transpile_head(circuit, "fake_manila")
    weights, x = _weights(circuit), _inputs(3, batch=6)
    first = devices.run_transpiled(head, x, weights, shots=2000, seed=7)
    assert torch.equal(first, devices.run_transpiled(head, x, weights, shots=2000, seed=7))
    assert not torch.equal(first, devices.run_transpiled(head, x, weights, shots=2000, seed=8))
    reference = devices.aer_expectations(head, x, weights)
    assert (first - reference).abs().max() < 5 / math.sqrt(2000)  # 5 sigma of a +-1 mean over 2000 shots
    assert (simulate(circuit, x, weights) - reference).abs().max() > 0.01  # the device noise is visible


def test_the_hardware_path_runs_through_qiskit_ibm_runtime_on_a_fake_backend() -> None:
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    circuit = Circuit(n_qubits=2, n_layers=1, measurement="probs")
    backend = FakeManilaV2()
    head = devices.transpile_head(circuit, backend)
    assert head.runtime is False  # a snapshot object runs on Aer unless the runtime sampler is asked for
    weights, x = _weights(circuit), _inputs(2, batch=3)
    sampler = devices.runtime_sampler(backend, seed=3)
    probs = devices.run_transpiled(head, x, weights, shots=3000, sampler=sampler)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, dtype=probs.dtype))
    assert (probs - devices.aer_expectations(head, x, weights)).abs().max() < 5 * 0.5 / math.sqrt(3000)


@pytest.mark.parametrize("device", ["fake_manila", "fake_peekskill"])  # cx and ecr devices
def test_the_qubert_mapping_agrees_with_aer_on_the_same_transpiled_circuit(device) -> None:
    circuit = Circuit(n_qubits=4, n_layers=2)  # brickwork on a line: no routing on these layouts
    weights, x = _weights(circuit), _inputs(4, batch=8)
    head = devices.transpile_head(circuit, device)
    model = devices.device_noise_model(circuit, device)
    assert model.physical_qubits == head.layout and all(pair.routing_gates == 0 for _, pair in model.pairs)
    mapped = expectations_from_probabilities(device_noise_probabilities(circuit, gate_angles(circuit, x, weights), model), circuit)
    reference = devices.aer_expectations(head, x, weights)
    assert (mapped - reference).abs().max() < 0.01
    assert (simulate(circuit, x, weights) - reference).abs().max() > 0.02  # so the agreement is not trivial


def test_uniform_device_model_is_the_abstract_noise_model_without_two_qubit_correlations() -> None:
    """One pulse per gate run, depolarizing 4p/3 (Aer's parameter for qml's p): qubert's density matrix."""
    circuit = Circuit(n_qubits=2, n_layers=0, encoding="ry")
    angles = gate_angles(circuit, _inputs(2), torch.zeros(circuit.weight_shape, dtype=torch.float64))
    model = DeviceNoiseModel.uniform(circuit, depolarizing=4 * 0.05 / 3, readout=0.1)
    reference = density_matrix_probabilities(circuit, angles, parse_noise("depolarizing:0.05"))
    from qubert.quantum.noise import apply_readout_error

    torch.testing.assert_close(device_noise_probabilities(circuit, angles, model), apply_readout_error(reference, 2, 0.1))


def test_quantum_head_trains_under_mapped_device_noise_and_refuses_gradients_on_aer() -> None:
    head = QuantumHead(8, 2, n_qubits=2, n_layers=1, seed=0, backend="fake_manila", device_simulator="qubert")
    features = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    head(features).sum().backward()
    assert head.q_weights.grad is not None and head.q_weights.grad.abs().sum() > 0
    assert head.config()["backend"] == "fake_manila" and head.config()["device_simulator"] == "qubert"
    head.set_execution(device_simulator="aer", shots=256, seed=0)
    with pytest.raises(ValueError, match="no gradient"):
        head(features)
    with torch.no_grad():
        first, second = head(features), None
        head.set_execution(seed=0)
        second = head(features)
    torch.testing.assert_close(first, second)
    with pytest.raises(ValueError, match="either a noise model or a device"):
        head.set_execution(noise="readout:0.01")
    assert head.config()["backend"] == "fake_manila"  # a refused change leaves the head as it was


def test_bits_are_read_in_clbit_order() -> None:
    packed = np.array([[[0b00000110]]], dtype=np.uint8)  # clbits 1 and 2 set, clbit 0 clear
    assert devices._bits(packed, 3).tolist() == [[[0, 1, 1]]]


def test_the_old_device_keyword_of_a_quantum_head_warns_and_still_builds() -> None:
    with pytest.warns(DeprecationWarning, match="backend="):
        head = QuantumHead(8, 2, n_qubits=2, n_layers=1, seed=0, device="fake_manila", device_simulator="qubert")
    assert head.config()["backend"] == "fake_manila"
    with pytest.warns(DeprecationWarning):
        head.set_execution(device=None)
    assert "backend" not in head.config()
    with pytest.raises(ValueError, match="not both"):
        head.set_execution(device="fake_manila", backend="fake_manila")
