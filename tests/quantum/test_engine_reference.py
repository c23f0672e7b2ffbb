"""The engine against PennyLane ``default.qubit``: outputs and gradients of random circuits.

Two independent checks:

- the *engine*: for several hundred random circuits (every encoding, ansatz, entanglement, rotation,
  measurement and init, with and without re-uploading, 1-10 qubits, depth 0-3, random batches),
  a PennyLane QNode built gate by gate from ``circuit.operations()`` must give the same outputs and
  the same gradients with respect to inputs and weights, for both autograd strategies, to 1e-8 in
  double precision and 1e-4 in single precision; 60 more random circuits of the paper's family
  (H/RY encoding, CNOTs, RY layers; 1-10 qubits) check the analytic strategy, forced and under auto,
  and the adjoint strategy forced; 16 more at 11-14 qubits (batch 2-4) check it forced and under auto;
- the *description*: where a circuit coincides with a PennyLane template (``AngleEmbedding`` +
  ``StronglyEntanglingLayers`` / ``BasicEntanglerLayers``) or with the paper's circuit as written in
  DESIGN.md, the template (not our gate list) is the reference.

PennyLane is a test dependency only.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from dataclasses import dataclass

import pytest
import torch

from qubert.quantum import ANSATZES, ENCODINGS, ENTANGLEMENTS, INITS, MEASUREMENTS, ROTATIONS, Circuit, choose_strategy, simulate

qml = pytest.importorskip("pennylane")

pytestmark = pytest.mark.reference

N_CASES = 320
CASE_SEED = 1729
STRATEGIES = ("fused", "gates")
# (input dtype, absolute tolerance); the state is complex128/complex64 (or float64/float32 for real circuits).
PRECISIONS = {"double": (torch.float64, 1e-8), "single": (torch.float32, 1e-4)}

_PL_GATES = {"H": "Hadamard", "RX": "RX", "RY": "RY", "RZ": "RZ", "Rot": "Rot", "CNOT": "CNOT"}


# ---------------------------------------------------------------------------- random cases
@dataclass(frozen=True)
class Case:
    """One random circuit with its inputs, weights and the linear functional used for gradients."""

    circuit: Circuit
    batch: int
    seed: int

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs, weights, coefficients) in float64: angles uniform in [-pi, pi]."""
        g = torch.Generator().manual_seed(self.seed)
        c = self.circuit
        x = (torch.rand(self.batch, c.n_qubits, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
        w = (torch.rand(c.weight_shape, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
        coef = torch.randn(self.batch, c.n_outputs, generator=g, dtype=torch.float64)
        return x, w, coef

    @property
    def id(self) -> str:
        c = self.circuit
        return (
            f"n{c.n_qubits}-L{c.n_layers}-{c.encoding}{'-reup' if c.reupload else ''}-{c.ansatz}-{c.entanglement}"
            f"-{c.rotation}-{c.measurement}-{c.init}-B{self.batch}"
        )


def _spread(values: tuple, count: int, rnd: random.Random) -> list:
    """``count`` values that cycle through every choice (so each is covered), shuffled."""
    out = [values[i % len(values)] for i in range(count)]
    rnd.shuffle(out)
    return out


def random_cases(count: int = N_CASES, seed: int = CASE_SEED, **pinned: tuple) -> list[Case]:
    """``count`` random cases; ``pinned`` narrows a field's choices (e.g. ``reupload=(False,)``)."""
    rnd = random.Random(seed)
    fields = {
        "encoding": _spread(ENCODINGS, count, rnd),
        "ansatz": _spread(ANSATZES, count, rnd),
        "entanglement": _spread(ENTANGLEMENTS, count, rnd),
        "rotation": _spread(ROTATIONS, count, rnd),
        "measurement": _spread(MEASUREMENTS, count, rnd),
        "init": _spread(INITS, count, rnd),
        "reupload": _spread((False, True), count, rnd),
        "n_qubits": _spread(tuple(range(1, 11)), count, rnd),
        "n_layers": _spread((0, 1, 2, 3), count, rnd),
    }
    fields |= {name: _spread(values, count, rnd) for name, values in pinned.items()}
    cases = []
    for i in range(count):
        spec = {name: values[i] for name, values in fields.items()}
        if spec["measurement"] == "zz" and spec["n_qubits"] == 1:
            spec["n_qubits"] = 2
        # Larger registers get smaller batches: the reference simulator's cost grows with both.
        batch = rnd.randint(1, 8) if spec["n_qubits"] <= 6 else rnd.randint(1, 3)
        cases.append(Case(Circuit(**spec), batch, seed=seed + i))
    return cases


CASES = random_cases()
# The paper's family, which "auto" runs with the analytic strategy (hand-written backward).
ANALYTIC_CASES = random_cases(
    60, seed=2718, encoding=("h_ry", "ry"), ansatz=("brickwork", "basic_entangler"), rotation=("ry",), reupload=(False,)
)


# The same family at 11-14 qubits, where "auto" runs the adjoint strategy; small batches (2-4).
ADJOINT_CASES = [
    dataclasses.replace(case, batch=2 + i % 3)
    for i, case in enumerate(
        random_cases(
            16, seed=3141, encoding=("h_ry", "ry"), ansatz=("brickwork", "basic_entangler"), rotation=("ry",), reupload=(False,),
            n_qubits=(11, 12, 13, 14), n_layers=(1, 2),
        )
    )
]


def test_random_cases_cover_every_choice():
    """The random set must exercise every option the description offers (also new ones)."""
    circuits = [case.circuit for case in CASES]
    assert len(circuits) >= 300
    for field, choices in [
        ("encoding", ENCODINGS),
        ("ansatz", ANSATZES),
        ("entanglement", ENTANGLEMENTS),
        ("rotation", ROTATIONS),
        ("measurement", MEASUREMENTS),
        ("init", INITS),
        ("reupload", (False, True)),
        ("n_qubits", tuple(range(1, 11))),
        ("n_layers", (0, 1, 2, 3)),
    ]:
        assert {getattr(c, field) for c in circuits} == set(choices), field
    pairs = {(c.ansatz, c.resolved_entanglement) for c in circuits}
    assert {(a, e) for a in ANSATZES for e in ENTANGLEMENTS if e != "default"} <= pairs
    assert any(c.reupload and c.init == "identity" and c.n_layers >= 2 for c in circuits)


# ---------------------------------------------------------------------------- the reference
def pennylane_qnode(circuit: Circuit):
    """A ``default.qubit`` QNode ``f(x (B, n), weights)`` applying ``circuit.operations()`` gate by gate."""
    ops = circuit.operations()
    n = circuit.n_qubits
    device = qml.device("default.qubit", wires=n)

    @qml.qnode(device, interface="torch", diff_method="backprop")
    def qnode(x, weights):
        flat = weights.reshape(-1)
        for op in ops:
            angles = [x[..., p.index] if p.source == "x" else flat[p.index] for p in op.params]
            getattr(qml, _PL_GATES[op.name])(*angles, wires=list(op.wires))
        if circuit.measurement == "z":
            return [qml.expval(qml.PauliZ(i)) for i in range(n)]
        if circuit.measurement == "zz":
            return [qml.expval(qml.PauliZ(i) @ qml.PauliZ(i + 1)) for i in range(n - 1)]
        return qml.probs(wires=range(n))

    return qnode


def pennylane_outputs(circuit: Circuit, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The QNode's results as one ``(batch, n_outputs)`` tensor."""
    result = pennylane_qnode(circuit)(x, w)
    if isinstance(result, (list, tuple)):
        result = torch.stack([torch.as_tensor(r) for r in result], dim=-1)
    return result.reshape(x.shape[0], circuit.n_outputs)


def outputs_and_grads(fn, x: torch.Tensor, w: torch.Tensor, coef: torch.Tensor):
    """``fn(x, w)`` and the gradients of ``sum(coef * fn(x, w))`` with respect to ``x`` and ``w``."""
    x = x.detach().clone().requires_grad_(True)
    w = w.detach().clone().requires_grad_(True)
    out = fn(x, w)
    gx, gw = torch.autograd.grad((out * coef.to(out.dtype)).sum(), (x, w), allow_unused=True, materialize_grads=True)
    return out.detach(), gx, gw


@functools.cache
def reference(case: Case):
    x, w, coef = case.tensors()
    return outputs_and_grads(lambda a, b: pennylane_outputs(case.circuit, a, b), x, w, coef)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0
    assert err <= atol, f"{what}: max abs error {err:.3g} > {atol:g}"


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{i:03d}-{c.id}" for i, c in enumerate(CASES)])
def test_matches_pennylane_outputs_and_gradients(index, strategy):
    check_against_pennylane(CASES[index], strategy)


@pytest.mark.parametrize("strategy", ("analytic", "auto"))
@pytest.mark.parametrize("index", range(len(ANALYTIC_CASES)), ids=[f"{i:02d}-{c.id}" for i, c in enumerate(ANALYTIC_CASES)])
def test_analytic_strategy_matches_pennylane_outputs_and_gradients(index, strategy):
    case = ANALYTIC_CASES[index]
    assert choose_strategy(case.circuit, case.batch) == "analytic"
    check_against_pennylane(case, strategy)


@pytest.mark.parametrize("index", range(len(ANALYTIC_CASES)), ids=[f"{i:02d}-{c.id}" for i, c in enumerate(ANALYTIC_CASES)])
def test_adjoint_strategy_matches_pennylane_on_small_registers(index):
    """The adjoint strategy forced on 1-10 qubits (where auto runs analytic)."""
    check_against_pennylane(ANALYTIC_CASES[index], "adjoint")


@pytest.mark.parametrize("strategy", ("adjoint", "auto"))
@pytest.mark.parametrize("index", range(len(ADJOINT_CASES)), ids=[f"{i:02d}-{c.id}" for i, c in enumerate(ADJOINT_CASES)])
def test_adjoint_strategy_matches_pennylane_at_11_to_14_qubits(index, strategy):
    case = ADJOINT_CASES[index]
    assert choose_strategy(case.circuit, case.batch) == "adjoint"
    check_against_pennylane(case, strategy)


def check_against_pennylane(case: Case, strategy: str) -> None:
    ref_out, ref_gx, ref_gw = reference(case)
    x, w, coef = case.tensors()
    for precision, (dtype, atol) in PRECISIONS.items():
        out, gx, gw = outputs_and_grads(
            lambda a, b: simulate(case.circuit, a, b, strategy=strategy), x.to(dtype), w.to(dtype), coef
        )
        assert out.dtype == dtype, f"{precision}: outputs should follow the input precision, got {out.dtype}"
        assert_close(out, ref_out, atol, f"{precision} outputs")
        assert_close(gx, ref_gx, atol, f"{precision} d/d inputs")
        assert_close(gw, ref_gw, atol, f"{precision} d/d weights")


# ---------------------------------------------------------------------------- templates
def template_outputs(n: int, encoding: str, layers, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``AngleEmbedding(rotation=encoding)`` then ``layers(w)``, measuring <Z_i>."""

    @qml.qnode(qml.device("default.qubit", wires=n), interface="torch", diff_method="backprop")
    def qnode(x, w):
        qml.AngleEmbedding(x, wires=range(n), rotation=encoding.upper())
        layers(w, wires=range(n))
        return [qml.expval(qml.PauliZ(i)) for i in range(n)]

    return torch.stack(list(qnode(x, w)), dim=-1).reshape(x.shape[0], n)


def _template_tensors(circuit: Circuit, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(5, circuit.n_qubits, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    w = (torch.rand(circuit.weight_shape, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    return x, w


@pytest.mark.parametrize("n_layers", [1, 3])
@pytest.mark.parametrize("encoding", ["rx", "ry", "rz"])
@pytest.mark.parametrize("n_qubits", [1, 2, 3, 4, 6])
def test_strongly_entangling_equals_pennylane_template(n_qubits, encoding, n_layers):
    circuit = Circuit(n_qubits=n_qubits, n_layers=n_layers, encoding=encoding, ansatz="strongly_entangling")
    x, w = _template_tensors(circuit, seed=n_qubits * 100 + n_layers)
    expected = template_outputs(n_qubits, encoding[-1], qml.StronglyEntanglingLayers, x, w)
    for strategy in STRATEGIES:
        assert_close(simulate(circuit, x, w, strategy=strategy), expected, 1e-10, strategy)


@pytest.mark.parametrize("rotation", ["rx", "ry", "rz"])
@pytest.mark.parametrize("encoding", ["rx", "ry", "rz"])
@pytest.mark.parametrize("n_qubits", [1, 2, 3, 5])
def test_basic_entangler_equals_pennylane_template(n_qubits, encoding, rotation):
    circuit = Circuit(n_qubits=n_qubits, n_layers=2, encoding=encoding, ansatz="basic_entangler", rotation=rotation)
    x, w = _template_tensors(circuit, seed=n_qubits)
    gate = getattr(qml, rotation.upper())
    expected = template_outputs(n_qubits, encoding[-1], lambda w, wires: qml.BasicEntanglerLayers(w, wires=wires, rotation=gate), x, w)
    for strategy in STRATEGIES:
        assert_close(simulate(circuit, x, w, strategy=strategy), expected, 1e-10, strategy)


@pytest.mark.parametrize("n_qubits", [2, 3, 4, 5, 8])
def test_default_circuit_is_the_papers_circuit(n_qubits):
    """DESIGN.md: H then RY(x_i); per layer CNOTs on (0,1),(2,3).. then (1,2),(3,4).., then RY(w) on every qubit; <Z_i>."""
    depth = 3
    circuit = Circuit(n_qubits=n_qubits, n_layers=depth)
    x, w = _template_tensors(circuit, seed=7 * n_qubits)

    @qml.qnode(qml.device("default.qubit", wires=n_qubits), interface="torch", diff_method="backprop")
    def paper(x, w):
        for i in range(n_qubits):
            qml.Hadamard(wires=i)
            qml.RY(x[..., i], wires=i)
        for layer in range(depth):
            for i in range(0, n_qubits - 1, 2):
                qml.CNOT(wires=[i, i + 1])
            for i in range(1, n_qubits - 1, 2):
                qml.CNOT(wires=[i, i + 1])
            for i in range(n_qubits):
                qml.RY(w[layer, i], wires=i)
        return [qml.expval(qml.PauliZ(i)) for i in range(n_qubits)]

    expected = torch.stack(list(paper(x, w)), dim=-1)
    for strategy in ("auto", *STRATEGIES):
        assert_close(simulate(circuit, x, w, strategy=strategy), expected, 1e-10, strategy)
