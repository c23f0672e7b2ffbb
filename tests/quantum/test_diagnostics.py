"""Circuit diagnostics against the engine, PennyLane, QuantumHead and known values.

Known values: Meyer-Wallach 0 for product states, 1 for GHZ, (N - 2)/(N + 1) on average for Haar
states (Scott 2004); Haar states have expressibility ~0 and a circuit that does nothing
(N - 1) ln 75 (ln 75 for one qubit); Sim et al. (2019) circuit 1 (RX, RZ per qubit) at 4 qubits,
1 layer: expressibility 0.2999; Var[<Z_0>] = 1/(N + 1) for a 2-design, and the gradient variance
of a deep random circuit decays as 2^-n (McClean et al. 2018).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qubert.heads import QuantumHead
from qubert.quantum import Circuit, statevector
from qubert.quantum.basis import observable_signs
from qubert.quantum.diagnostics import (
    DressingDraws,
    analyze,
    batched_statevectors,
    expressibility,
    fidelities,
    fit_slope,
    gradient_statistics,
    haar_fidelity_log_probabilities,
    head_losses,
    meyer_wallach,
    probabilities,
    sample_inputs,
    sample_weights,
    state_statistics,
    strategy_circuit,
)

CIRCUITS = [
    Circuit(n_qubits=4, n_layers=3),
    Circuit(n_qubits=3, n_layers=2, encoding="rx", ansatz="strongly_entangling"),
    Circuit(n_qubits=3, n_layers=3, ansatz="basic_entangler", rotation="rx", reupload=True, init="identity"),
    Circuit(n_qubits=4, n_layers=2, encoding="h_rz", ansatz="strongly_entangling", entanglement="all", init="identity"),
]


@pytest.fixture(autouse=True)
def one_thread():
    """The diagnostics run thousands of small tensors: on a shared 2-core machine, torch's intra-op
    threads made them ~20x slower (benchmarks/diagnostics.py measures it), so these tests use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _haar_states(n_qubits: int, count: int, seed: int = 0) -> torch.Tensor:
    """Haar-random states as normalised complex Gaussian vectors (an independent sampler)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(count, 2**n_qubits)) + 1j * rng.normal(size=(count, 2**n_qubits))
    return torch.from_numpy(z / np.linalg.norm(z, axis=1, keepdims=True))


def _draws(circuit: Circuit, count: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return sample_weights(circuit, "uniform", count, generator), sample_inputs(circuit.n_qubits, "full", count, generator)


# ---------------------------------------------------------------------------- simulation
@pytest.mark.parametrize("circuit", CIRCUITS, ids=lambda c: f"{c.ansatz}-{c.encoding}-{c.init}")
def test_batched_states_match_the_engine_sample_by_sample(circuit) -> None:
    weights, inputs = _draws(circuit, 5)
    states = batched_statevectors(circuit, weights, inputs)
    for s in range(5):
        expected = statevector(circuit, inputs[s : s + 1], weights[s], dtype=torch.complex128)[0]
        torch.testing.assert_close(states[s].to(torch.complex128), expected.to(torch.complex128), atol=1e-12, rtol=0)


@pytest.mark.reference
def test_z0_gradients_match_pennylane() -> None:
    qml = pytest.importorskip("pennylane")
    pnp = pytest.importorskip("pennylane.numpy")
    circuit = Circuit(n_qubits=3, n_layers=2, ansatz="strongly_entangling")
    weights, inputs = _draws(circuit, 3, seed=1)
    w = weights.clone().requires_grad_(True)
    z0 = probabilities(batched_statevectors(circuit, w, inputs)) @ observable_signs(3, "z")[:, 0].double()
    (grads,) = torch.autograd.grad(z0.sum(), w)

    device = qml.device("default.qubit", wires=3)
    names = {"H": "Hadamard", "CNOT": "CNOT", "RX": "RX", "RY": "RY", "RZ": "RZ", "Rot": "Rot"}

    @qml.qnode(device)
    def expectation(flat_w, x):
        for op in circuit.operations():
            getattr(qml, names[op.name])(*[(x if p.source == "x" else flat_w)[p.index] for p in op.params], wires=list(op.wires))
        return qml.expval(qml.PauliZ(0))

    for s in range(3):
        x = pnp.array(inputs[s].numpy(), requires_grad=False)
        expected = qml.grad(lambda flat: expectation(flat, x))(pnp.array(weights[s].reshape(-1).numpy(), requires_grad=True))
        np.testing.assert_allclose(grads[s].reshape(-1).numpy(), expected, atol=1e-10)
        assert float(z0[s].detach()) == pytest.approx(float(expectation(weights[s].reshape(-1).numpy(), x)), abs=1e-10)


def test_head_losses_are_the_quantum_heads_cross_entropy_and_gradient() -> None:
    circuit = Circuit(n_qubits=3, n_layers=2, measurement="zz")
    generator = torch.Generator().manual_seed(2)
    samples, d, k = 3, 6, 3
    weights = sample_weights(circuit, "uniform", samples, generator).requires_grad_(True)
    features = torch.randn(samples, d, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1])
    dressing = DressingDraws(
        torch.randn(samples, 3, d, generator=generator, dtype=torch.float64), torch.randn(samples, 3, generator=generator, dtype=torch.float64),
        torch.randn(samples, k, 2, generator=generator, dtype=torch.float64), torch.randn(samples, k, generator=generator, dtype=torch.float64),
        "tanh_pi",
    )
    losses = head_losses(circuit, weights, features, labels, dressing)
    (grads,) = torch.autograd.grad(losses.sum(), weights)
    for s in range(samples):
        head = QuantumHead(d, k, circuit=circuit, scaling="tanh_pi").double()
        with torch.no_grad():
            head.pre_net.weight.copy_(dressing.pre_weight[s])
            head.pre_net.bias.copy_(dressing.pre_bias[s])
            head.post_net.weight.copy_(dressing.post_weight[s])
            head.post_net.bias.copy_(dressing.post_bias[s])
            head.q_weights.copy_(weights[s])
        loss = torch.nn.functional.cross_entropy(head(features[s : s + 1]), labels[s : s + 1])
        loss.backward()
        assert float(losses[s].detach()) == pytest.approx(float(loss.detach()), abs=1e-10)
        torch.testing.assert_close(grads[s], head.q_weights.grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("ansatz", ["brickwork", "strongly_entangling"])
def test_identity_blocks_start_as_the_bare_encoding(ansatz) -> None:
    circuit = strategy_circuit(Circuit(n_qubits=3, n_layers=4, ansatz=ansatz, reupload=False), "identity")
    generator = torch.Generator().manual_seed(3)
    weights = sample_weights(circuit, "identity", 20, generator)
    assert weights.abs().max() > 1  # the first layer of each pair is drawn uniformly, not near zero
    inputs = sample_inputs(3, "random", 20, generator)
    encoded = batched_statevectors(circuit.replace(n_layers=0), torch.zeros(20, 0, *circuit.weight_shape[1:], dtype=torch.float64), inputs)
    torch.testing.assert_close(batched_statevectors(circuit, weights, inputs), encoded.to(torch.complex128 if ansatz != "brickwork" else torch.float64), atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------- entanglement
def test_meyer_wallach_known_values() -> None:
    generator = torch.Generator().manual_seed(4)
    singles = torch.randn(50, 4, 2, generator=generator, dtype=torch.float64) + 1j * torch.randn(50, 4, 2, generator=generator, dtype=torch.float64)
    singles = singles / singles.norm(dim=-1, keepdim=True)
    product = singles[:, 0]
    for q in range(1, 4):
        product = (product.unsqueeze(-1) * singles[:, q].unsqueeze(1)).reshape(50, -1)
    assert meyer_wallach(product).abs().max() < 1e-12
    for n in (2, 3, 5):
        ghz = torch.zeros(1, 2**n, dtype=torch.complex128)
        ghz[0, 0] = ghz[0, -1] = 2**-0.5
        assert float(meyer_wallach(ghz)[0]) == pytest.approx(1.0, abs=1e-12)
    for n in (2, 4):
        dim = 2**n
        assert float(meyer_wallach(_haar_states(n, 4000)).mean()) == pytest.approx((dim - 2) / (dim + 1), abs=0.01)


# ---------------------------------------------------------------------------- expressibility
def test_haar_bins_integrate_the_haar_density() -> None:
    from scipy.integrate import quad

    for n in (1, 3):
        dim = 2**n
        edges = np.linspace(0, 1, 76)
        expected = [quad(lambda f: (dim - 1) * (1 - f) ** (dim - 2), a, b)[0] for a, b in zip(edges[:-1], edges[1:])]
        np.testing.assert_allclose(np.exp(haar_fidelity_log_probabilities(n)), expected, rtol=1e-8, atol=1e-300)
    assert np.isfinite(haar_fidelity_log_probabilities(10)).all()  # no underflow in the top bins


def test_haar_states_have_expressibility_near_zero_and_an_idle_circuit_the_maximum() -> None:
    for n in (1, 2, 4):
        states = _haar_states(n, 10000, seed=n)
        assert expressibility(fidelities(states[:5000], states[5000:]).numpy(), n) < 0.03
    for n in (1, 3):  # RZ on |0> is a phase: every pair of states has fidelity 1
        kl, entanglement = state_statistics(Circuit(n_qubits=n, n_layers=0, encoding="rz"), "uniform", samples=200, inputs="full")
        assert kl == pytest.approx((2**n - 1) * math.log(75), rel=1e-9)
        assert entanglement == pytest.approx(0.0, abs=1e-12)


def test_sim_et_al_circuits_1_and_2_at_4_qubits_1_layer() -> None:
    # Circuit 1: RX then RZ on every qubit (the encoding angles are random parameters too).
    circuit_1 = Circuit(n_qubits=4, n_layers=1, encoding="rx", ansatz="basic_entangler", rotation="rz", entanglement="none")
    kl_1, ent_1 = state_statistics(circuit_1, "uniform", samples=5000, seed=0, inputs="full")
    assert kl_1 == pytest.approx(0.2999, abs=0.06)  # Sim et al. 2019, 5000 pairs like theirs
    assert ent_1 == pytest.approx(0.0, abs=1e-12)
    # Circuit 2 adds a CNOT ladder: a fixed unitary after the rotations leaves every fidelity as it
    # was (Sim et al. report 0.2860, within their sampling error of circuit 1's 0.2999).
    circuit_2 = circuit_1.replace(entanglement="linear")
    kl_2, ent_2 = state_statistics(circuit_2, "uniform", samples=5000, seed=0, inputs="full")
    assert kl_2 == pytest.approx(kl_1, abs=1e-12)
    assert ent_2 == pytest.approx(_circuit_2_meyer_wallach_numpy(5000), abs=0.02)


def _circuit_2_meyer_wallach_numpy(count: int) -> float:
    """Mean Meyer-Wallach of RX-RZ product states after CNOT(0,1) CNOT(1,2) CNOT(2,3), in plain numpy."""
    rng = np.random.default_rng(7)
    a, b = rng.uniform(0, 2 * np.pi, (2, count, 4))
    # RZ(b) RX(a)|0> = (cos(a/2) e^{-ib/2}, -i sin(a/2) e^{ib/2})
    qubits = np.stack([np.cos(a / 2) * np.exp(-0.5j * b), -1j * np.sin(a / 2) * np.exp(0.5j * b)], axis=-1)
    state = np.einsum("si,sj,sk,sl->sijkl", *(qubits[:, q] for q in range(4)))
    for c, t in ((0, 1), (1, 2), (2, 3)):
        flipped = np.flip(state, axis=1 + t)
        mask = np.zeros((2,) * 4, dtype=bool)
        index = [slice(None)] * 4
        index[c] = 1
        mask[tuple(index)] = True
        state = np.where(mask, flipped, state)
    state = state.reshape(count, 16)
    purities = []
    for k in range(4):
        psi = np.moveaxis(state.reshape(count, 2, 2, 2, 2), 1 + k, 1).reshape(count, 2, 8)
        rho = np.einsum("sia,sja->sij", psi, psi.conj())
        purities.append(np.sum(np.abs(rho) ** 2, axis=(1, 2)))
    return float(np.mean(2 * (1 - np.mean(purities, axis=0))))


# ---------------------------------------------------------------------------- barren plateaus
def test_deep_random_circuit_gradient_variance_decays_as_two_to_minus_n() -> None:
    qubits, variances = [2, 3, 4, 5], []
    for n in qubits:
        circuit = Circuit(n_qubits=n, n_layers=6, ansatz="strongly_entangling")
        stats = gradient_statistics(circuit, "uniform", "z0", samples=800, seed=n)
        variances.append(stats.var)
        assert stats.var_cost * (2**n + 1) == pytest.approx(1.0, rel=0.2)  # 2-design: Var[<Z_0>] = 1/(N+1)
    slope, stderr, _ = fit_slope(qubits, variances)
    assert -1.25 < slope < -0.8, (slope, stderr, variances)


def test_shallow_local_cost_and_identity_blocks_do_not_vanish() -> None:
    result = analyze(Circuit(n_qubits=2, n_layers=1), qubits=[2, 4, 6], depths=[1], inits=["uniform", "identity"], samples=400, seed=0)
    for fit in result.fits:
        if fit.cost == "z0":  # one layer: the gradient of <Z_0> sees a light cone of 2 qubits
            assert abs(fit.slope) < 0.15, fit
    assert {(r.init, r.n_qubits) for r in result.rows} == {(i, n) for i in ("uniform", "identity") for n in (2, 4, 6)}


def test_a_gradient_that_vanishes_by_symmetry_is_left_out_of_the_fit() -> None:
    assert fit_slope([2, 3, 4], [0.1, 1e-33, 0.025]) == pytest.approx((-1.0, math.nan, fit_slope([2, 4], [0.1, 0.025])[2]), nan_ok=True)


def test_analyze_is_reproducible_and_checks_its_inputs() -> None:
    circuit = Circuit(n_qubits=2, n_layers=1)
    first = analyze(circuit, qubits=[2, 3], inits=["small"], samples=50, seed=5)
    assert first.to_dict() == analyze(circuit, qubits=[2, 3], inits=["small"], samples=50, seed=5).to_dict()
    for bad, message in (({"qubits": [0]}, "qubit counts"), ({"qubits": [17]}, "qubit counts"), ({"depths": [-1]}, "depths"),
                         ({"inits": ["zeros"]}, "init strategy"), ({"samples": 3}, "samples"), ({"inputs": "gauss"}, "inputs")):
        with pytest.raises(ValueError, match=message):
            analyze(circuit, **{"qubits": [2], "samples": 50, **bad})
