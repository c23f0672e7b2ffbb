"""One-line refusals of the simulator where it cannot give a right answer (issue 18)."""

from __future__ import annotations

import pytest
import torch

from qubert.quantum import Circuit, estimate_memory, simulate
from qubert.quantum.engine import choose_strategy


@pytest.mark.parametrize("strategy", ["analytic", "adjoint"])
def test_second_derivatives_are_refused_in_one_line_naming_gates(strategy, torch_rng):
    circuit = Circuit(n_qubits=4, n_layers=2)
    inputs = torch.rand(3, 4, generator=torch_rng, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(2, 4, generator=torch_rng, dtype=torch.float64, requires_grad=True)
    out = simulate(circuit, inputs, weights, strategy=strategy).sum()
    with pytest.raises(RuntimeError, match='first derivatives only.*strategy="gates"'):
        torch.autograd.grad(out, inputs, create_graph=True)
    first, = torch.autograd.grad(simulate(circuit, inputs, weights, strategy=strategy).sum(), inputs)  # first derivatives still work
    reference, = torch.autograd.grad(simulate(circuit, inputs, weights, strategy="gates").sum(), inputs)
    assert torch.allclose(first, reference, atol=1e-10)


def test_gates_strategy_gives_second_derivatives(torch_rng):
    circuit = Circuit(n_qubits=3, n_layers=1)
    inputs = torch.rand(2, 3, generator=torch_rng, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(1, 3, generator=torch_rng, dtype=torch.float64)
    grad, = torch.autograd.grad(simulate(circuit, inputs, weights, strategy="gates").sum(), inputs, create_graph=True)
    second, = torch.autograd.grad(grad.sum(), inputs)
    assert torch.isfinite(second).all() and second.abs().sum() > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_choose_strategy_for_cuda_without_cuda_is_a_one_line_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        choose_strategy(Circuit(n_qubits=24), 64, device="cuda")


def test_adjoint_estimate_counts_the_probs_readout():
    """The probs readout returns (batch, 2**n) probabilities and gets their gradient back: two
    batch states more than a z readout, which the estimate must include."""
    z, probs = (estimate_memory(Circuit(n_qubits=16, measurement=m), 64, "adjoint", torch.float32) for m in ("z", "probs"))
    assert probs - z >= 2 * 64 * 2**16 * 4
