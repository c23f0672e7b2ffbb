"""The statevector engine on its own: gradcheck, physical invariants, conventions and errors.

The cross-check against PennyLane lives in ``test_engine_reference.py``; everything here runs
without PennyLane.
"""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest
import torch

from qubert.quantum import (
    ANSATZES,
    ENCODINGS,
    ENTANGLEMENTS,
    INITS,
    MEASUREMENTS,
    ROTATIONS,
    STRATEGIES,
    Circuit,
    RegisterTooLargeError,
    adjoint,
    analytic,
    choose_strategy,
    engine,
    estimate_memory,
    gates,
    simulate,
    statevector,
)

PRECISIONS = (torch.float64, torch.float32)
# Strategies that run only the paper's family of circuits (H/RY encoding, CNOTs, RY layers).
FAMILY_STRATEGIES = ("analytic", "adjoint")
# Tolerance per input precision for quantities that are exactly 0 or 1 in exact arithmetic.
EXACT_TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def random_circuit(rng: random.Random, max_qubits: int = 7, analytic: bool = False, **fixed) -> Circuit:
    """A random valid circuit; keyword arguments pin fields. ``analytic``: one the analytic strategy runs."""
    if analytic:
        fixed = {"encoding": rng.choice(("h_ry", "ry")), "ansatz": rng.choice(("brickwork", "basic_entangler")), "rotation": "ry", "reupload": False} | fixed
    spec = {
        "n_qubits": rng.randint(1, max_qubits),
        "n_layers": rng.randint(0, 3),
        "encoding": rng.choice(ENCODINGS),
        "reupload": rng.random() < 0.3,
        "ansatz": rng.choice(ANSATZES),
        "entanglement": rng.choice(ENTANGLEMENTS),
        "rotation": rng.choice(ROTATIONS),
        "measurement": rng.choice(MEASUREMENTS),
        "init": rng.choice(INITS),
    }
    spec.update(fixed)
    if spec["measurement"] == "zz" and spec["n_qubits"] < 2:
        spec["n_qubits"] = 2
    return Circuit(**spec)


def random_tensors(circuit: Circuit, batch: int, generator: torch.Generator, dtype=torch.float64):
    x = (torch.rand(batch, circuit.n_qubits, generator=generator, dtype=dtype) * 2 - 1) * math.pi
    w = (torch.rand(circuit.weight_shape, generator=generator, dtype=dtype) * 2 - 1) * math.pi
    return x, w


# ---------------------------------------------------------------------------- gradcheck
GRADCHECK_CIRCUITS = [
    dict(n_qubits=3, n_layers=2),
    dict(n_qubits=2, n_layers=1, encoding="rx", reupload=True, measurement="probs", rotation="rz"),
    dict(n_qubits=4, n_layers=2, encoding="h_rz", entanglement="all", measurement="zz", init="identity", rotation="rx"),
    dict(n_qubits=3, n_layers=3, encoding="rz", reupload=True, entanglement="ring"),
]


@pytest.mark.parametrize("strategy", ["fused", "gates"])
@pytest.mark.parametrize("ansatz", ANSATZES)
@pytest.mark.parametrize("spec", GRADCHECK_CIRCUITS, ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_gradcheck_inputs_and_weights(spec, ansatz, strategy, torch_rng):
    circuit = Circuit(**spec, ansatz=ansatz)
    x, w = random_tensors(circuit, 2, torch_rng)
    x.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: simulate(circuit, a, b, strategy=strategy), (x, w))


@pytest.mark.parametrize("strategy", ["fused", "gates"])
def test_gradcheck_statevector(strategy, torch_rng):
    circuit = Circuit(n_qubits=3, n_layers=2, encoding="rx", ansatz="strongly_entangling")
    x, w = random_tensors(circuit, 2, torch_rng)
    x.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: torch.view_as_real(statevector(circuit, a, b, strategy=strategy)), (x, w))


