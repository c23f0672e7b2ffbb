"""A matplotlib figure of a head's circuit: gate boxes with their angles, CNOTs, meters.

Reads ``circuit.operations()`` like every other consumer. Gates are packed into columns (a gate
goes into the first column after the last gate on its wires), wire 0 is drawn on top. Colours
say where an angle comes from: blue for encoding gates (input features), orange for trainable
gates (circuit weights), grey for fixed gates. The figure is built on matplotlib's object API with
the Agg canvas: nothing is displayed and no global pyplot state is touched.

Example:
    >>> from qubert.quantum import Circuit
    >>> fig = draw_figure(Circuit(n_qubits=3, n_layers=2))
    >>> len(fig.axes)
    1
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from qubert.quantum.circuit import Circuit, Operation, Param

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_INPUT_COLOR = "#cfe3f7"
_WEIGHT_COLOR = "#fbd9b0"
_FIXED_COLOR = "#e4e4e4"
_MEASUREMENT_LABELS = {"z": "⟨Z⟩", "zz": "⟨ZZ⟩", "probs": "probs"}


def gate_columns(circuit: Circuit) -> tuple[list[int], int]:
    """The column of every operation (greedy packing) and the number of columns.

    A CNOT occupies every wire between its control and target, so the vertical line crosses no gate.

    Example:
        >>> gate_columns(Circuit(n_qubits=2, n_layers=1))
        ([0, 1, 0, 1, 2, 3, 3], 4)
    """
    next_free = [0] * circuit.n_qubits
    columns = []
    for op in circuit.operations():
        span = range(min(op.wires), max(op.wires) + 1)
        column = max(next_free[w] for w in span)
        for w in span:
            next_free[w] = column + 1
        columns.append(column)
    return columns, max(next_free, default=0)


def _angle_texts(op: Operation, weights: list[float] | None, inputs: list[float] | None, decimals: int) -> list[str]:
    def text(p: Param) -> str:
        values = inputs if p.source == "x" else weights
        return f"{values[p.index]:.{decimals}f}" if values is not None else f"{p.source}{p.index}"

    return [text(p) for p in op.params]


# Long: one matplotlib figure drawn gate by gate; the layout constants are shared across the steps.
def draw_figure(
    circuit: Circuit,
    weights: torch.Tensor | None = None,
    inputs: torch.Tensor | None = None,
    path: str | Path | None = None,
    *,
    decimals: int = 2,
    title: str | None = None,
) -> Figure:
    """Draw the circuit; angles as numbers when ``weights``/``inputs`` (one sample) are given, else as names.

    Args:
        circuit: the circuit description.
        weights: circuit weights (shape ``circuit.weight_shape``) or ``None`` to show ``w0, w1, ...``.
        inputs: one sample's encoding angles (``(n_qubits,)`` or ``(1, n_qubits)``) or ``None`` for ``x0, ...``.
        path: if given, the figure is also saved there (format from the suffix: png, svg, pdf, ...).
        decimals: digits shown for numeric angles.
        title: figure title (default: a one-line summary of the circuit).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Arc, Circle, FancyBboxPatch

    n = circuit.n_qubits
    if weights is not None and tuple(weights.shape) != circuit.weight_shape:
        raise ValueError(f"weights must have shape {circuit.weight_shape}, got {tuple(weights.shape)}")
    if inputs is not None and inputs.numel() != n:
        raise ValueError(f"inputs must hold one sample of {n} angles, got shape {tuple(inputs.shape)}")
    flat_w = None if weights is None else weights.detach().reshape(-1).tolist()
    flat_x = None if inputs is None else inputs.detach().reshape(-1).tolist()
    ops = circuit.operations()
    columns, n_columns = gate_columns(circuit)
    meter_x = n_columns + 0.2

    width = min(max(3.0, 0.95 * (n_columns + 2.5)), 60.0)
    fig = Figure(figsize=(width, 0.75 * n + 1.1))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    def y(wire: int) -> float:
        return -float(wire)  # wire 0 on top

    for wire in range(n):
        ax.plot([-0.6, meter_x], [y(wire), y(wire)], color="black", lw=1, zorder=0)
        ax.text(-0.75, y(wire), f"q{wire}", ha="right", va="center", fontsize=10)

    for op, column in zip(ops, columns):
        if op.name == "CNOT":
            control, target = op.wires
            ax.plot([column, column], [y(control), y(target)], color="black", lw=1.2, zorder=1)
            ax.add_patch(Circle((column, y(control)), 0.09, color="black", zorder=3))
            ax.add_patch(Circle((column, y(target)), 0.2, facecolor="white", edgecolor="black", lw=1.2, zorder=3))
            ax.plot([column - 0.2, column + 0.2], [y(target)] * 2, color="black", lw=1.2, zorder=4)
            ax.plot([column, column], [y(target) - 0.2, y(target) + 0.2], color="black", lw=1.2, zorder=4)
            continue
        sources = {p.source for p in op.params}
        color = _INPUT_COLOR if "x" in sources else _WEIGHT_COLOR if sources else _FIXED_COLOR
        ax.add_patch(
            FancyBboxPatch((column - 0.38, y(op.wires[0]) - 0.3), 0.76, 0.6, boxstyle="round,pad=0.02", facecolor=color, edgecolor="black", lw=1, zorder=2)
        )
        angles = _angle_texts(op, flat_w, flat_x, decimals)
        if not angles:
            ax.text(column, y(op.wires[0]), op.name, ha="center", va="center", fontsize=10, zorder=5)
        else:
            ax.text(column, y(op.wires[0]) + 0.11, op.name, ha="center", va="center", fontsize=9, zorder=5)
            small = 6 if len(angles) > 1 else 7.5
            ax.text(
                column,
                y(op.wires[0]) - 0.12,
                "\n".join(angles) if len(angles) > 1 else angles[0],
                ha="center",
                va="center",
                fontsize=small,
                zorder=5,
                linespacing=0.9,
            )

    for wire in range(n):
        ax.add_patch(FancyBboxPatch((meter_x - 0.3, y(wire) - 0.27), 0.6, 0.54, boxstyle="round,pad=0.02", facecolor="white", edgecolor="black", zorder=2))
        ax.add_patch(Arc((meter_x, y(wire) - 0.12), 0.42, 0.42, theta1=0, theta2=180, lw=1, zorder=3))
        ax.plot([meter_x, meter_x + 0.17], [y(wire) - 0.12, y(wire) + 0.16], color="black", lw=1, zorder=3)
    ax.text(meter_x, y(n - 1) - 0.55, _MEASUREMENT_LABELS[circuit.measurement], ha="center", va="top", fontsize=9)

    ax.set_xlim(-1.3, meter_x + 0.6)
    ax.set_ylim(y(n - 1) - 0.9, 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    if title is None:
        title = (
            f"{n} qubits, {circuit.n_layers} layer(s): {circuit.encoding} encoding"
            f"{' (re-uploaded)' if circuit.reupload else ''}, {circuit.ansatz} ({circuit.resolved_entanglement}), "
            f"measure {circuit.measurement}"
        )
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig
