"""A batch of 0 samples gives empty outputs of the right shape and dtype, and zero gradients, on every path."""

from __future__ import annotations

import pytest
import torch

from qubert.heads import LinearHead, MLPHead, QuantumHead
from qubert.quantum import Circuit, density_matrix, execute, simulate, statevector
from qubert.quantum.engine import choose_strategy

CIRCUITS = {
    "paper_3": Circuit(n_qubits=3, n_layers=2),  # analytic, one block
    "paper_7": Circuit(n_qubits=7, n_layers=2),  # analytic, two blocks
    "complex_probs_3": Circuit(n_qubits=3, n_layers=2, ansatz="strongly_entangling", measurement="probs", reupload=True),
    "zz_12": Circuit(n_qubits=12, n_layers=1, measurement="zz"),  # adjoint (auto); gates: Kronecker blocks
}
ENGINE_CASES = [
    (name, strategy)
    for name, circuit in CIRCUITS.items()
    for strategy in ("auto", "analytic", "adjoint", "fused", "gates")
    if not (strategy == "analytic" and choose_strategy(circuit, 1) != "analytic")
    and not (strategy == "adjoint" and circuit.ansatz == "strongly_entangling")
    and not (strategy == "fused" and circuit.n_qubits > 8)
]
EXECUTION_OPTIONS = {
    "shots": {"shots": 100},
    "readout": {"noise": "readout:0.1"},
    "density_matrix": {"noise": "depolarizing:0.01,amplitude_damping:0.02", "noise_method": "density_matrix"},
    "trajectories": {"noise": "depolarizing:0.01,amplitude_damping:0.02", "noise_method": "trajectories", "trajectories": 4},
    "parameter_shift": {"gradient": "parameter_shift"},
    "parameter_shift_noise_shots": {"gradient": "parameter_shift", "noise": "depolarizing:0.01,readout:0.02", "shots": 10},
}


def empty_inputs(circuit: Circuit, dtype: torch.dtype):
    x = torch.zeros(0, circuit.n_qubits, dtype=dtype, requires_grad=True)
    w = circuit.init_weights(torch.Generator().manual_seed(0)).to(dtype).requires_grad_()
    return x, w


def assert_empty_with_zero_grads(out: torch.Tensor, expected: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> None:
    assert out.shape == (0, *expected.shape[1:]) and out.dtype == expected.dtype
    (out.real if out.is_complex() else out).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert w.grad is not None and w.grad.shape == w.shape and not w.grad.any()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("function", [simulate, statevector])
@pytest.mark.parametrize("name, strategy", ENGINE_CASES)
def test_engine_returns_empty_outputs_for_an_empty_batch(name, strategy, function, dtype):
    circuit = CIRCUITS[name]
    x, w = empty_inputs(circuit, dtype)
    expected = function(circuit, torch.zeros(1, circuit.n_qubits, dtype=dtype), w.detach(), strategy=strategy)
    assert_empty_with_zero_grads(function(circuit, x, w, strategy=strategy), expected, x, w)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("options", EXECUTION_OPTIONS.values(), ids=EXECUTION_OPTIONS.keys())
@pytest.mark.parametrize("name", ["paper_3", "complex_probs_3"])
def test_execution_paths_return_empty_outputs_for_an_empty_batch(name, options, dtype):
    circuit = CIRCUITS[name]
    x, w = empty_inputs(circuit, dtype)
    expected = execute(circuit, torch.zeros(1, circuit.n_qubits, dtype=dtype), w.detach(), seed=0, **options)
    assert_empty_with_zero_grads(execute(circuit, x, w, seed=0, **options), expected, x, w)


def test_density_matrix_of_an_empty_batch_is_empty():
    circuit = CIRCUITS["complex_probs_3"]
    x, w = empty_inputs(circuit, torch.float64)
    assert density_matrix(circuit, x, w, "depolarizing:0.1").shape == (0, 8, 8)


HEADS = {
    "linear": lambda: LinearHead(16, 3),
    "mlp": lambda: MLPHead(16, 3, hidden_sizes=(8,)),
    "quantum": lambda: QuantumHead(16, 3, n_qubits=3, seed=0),
    "quantum_7": lambda: QuantumHead(16, 3, n_qubits=7, seed=0),
    "quantum_shots_noise": lambda: QuantumHead(16, 3, n_qubits=3, seed=0, shots=64, noise="depolarizing:0.01", execution_seed=0),
    "quantum_parameter_shift": lambda: QuantumHead(16, 3, n_qubits=3, seed=0, gradient="parameter_shift"),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("make", HEADS.values(), ids=HEADS.keys())
def test_heads_give_empty_logits_and_zero_gradients_for_an_empty_batch(make, dtype):
    head = make().to(dtype)
    features = torch.zeros(0, 16, dtype=dtype, requires_grad=True)
    logits = head(features)
    assert logits.shape == (0, 3) and logits.dtype == dtype
    logits.sum().backward()
    assert features.grad.shape == (0, 16)
    for name, p in head.named_parameters():
        assert p.grad is not None and not p.grad.any(), name
