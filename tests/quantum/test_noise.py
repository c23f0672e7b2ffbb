"""Noise: the spec parser, the density-matrix simulator against PennyLane ``default.mixed``, and
Monte Carlo trajectories against the density matrix."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from qubert.quantum import Circuit, RegisterTooLargeError, simulate
from qubert.quantum.execution import execute
from qubert.quantum.noise import (
    DENSITY_MATRIX_MAX_QUBITS,
    NoiseModel,
    NoiseSpecError,
    apply_readout_error,
    density_matrix,
    density_matrix_probabilities,
    gate_angles,
    noisy_probabilities,
    parse_noise,
    resolve_noise_method,
    trajectory_probabilities,
)

NOISES = [
    NoiseModel(depolarizing=0.05),
    NoiseModel(amplitude_damping=0.1),
    NoiseModel(readout=0.07),
    NoiseModel(depolarizing=0.03, amplitude_damping=0.08, readout=0.02),
]


def _circuits() -> list[Circuit]:
    """Small circuits covering every encoding, ansatz, entanglement, measurement, init and re-uploading."""
    return [
        Circuit(n_qubits=1, n_layers=1, encoding="rx"),
        Circuit(n_qubits=2, n_layers=2),
        Circuit(n_qubits=3, n_layers=2, measurement="probs", entanglement="ring"),
        Circuit(n_qubits=3, n_layers=2, ansatz="strongly_entangling", encoding="ry", measurement="zz"),
        Circuit(n_qubits=3, n_layers=2, ansatz="basic_entangler", rotation="rx", encoding="h_rz", reupload=True),
        Circuit(n_qubits=4, n_layers=1, ansatz="strongly_entangling", encoding="rz", reupload=True, measurement="probs"),
        Circuit(n_qubits=4, n_layers=2, ansatz="basic_entangler", rotation="rz", entanglement="all", init="identity"),
        Circuit(n_qubits=2, n_layers=3, ansatz="brickwork", rotation="rx", entanglement="none", measurement="zz"),
    ]


def _random_problem(circuit: Circuit, generator: torch.Generator, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = (torch.rand(batch, circuit.n_qubits, generator=generator, dtype=torch.float64) - 0.5) * 2 * math.pi
    weights = (torch.rand(circuit.weight_shape, generator=generator, dtype=torch.float64) - 0.5) * 2 * math.pi
    return inputs, weights


def _pennylane_reference(circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor, noise: NoiseModel) -> torch.Tensor:
    """The circuit on ``default.mixed``, written here independently of qubert's own exporter."""
    qml = pytest.importorskip("pennylane")
    gates = {"H": qml.Hadamard, "RX": qml.RX, "RY": qml.RY, "RZ": qml.RZ, "Rot": qml.Rot, "CNOT": qml.CNOT}
    n, flat = circuit.n_qubits, weights.reshape(-1)

    @qml.qnode(qml.device("default.mixed", wires=n), interface="torch")
    def run(x):
        for op in circuit.operations():
            gates[op.name](*[x[p.index] if p.source == "x" else flat[p.index] for p in op.params], wires=list(op.wires))
            for wire in op.wires:
                if noise.depolarizing:
                    qml.DepolarizingChannel(noise.depolarizing, wires=wire)
                if noise.amplitude_damping:
                    qml.AmplitudeDamping(noise.amplitude_damping, wires=wire)
        for wire in range(n):
            if noise.readout:
                qml.BitFlip(noise.readout, wires=wire)
        if circuit.measurement == "z":
            return [qml.expval(qml.PauliZ(q)) for q in range(n)]
        if circuit.measurement == "zz":
            return [qml.expval(qml.PauliZ(q) @ qml.PauliZ(q + 1)) for q in range(n - 1)]
        return qml.probs(wires=range(n))

    rows = []
    for x in inputs:
        out = run(x)
        rows.append(out if isinstance(out, torch.Tensor) else torch.stack(list(out)))
    return torch.stack(rows).to(torch.float64)