# ---------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("dtype", PRECISIONS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_probabilities_sum_to_one_and_expectations_are_bounded(strategy, dtype, rng, torch_rng):
    tol = EXACT_TOL[dtype]
    for _ in range(25):
        circuit = random_circuit(rng, analytic=strategy in FAMILY_STRATEGIES)
        x, w = random_tensors(circuit, rng.randint(1, 6), torch_rng, dtype)
        out = simulate(circuit, x, w, strategy=strategy)
        assert out.shape == (x.shape[0], circuit.n_outputs)
        assert out.dtype == dtype
        if circuit.measurement == "probs":
            assert (out >= -tol).all()
            torch.testing.assert_close(out.sum(-1), torch.ones(x.shape[0], dtype=dtype), atol=tol, rtol=0)
        else:
            assert (out.abs() <= 1 + tol).all(), circuit


@pytest.mark.parametrize("dtype", PRECISIONS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_statevector_has_unit_norm(strategy, dtype, rng, torch_rng):
    for _ in range(25):
        circuit = random_circuit(rng, max_qubits=10, analytic=strategy in FAMILY_STRATEGIES)
        x, w = random_tensors(circuit, rng.randint(1, 6), torch_rng, dtype)
        state = statevector(circuit, x, w, strategy=strategy)
        assert state.shape == (x.shape[0], 2**circuit.n_qubits)
        norms = torch.linalg.vector_norm(state, dim=-1)
        torch.testing.assert_close(norms, torch.ones_like(norms), atol=EXACT_TOL[dtype], rtol=0)


def test_fused_gates_and_auto_agree_in_double_precision(rng, torch_rng):
    for _ in range(40):
        circuit = random_circuit(rng, max_qubits=9)
        x, w = random_tensors(circuit, rng.randint(1, 5), torch_rng)
        fused = statevector(circuit, x, w, strategy="fused")
        for strategy in ("gates", "auto"):
            torch.testing.assert_close(statevector(circuit, x, w, strategy=strategy), fused, atol=1e-12, rtol=0, msg=f"{strategy}: {circuit}")
            torch.testing.assert_close(
                simulate(circuit, x, w, strategy=strategy), simulate(circuit, x, w, strategy="fused"), atol=1e-12, rtol=0
            )


@pytest.mark.parametrize("n_layers", [2, 4])
@pytest.mark.parametrize("ansatz", ANSATZES)
def test_identity_init_makes_the_variational_block_the_identity(ansatz, n_layers, torch_rng):
    """Grant et al. identity blocks: the state after the layers equals the encoded state."""
    combos = itertools.product((1, 2, 3, 5), ENTANGLEMENTS, ROTATIONS if ansatz != "strongly_entangling" else ("ry",))
    for i, (n_qubits, entanglement, rotation) in enumerate(combos):
        encoding = ENCODINGS[i % len(ENCODINGS)]
        circuit = Circuit(
            n_qubits=n_qubits,
            n_layers=n_layers,
            encoding=encoding,
            ansatz=ansatz,
            entanglement=entanglement,
            rotation=rotation,
            init="identity",
            init_scale=1.0,  # large angles: an accidental near-identity would not pass
        )
        w = circuit.init_weights(torch_rng, dtype=torch.float64)
        x, _ = random_tensors(circuit, 3, torch_rng)
        encoded = statevector(circuit.replace(n_layers=0), x, torch.zeros(0, *circuit.weight_shape[1:], dtype=torch.float64))
        for strategy in ("fused", "gates"):
            state = statevector(circuit, x, w, strategy=strategy)
            # A real-only encoding gives a real state; the layers may add complex gates.
            torch.testing.assert_close(state, encoded.to(state.dtype), atol=1e-12, rtol=0, msg=lambda m, c=circuit: f"{c!r}\n{m}")


def test_identity_init_keeps_every_layer_trainable(torch_rng):
    """Starting at the identity must not freeze the circuit: every layer gets a gradient."""
    for ansatz in ANSATZES:
        circuit = Circuit(n_qubits=3, n_layers=2, ansatz=ansatz, encoding="h_rz", rotation="rx", init="identity", init_scale=0.5)
        w = circuit.init_weights(torch_rng, dtype=torch.float64).requires_grad_(True)
        x, _ = random_tensors(circuit, 4, torch_rng)
        coef = torch.randn(4, circuit.n_outputs, generator=torch_rng, dtype=torch.float64)
        (grad,) = torch.autograd.grad((simulate(circuit, x, w) * coef).sum(), w)
        per_layer = grad.reshape(circuit.n_layers, -1).norm(dim=-1)
        assert (per_layer > 1e-3).all(), f"{ansatz}: a layer gets no gradient at the identity: {grad}"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_samples_in_a_batch_are_independent(strategy, rng, torch_rng):
    for _ in range(10):
        circuit = random_circuit(rng, max_qubits=10, analytic=strategy in FAMILY_STRATEGIES)
        x, w = random_tensors(circuit, 5, torch_rng)
        batched = simulate(circuit, x, w, strategy=strategy)
        one_by_one = torch.cat([simulate(circuit, x[i : i + 1], w, strategy=strategy) for i in range(5)])
        torch.testing.assert_close(batched, one_by_one, atol=1e-12, rtol=0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_single_sample_input_gives_unbatched_output(strategy, torch_rng):
    circuit = Circuit(n_qubits=3, n_layers=2, encoding="ry" if strategy in FAMILY_STRATEGIES else "rx", measurement="zz")
    x, w = random_tensors(circuit, 1, torch_rng)
    out = simulate(circuit, x[0], w, strategy=strategy)
    assert out.shape == (circuit.n_outputs,)
    torch.testing.assert_close(out, simulate(circuit, x, w, strategy=strategy)[0])
    assert statevector(circuit, x[0], w, strategy=strategy).shape == (2**3,)


# ---------------------------------------------------------------------------- conventions
def test_wire_zero_is_the_most_significant_bit():
    circuit = Circuit(n_qubits=3, n_layers=0, encoding="rx", measurement="probs")
    x = torch.tensor([[math.pi, 0.0, 0.0], [0.0, 0.0, math.pi]], dtype=torch.float64)
    probs = simulate(circuit, x, torch.zeros(circuit.weight_shape, dtype=torch.float64))
    expected = torch.zeros(2, 8, dtype=torch.float64)
    expected[0, 0b100] = expected[1, 0b001] = 1
    torch.testing.assert_close(probs, expected, atol=1e-12, rtol=0)
    z = simulate(circuit.replace(measurement="z"), x, torch.zeros(circuit.weight_shape, dtype=torch.float64))
    torch.testing.assert_close(z, torch.tensor([[-1.0, 1, 1], [1, 1, -1]], dtype=torch.float64), atol=1e-12, rtol=0)


def test_analytic_single_qubit_expectations():
    theta = torch.linspace(-math.pi, math.pi, 9, dtype=torch.float64)[:, None]
    no_weights = torch.zeros(0, 1, dtype=torch.float64)
    ry = simulate(Circuit(n_qubits=1, n_layers=0, encoding="ry"), theta, no_weights)
    h_ry = simulate(Circuit(n_qubits=1, n_layers=0, encoding="h_ry"), theta, no_weights)
    torch.testing.assert_close(ry, torch.cos(theta))  # <0|RY^+ Z RY|0> = cos(theta)
    torch.testing.assert_close(h_ry, -torch.sin(theta))  # H|0> = |+>, then RY: -sin(theta)


def test_cnot_entangles_as_expected():
    """RY(pi/2) on wire 0 then CNOT(0,1) gives the Bell state (|00> + |11>)/sqrt 2."""
    circuit = Circuit(n_qubits=2, n_layers=1, encoding="ry", measurement="probs")  # brickwork: CNOT(0,1) then RY(w)
    x = torch.tensor([[math.pi / 2, 0.0]], dtype=torch.float64)
    probs = simulate(circuit, x, torch.zeros(circuit.weight_shape, dtype=torch.float64))
    torch.testing.assert_close(probs, torch.tensor([[0.5, 0, 0, 0.5]], dtype=torch.float64), atol=1e-12, rtol=0)
    zz = simulate(circuit.replace(measurement="zz"), x, torch.zeros(circuit.weight_shape, dtype=torch.float64))
    torch.testing.assert_close(zz, torch.ones(1, 1, dtype=torch.float64), atol=1e-12, rtol=0)


def test_output_dtype_follows_inputs_and_real_circuits_stay_real(torch_rng):
    real = Circuit(n_qubits=3, n_layers=2)  # H, RY, CNOT: the paper's circuit
    complex_ = Circuit(n_qubits=3, n_layers=2, encoding="rx")
    assert real.is_real and not complex_.is_real
    for dtype, cdtype in [(torch.float64, torch.complex128), (torch.float32, torch.complex64)]:
        x, w = random_tensors(real, 2, torch_rng, dtype)
        assert statevector(real, x, w).dtype == dtype
        assert statevector(complex_, x, w).dtype == cdtype
        assert simulate(real, x, w).dtype == dtype
        assert simulate(complex_, x, w).dtype == dtype


def test_explicit_dtype_overrides_the_input_precision(torch_rng):
    circuit = Circuit(n_qubits=4, n_layers=2, encoding="h_rz", ansatz="strongly_entangling")
    x, w = random_tensors(circuit, 3, torch_rng, torch.float32)
    high = simulate(circuit, x, w, dtype=torch.complex128)
    assert high.dtype == torch.float64
    torch.testing.assert_close(high, simulate(circuit, x.double(), w.double()), atol=1e-12, rtol=0)
    low = simulate(circuit, x.double(), w.double(), dtype=torch.complex64)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, high.float(), atol=1e-5, rtol=0)


def test_gradients_flow_in_single_precision(torch_rng):
    circuit = Circuit(n_qubits=4, n_layers=2)
    x, w = random_tensors(circuit, 3, torch_rng, torch.float32)
    x.requires_grad_(True)
    w.requires_grad_(True)
    simulate(circuit, x, w).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_auto_picks_analytic_then_adjoint_where_they_apply_else_fused_for_small_and_gates_for_large_registers():
    for n in (1, 4, 8, analytic.MAX_QUBITS):
        assert choose_strategy(Circuit(n_qubits=n), 64) == "analytic"
        assert choose_strategy(Circuit(n_qubits=n, ansatz="basic_entangler", rotation="ry", encoding="ry"), 64) == "analytic"
    for n in (analytic.MAX_QUBITS + 1, 16, 24):  # the adjoint strategy where analytic stops
        assert choose_strategy(Circuit(n_qubits=n), 8) == "adjoint"
        assert choose_strategy(Circuit(n_qubits=n, ansatz="basic_entangler", rotation="ry", encoding="ry", measurement="zz"), 8) == "adjoint"
    assert choose_strategy(Circuit(n_qubits=analytic.MAX_QUBITS + 1, encoding="rx"), 64) == "gates"
    for circuit in (Circuit(n_qubits=4, encoding="rx"), Circuit(n_qubits=4, reupload=True), Circuit(n_qubits=4, rotation="rx")):
        assert choose_strategy(circuit, 64) == "fused"
        assert choose_strategy(circuit.replace(n_qubits=engine.FUSED_MAX_QUBITS + 1), 64) == "gates"


def test_auto_leaves_analytic_when_its_memory_would_not_fit(monkeypatch):
    circuit = Circuit(n_qubits=8)
    need = estimate_memory(circuit, 100_000, "analytic", torch.float32)
    monkeypatch.setattr(engine, "available_memory", lambda device: need - 1)
    assert choose_strategy(circuit, 100_000, torch.float32) == "gates"


def test_memory_estimate_grows_with_register_and_batch():
    c8, c9 = Circuit(n_qubits=8), Circuit(n_qubits=9)
    assert estimate_memory(c9, 64) > estimate_memory(c8, 64)
    assert estimate_memory(c8, 128) > estimate_memory(c8, 64)
    assert estimate_memory(c8, 64, "fused") > estimate_memory(c8, 64, "gates")
    assert estimate_memory(c8, 64, dtype=torch.complex128) > estimate_memory(c8, 64, dtype=torch.complex64)


# ---------------------------------------------------------------------------- errors
def test_wrong_input_width_is_refused():
    circuit = Circuit(n_qubits=3)
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch, 3\).*got \(4, 5\)"):
        simulate(circuit, torch.zeros(4, 5), circuit.init_weights())
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch, 3\)"):
        simulate(circuit, torch.zeros(2, 4, 3), circuit.init_weights())


