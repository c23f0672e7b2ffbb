"""An immutable, serialisable description of a quantum classification head's circuit.

A :class:`Circuit` names *what* the head computes (encoding, ansatz, entanglement, measurement,
initialisation); it holds no weights and no tensors. :meth:`Circuit.operations` expands it into a
flat list of :class:`Operation` objects, the one source of truth that the simulator, the drawing
and every exporter read, so they cannot disagree about the circuit.

Wire 0 is the most significant bit of a basis-state index (PennyLane's convention).

Example:
    >>> c = Circuit(n_qubits=4, n_layers=2)          # the paper's dressed circuit
    >>> c.weight_shape, c.n_outputs
    ((2, 4), 4)
    >>> Circuit.from_json(c.to_json()) == c
    True
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

ENCODINGS = ("h_ry", "ry", "rx", "rz", "h_rz")
ANSATZES = ("brickwork", "basic_entangler", "strongly_entangling")
ENTANGLEMENTS = ("default", "none", "linear", "ring", "all", "ranged")
MEASUREMENTS = ("z", "zz", "probs")
INITS = ("normal", "uniform", "identity")
ROTATIONS = ("rx", "ry", "rz")

# The entanglement pattern each ansatz uses when the description says "default".
_DEFAULT_ENTANGLEMENT = {"brickwork": "linear", "basic_entangler": "ring", "strongly_entangling": "ranged"}
# Gates with real matrices: a circuit made only of these can be simulated in real arithmetic.
REAL_GATES = frozenset({"H", "RY", "CNOT"})


@dataclass(frozen=True)
class Param:
    """A reference to one angle: feature ``index`` of the input (``source="x"``) or entry
    ``index`` of the flattened weight tensor (``source="w"``)."""

    source: str
    index: int


@dataclass(frozen=True)
class Operation:
    """One gate: a name from ``H, RX, RY, RZ, Rot, CNOT``, the wires it acts on (control first
    for CNOT) and the angles it takes (``Rot`` takes three: phi, theta, omega)."""

    name: str
    wires: tuple[int, ...]
    params: tuple[Param, ...] = ()

    @property
    def is_data_dependent(self) -> bool:
        return any(p.source == "x" for p in self.params)


@dataclass(frozen=True)
class Circuit:
    """Description of a variational circuit: encoding -> ``n_layers`` x ansatz layer -> measurement.

    Args:
        n_qubits: register size (>= 1).
        n_layers: number of variational layers (>= 0); the paper's ``q_depth``.
        encoding: ``h_ry`` (the paper: H then RY(x_i)), ``ry``, ``rx``, ``rz`` (plain angle encoding,
            as ``qml.AngleEmbedding``; ``rz`` on |0> only adds a phase unless re-uploaded) or ``h_rz``.
        reupload: repeat the encoding before every variational layer (data re-uploading).
        ansatz: ``brickwork`` (the paper: CNOTs on (0,1),(2,3).. then (1,2),(3,4).., then a trainable
            rotation on every qubit), ``basic_entangler`` (one rotation per qubit, then a CNOT ring)
            or ``strongly_entangling`` (Rot on every qubit, then CNOTs of range r).
        entanglement: ``default`` (the ansatz's own pattern), ``none``, ``linear``, ``ring``, ``all``
            (every pair) or ``ranged`` (StronglyEntanglingLayers' (i, i+r mod n)).
        rotation: the trainable single-qubit rotation of ``brickwork`` and ``basic_entangler``.
        measurement: ``z`` (<Z_i> per qubit), ``zz`` (<Z_i Z_{i+1}>) or ``probs`` (2**n probabilities).
        init: ``normal`` (``init_scale * randn``; the paper uses 0.01), ``uniform`` on [0, 2 pi), or
            ``identity``: identity blocks (Grant et al. 2019): every odd layer is the mirror image of
            the layer before it, initialised to its inverse, so the variational block starts as the
            identity while every weight stays trainable.
        init_scale: standard deviation for ``normal``.
    """

    n_qubits: int
    n_layers: int = 2
    encoding: str = "h_ry"
    reupload: bool = False
    ansatz: str = "brickwork"
    entanglement: str = "default"
    rotation: str = "ry"
    measurement: str = "z"
    init: str = "normal"
    init_scale: float = 0.01

    def __post_init__(self) -> None:
        def check_choice(field: str, value: Any, choices: tuple[str, ...]) -> None:
            if value not in choices:
                raise ValueError(f"unknown {field} {value!r}; expected one of {', '.join(choices)}")

        if isinstance(self.n_qubits, bool) or not isinstance(self.n_qubits, int) or self.n_qubits < 1:
            raise ValueError(f"n_qubits must be a positive integer, got {self.n_qubits!r}")
        if isinstance(self.n_layers, bool) or not isinstance(self.n_layers, int) or self.n_layers < 0:
            raise ValueError(f"n_layers (circuit depth) must be a non-negative integer, got {self.n_layers!r}")
        check_choice("encoding", self.encoding, ENCODINGS)
        check_choice("ansatz", self.ansatz, ANSATZES)
        check_choice("entanglement", self.entanglement, ENTANGLEMENTS)
        check_choice("rotation", self.rotation, ROTATIONS)
        check_choice("measurement", self.measurement, MEASUREMENTS)
        check_choice("init", self.init, INITS)
        if self.measurement == "zz" and self.n_qubits < 2:
            raise ValueError("measurement 'zz' needs at least 2 qubits")
        if not (isinstance(self.init_scale, (int, float)) and self.init_scale >= 0):
            raise ValueError(f"init_scale must be a non-negative number, got {self.init_scale!r}")

    # ------------------------------------------------------------------ shape facts
    @property
    def resolved_entanglement(self) -> str:
        return _DEFAULT_ENTANGLEMENT[self.ansatz] if self.entanglement == "default" else self.entanglement

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the trainable weight tensor."""
        if self.ansatz == "strongly_entangling":
            return (self.n_layers, self.n_qubits, 3)
        return (self.n_layers, self.n_qubits)

    @property
    def n_weights(self) -> int:
        return math.prod(self.weight_shape)

    @property
    def n_outputs(self) -> int:
        """Number of measured values the circuit returns per sample."""
        return {"z": self.n_qubits, "zz": self.n_qubits - 1, "probs": 2**self.n_qubits}[self.measurement]

    @property
    def is_real(self) -> bool:
        """True when every gate has a real matrix, so the state can be simulated in real arithmetic."""
        return all(op.name in REAL_GATES for op in self.operations())

    def replace(self, **changes: Any) -> Circuit:
        """A copy with some fields changed, e.g. ``c.replace(entanglement="none")`` for an ablation."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Circuit:
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown circuit field(s): {', '.join(sorted(unknown))}")
        if "n_qubits" not in data:
            raise ValueError("circuit description needs 'n_qubits'")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Circuit:
        return cls.from_dict(json.loads(text))

    # ------------------------------------------------------------------ expansion into gates
    def entangling_pairs(self, layer: int) -> list[tuple[int, int]]:
        """(control, target) pairs of the CNOTs in variational layer ``layer``, in order."""
        n, pattern = self.n_qubits, self.resolved_entanglement
        if n < 2 or pattern == "none":
            return []
        if pattern == "ranged":
            r = layer % (n - 1) + 1
            return [(i, (i + r) % n) for i in range(n)]
        if pattern == "all":
            return [(i, j) for i in range(n) for j in range(i + 1, n)]
        if self.ansatz == "brickwork":  # the paper's order: even pairs first, then odd pairs
            pairs = [(i, i + 1) for i in range(0, n - 1, 2)] + [(i, i + 1) for i in range(1, n - 1, 2)]
        else:
            pairs = [(i, i + 1) for i in range(n - 1)]
        if pattern == "ring" and n > 2:
            pairs.append((n - 1, 0))
        return pairs

    def _encoding_ops(self) -> list[Operation]:
        ops: list[Operation] = []
        for q in range(self.n_qubits):
            if self.encoding.startswith("h_"):
                ops.append(Operation("H", (q,)))
            gate = self.encoding.removeprefix("h_").upper()
            ops.append(Operation(gate, (q,), (Param("x", q),)))
        return ops

    def _layer_ops(self, layer: int) -> list[Operation]:
        n = self.n_qubits
        per_layer = n * (3 if self.ansatz == "strongly_entangling" else 1)
        base = layer * per_layer
        rotations: list[Operation] = []
        for q in range(n):
            if self.ansatz == "strongly_entangling":
                params = tuple(Param("w", base + 3 * q + k) for k in range(3))
                rotations.append(Operation("Rot", (q,), params))
            else:
                rotations.append(Operation(self.rotation.upper(), (q,), (Param("w", base + q),)))
        cnots = [Operation("CNOT", pair) for pair in self.entangling_pairs(layer)]
        if self.ansatz == "brickwork":
            ops = cnots + rotations
        else:
            ops = rotations + cnots
        if self.init == "identity" and layer % 2 == 1:
            # The mirror image of the previous layer's structure; init_weights makes it its inverse.
            previous = self._layer_ops_unmirrored(layer - 1)
            ops = []
            for op in reversed(previous):
                if op.params:
                    params = tuple(Param("w", p.index + per_layer) for p in op.params)
                    ops.append(Operation(op.name, op.wires, params))
                else:
                    ops.append(op)
        return ops

    def _layer_ops_unmirrored(self, layer: int) -> list[Operation]:
        return self.replace(init="normal")._layer_ops(layer)

    def operations(self) -> list[Operation]:
        """The circuit as a flat gate list (encoding, layers; measurement is implied)."""
        ops: list[Operation] = []
        if not self.reupload or self.n_layers == 0:
            ops += self._encoding_ops()
        for layer in range(self.n_layers):
            if self.reupload:
                ops += self._encoding_ops()
            ops += self._layer_ops(layer)
        return ops

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations())

    # ------------------------------------------------------------------ weights
    def init_weights(self, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Fresh weights of shape :attr:`weight_shape` following :attr:`init`."""
        shape = self.weight_shape
        if self.init == "uniform":
            return torch.rand(shape, generator=generator, dtype=dtype) * (2 * math.pi)
        weights = torch.randn(shape, generator=generator, dtype=dtype) * self.init_scale
        if self.init == "identity":
            for layer in range(1, self.n_layers, 2):
                mirrored = -weights[layer - 1]
                # Rot(a, b, c)^-1 = Rot(-c, -b, -a); single rotations just change sign.
                weights[layer] = mirrored.flip(-1) if self.ansatz == "strongly_entangling" else mirrored
        return weights

    # ------------------------------------------------------------------ drawing
    def draw(self, weights: torch.Tensor | None = None, inputs: torch.Tensor | None = None, decimals: int = 2) -> str:
        """A text drawing, one line per wire; angles are shown when ``weights``/``inputs`` are given.

        Example:
            >>> print(Circuit(n_qubits=2, n_layers=1).draw())
            0: ─H─RY(x0)─●─RY(w0)─┤ <Z>
            1: ─H─RY(x1)─X─RY(w1)─┤ <Z>
        """
        flat_w = None if weights is None else weights.detach().reshape(-1).tolist()
        flat_x = None if inputs is None else inputs.detach().reshape(-1).tolist()

        def angle(p: Param) -> str:
            values = flat_x if p.source == "x" else flat_w
            return f"{values[p.index]:.{decimals}f}" if values is not None else f"{p.source}{p.index}"

        lines = [[] for _ in range(self.n_qubits)]
        for op in self.operations():
            if op.name == "CNOT":
                c, t = op.wires
                lo, hi = min(c, t), max(c, t)
                width = max(len("".join(lines[q])) for q in range(lo, hi + 1))
                for q in range(lo, hi + 1):
                    lines[q].append("─" * (width - len("".join(lines[q]))))
                for q in range(lo, hi + 1):
                    lines[q].append("●" if q == c else "X" if q == t else "│")
                    lines[q].append("─")
                continue
            label = op.name + (f"({','.join(angle(p) for p in op.params)})" if op.params else "")
            lines[op.wires[0]].append(label + "─")
        width = max(len("".join(parts)) for parts in lines)
        meas = {"z": "<Z>", "zz": "<ZZ>", "probs": "Probs"}[self.measurement]
        out = []
        for q, parts in enumerate(lines):
            body = "".join(parts)
            out.append(f"{q}: ─{body}{'─' * (width - len(body))}┤ {meas}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.draw()