# ---------------------------------------------------------------------------- the spec parser
def test_parse_noise_reads_every_channel() -> None:
    noise = parse_noise("depolarizing:0.01,amplitude_damping:0.02,readout:0.03")
    assert noise == NoiseModel(depolarizing=0.01, amplitude_damping=0.02, readout=0.03)
    assert parse_noise(" depolarizing = 0.5 , readout:1 ") == NoiseModel(depolarizing=0.5, readout=1.0)
    assert parse_noise(noise.to_spec()) == noise
    assert parse_noise({"readout": 0.1}) == NoiseModel(readout=0.1)


@pytest.mark.parametrize("spec", [None, "", "none", "None", "depolarizing:0"])
def test_parse_noise_noiseless(spec) -> None:
    noise = parse_noise(spec)
    assert noise.is_noiseless and not noise.has_gate_noise
    assert noise.to_spec() == "none"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("depolarising:0.01", "unknown noise channel 'depolarising'"),
        ("thermal:0.1,readout:0.02", "unknown noise channel 'thermal'"),
        ("depolarizing:1.5", r"depolarizing probability must be in \[0, 1\], got 1.5"),
        ("readout:-0.1", r"readout probability must be in \[0, 1\]"),
        ("amplitude_damping:nan", "amplitude_damping probability"),
        ("readout:high", "readout' needs a numeric probability, got 'high'"),
        ("depolarizing", "'depolarizing' needs a probability"),
        ("readout:0.1,readout:0.2", "'readout' is given twice"),
    ],
)
def test_parse_noise_rejects_bad_specs_naming_the_channel(spec: str, message: str) -> None:
    with pytest.raises(NoiseSpecError, match=message):
        parse_noise(spec)


def test_noise_errors_are_value_errors_and_checked_everywhere() -> None:
    assert issubclass(NoiseSpecError, ValueError)
    with pytest.raises(NoiseSpecError, match="depolarizing probability"):
        NoiseModel(depolarizing=2)
    with pytest.raises(NoiseSpecError, match="unknown noise channel 'bitflip'"):
        parse_noise({"bitflip": 0.1})
    c = Circuit(n_qubits=2, n_layers=1)
    with pytest.raises(ValueError, match="unknown noise channel 'crosstalk'"):
        execute(c, torch.zeros(1, 2), c.init_weights(), noise="crosstalk:0.1")


# ---------------------------------------------------------------------------- density matrix
@pytest.mark.reference
@pytest.mark.parametrize(
    ("circuit", "noise"),
    list(itertools.product(_circuits(), NOISES)),
    ids=[f"c{i}-{noise.to_spec()}" for i in range(len(_circuits())) for noise in NOISES],
)
def test_density_matrix_matches_pennylane_default_mixed(circuit: Circuit, noise: NoiseModel, torch_rng: torch.Generator) -> None:
    inputs, weights = _random_problem(circuit, torch_rng, batch=2)
    ours = execute(circuit, inputs, weights, noise=noise, noise_method="density_matrix")
    reference = _pennylane_reference(circuit, inputs, weights, noise)
    # default.mixed itself is accurate to ~1e-8 here (it differs from default.qubit by that much).
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=0)


def test_zero_noise_density_matrix_equals_statevector(torch_rng: torch.Generator) -> None:
    for circuit in _circuits():
        probe = circuit.replace(measurement="probs")
        inputs, weights = _random_problem(probe, torch_rng)
        exact = simulate(probe, inputs, weights)
        angles = gate_angles(probe, inputs, weights)
        torch.testing.assert_close(density_matrix_probabilities(probe, angles, NoiseModel()), exact, atol=1e-12, rtol=0)
        torch.testing.assert_close(trajectory_probabilities(probe, angles, NoiseModel()), exact, atol=1e-12, rtol=0)