def test_wrong_weight_shape_is_refused():
    circuit = Circuit(n_qubits=3, n_layers=2)
    with pytest.raises(ValueError, match=r"weights must have shape \(2, 3\), got \(3, 2\)"):
        simulate(circuit, torch.zeros(4, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"weights must have shape \(2, 3, 3\), got \(2, 3\)"):
        simulate(circuit.replace(ansatz="strongly_entangling"), torch.zeros(4, 3), torch.zeros(2, 3))


def test_unknown_strategy_is_refused():
    circuit = Circuit(n_qubits=2)
    with pytest.raises(ValueError, match=r"unknown strategy 'fast'; expected one of auto, analytic, adjoint, fused, gates"):
        simulate(circuit, torch.zeros(1, 2), circuit.init_weights(), strategy="fast")


@pytest.mark.parametrize(
    "circuit, reason",
    [
        (Circuit(n_qubits=3, encoding="rx"), "encoding rx"),
        (Circuit(n_qubits=3, reupload=True), "encoding h_ry with re-uploading"),
        (Circuit(n_qubits=3, rotation="rx"), "rotation rx"),
        (Circuit(n_qubits=3, ansatz="strongly_entangling"), "ansatz strongly_entangling"),
        (Circuit(n_qubits=11), "got 11 qubits"),
    ],
)
def test_analytic_strategy_is_refused_for_circuits_it_cannot_run(circuit, reason):
    x, w = torch.zeros(2, circuit.n_qubits), circuit.init_weights()
    for run in (simulate, statevector):
        with pytest.raises(ValueError, match=rf"strategy 'analytic' needs at most 10 qubits.*{re.escape(reason)}.*use strategy 'auto'"):
            run(circuit, x, w, strategy="analytic")


def test_complex_angles_and_bad_dtypes_are_refused():
    circuit = Circuit(n_qubits=2)
    with pytest.raises(ValueError, match="complex"):
        simulate(circuit, torch.zeros(1, 2, dtype=torch.complex64), circuit.init_weights())
    with pytest.raises(ValueError, match="dtype must be complex64 or complex128"):
        simulate(circuit, torch.zeros(1, 2), circuit.init_weights(), dtype=torch.int64)


def test_unknown_gate_is_refused():
    with pytest.raises(ValueError, match=r"unknown single-qubit gate 'SWAP'"):
        gates.gate_matrix("SWAP", [torch.zeros(1)], torch.complex64, (1,), torch.device("cpu"))


def test_register_too_large_is_refused_before_allocating():
    """40 qubits x batch 64 is hundreds of TiB: had the engine tried to allocate any state first,
    torch would fail with its own allocation error instead of the clear refusal."""
    circuit = Circuit(n_qubits=40, n_layers=2)
    assert issubclass(RegisterTooLargeError, ValueError)
    for strategy in ("auto", "adjoint", "fused", "gates"):  # analytic refuses 40 qubits before any memory check (tested above)
        resolved = "gates" if strategy == "auto" else strategy  # auto falls back to gates where adjoint does not fit
        need_gib = estimate_memory(circuit, 64, resolved, torch.float32) / 2**30
        with pytest.raises(RegisterTooLargeError, match=rf"40 qubits with batch 64 .*needs about {re.escape(f'{need_gib:.3g}')} GiB"):
            simulate(circuit, torch.zeros(64, 40), circuit.init_weights(), strategy=strategy)
        with pytest.raises(RegisterTooLargeError, match="GiB"):
            statevector(circuit, torch.zeros(64, 40), circuit.init_weights(), strategy=strategy)


def test_memory_refusal_uses_the_available_memory(monkeypatch):
    """The guard compares with the memory the device has left, not with a fixed limit."""
    circuit = Circuit(n_qubits=20, n_layers=2, reupload=True)  # real, and a circuit auto runs with gates
    x, w = torch.zeros(64, 20), circuit.init_weights()
    need_gib = estimate_memory(circuit, 64, "gates", torch.float32) / 2**30
    assert need_gib > 1.5  # so that a (pretend) device with 1 GiB left must refuse it
    monkeypatch.setattr(engine, "available_memory", lambda device: 2**30)
    with pytest.raises(RegisterTooLargeError, match=rf"needs about {re.escape(f'{need_gib:.3g}')} GiB but only 1 GiB is available"):
        simulate(circuit, x, w)
    with pytest.raises(RegisterTooLargeError, match="use fewer qubits or a smaller batch"):
        simulate(circuit, x, w, strategy="gates")


# ---------------------------------------------------------------------------- the analytic strategy
ANALYTIC_GRADCHECK_CIRCUITS = [
    Circuit(n_qubits=1, n_layers=2),
    Circuit(n_qubits=4, n_layers=2),  # one block: layer matrices with the CNOTs folded in
    Circuit(n_qubits=3, n_layers=1, measurement="probs", entanglement="ring"),
    Circuit(n_qubits=2, n_layers=0, measurement="zz"),
    Circuit(n_qubits=3, n_layers=2, ansatz="basic_entangler", rotation="ry", encoding="ry"),  # trailing CNOTs
    Circuit(n_qubits=7, n_layers=2, entanglement="all"),  # two blocks of 4 and 3 wires
    Circuit(n_qubits=8, n_layers=1, ansatz="basic_entangler", rotation="ry", measurement="zz"),  # two blocks of 4
]


@pytest.mark.parametrize("circuit", ANALYTIC_GRADCHECK_CIRCUITS, ids=lambda c: f"n{c.n_qubits}-L{c.n_layers}-{c.ansatz}-{c.measurement}")
def test_gradcheck_analytic(circuit, torch_rng):
    """The hand-written backward against finite differences: measured values and the state."""
    x, w = random_tensors(circuit, 3, torch_rng)
    x.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: simulate(circuit, a, b, strategy="analytic"), (x, w))
    assert torch.autograd.gradcheck(lambda a, b: statevector(circuit, a, b, strategy="analytic"), (x, w))


