"""The circuit description: validation, serialisation, shape facts, gate expansion and drawing."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections import Counter

import pytest
import torch

from qubert.quantum import ANSATZES, ENCODINGS, ENTANGLEMENTS, INITS, MEASUREMENTS, ROTATIONS, Circuit, Operation, Param

GATE_NAMES = {"H", "RX", "RY", "RZ", "Rot", "CNOT"}


def all_circuits(n_qubits=(1, 2, 5), n_layers=(0, 2, 3)):
    """Every combination of the description's choices (zz needs two qubits)."""
    for n, layers, enc, reup, ans, ent, rot, meas, init in itertools.product(
        n_qubits, n_layers, ENCODINGS, (False, True), ANSATZES, ENTANGLEMENTS, ROTATIONS, MEASUREMENTS, INITS
    ):
        if meas == "zz" and n < 2:
            continue
        yield Circuit(
            n_qubits=n, n_layers=layers, encoding=enc, reupload=reup, ansatz=ans, entanglement=ent, rotation=rot, measurement=meas, init=init
        )


# ---------------------------------------------------------------------------- serialisation
def test_dict_and_json_round_trip_for_every_combination():
    count = 0
    for circuit in all_circuits(n_qubits=(1, 3), n_layers=(0, 2)):
        data = circuit.to_dict()
        assert Circuit.from_dict(data) == circuit
        text = circuit.to_json()
        assert json.loads(text) == data
        again = Circuit.from_json(text)
        assert again == circuit and hash(again) == hash(circuit)
        count += 1
    assert count > 3000


def test_to_dict_is_plain_json_with_every_field():
    circuit = Circuit(n_qubits=3, n_layers=1, encoding="rx", reupload=True, init="uniform", init_scale=0.5)
    data = circuit.to_dict()
    assert set(data) == {f.name for f in dataclasses.fields(Circuit)}
    assert json.loads(json.dumps(data)) == data
    assert data["n_qubits"] == 3 and data["reupload"] is True and data["init_scale"] == 0.5


def test_from_dict_fills_defaults():
    assert Circuit.from_dict({"n_qubits": 4}) == Circuit(n_qubits=4)


def test_from_dict_refuses_unknown_and_missing_keys():
    with pytest.raises(ValueError, match=r"unknown circuit field\(s\): depth, qubits"):
        Circuit.from_dict({"n_qubits": 2, "qubits": 2, "depth": 3})
    with pytest.raises(ValueError, match="needs 'n_qubits'"):
        Circuit.from_dict({"n_layers": 2})
    with pytest.raises(ValueError, match="unknown ansatz 'qaoa'"):
        Circuit.from_json('{"n_qubits": 2, "ansatz": "qaoa"}')


