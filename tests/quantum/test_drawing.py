"""The matplotlib drawing: one box per gate, control dot + target circle per CNOT, a meter per qubit."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from qubert.quantum import Circuit
from qubert.quantum.drawing import draw_figure, gate_columns

pytest.importorskip("matplotlib")


def _patches(fig, kind: str) -> list:
    return [p for p in fig.axes[0].patches if type(p).__name__ == kind]


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


@pytest.mark.parametrize(
    "circuit",
    [
        Circuit(n_qubits=4, n_layers=2),
        Circuit(n_qubits=3, n_layers=2, ansatz="strongly_entangling", reupload=True, measurement="zz"),
        Circuit(n_qubits=1, n_layers=1),
    ],
)
def test_figure_has_a_shape_for_every_gate(circuit: Circuit) -> None:
    ops = circuit.operations()
    n_cnots = sum(op.name == "CNOT" for op in ops)
    fig = draw_figure(circuit)
    # Gate boxes plus one meter box per qubit; control dot and target circle per CNOT.
    assert len(_patches(fig, "FancyBboxPatch")) == len(ops) - n_cnots + circuit.n_qubits
    assert len(_patches(fig, "Circle")) == 2 * n_cnots
    assert len(_patches(fig, "Arc")) == circuit.n_qubits
    texts = _texts(fig)
    assert [f"q{i}" for i in range(circuit.n_qubits)] == [t for t in texts if t.startswith("q") and t[1:].isdigit()]
    assert "x0" in texts and ("w0" in texts or any(t.startswith("w0\n") for t in texts))


def test_figure_shows_bound_angles() -> None:
    circuit = Circuit(n_qubits=2, n_layers=1)
    weights = torch.tensor([[0.123, -1.5]])
    fig = draw_figure(circuit, weights, torch.tensor([0.5, 2.25]), decimals=3)
    texts = _texts(fig)
    for value in ("0.123", "-1.500", "0.500", "2.250"):
        assert value in texts
    assert "x0" not in texts and "w0" not in texts


def test_gate_columns_never_overlap_on_a_wire() -> None:
    circuit = Circuit(n_qubits=5, n_layers=3, ansatz="strongly_entangling")
    columns, n_columns = gate_columns(circuit)
    occupied: set[tuple[int, int]] = set()
    last_column = [-1] * circuit.n_qubits
    for op, column in zip(circuit.operations(), columns):
        for wire in range(min(op.wires), max(op.wires) + 1):  # a CNOT's line blocks the wires it crosses
            assert (wire, column) not in occupied
            occupied.add((wire, column))
        for wire in op.wires:
            assert column > last_column[wire]  # gates on a wire stay in time order
            last_column[wire] = column
    assert n_columns == max(columns) + 1


def test_figure_is_saved_without_touching_pyplot(tmp_path) -> None:
    path = tmp_path / "circuit.png"
    code = (
        "import sys, torch\n"
        "from qubert.quantum import Circuit\n"
        "from qubert.quantum.drawing import draw_figure\n"
        "c = Circuit(n_qubits=3, n_layers=2)\n"
        f"draw_figure(c, c.init_weights(), torch.zeros(3), path={str(path)!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_refuses_wrong_shapes() -> None:
    circuit = Circuit(n_qubits=3, n_layers=2)
    with pytest.raises(ValueError, match=r"weights must have shape \(2, 3\)"):
        draw_figure(circuit, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="one sample of 3 angles"):
        draw_figure(circuit, inputs=torch.zeros(2, 3))