def assert_strategies_agree(circuit, x, w, strategy, reference_strategy, torch_rng) -> None:
    """simulate and statevector under ``strategy`` equal ``reference_strategy``'s in float64 (1e-12),
    and so do the gradients of a random functional w.r.t. inputs and weights (1e-11)."""
    for run in (simulate, statevector):
        fast, reference = run(circuit, x, w, strategy=strategy), run(circuit, x, w, strategy=reference_strategy)
        assert fast.dtype == reference.dtype == torch.float64
        torch.testing.assert_close(fast, reference, atol=1e-12, rtol=0, msg=lambda m, c=circuit: f"{c!r}\n{m}")
        probe = torch.randn(fast.shape, generator=torch_rng, dtype=torch.float64)
        grads = torch.autograd.grad((fast * probe).sum(), (x, w), allow_unused=True, materialize_grads=True)
        expected = torch.autograd.grad((reference * probe).sum(), (x, w), allow_unused=True, materialize_grads=True)
        for got, want in zip(grads, expected):
            torch.testing.assert_close(got, want, atol=1e-11, rtol=0, msg=lambda m, c=circuit: f"{c!r}\n{m}")


def test_analytic_equals_autograd_strategies_on_random_circuits(rng, torch_rng):
    """Outputs, states and both gradients of the analytic strategy equal autograd through the gates
    (1-10 qubits: one block up to 6, two blocks above; every measurement, entanglement, depth)."""
    for _ in range(60):
        circuit = random_circuit(rng, max_qubits=analytic.MAX_QUBITS, analytic=True)
        x, w = random_tensors(circuit, rng.randint(1, 6), torch_rng)
        x.requires_grad_(True)
        w.requires_grad_(True)
        assert_strategies_agree(circuit, x, w, "analytic", "gates", torch_rng)