def test_density_matrix_is_a_state(torch_rng: torch.Generator) -> None:
    circuit = Circuit(n_qubits=3, n_layers=2, ansatz="strongly_entangling")
    inputs, weights = _random_problem(circuit, torch_rng)
    rho = density_matrix(circuit, inputs, weights, "depolarizing:0.1,amplitude_damping:0.2")
    assert rho.shape == (3, 8, 8)
    torch.testing.assert_close(rho, rho.mH)
    torch.testing.assert_close(torch.diagonal(rho, dim1=-2, dim2=-1).sum(-1).real, torch.ones(3, dtype=torch.float64))
    assert torch.linalg.eigvalsh(rho).min() > -1e-12
    purity = torch.einsum("bij,bji->b", rho, rho).real
    assert (purity < 1 - 1e-3).all()  # noise makes the state mixed
    # Noiseless: the pure state |psi><psi| of the statevector engine.
    from qubert.quantum import statevector

    psi = statevector(circuit, inputs, weights)
    torch.testing.assert_close(density_matrix(circuit, inputs, weights), psi[:, :, None] * psi[:, None, :].conj())


def test_known_channel_values() -> None:
    one_qubit = Circuit(n_qubits=1, n_layers=0, encoding="ry")  # RY(x)|0>: <Z> = cos x
    x = torch.tensor([[0.3], [1.1], [2.5]], dtype=torch.float64)
    w = one_qubit.init_weights(dtype=torch.float64)
    p = 0.12
    torch.testing.assert_close(execute(one_qubit, x, w, noise=f"depolarizing:{p}"), (1 - 4 * p / 3) * torch.cos(x))
    torch.testing.assert_close(execute(one_qubit, x, w, noise=f"readout:{p}"), (1 - 2 * p) * torch.cos(x))
    # RX(pi)|0> = |1>; amplitude damping gamma leaves P(1) = 1 - gamma, so <Z> = 2 gamma - 1.
    flip = Circuit(n_qubits=1, n_layers=0, encoding="rx")
    out = execute(flip, torch.tensor([[math.pi]], dtype=torch.float64), w, noise="amplitude_damping:0.3")
    torch.testing.assert_close(out, torch.tensor([[2 * 0.3 - 1]], dtype=torch.float64))


