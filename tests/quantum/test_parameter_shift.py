"""Parameter-shift gradients equal autograd on exact (and exactly simulated noisy) circuits."""

from __future__ import annotations

import math
import random

import pytest
import torch

from qubert.heads import QuantumHead
from qubert.quantum import ANSATZES, ENCODINGS, ENTANGLEMENTS, INITS, MEASUREMENTS, ROTATIONS, Circuit, simulate
from qubert.quantum.execution import execute
from qubert.quantum.noise import angle_sources
from qubert.quantum.parameter_shift import parameter_shift, parameter_shift_jacobian


def _random_circuit(rng: random.Random) -> Circuit:
    while True:
        try:
            return Circuit(
                n_qubits=rng.randint(1, 4),
                n_layers=rng.randint(0, 3),
                encoding=rng.choice(ENCODINGS),
                reupload=rng.random() < 0.5,
                ansatz=rng.choice(ANSATZES),
                entanglement=rng.choice(ENTANGLEMENTS),
                rotation=rng.choice(ROTATIONS),
                measurement=rng.choice(MEASUREMENTS),
                init=rng.choice(INITS),
            )
        except ValueError:  # e.g. zz on one qubit
            continue


def _gradients(circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor, **options) -> tuple[torch.Tensor, ...]:
    x = inputs.clone().requires_grad_(True)
    w = weights.clone().requires_grad_(True)
    out = execute(circuit, x, w, **options)
    projection = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)  # a random-ish functional
    gx, gw = torch.autograd.grad((out * projection).sum(), (x, w), allow_unused=True, materialize_grads=True)
    return out.detach(), gx, gw


@pytest.mark.parametrize("seed", range(40))
def test_parameter_shift_equals_autograd_on_random_circuits(seed: int) -> None:
    rng = random.Random(seed)
    circuit = _random_circuit(rng)
    generator = torch.Generator().manual_seed(seed)
    inputs = (torch.rand(rng.randint(1, 4), circuit.n_qubits, generator=generator, dtype=torch.float64) - 0.5) * 2 * math.pi
    weights = circuit.init_weights(generator, dtype=torch.float64) + torch.rand(circuit.weight_shape, generator=generator, dtype=torch.float64)
    out_ad, gx_ad, gw_ad = _gradients(circuit, inputs, weights)
    out_ps, gx_ps, gw_ps = _gradients(circuit, inputs, weights, gradient="parameter_shift")
    torch.testing.assert_close(out_ps, out_ad, atol=1e-10, rtol=0)
    torch.testing.assert_close(gx_ps, gx_ad, atol=1e-6, rtol=0)
    torch.testing.assert_close(gw_ps, gw_ad, atol=1e-6, rtol=0)


@pytest.mark.parametrize("ansatz", ANSATZES)
def test_parameter_shift_sums_reuploaded_input_occurrences(ansatz: str) -> None:
    circuit = Circuit(n_qubits=3, n_layers=3, ansatz=ansatz, encoding="rx", reupload=True)
    occurrences = sum(p.source == "x" and p.index == 0 for p in angle_sources(circuit))
    assert occurrences == 3  # the same feature sits in three gates
    inputs = torch.rand(2, 3, dtype=torch.float64) * 2
    weights = circuit.init_weights(dtype=torch.float64) + 0.5
    _, gx_ad, gw_ad = _gradients(circuit, inputs, weights)
    _, gx_ps, gw_ps = _gradients(circuit, inputs, weights, gradient="parameter_shift")
    torch.testing.assert_close(gx_ps, gx_ad, atol=1e-6, rtol=0)
    torch.testing.assert_close(gw_ps, gw_ad, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["density_matrix"])