def test_analytic_structure_reads_the_papers_circuit():
    structure = analytic.analytic_structure(Circuit(n_qubits=4, n_layers=2))
    assert structure.hadamards == (1, 1, 1, 1)
    assert structure.layers == (((0, 1), (2, 3), (1, 2)),) * 2  # the brickwork before each RY layer
    assert structure.trailing == ()
    entangler = analytic.analytic_structure(Circuit(n_qubits=3, n_layers=2, ansatz="basic_entangler", rotation="ry", encoding="ry"))
    assert entangler.hadamards == (0, 0, 0)
    assert entangler.layers == ((), ((0, 1), (1, 2), (2, 0))) and entangler.trailing == ((0, 1), (1, 2), (2, 0))
    mirrored = analytic.analytic_structure(Circuit(n_qubits=3, n_layers=2, init="identity"))  # odd layers run backwards
    assert mirrored.layers == (((0, 1), (1, 2)), ()) and mirrored.trailing == ((1, 2), (0, 1))
    for other in (Circuit(n_qubits=3, encoding="rx"), Circuit(n_qubits=3, reupload=True), Circuit(n_qubits=3, rotation="rz"), Circuit(n_qubits=11)):
        assert analytic.analytic_structure(other) is None


def test_every_circuit_of_the_papers_family_gets_the_analytic_strategy():
    family = itertools.product(range(1, analytic.MAX_QUBITS + 1), ("h_ry", "ry"), ("brickwork", "basic_entangler"), ENTANGLEMENTS, INITS, range(4))
    for n, encoding, ansatz, entanglement, init, layers in family:
        circuit = Circuit(n_qubits=n, n_layers=layers, encoding=encoding, ansatz=ansatz, rotation="ry", entanglement=entanglement, init=init)
        assert analytic.analytic_structure(circuit) is not None, circuit