def test_circuit_is_immutable_and_replace_validates():
    circuit = Circuit(n_qubits=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        circuit.n_qubits = 4  # type: ignore[misc]
    assert circuit.replace(entanglement="none") == Circuit(n_qubits=3, entanglement="none")
    assert circuit.n_qubits == 3 and circuit.entanglement == "default"
    with pytest.raises(ValueError, match="unknown entanglement 'full'"):
        circuit.replace(entanglement="full")


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize("n_qubits", [0, -1, 2.5, "4", True, None])
def test_bad_register_size_is_refused(n_qubits):
    with pytest.raises(ValueError, match=r"n_qubits must be a positive integer, got"):
        Circuit(n_qubits=n_qubits)


@pytest.mark.parametrize("n_layers", [-1, 1.5, True])
def test_bad_depth_is_refused(n_layers):
    with pytest.raises(ValueError, match=r"n_layers \(circuit depth\) must be a non-negative integer"):
        Circuit(n_qubits=2, n_layers=n_layers)


@pytest.mark.parametrize(
    "field, choices",
    [
        ("encoding", ENCODINGS),
        ("ansatz", ANSATZES),
        ("entanglement", ENTANGLEMENTS),
        ("rotation", ROTATIONS),
        ("measurement", MEASUREMENTS),
        ("init", INITS),
    ],
)
def test_unknown_names_are_refused_with_the_choices(field, choices):
    with pytest.raises(ValueError, match=rf"unknown {field} 'bogus'; expected one of {', '.join(choices)}$"):
        Circuit(n_qubits=2, **{field: "bogus"})


def test_zz_needs_two_qubits_and_scale_must_be_non_negative():
    with pytest.raises(ValueError, match="measurement 'zz' needs at least 2 qubits"):
        Circuit(n_qubits=1, measurement="zz")
    with pytest.raises(ValueError, match="init_scale must be a non-negative number"):
        Circuit(n_qubits=2, init_scale=-0.1)


# ---------------------------------------------------------------------------- shape facts
@pytest.mark.parametrize(
    "kwargs, weight_shape, n_outputs",
    [
        (dict(n_qubits=4, n_layers=2), (2, 4), 4),
        (dict(n_qubits=8, n_layers=3, ansatz="basic_entangler"), (3, 8), 8),
        (dict(n_qubits=5, n_layers=2, ansatz="strongly_entangling"), (2, 5, 3), 5),
        (dict(n_qubits=5, n_layers=0, measurement="zz"), (0, 5), 4),
        (dict(n_qubits=3, n_layers=1, measurement="probs"), (1, 3), 8),
        (dict(n_qubits=1, n_layers=1, ansatz="strongly_entangling", measurement="probs"), (1, 1, 3), 2),
    ],
)
def test_weight_shape_and_outputs(kwargs, weight_shape, n_outputs):
    circuit = Circuit(**kwargs)
    assert circuit.weight_shape == weight_shape
    assert circuit.n_weights == math.prod(weight_shape)
    assert circuit.n_outputs == n_outputs


def test_is_real_only_for_h_ry_and_cnot_circuits():
    assert Circuit(n_qubits=4).is_real  # the paper's circuit
    assert Circuit(n_qubits=4, encoding="ry", ansatz="basic_entangler").is_real
    assert not Circuit(n_qubits=4, encoding="rx").is_real
    assert not Circuit(n_qubits=4, rotation="rz").is_real
    assert not Circuit(n_qubits=4, ansatz="strongly_entangling").is_real


# ---------------------------------------------------------------------------- gate expansion
def test_every_weight_is_used_exactly_once_and_gates_are_well_formed():
    for circuit in all_circuits(n_qubits=(1, 2, 4), n_layers=(0, 1, 3)):
        ops = circuit.operations()
        assert list(circuit) == ops
        weights = Counter(p.index for op in ops for p in op.params if p.source == "w")
        assert sorted(weights) == list(range(circuit.n_weights)), circuit
        assert set(weights.values()) <= {1}, circuit
        for op in ops:
            assert op.name in GATE_NAMES
            assert all(0 <= q < circuit.n_qubits for q in op.wires)
            if op.name == "CNOT":
                assert len(op.wires) == 2 and op.wires[0] != op.wires[1] and not op.params
            else:
                assert len(op.wires) == 1
                assert len(op.params) == {"H": 0, "Rot": 3}.get(op.name, 1)
            for p in op.params:
                assert p.source in ("x", "w")
                if p.source == "x":
                    assert p.index == op.wires[0], "feature i is encoded on wire i"


@pytest.mark.parametrize("reupload", [False, True])
@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_encoding_appears_once_or_before_every_layer(reupload, n_layers):
    circuit = Circuit(n_qubits=3, n_layers=n_layers, reupload=reupload)
    encoded = [op for op in circuit.operations() if op.is_data_dependent]
    assert len(encoded) == 3 * (n_layers if reupload and n_layers else 1)
    assert sum(op.name == "H" for op in circuit.operations()) == len(encoded)


def test_the_papers_circuit_gate_by_gate():
    ops = Circuit(n_qubits=4, n_layers=1).operations()
    expected = []
    for q in range(4):
        expected += [Operation("H", (q,)), Operation("RY", (q,), (Param("x", q),))]
    expected += [Operation("CNOT", (0, 1)), Operation("CNOT", (2, 3)), Operation("CNOT", (1, 2))]
    expected += [Operation("RY", (q,), (Param("w", q),)) for q in range(4)]
    assert ops == expected


@pytest.mark.parametrize(
    "kwargs, layer, pairs",
    [
        (dict(n_qubits=5), 0, [(0, 1), (2, 3), (1, 2), (3, 4)]),
        (dict(n_qubits=4, ansatz="basic_entangler"), 0, [(0, 1), (1, 2), (2, 3), (3, 0)]),
        (dict(n_qubits=2, ansatz="basic_entangler"), 0, [(0, 1)]),
        (dict(n_qubits=4, ansatz="basic_entangler", entanglement="linear"), 0, [(0, 1), (1, 2), (2, 3)]),
        (dict(n_qubits=4, entanglement="all"), 0, [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]),
        (dict(n_qubits=4, entanglement="none"), 0, []),
        (dict(n_qubits=1), 0, []),
        (dict(n_qubits=4, ansatz="strongly_entangling"), 0, [(0, 1), (1, 2), (2, 3), (3, 0)]),
        (dict(n_qubits=4, ansatz="strongly_entangling"), 1, [(0, 2), (1, 3), (2, 0), (3, 1)]),
        (dict(n_qubits=4, ansatz="strongly_entangling"), 3, [(0, 1), (1, 2), (2, 3), (3, 0)]),
    ],
)
def test_entangling_patterns(kwargs, layer, pairs):
    circuit = Circuit(**kwargs, n_layers=4)
    assert circuit.entangling_pairs(layer) == pairs
    cnots = [op.wires for op in circuit.replace(init="normal").operations() if op.name == "CNOT"]
    assert len(cnots) == sum(len(circuit.entangling_pairs(k)) for k in range(4))


def test_identity_init_mirrors_every_odd_layer():
    circuit = Circuit(n_qubits=3, n_layers=2, ansatz="strongly_entangling", init="identity")
    ops = circuit.operations()
    first, second = ops[6:12], ops[12:]  # after the 6 encoding gates
    assert [op.name for op in second] == [op.name for op in reversed(first)]
    assert [op.wires for op in second] == [op.wires for op in reversed(first)]
    assert all(p.index >= 9 for op in second for p in op.params)


# ---------------------------------------------------------------------------- weights
def test_init_weights_follow_the_description():
    g = torch.Generator().manual_seed(0)
    normal = Circuit(n_qubits=6, n_layers=3, init_scale=0.01).init_weights(g)
    assert normal.shape == (3, 6) and normal.dtype == torch.float32
    assert 0 < normal.abs().max() < 0.05
    uniform = Circuit(n_qubits=6, n_layers=3, ansatz="strongly_entangling", init="uniform").init_weights(g, dtype=torch.float64)
    assert uniform.shape == (3, 6, 3) and uniform.dtype == torch.float64
    assert (uniform >= 0).all() and (uniform < 2 * math.pi).all() and uniform.max() > math.pi
    assert Circuit(n_qubits=3, n_layers=0).init_weights().shape == (0, 3)


def test_init_weights_are_reproducible_with_a_generator():
    circuit = Circuit(n_qubits=4, n_layers=2)
    a = circuit.init_weights(torch.Generator().manual_seed(5))
    b = circuit.init_weights(torch.Generator().manual_seed(5))
    c = circuit.init_weights(torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_identity_init_weights_invert_the_previous_layer():
    single = Circuit(n_qubits=4, n_layers=4, init="identity", init_scale=1.0).init_weights(torch.Generator().manual_seed(1))
    assert torch.equal(single[1], -single[0]) and torch.equal(single[3], -single[2])
    assert not torch.equal(single[2], single[0])
    rot = Circuit(n_qubits=2, n_layers=2, ansatz="strongly_entangling", init="identity").init_weights(torch.Generator().manual_seed(1))
    assert torch.equal(rot[1], -rot[0].flip(-1))  # Rot(a, b, c)^-1 = Rot(-c, -b, -a)


# ---------------------------------------------------------------------------- drawing
def test_draw_has_one_aligned_line_per_wire_with_every_gate():
    for circuit in all_circuits(n_qubits=(1, 4), n_layers=(0, 2)):
        text = circuit.draw()
        assert str(circuit) == text
        lines = text.split("\n")
        assert len(lines) == circuit.n_qubits
        assert len({len(line) for line in lines}) == 1, "wires are padded to one width"
        meas = {"z": "<Z>", "zz": "<ZZ>", "probs": "Probs"}[circuit.measurement]
        for q, line in enumerate(lines):
            assert line.startswith(f"{q}: ─") and line.endswith(f"┤ {meas}")
        ops = circuit.operations()
        for q, line in enumerate(lines):
            for op in ops:
                if op.name != "CNOT" and op.wires == (q,):
                    label = op.name + (f"({','.join(f'{p.source}{p.index}' for p in op.params)})" if op.params else "")
                    assert label in line, (label, line)
            assert line.count("●") == sum(op.name == "CNOT" and op.wires[0] == q for op in ops)


def test_draw_shows_angle_values_when_given():
    circuit = Circuit(n_qubits=2, n_layers=1)
    text = circuit.draw(weights=torch.tensor([[0.5, -1.25]]), inputs=torch.tensor([[3.14159, 0.0]]))
    assert "RY(3.14)" in text and "RY(0.50)" in text and "RY(-1.25)" in text and "RY(0.00)" in text
    assert "RY(0.500)" in circuit.draw(weights=torch.tensor([[0.5, 0.5]]), decimals=3)


def test_docstring_drawing():
    assert Circuit(n_qubits=2, n_layers=1).draw() == "0: ─H─RY(x0)─●─RY(w0)─┤ <Z>\n1: ─H─RY(x1)─X─RY(w1)─┤ <Z>"
