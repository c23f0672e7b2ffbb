"""Finite shots: seeded estimates converge to the exact values; execution options of QuantumHead."""

from __future__ import annotations

import math

import pytest
import torch

from qubert.heads import QuantumHead, build_head
from qubert.quantum import Circuit, simulate
from qubert.quantum import shots as shots_module
from qubert.quantum.execution import ExecutionOptions, execute
from qubert.quantum.noise import NoiseModel
from qubert.quantum.shots import ShotsError, check_shots, estimate_from_shots, sample_counts

CIRCUITS = [
    Circuit(n_qubits=3, n_layers=2),
    Circuit(n_qubits=3, n_layers=2, ansatz="strongly_entangling", measurement="zz"),
    Circuit(n_qubits=3, n_layers=1, ansatz="basic_entangler", rotation="rx", measurement="probs"),
]


def _standard_error(exact: torch.Tensor, circuit: Circuit, shots: int) -> torch.Tensor:
    """Binomial standard error of one shot estimate: Z-type values are +-1, probabilities 0/1."""
    if circuit.measurement == "probs":
        return (exact * (1 - exact) / shots).clamp_min(0).sqrt()
    return ((1 - exact.square()) / shots).clamp_min(0).sqrt()


@pytest.mark.parametrize("circuit", CIRCUITS, ids=lambda c: c.measurement)
@pytest.mark.parametrize("shots", [100, 4096])
def test_shot_estimates_lie_within_four_standard_errors(circuit: Circuit, shots: int, torch_rng: torch.Generator) -> None:
    inputs = torch.rand(16, circuit.n_qubits, generator=torch_rng, dtype=torch.float64) * math.pi
    weights = circuit.init_weights(torch_rng, dtype=torch.float64) + 0.7
    exact = simulate(circuit, inputs, weights)
    estimate = execute(circuit, inputs, weights, shots=shots, seed=1)
    assert estimate.shape == exact.shape and estimate.dtype == exact.dtype
    assert ((estimate - exact).abs() <= 4 * _standard_error(exact, circuit, shots) + 1e-12).all()
    assert not torch.allclose(estimate, exact, atol=1e-9)
    # Values are what a histogram gives: multiples of 1/shots (2/shots for +-1 observables).
    step = 1 / shots if circuit.measurement == "probs" else 2 / shots
    assert torch.allclose(estimate / step, (estimate / step).round(), atol=1e-6)


def test_shot_estimates_are_unbiased(torch_rng: torch.Generator) -> None:
    circuit = CIRCUITS[0]
    inputs = torch.rand(4, 3, generator=torch_rng, dtype=torch.float64) * math.pi
    weights = circuit.init_weights(torch_rng, dtype=torch.float64) + 0.7
    exact = simulate(circuit, inputs, weights)
    repeats, shots = 200, 64
    generator = torch.Generator().manual_seed(5)
    mean = torch.stack([execute(circuit, inputs, weights, shots=shots, seed=generator) for _ in range(repeats)]).mean(0)
    assert ((mean - exact).abs() <= 4 * _standard_error(exact, circuit, shots * repeats) + 1e-12).all()


def test_estimate_from_counts_of_a_basis_state_is_exact() -> None:
    circuit = Circuit(n_qubits=2, n_layers=0, measurement="zz")
    probs = torch.tensor([[0.0, 0.0, 1.0, 0.0]])  # |10>: Z0 = -1, Z1 = +1
    torch.testing.assert_close(estimate_from_shots(probs, circuit, 10), torch.tensor([[-1.0]]))
    z = circuit.replace(measurement="z")
    torch.testing.assert_close(estimate_from_shots(probs, z, 10), torch.tensor([[-1.0, 1.0]]))