def test_analytic_gradients_flow_only_where_asked(torch_rng):
    circuit = Circuit(n_qubits=5, n_layers=2)
    x, w = random_tensors(circuit, 4, torch_rng)
    out = simulate(circuit, x.requires_grad_(True), w, strategy="analytic")
    (grad_x,) = torch.autograd.grad(out.sum(), x)
    assert grad_x.shape == x.shape and w.grad is None
    with torch.no_grad():
        assert not simulate(circuit, x, w.requires_grad_(True), strategy="analytic").requires_grad


# ---------------------------------------------------------------------------- the adjoint strategy
ADJOINT_GRADCHECK_CIRCUITS = [
    Circuit(n_qubits=1, n_layers=2),
    Circuit(n_qubits=3, n_layers=2),
    Circuit(n_qubits=4, n_layers=1, measurement="zz", entanglement="all"),
    Circuit(n_qubits=3, n_layers=2, measurement="probs", init="identity"),
    Circuit(n_qubits=5, n_layers=2, ansatz="basic_entangler", rotation="ry", encoding="ry", measurement="zz"),  # trailing CNOTs
    Circuit(n_qubits=2, n_layers=0),
]


@pytest.fixture(params=[False, "no layer states", True], ids=["one chunk", "one chunk without layer states", "chunks of one sample"])
def chunked(request, monkeypatch):
    """With ``True``, the adjoint strategy runs the batch one sample at a time (recomputing final
    states); with ``"no layer states"`` the whole batch at once, sweeping the states back instead
    of keeping those entering the layers."""
    if request.param is True:
        monkeypatch.setattr(adjoint, "CHUNK_BYTES", 1)
    elif request.param:
        monkeypatch.setattr(adjoint, "LAYER_STATES_BYTES", 0)
    return request.param


