"""A trained run as one ONNX graph (or OpenVINO IR): token ids -> encoder -> pooling -> head -> probabilities.

``qubert export RUN --format onnx`` writes ``<RUN>/export/`` (or ``--output``): ``model.onnx``
(inputs ``input_ids`` and ``attention_mask``, int64 ``(batch, sequence)``; outputs ``logits`` and
``probabilities``, float32 ``(batch, n_classes)``; batch and sequence axes dynamic), the tokenizer
files, ``labels.json`` and a ``README.md`` that shows how to call it from onnxruntime with only
``onnxruntime``, ``tokenizers`` and ``numpy`` installed. ``--format openvino`` adds
``model.xml`` / ``model.bin`` for OpenVINO.

Quantum heads are included: complex tensors do not export to ONNX, but the paper's circuit family
(H / RY angle encoding, CNOT + RY layers; :func:`qubert.quantum.analytic.rotation_structure`) is real.
With the trained weights fixed, everything after the encoding is one real orthogonal
``2**n x 2**n`` matrix U, so the graph computes the encoded product state (a product of
``cos(x/2 + a)`` per wire), multiplies by U, squares and reads out - exact up to float32 rounding.
U has ``4**n`` entries, so the export stops at :data:`MAX_EXPORT_QUBITS` qubits (64 MiB of
weights); a head run with shots, noise or a device, a complex or re-uploading circuit, or a larger
register is refused in one line (:class:`ExportError`).

Example:
    >>> from qubert.export import export_run
    >>> export_run("runs/sst2-quantum-frozen-s42", format="onnx")  # doctest: +SKIP
    PosixPath('runs/sst2-quantum-frozen-s42/export')
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
from torch import nn

from qubert.quantum.analytic import rotation_structure
from qubert.quantum.basis import observable_signs
from qubert.quantum.circuit import Circuit

__all__ = ["EXPORT_FORMATS", "MAX_EXPORT_QUBITS", "ExportError", "RealCircuit", "check_exportable", "classifier_graph", "export_run"]

EXPORT_FORMATS = ("onnx", "openvino")
# U is 4**n float32 entries: 64 MiB at 12 qubits, 256 MiB at 13; the state and its products stay
# exact in float32 well beyond that, so the limit is the size of the file, not its accuracy.
MAX_EXPORT_QUBITS = 12


class ExportError(ValueError):
    """A model that cannot be exported as asked (one-line message)."""


class RealCircuit(nn.Module):
    """The measured values of a circuit of the paper's family with fixed weights, in real arithmetic
    that exports to ONNX: product state of the encoding -> ``@ U`` -> squared -> readout.

    Args:
        circuit: a circuit :func:`~qubert.quantum.analytic.rotation_structure` accepts.
        weights: its trained weights (``circuit.weight_shape``).

    Example:
        >>> from qubert.quantum import simulate
        >>> c = Circuit(n_qubits=3, n_layers=2)
        >>> w, x = c.init_weights(torch.Generator().manual_seed(0)), torch.rand(4, 3)
        >>> torch.allclose(RealCircuit(c, w)(x), simulate(c, x, w), atol=1e-6)
        True
    """

    def __init__(self, circuit: Circuit, weights: torch.Tensor) -> None:
        super().__init__()
        structure = rotation_structure(circuit)
        if structure is None:
            raise ExportError(f"circuit ({circuit.ansatz}, encoding {circuit.encoding}) is not of the real H/RY + CNOT family; only those export to ONNX")
        self.n_qubits = n = circuit.n_qubits
        # H^k |0> is (cos a, sin a) with a = pi/4 for odd k; RY(x) turns it to angle a + x/2.
        self.register_buffer("offsets", torch.tensor([math.pi / 4 * (k % 2) for k in structure.hadamards], dtype=torch.float32))
        self.register_buffer("unitary", _evolution_matrix(circuit, sum(structure.hadamards) + n, weights).float())
        signs = observable_signs(n, circuit.measurement)
        self.register_buffer("signs", signs.float() if signs is not None else None)

    def forward(self, angles: torch.Tensor) -> torch.Tensor:
        half = angles * 0.5 + self.offsets  # (B, n)
        wires = torch.stack([torch.cos(half), torch.sin(half)], dim=-1)  # (B, n, 2), wire 0 the leading bit
        state = wires[:, 0]
        for q in range(1, self.n_qubits):
            state = (state.unsqueeze(-1) * wires[:, q].unsqueeze(1)).flatten(1)
        probabilities = (state @ self.unitary).square()
        return probabilities if self.signs is None else probabilities @ self.signs


def _evolution_matrix(circuit: Circuit, skip: int, weights: torch.Tensor) -> torch.Tensor:
    """U (float64, ``2**n x 2**n``) with ``final = encoded @ U``: row i is basis state i taken through
    the operations after the first ``skip`` (the encoding). Hand-written because qubert's
    simulators start from the encoded product state, not from an arbitrary basis state."""
    n, dim = circuit.n_qubits, 2**circuit.n_qubits
    flat = weights.detach().double().reshape(-1).cpu()
    state = torch.eye(dim, dtype=torch.float64).view(dim, *([2] * n))
    for op in circuit.operations()[skip:]:
        if op.name == "CNOT":
            control, target = (w + 1 for w in op.wires)
            moved = state.movedim((control, target), (1, 2)).clone()
            moved[:, 1] = moved[:, 1].flip(1)
            state = moved.movedim((1, 2), (control, target))
        else:  # RY(w[i]) on one wire: rotation_structure admits nothing else
            theta = flat[op.params[0].index] / 2
            c, s = torch.cos(theta), torch.sin(theta)
            moved = state.movedim(op.wires[0] + 1, 1)
            a0, a1 = moved[:, 0], moved[:, 1]
            state = torch.stack([c * a0 - s * a1, s * a0 + c * a1], dim=1).movedim(1, op.wires[0] + 1)
    return state.reshape(dim, dim)


def check_exportable(head: nn.Module) -> None:
    """Raise :class:`ExportError` (one line) when ``head`` cannot become part of an ONNX graph.

    Example:
        >>> from qubert.heads import QuantumHead
        >>> check_exportable(QuantumHead(8, 2, n_qubits=13, n_layers=1))
        Traceback (most recent call last):
        ...
        qubert.export.ExportError: cannot export a 13-qubit circuit: the graph holds it as one 2**n x 2**n matrix, exported up to 12 qubits (256 MiB at 13)
    """
    head_type = getattr(head, "head_type", type(head).__name__)
    if head_type in ("linear", "mlp"):
        return
    if head_type != "quantum":
        raise ExportError(f"cannot export a {head_type!r} head; linear, mlp and quantum heads export")
    execution = head.execution
    if not execution.is_exact:
        raise ExportError("cannot export a quantum head run with shots, noise or a device: the graph computes exact expectation values (export the model without --shots/--noise)")
    circuit = head.circuit
    if circuit.n_qubits > MAX_EXPORT_QUBITS:
        mib = 4**circuit.n_qubits * 4 // 2**20
        raise ExportError(f"cannot export a {circuit.n_qubits}-qubit circuit: the graph holds it as one 2**n x 2**n matrix, exported up to {MAX_EXPORT_QUBITS} qubits ({mib} MiB at {circuit.n_qubits})")
    if rotation_structure(circuit) is None:
        raise ExportError(f"cannot export circuit ansatz {circuit.ansatz!r} (encoding {circuit.encoding!r}, re-upload {circuit.reupload}): only real H/RY + CNOT circuits export (the paper's family)")


def _graph_head(head: nn.Module) -> nn.Module:
    """The head's arithmetic without its input checks (data-dependent branches do not export)."""
    check_exportable(head)
    if head.head_type == "linear":
        return head.linear
    if head.head_type == "mlp":
        return head.net
    return _QuantumGraphHead(head)