def test_sample_counts_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shots_module, "_MAX_SAMPLES_PER_CHUNK", 7)  # force many multinomial chunks
    probs = torch.tensor([[0.25, 0.75], [1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    counts = sample_counts(probs, 1000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(counts.sum(-1), torch.full((3,), 1000.0, dtype=torch.float64))
    assert counts[1, 1] == 0
    assert abs(counts[0, 1].item() - 750) < 4 * math.sqrt(1000 * 0.25 * 0.75)


def test_shots_are_seeded_and_a_generator_advances() -> None:
    circuit = CIRCUITS[0]
    x, w = torch.rand(5, 3), circuit.init_weights()
    torch.testing.assert_close(execute(circuit, x, w, shots=50, seed=3), execute(circuit, x, w, shots=50, seed=3), atol=0, rtol=0)
    assert not torch.equal(execute(circuit, x, w, shots=50, seed=3), execute(circuit, x, w, shots=50, seed=4))
    generator = torch.Generator().manual_seed(3)
    first = execute(circuit, x, w, shots=50, seed=generator)
    second = execute(circuit, x, w, shots=50, seed=generator)
    torch.testing.assert_close(first, execute(circuit, x, w, shots=50, seed=3), atol=0, rtol=0)
    assert not torch.equal(first, second)
    torch.manual_seed(11)
    a = execute(circuit, x, w, shots=50)
    torch.manual_seed(11)
    torch.testing.assert_close(execute(circuit, x, w, shots=50), a, atol=0, rtol=0)  # seed=None follows torch.manual_seed


def test_shots_with_noise_sample_the_noisy_distribution(torch_rng: torch.Generator) -> None:
    circuit = CIRCUITS[0]
    inputs = torch.rand(8, 3, generator=torch_rng, dtype=torch.float64) * math.pi
    weights = circuit.init_weights(torch_rng, dtype=torch.float64) + 0.7
    noise = "depolarizing:0.05,readout:0.05"
    exact = execute(circuit, inputs, weights, noise=noise)
    estimate = execute(circuit, inputs, weights, noise=noise, shots=2000, seed=0)
    assert ((estimate - exact).abs() <= 4 * _standard_error(exact, circuit, 2000) + 1e-12).all()


def test_training_with_shots_uses_the_exact_gradient(torch_rng: torch.Generator) -> None:
    circuit = CIRCUITS[1]
    x = torch.rand(4, 3, generator=torch_rng, dtype=torch.float64, requires_grad=True)
    w = (circuit.init_weights(torch_rng, dtype=torch.float64) + 0.3).requires_grad_(True)
    sampled = execute(circuit, x, w, shots=128, seed=0)
    exact = simulate(circuit, x, w)
    assert not torch.allclose(sampled, exact)
    g_sampled = torch.autograd.grad(sampled.sum(), (x, w))
    g_exact = torch.autograd.grad(exact.sum(), (x, w))
    for a, b in zip(g_sampled, g_exact):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "100"])
def test_bad_shots_are_refused(bad) -> None:
    assert issubclass(ShotsError, ValueError)
    with pytest.raises(ShotsError, match="shots must be a positive integer"):
        check_shots(bad)
    circuit = Circuit(n_qubits=2, n_layers=1)
    with pytest.raises(ValueError, match="shots must be a positive integer"):
        execute(circuit, torch.zeros(1, 2), circuit.init_weights(), shots=bad)


def test_execute_with_defaults_is_simulate() -> None:
    circuit = Circuit(n_qubits=3, n_layers=2)
    x, w = torch.rand(4, 3), circuit.init_weights()
    torch.testing.assert_close(execute(circuit, x, w), simulate(circuit, x, w), atol=0, rtol=0)
    single = execute(circuit, x[0], w, shots=10, seed=0)
    assert single.shape == (3,)


def test_bad_execution_options_are_refused() -> None:
    with pytest.raises(ValueError, match="trajectories must be a positive integer"):
        ExecutionOptions(trajectories=0)
    with pytest.raises(ValueError, match="unknown noise_method"):
        ExecutionOptions(noise_method="mps")
    circuit = Circuit(n_qubits=2, n_layers=1)
    with pytest.raises(ValueError, match="unknown strategy"):
        execute(circuit, torch.zeros(1, 2), circuit.init_weights(), shots=5, strategy="fast")
    with pytest.raises(ValueError, match="seed must be an integer"):
        execute(circuit, torch.zeros(1, 2), circuit.init_weights(), shots=5, seed="x")


# ---------------------------------------------------------------------------- QuantumHead options
def test_head_config_stays_unchanged_with_default_execution() -> None:
    head = QuantumHead(8, 2, n_qubits=3, n_layers=1)
    assert set(head.config()) == {"type", "in_features", "n_classes", "circuit", "scaling", "strategy", "freeze_circuit"}
    assert head.shots is None and head.noise is None and head.gradient == "backprop" and head.execution_seed is None


def test_head_execution_options_round_trip_through_config() -> None:
    head = QuantumHead(8, 2, n_qubits=3, n_layers=1, shots=256, noise="depolarizing:0.01,readout:0.02", gradient="parameter_shift", execution_seed=7)
    config = head.config()
    assert config["shots"] == 256 and config["noise"] == "depolarizing:0.01,readout:0.02"
    assert config["gradient"] == "parameter_shift" and config["execution_seed"] == 7
    rebuilt = build_head(config, seed=0)
    assert rebuilt.config() == config
    rebuilt.load_state_dict(head.state_dict())
    features = torch.randn(5, 8)
    torch.testing.assert_close(rebuilt(features), head(features))  # same seed, same shots


def test_set_execution_changes_only_what_it_is_given_and_validates() -> None:
    head = QuantumHead(8, 2, n_qubits=3, n_layers=1)
    features = torch.randn(6, 8)
    exact = head(features)
    head.set_execution(shots=512, seed=1)
    head.set_execution(noise="readout:0.1")
    assert head.shots == 512 and head.noise == NoiseModel(readout=0.1) and head.execution_seed == 1
    first = head(features)
    assert not torch.allclose(first, exact)
    head.set_execution(seed=1)  # restarts the sampler: the same shots again
    torch.testing.assert_close(head(features), first, atol=0, rtol=0)
    with pytest.raises(ValueError, match="unknown noise channel"):
        head.set_execution(noise="cosmic_rays:0.1", shots=64)
    assert head.shots == 512 and head.noise == NoiseModel(readout=0.1)  # unchanged after a bad call
    with pytest.raises(ValueError, match="unknown execution option"):
        head.set_execution(shot=5)
    head.set_execution(shots=None, noise=None)
    torch.testing.assert_close(head(features), exact)
    assert "shots" not in head.config() and "noise" not in head.config()


def test_head_trains_with_shots_and_noise() -> None:
    torch.manual_seed(0)
    head = QuantumHead(4, 2, n_qubits=3, n_layers=2, seed=0, shots=256, noise="depolarizing:0.02", execution_seed=0)
    features = torch.randn(32, 4)
    labels = (features[:, 0] > 0).long()
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(features), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert head.q_weights.grad is not None and head.pre_net.weight.grad is not None
    assert sum(losses[-5:]) / 5 < losses[0] - 0.1