@pytest.mark.parametrize("circuit", ADJOINT_GRADCHECK_CIRCUITS, ids=lambda c: f"n{c.n_qubits}-L{c.n_layers}-{c.ansatz}-{c.measurement}")
def test_gradcheck_adjoint(circuit, chunked, torch_rng):
    """The adjoint backward against finite differences: measured values and the state."""
    x, w = random_tensors(circuit, 3, torch_rng)
    x.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: simulate(circuit, a, b, strategy="adjoint"), (x, w))
    assert torch.autograd.gradcheck(lambda a, b: statevector(circuit, a, b, strategy="adjoint"), (x, w))


def test_adjoint_equals_analytic_on_random_circuits(chunked, rng, torch_rng):
    """Outputs, states and both gradients of the adjoint strategy equal the analytic strategy's
    (1-10 qubits, every measurement, entanglement, depth; whole batch or one sample at a time)."""
    for _ in range(30):
        circuit = random_circuit(rng, max_qubits=analytic.MAX_QUBITS, analytic=True)
        x, w = random_tensors(circuit, rng.randint(1, 5), torch_rng)
        x.requires_grad_(True)
        w.requires_grad_(True)
        assert_strategies_agree(circuit, x, w, "adjoint", "analytic", torch_rng)


def test_adjoint_runs_the_batch_in_chunks_of_bounded_memory():
    assert adjoint.chunk_size(20, 64, 8) * adjoint.WORK_STATES * 8 * 2**20 <= adjoint.CHUNK_BYTES
    assert adjoint.chunk_size(24, 8, 8) == 1  # a chunk is at least one sample
    assert adjoint.chunk_size(10, 64, 8) == 64