class _QuantumGraphHead(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head  # for angles() (pre_net + scaling) and post_net
        self.circuit = RealCircuit(head.circuit, head.q_weights)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head.post_net(self.circuit(self.head.angles(features)))


class _ClassifierGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = _graph_head(model.head)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        features = self.model.pool(outputs.last_hidden_state, attention_mask, getattr(outputs, "pooler_output", None))
        logits = self.head(features.float())
        return logits, torch.softmax(logits, dim=-1)


def classifier_graph(model: nn.Module) -> nn.Module:
    """``(input_ids, attention_mask) -> (logits, probabilities)`` of a qubert model in float32, as a
    module ``torch.onnx.export`` can trace (raises :class:`ExportError` for a head that cannot be)."""
    return _ClassifierGraph(model).eval()


README = """# {name}: ONNX export

`model.onnx` is the whole classifier - {encoder} encoder, {pooling} pooling and the trained {head}
head{circuit_note} - in one graph, exported by `qubert export` (ONNX opset {opset}). It needs no qubert and no
PyTorch: `pip install onnxruntime tokenizers numpy`.

- inputs: `input_ids`, `attention_mask`: int64 `(batch, sequence)`, any batch size and length up to {max_length} tokens
- outputs: `logits`, `probabilities`: float32 `(batch, {n_classes})`; classes in order: {labels}
- texts are tokenised with `tokenizer.json`, cut at {max_length} tokens as in training

```python
import json
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

folder = "."  # this folder
tokenizer = Tokenizer.from_file(f"{{folder}}/tokenizer.json")
tokenizer.enable_truncation(max_length={max_length})
tokenizer.enable_padding(pad_id={pad_id}, pad_token="{pad_token}")
labels = json.load(open(f"{{folder}}/labels.json"))
session = ort.InferenceSession(f"{{folder}}/model.onnx", providers=["CPUExecutionProvider"])

texts = {examples!r}
encodings = tokenizer.encode_batch(texts)
feeds = {{
    "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
    "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
}}
logits, probabilities = session.run(["logits", "probabilities"], feeds)
for text, row in zip(texts, probabilities):
    print(labels[int(row.argmax())], row.round(4).tolist(), text)
```
{openvino_note}
Checked at export: on {n_checked} texts of mixed length the graph's probabilities (onnxruntime, CPU)
differ from qubert's PyTorch model by at most {max_diff:.1e}.
"""

OPENVINO_NOTE = """
OpenVINO: `model.xml` / `model.bin` hold the same graph as OpenVINO IR
(`import openvino as ov; compiled = ov.Core().compile_model("model.xml", "CPU")`, then
`compiled(feeds)` with the same feeds).
"""

CHECK_TEXTS = [
    "a", "great film", "the worst service I have had in years, never again",
    "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005. Text FA to 87121 to receive entry question",
    "ok", "not bad at all, though the ending dragged a little and the music was too loud for my taste " * 3,
]


def export_run(model_dir: str | os.PathLike[str], *, format: str = "onnx", output: str | os.PathLike[str] | None = None,
               overwrite: bool = False, progress: bool = True) -> Path:
    """Export a run (or its ``model/`` folder) as one graph; returns the folder written.

    Args:
        model_dir: a run directory or its ``model/`` folder.
        format: ``onnx``, or ``openvino`` (ONNX plus OpenVINO IR).
        output: folder to write (default ``<run>/export``); written atomically.
        overwrite: replace an existing output folder.

    Raises:
        ExportError: an unknown format, a head that cannot be exported, an existing output folder,
            a graph that disagrees with the PyTorch model.
        MissingRuntimeError: onnx / onnxscript (or openvino) not installed; the message names the extra.
    """
    from qubert.files import replace_dir
    from qubert.inference import load_model
    from qubert.runtimes import require_runtime

    if format not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {format!r}; expected {' or '.join(EXPORT_FORMATS)}")
    require_runtime("export")
    require_runtime("onnx")  # the export is checked in onnxruntime
    if format == "openvino":
        require_runtime("openvino")
    model, tokenizer = load_model(model_dir, device="cpu")
    graph = classifier_graph(model)  # refuses an unexportable head before any work
    run = Path(model_dir).expanduser()
    run = run.parent if run.name == "model" and (run / "config.json").is_file() else run
    target = Path(output).expanduser() if output is not None else run / "export"
    if target.exists() and not overwrite:
        raise ExportError(f"{target} exists; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    _say(progress, f"Exporting {run} to ONNX ...")
    replace_dir(lambda folder: _write_export(folder, model, tokenizer, graph, run=run, format=format), target)
    return target


def _write_export(folder: Path, model, tokenizer, graph: nn.Module, *, run: Path, format: str) -> None:
    """Everything ``export_run`` writes, into ``folder`` (a temporary one that is then swapped in)."""
    from qubert.runtimes import OPSET, example_inputs, onnx_export

    onnx_export(graph, example_inputs(model.config.encoder.vocab_size), folder / "model.onnx", input_names=("input_ids", "attention_mask"), output_names=("logits", "probabilities"))
    tokenizer.save_pretrained(folder)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    (folder / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    max_diff = _check(model, tokenizer, folder / "model.onnx", CHECK_TEXTS)
    if format == "openvino":
        import openvino as ov

        # float32 weights as in model.onnx (save_model halves them to fp16 by default)
        ov.save_model(ov.convert_model(str(folder / "model.onnx")), str(folder / "model.xml"), compress_to_fp16=False)
    head, circuit = model.head, getattr(model.head, "circuit", None)
    circuit_note = "" if circuit is None else (
        f" ({circuit.n_qubits}-qubit, {circuit.n_layers}-layer circuit, {circuit.measurement} readout, computed exactly in real arithmetic)")
    (folder / "README.md").write_text(README.format(
        name=run.name, encoder=model.config.encoder.model_type, pooling=model.config.pooling, head=head.head_type,
        circuit_note=circuit_note, opset=OPSET, max_length=int(model.config.max_length), n_classes=len(labels), labels=labels,
        pad_id=tokenizer.pad_token_id or 0, pad_token=tokenizer.pad_token or "[PAD]", examples=CHECK_TEXTS[1:3],
        openvino_note=OPENVINO_NOTE if format == "openvino" else "", n_checked=len(CHECK_TEXTS), max_diff=max_diff,
    ), encoding="utf-8")
    info = {"format": format, "opset": OPSET, "source": str(run), "labels": labels, "max_length": int(model.config.max_length),
            "head": head.head_type, "max_probability_difference": max_diff, "checked_texts": len(CHECK_TEXTS),
            "model_bytes": (folder / "model.onnx").stat().st_size, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (folder / "export.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _check(model, tokenizer, path: Path, texts: list[str]) -> float:
    """Largest difference between the graph's probabilities (onnxruntime) and the PyTorch model's."""
    import onnxruntime as ort

    max_length = int(model.config.max_length)
    batch = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()}
    exported = torch.from_numpy(session.run(["probabilities"], feeds)[0])
    precision, model.config.precision = model.config.precision, "fp32"  # the graph is float32
    try:
        with torch.inference_mode():
            expected = torch.softmax(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float(), dim=-1)
    finally:
        model.config.precision = precision
    difference = float((exported - expected).abs().max())
    if not difference < 1e-3:
        raise ExportError(f"the exported graph disagrees with the PyTorch model (largest probability difference {difference:.2e}); not written")
    return difference


def _say(progress: bool, message: str) -> None:
    if progress:
        import sys

        print(message, file=sys.stderr, flush=True)