def test_readout_error_is_a_per_qubit_confusion_matrix() -> None:
    probs = torch.tensor([[0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)  # |10>
    p = 0.1
    expected = torch.tensor([[p * (1 - p), p * p, (1 - p) ** 2, (1 - p) * p]], dtype=torch.float64)
    torch.testing.assert_close(apply_readout_error(probs, 2, p), expected)
    zz = Circuit(n_qubits=2, n_layers=1, measurement="zz")
    x = torch.rand(4, 2, dtype=torch.float64)
    w = zz.init_weights(dtype=torch.float64)
    torch.testing.assert_close(execute(zz, x, w, noise=f"readout:{p}"), (1 - 2 * p) ** 2 * simulate(zz, x, w))


def test_density_matrix_is_differentiable_by_autograd(torch_rng: torch.Generator) -> None:
    circuit = Circuit(n_qubits=2, n_layers=1, ansatz="strongly_entangling", reupload=True)
    inputs, weights = _random_problem(circuit, torch_rng, batch=2)
    inputs.requires_grad_(True)
    weights.requires_grad_(True)
    noise = "depolarizing:0.05,amplitude_damping:0.1,readout:0.02"
    assert torch.autograd.gradcheck(lambda x, w: execute(circuit, x, w, noise=noise), (inputs, weights))


def test_float32_inputs_run_in_single_precision(torch_rng: torch.Generator) -> None:
    circuit = Circuit(n_qubits=3, n_layers=2, ansatz="strongly_entangling")
    inputs, weights = _random_problem(circuit, torch_rng)
    out32 = execute(circuit, inputs.float(), weights.float(), noise="depolarizing:0.05")
    out64 = execute(circuit, inputs, weights, noise="depolarizing:0.05")
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, atol=1e-5, rtol=0)


def test_density_matrix_memory_is_refused_before_allocating() -> None:
    big = Circuit(n_qubits=18, n_layers=1)
    with pytest.raises(RegisterTooLargeError, match="GiB"):
        execute(big, torch.zeros(64, 18), big.init_weights(), noise="depolarizing:0.01", noise_method="density_matrix")


def test_auto_noise_method_switches_to_trajectories_for_large_registers() -> None:
    assert resolve_noise_method(Circuit(n_qubits=DENSITY_MATRIX_MAX_QUBITS), "auto") == "density_matrix"
    assert resolve_noise_method(Circuit(n_qubits=DENSITY_MATRIX_MAX_QUBITS + 1), "auto") == "trajectories"
    with pytest.raises(ValueError, match="unknown noise_method 'exact'"):
        resolve_noise_method(Circuit(n_qubits=2), "exact")


# ---------------------------------------------------------------------------- trajectories
@pytest.mark.parametrize("noise", NOISES[:2] + NOISES[3:], ids=str)
def test_trajectories_agree_with_density_matrix_within_statistical_error(noise: NoiseModel, torch_rng: torch.Generator) -> None:
    circuit = Circuit(n_qubits=3, n_layers=2, ansatz="strongly_entangling", measurement="probs")
    inputs, weights = _random_problem(circuit, torch_rng, batch=4)
    angles = gate_angles(circuit, inputs, weights)
    exact = noisy_probabilities(circuit, angles, noise, method="density_matrix")
    trajectories = 3000
    sampled = noisy_probabilities(circuit, angles, noise, method="trajectories", trajectories=trajectories, generator=torch.Generator().manual_seed(7))
    # Each trajectory's probability lies in [0, 1] with mean p: its variance is at most p (1 - p).
    sigma = (exact * (1 - exact) / trajectories).sqrt()
    assert ((sampled - exact).abs() <= 5 * sigma + 1e-9).all()
    torch.testing.assert_close(sampled.sum(-1), torch.ones(4, dtype=torch.float64))
    assert not torch.allclose(sampled, exact, atol=1e-6)  # they really are sampled


def test_trajectories_are_seeded() -> None:
    circuit = Circuit(n_qubits=3, n_layers=2)
    x, w = torch.rand(2, 3), circuit.init_weights()
    run = lambda seed: execute(circuit, x, w, noise="depolarizing:0.2", noise_method="trajectories", trajectories=20, seed=seed)
    torch.testing.assert_close(run(3), run(3), atol=0, rtol=0)
    assert not torch.equal(run(3), run(4))


def test_trajectory_gradient_is_unbiased_for_depolarizing_noise(torch_rng: torch.Generator) -> None:
    circuit = Circuit(n_qubits=2, n_layers=2, ansatz="strongly_entangling")
    inputs, weights = _random_problem(circuit, torch_rng, batch=2)
    weights.requires_grad_(True)
    exact = torch.autograd.grad(execute(circuit, inputs, weights, noise="depolarizing:0.1").sum(), weights)[0]
    out = execute(circuit, inputs, weights, noise="depolarizing:0.1", noise_method="trajectories", trajectories=4000, seed=0)
    sampled = torch.autograd.grad(out.sum(), weights)[0]
    # Pathwise gradients of unitary branches: an average of 4000 bounded terms (|d<Z>/dw| <= 1 each).
    assert (sampled - exact).abs().max() < 4 * 2 * circuit.n_qubits / math.sqrt(4000)
    assert not torch.allclose(sampled, exact, atol=1e-6)


@pytest.mark.gpu
def test_noisy_execution_runs_on_cuda_and_matches_cpu() -> None:
    circuit = Circuit(n_qubits=3, n_layers=2, ansatz="strongly_entangling", reupload=True)
    inputs = torch.rand(4, 3, dtype=torch.float64)
    weights = circuit.init_weights(dtype=torch.float64) + 0.3
    noise = "depolarizing:0.05,amplitude_damping:0.05,readout:0.02"
    for options in ({"noise": noise}, {"noise": noise, "gradient": "parameter_shift"}):
        outs, grads = [], []
        for device in ("cpu", "cuda"):
            w = weights.to(device).requires_grad_(True)
            out = execute(circuit, inputs.to(device), w, **options)
            assert out.device.type == device
            outs.append(out.detach().cpu())
            grads.append(torch.autograd.grad(out.sum(), w)[0].cpu())
        torch.testing.assert_close(outs[1], outs[0], atol=1e-10, rtol=0)
        torch.testing.assert_close(grads[1], grads[0], atol=1e-8, rtol=0)
    sampled = execute(circuit, inputs.cuda(), weights.cuda(), noise=noise, noise_method="trajectories", shots=256, seed=0)
    assert sampled.device.type == "cuda" and sampled.shape == (4, 3)
