"""The engine and the quantum head on CUDA mirror the CPU results (skipped without CUDA)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from qubert.heads import QuantumHead
from qubert.quantum import (
    ANSATZES,
    ENCODINGS,
    ENTANGLEMENTS,
    INITS,
    MEASUREMENTS,
    ROTATIONS,
    Circuit,
    RegisterTooLargeError,
    simulate,
    statevector,
)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available() is False)")]

# (input dtype, tolerance between devices): complex128 / complex64 states (real for real-only circuits).
PRECISIONS = [(torch.float64, 1e-10), (torch.float32, 1e-4)]
CUDA = torch.device("cuda")


def random_circuits(count: int, seed: int = 11, max_qubits: int = 10, analytic: bool = False) -> list[Circuit]:
    """Random circuits; ``analytic``: of the paper's family, which the analytic strategy runs."""
    rnd = random.Random(seed)
    circuits = []
    for _ in range(count):
        n = rnd.randint(1, max_qubits)
        measurement = rnd.choice(MEASUREMENTS)
        circuits.append(
            Circuit(
                n_qubits=max(n, 2) if measurement == "zz" else n,
                n_layers=rnd.randint(0, 3),
                encoding=rnd.choice(("h_ry", "ry") if analytic else ENCODINGS),
                reupload=not analytic and rnd.random() < 0.3,
                ansatz=rnd.choice(("brickwork", "basic_entangler") if analytic else ANSATZES),
                entanglement=rnd.choice(ENTANGLEMENTS),
                rotation="ry" if analytic else rnd.choice(ROTATIONS),
                measurement=measurement,
                init=rnd.choice(INITS),
            )
        )
    return circuits


def run(circuit: Circuit, x: torch.Tensor, w: torch.Tensor, coef: torch.Tensor, strategy: str):
    """Outputs and gradients of ``sum(coef * outputs)`` on the device of ``x``."""
    x = x.detach().clone().requires_grad_(True)
    w = w.detach().clone().requires_grad_(True)
    out = simulate(circuit, x, w, strategy=strategy)
    gx, gw = torch.autograd.grad((out * coef.to(out)).sum(), (x, w), allow_unused=True, materialize_grads=True)
    return out, gx, gw


@pytest.mark.parametrize("dtype, atol", PRECISIONS, ids=["complex128", "complex64"])
@pytest.mark.parametrize("strategy", ["auto", "analytic", "adjoint", "fused", "gates"])
def test_cuda_outputs_and_gradients_equal_cpu(strategy, dtype, atol):
    g = torch.Generator().manual_seed(0)
    for circuit in random_circuits(30, analytic=strategy in ("analytic", "adjoint")):
        batch = 5
        x = (torch.rand(batch, circuit.n_qubits, generator=g, dtype=dtype) * 2 - 1) * math.pi
        w = (torch.rand(circuit.weight_shape, generator=g, dtype=dtype) * 2 - 1) * math.pi
        coef = torch.randn(batch, circuit.n_outputs, generator=g, dtype=dtype)
        cpu = run(circuit, x, w, coef, strategy)
        gpu = run(circuit, x.to(CUDA), w.to(CUDA), coef.to(CUDA), strategy)
        for name, a, b in zip(("outputs", "d/d inputs", "d/d weights"), gpu, cpu):
            assert a.device.type == "cuda", name
            assert a.dtype == b.dtype == dtype, name
            torch.testing.assert_close(a.cpu(), b, atol=atol, rtol=0, msg=lambda m, what=f"{name} {circuit!r}": f"{what}: {m}")


@pytest.mark.parametrize(
    "circuit, strategy, dtype",
    [
        (Circuit(n_qubits=6, n_layers=2, encoding="rx", ansatz="strongly_entangling"), "fused", torch.complex64),
        (Circuit(n_qubits=6, n_layers=2, encoding="rx", ansatz="strongly_entangling"), "gates", torch.complex64),
        (Circuit(n_qubits=8, n_layers=2), "analytic", torch.float32),  # real circuits have real states
        (Circuit(n_qubits=12, n_layers=2), "adjoint", torch.float32),
    ],
)
def test_statevector_stays_on_the_input_device(circuit, strategy, dtype):
    x = torch.rand(4, circuit.n_qubits, device=CUDA)
    w = circuit.init_weights().to(CUDA)
    state = statevector(circuit, x, w, strategy=strategy)
    assert state.device.type == "cuda" and state.dtype == dtype
    torch.testing.assert_close(torch.linalg.vector_norm(state, dim=-1), torch.ones(4, device=CUDA), atol=1e-5, rtol=0)
    torch.testing.assert_close(state.cpu(), statevector(circuit, x.cpu(), w.cpu(), strategy=strategy), atol=1e-5, rtol=0)


def test_quantum_head_runs_on_cuda_like_on_cpu():
    torch.manual_seed(0)
    head = QuantumHead(32, 3, n_qubits=6, n_layers=2, seed=0)
    head_gpu = QuantumHead(32, 3, n_qubits=6, n_layers=2, seed=0).to(CUDA)
    head_gpu.load_state_dict(head.state_dict())
    x = torch.randn(16, 32)
    logits_cpu = head(x)
    logits_gpu = head_gpu(x.to(CUDA))
    assert logits_gpu.device.type == "cuda"
    torch.testing.assert_close(logits_gpu.cpu(), logits_cpu, atol=1e-4, rtol=0)
    logits_cpu.sum().backward()
    logits_gpu.sum().backward()
    for (name, p_cpu), p_gpu in zip(head.named_parameters(), head_gpu.parameters()):
        assert p_gpu.grad is not None and p_gpu.grad.device.type == "cuda", name
        torch.testing.assert_close(p_gpu.grad.cpu(), p_cpu.grad, atol=1e-4, rtol=0, msg=name)


def test_register_too_large_for_the_gpu_is_refused():
    circuit = Circuit(n_qubits=40, n_layers=1)
    with pytest.raises(RegisterTooLargeError, match="GiB"):
        simulate(circuit, torch.zeros(64, 40, device=CUDA), circuit.init_weights().to(CUDA))
