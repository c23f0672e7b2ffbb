"""Error mitigation, the QPU budget and the shot planner, on fake backends only (no network)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("qiskit_aer")
pytest.importorskip("qiskit_ibm_runtime")
pytest.importorskip("mthree")

from qubert.quantum import Circuit, devices, simulate  # noqa: E402
from qubert.quantum.mitigation import Mitigation, MitigationError, extrapolate_to_zero, mitigated_values, parse_zne_factors  # noqa: E402
from qubert.quantum.qpu_budget import BudgetError, DeviceRunOptions, check_budget, plan_evaluation  # noqa: E402
from qubert.quantum.shot_planning import expected_macro_f1, macro_f1, shots_for_gap  # noqa: E402
from qubert.quantum.shots import expectations_from_probabilities  # noqa: E402


def _case(n_qubits: int, n_layers: int, batch: int, seed: int = 0):
    circuit = Circuit(n_qubits=n_qubits, n_layers=n_layers)
    weights = torch.rand(circuit.weight_shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 * math.pi
    inputs = (torch.rand(batch, n_qubits, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64) - 0.5) * math.pi
    return circuit, inputs, weights


def test_readout_mitigation_brings_a_basis_state_back_to_its_ideal_value() -> None:
    # No entangling layers: H RY(x) per wire, so x = -pi/2 gives |0> (<Z> = +1) and x = +pi/2 gives |1> (<Z> = -1).
    circuit = Circuit(n_qubits=2, n_layers=0)
    inputs = torch.tensor([[-math.pi / 2, math.pi / 2], [math.pi / 2, -math.pi / 2]], dtype=torch.float64)
    weights = circuit.init_weights()
    ideal = simulate(circuit, inputs, weights)
    assert torch.allclose(ideal.abs(), torch.ones_like(ideal), atol=1e-9)
    head = devices.transpile_head(circuit, "fake_manila")
    raw = mitigated_values(head, inputs, weights, Mitigation("none"), shots=8192, seed=0).values
    fixed = mitigated_values(head, inputs, weights, Mitigation("readout"), shots=8192, seed=0).values
    raw_error, fixed_error = (raw - ideal).abs().max().item(), (fixed - ideal).abs().max().item()
    assert raw_error > 0.02  # fake_manila's readout errors are a few percent
    assert fixed_error < 0.02 and fixed_error < raw_error / 2


def test_zne_and_all_move_noisy_values_towards_exact() -> None:
    circuit, inputs, weights = _case(3, 2, batch=6)
    exact = simulate(circuit, inputs, weights)
    head = devices.transpile_head(circuit, "fake_manila")
    errors = {}
    for method in ("none", "zne", "all"):
        run = mitigated_values(head, inputs, weights, Mitigation(method), shots=4096, seed=0)
        errors[method] = (run.values - exact).abs().mean().item()
        assert run.rows == len(inputs)
    assert errors["zne"] < errors["none"]
    assert errors["all"] < errors["none"] / 2
    zne = mitigated_values(head, inputs, weights, Mitigation("zne"), shots=4096, seed=0)
    assert zne.pubs == 3  # one parameter sweep per noise factor, all samples as rows


def test_twirling_turns_a_coherent_gate_error_into_a_smaller_one(monkeypatch) -> None:
    from qiskit.circuit.library import RXGate
    from qiskit.quantum_info import Operator
    from qiskit_aer.noise import NoiseModel, coherent_unitary_error
    from qiskit_aer.primitives import SamplerV2

    def coherent_sampler(backend, seed, n_qubits, active_qubits=None):  # every 2-qubit gate over-rotates both qubits
        model = NoiseModel()
        model.add_all_qubit_quantum_error(coherent_unitary_error(Operator(RXGate(0.25)).tensor(Operator(RXGate(0.25)))), ["cx", "ecr", "cz"])
        return SamplerV2(seed=seed, options={"backend_options": {"noise_model": model, "method": "density_matrix"}})

    monkeypatch.setattr(devices, "aer_sampler", coherent_sampler)
    circuit, inputs, weights = _case(2, 4, batch=8)
    exact = simulate(circuit, inputs, weights)
    head = devices.transpile_head(circuit, "fake_manila")
    raw = mitigated_values(head, inputs, weights, Mitigation("none"), shots=8192, seed=0)
    twirled = mitigated_values(head, inputs, weights, Mitigation("twirling", twirls=16), shots=8192, seed=0)
    assert twirled.pubs == 16 and twirled.shots == 8192 // 16
    assert (twirled.values - exact).abs().mean() < 0.6 * (raw.values - exact).abs().mean()


def test_extrapolation_recovers_known_curves() -> None:
    factors = [1.0, 3.0, 5.0]
    decaying = torch.tensor([[0.8 * math.exp(-0.1 * f), -0.5 * math.exp(-0.2 * f)] for f in factors])
    assert torch.allclose(extrapolate_to_zero(factors, decaying, "exponential"), torch.tensor([0.8, -0.5]), atol=1e-5)
    line = torch.tensor([[0.9 - 0.1 * f] for f in factors])
    assert torch.allclose(extrapolate_to_zero(factors, line, "linear"), torch.tensor([0.9]), atol=1e-6)
    changing_sign = torch.tensor([[0.2], [0.0], [-0.2]])  # exponential cannot fit: linear is used
    assert torch.allclose(extrapolate_to_zero(factors, changing_sign, "exponential"), torch.tensor([0.3]), atol=1e-6)


def test_bad_mitigation_requests_are_one_line_errors() -> None:
    with pytest.raises(MitigationError, match="unknown mitigation 'trex'; expected one of none, readout, zne, twirling, all"):
        Mitigation("trex")
    with pytest.raises(MitigationError, match="strictly increasing"):
        Mitigation("zne", zne_factors=(1, 3, 2))
    with pytest.raises(MitigationError, match="strictly increasing"):
        Mitigation("zne", zne_factors=(0.5, 1))
    with pytest.raises(MitigationError, match="comma-separated numbers"):
        parse_zne_factors("1,three")
    for budget in (0, -5.0):
        with pytest.raises(BudgetError, match="--max-qpu-seconds must be a positive number"):
            check_budget(budget)
    with pytest.raises(BudgetError, match="--mitigation needs --device"):
        DeviceRunOptions.from_cli(None, mitigation="readout")
    with pytest.raises(BudgetError, match="--shots must be a positive integer"):
        DeviceRunOptions.from_cli("fake_manila", shots=0)


def test_the_plan_counts_sweeps_and_refuses_an_over_budget_job() -> None:
    circuit, _, _ = _case(2, 1, batch=1)
    head = devices.transpile_head(circuit, "fake_manila")
    plain = plan_evaluation(head, rows=100, shots=1000, mitigation=Mitigation("none"))
    assert len(plain.circuits) == 1 and plain.circuits[0].rows == 100 and plain.total_shots == 100_000
    assert plain.circuits[0].two_qubit_gates == head.two_qubit_gates and plain.circuits[0].depth == head.depth
    # stated model: overhead + shots x (rep delay + duration); the rep delay alone is 250 us on the snapshots
    assert plain.qpu_seconds >= 2.0 + 100_000 * 250e-6
    zne = plan_evaluation(head, rows=100, shots=1000, mitigation=Mitigation("zne"))
    assert len(zne.circuits) == 3 and zne.circuits[2].two_qubit_gates == 5 * head.two_qubit_gates
    assert zne.qpu_seconds > 3 * (plain.qpu_seconds - 2.0)
    plain.check(plain.qpu_seconds + 1)
    with pytest.raises(BudgetError, match="over --max-qpu-seconds 10; .* nothing was submitted"):
        plain.check(10)


def test_the_shot_planner_agrees_with_an_independent_monte_carlo_of_the_same_model() -> None:
    circuit, inputs, weights = _case(2, 1, batch=40, seed=3)
    probs = simulate(Circuit(n_qubits=2, n_layers=1, measurement="probs"), inputs, weights)
    layer = torch.nn.Linear(2, 3, dtype=torch.float64)
    torch.nn.init.normal_(layer.weight, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        labels = layer(simulate(circuit, inputs, weights)).argmax(-1).numpy()
    labels[::5] = (labels[::5] + 1) % 3  # some rows wrong even with exact values

    def values(freq):
        return expectations_from_probabilities(freq, circuit)

    predicted = expected_macro_f1(probs, labels.tolist(), values, layer, [8, 64, 1024], repeats=400, seed=0)
    # independent: torch.multinomial draws, one row at a time, scikit-learn's macro-F1
    from sklearn.metrics import f1_score

    generator = torch.Generator().manual_seed(1)
    for row in predicted:
        scores = []
        for _ in range(200):
            counts = torch.stack([torch.bincount(torch.multinomial(p, row.shots, replacement=True, generator=generator), minlength=4) for p in probs])
            with torch.no_grad():
                guess = layer(values(counts.double() / row.shots)).argmax(-1).numpy()
            scores.append(f1_score(labels, guess, average="macro", zero_division=0))
        standard_error = math.hypot(row.std / math.sqrt(400), np.std(scores) / math.sqrt(200))
        assert abs(row.mean - np.mean(scores)) < 4 * standard_error + 1e-9, (row, np.mean(scores))
    assert predicted[0].mean < predicted[-1].mean
    assert shots_for_gap(predicted, exact=predicted[-1].mean, gap=1e-9) == 1024


def test_vectorised_macro_f1_matches_scikit_learn() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 30)
    predictions = rng.integers(0, 3, (5, 30))  # class 3 never predicted
    expected = [f1_score(labels, p, average="macro", zero_division=0) for p in predictions]
    assert np.allclose(macro_f1(labels, predictions, 4), expected)