def test_adjoint_gradients_flow_only_where_asked(torch_rng):
    circuit = Circuit(n_qubits=12, n_layers=2)
    x, w = random_tensors(circuit, 2, torch_rng)
    (grad_x,) = torch.autograd.grad(simulate(circuit, x.requires_grad_(True), w, strategy="adjoint").sum(), x)
    (grad_w,) = torch.autograd.grad(simulate(circuit, x.detach(), w.requires_grad_(True), strategy="adjoint").sum(), w)
    x.requires_grad_(True)
    both = torch.autograd.grad(simulate(circuit, x, w, strategy="gates").sum(), (x, w))
    torch.testing.assert_close(grad_x, both[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(grad_w, both[1], atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "circuit, reason",
    [
        (Circuit(n_qubits=12, encoding="rx"), "encoding rx"),
        (Circuit(n_qubits=3, reupload=True), "encoding h_ry with re-uploading"),
        (Circuit(n_qubits=3, ansatz="strongly_entangling"), "ansatz strongly_entangling"),
    ],
)
def test_adjoint_strategy_is_refused_for_circuits_it_cannot_run(circuit, reason):
    x, w = torch.zeros(2, circuit.n_qubits), circuit.init_weights()
    with pytest.raises(ValueError, match=rf"strategy 'adjoint' needs an h_ry or ry encoding.*{re.escape(reason)}.*use strategy 'auto'"):
        simulate(circuit, x, w, strategy="adjoint")


def test_half_register_readout_equals_the_sign_table(torch_rng):
    """The <Z> / <ZZ> readout from the two halves' marginals equals the (2**n, n) sign table's."""
    from qubert.quantum.basis import half_expectations, half_signs, observable_signs

    for n in (1, 2, 5, 8):
        probs = torch.rand(3, 2**n, generator=torch_rng, dtype=torch.float64)
        for measurement in ("z", "zz")[: 1 if n == 1 else 2]:
            expected = probs @ observable_signs(n, measurement).double()
            torch.testing.assert_close(half_expectations(probs, half_signs(n, torch.float64), measurement), expected, atol=1e-12, rtol=0)