def test_parameter_shift_equals_autograd_with_noise(method: str) -> None:
    noise = "depolarizing:0.05,amplitude_damping:0.1,readout:0.03"
    for circuit in (Circuit(n_qubits=3, n_layers=2), Circuit(n_qubits=2, n_layers=2, ansatz="strongly_entangling", reupload=True, measurement="probs")):
        inputs = torch.rand(3, circuit.n_qubits, dtype=torch.float64) * 3
        weights = circuit.init_weights(dtype=torch.float64) + 0.3
        out_ad, gx_ad, gw_ad = _gradients(circuit, inputs, weights, noise=noise, noise_method=method)
        out_ps, gx_ps, gw_ps = _gradients(circuit, inputs, weights, noise=noise, noise_method=method, gradient="parameter_shift")
        torch.testing.assert_close(out_ps, out_ad, atol=1e-10, rtol=0)
        torch.testing.assert_close(gx_ps, gx_ad, atol=1e-6, rtol=0)
        torch.testing.assert_close(gw_ps, gw_ad, atol=1e-6, rtol=0)


def test_backward_runs_all_shifts_in_one_batch() -> None:
    calls: list[int] = []

    def evaluate(angles: torch.Tensor) -> torch.Tensor:
        calls.append(angles.shape[0])
        return torch.cos(angles) * torch.sin(angles.roll(1, dims=-1))  # like <Z> after RX(a) RY(b)

    angles = torch.rand(5, 3, dtype=torch.float64, requires_grad=True)
    out = parameter_shift(evaluate, angles)
    assert calls == [5]
    out.sum().backward()
    assert calls == [5, 5 * 2 * 3]  # forward, then one call with every shifted circuit
    # Each output is a + b cos(t) + c sin(t) in every angle t, so the rule is exact.
    reference = angles.detach().clone().requires_grad_(True)
    evaluate(reference).sum().backward()
    torch.testing.assert_close(angles.grad, reference.grad)


def test_jacobian_chunks_give_the_same_result() -> None:
    angles = torch.rand(4, 3, dtype=torch.float64)
    full = parameter_shift_jacobian(torch.sin, angles)
    chunked = parameter_shift_jacobian(torch.sin, angles, max_rows=5)
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(full, torch.diag_embed(torch.cos(angles)))


def test_parameter_shift_with_shots_is_noisy_but_close() -> None:
    circuit = Circuit(n_qubits=3, n_layers=2, ansatz="strongly_entangling")
    inputs = torch.rand(1, 3, dtype=torch.float64)
    weights = circuit.init_weights(dtype=torch.float64) + 0.4
    _, _, exact = _gradients(circuit, inputs, weights)
    shots = 20000
    _, _, sampled = _gradients(circuit, inputs, weights, gradient="parameter_shift", shots=shots, seed=0)
    assert not torch.allclose(sampled, exact, atol=1e-6)  # the shifted circuits were sampled too
    # Each weight's derivative is a sum over 3 outputs of (f+ - f-) / 2, each f with std <= 1/sqrt(shots).
    assert (sampled - exact).abs().max() < 5 * 3 / math.sqrt(2 * shots)


def test_quantum_head_trains_with_parameter_shift() -> None:
    torch.manual_seed(0)
    head = QuantumHead(6, 2, n_qubits=3, n_layers=2, seed=0).double()
    features = torch.randn(8, 6, dtype=torch.float64)
    labels = torch.tensor([0, 1] * 4)

    def grads() -> list[torch.Tensor]:
        head.zero_grad()
        torch.nn.functional.cross_entropy(head(features), labels).backward()
        return [p.grad.clone() for p in head.parameters()]

    backprop = grads()
    head.set_execution(gradient="parameter_shift")
    assert head.config()["gradient"] == "parameter_shift"
    shifted = grads()
    for a, b in zip(backprop, shifted):
        torch.testing.assert_close(b, a, atol=1e-8, rtol=0)
    exact = simulate(head.circuit, head.angles(features), head.q_weights)
    torch.testing.assert_close(head.measure(features), exact)


def test_unknown_gradient_method_is_refused() -> None:
    circuit = Circuit(n_qubits=2, n_layers=1)
    with pytest.raises(ValueError, match="unknown gradient method 'adjoint'"):
        execute(circuit, torch.zeros(1, 2), circuit.init_weights(), gradient="adjoint")
