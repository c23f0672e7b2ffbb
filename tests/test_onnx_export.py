"""``qubert export``: one ONNX graph (tokens -> encoder -> pooling -> head) whose probabilities equal
the PyTorch model's within 1e-4 for linear, MLP and quantum heads; the README snippet runs without
qubert or torch; heads that cannot be exported are refused in one line."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from qubert.export import MAX_EXPORT_QUBITS, ExportError, RealCircuit, check_exportable, export_run
from qubert.heads import QuantumHead
from qubert.quantum import Circuit, simulate

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

runner = CliRunner()
MAX_LENGTH = 40
WORDS = "the a film was good bad great awful plot music actors slow fast ending loved hated it not very".split()


def _texts(n: int = 200) -> list[str]:
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60))) for _ in range(n)]  # some over MAX_LENGTH tokens
    return texts + ["", "!"]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, save_tiny_bert):
    return save_tiny_bert(tmp_path_factory.mktemp("export") / "encoder", num_hidden_layers=1)


def _run(root, encoder_dir, head: dict, name: str, n_classes: int = 3):
    from transformers import AutoTokenizer

    from qubert.modeling import QubertForSequenceClassification

    labels = {i: f"class{i}" for i in range(n_classes)}
    model = QubertForSequenceClassification.from_encoder(encoder_dir, head=head, id2label=labels, max_length=MAX_LENGTH, seed=0, precision="fp32")
    with torch.no_grad():  # spread the head's weights, so the classes differ and a wrong circuit shows
        for param in model.head.parameters():
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(1)) * 0.5)
    run = root / name
    model.save_pretrained(run / "model")
    AutoTokenizer.from_pretrained(encoder_dir).save_pretrained(run / "model")
    return run


def _torch_probabilities(run, texts):
    from qubert.training import predict_texts

    return predict_texts(run, texts, batch_size=16)[2]


def _onnx_probabilities(folder, texts):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    out = []
    for start in range(0, len(texts), 32):  # batches of different sizes and lengths: dynamic axes
        batch = tokenizer(texts[start : start + 32], truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="np")
        out.append(session.run(["probabilities"], {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})[0])
    return torch.from_numpy(__import__("numpy").concatenate(out))


HEADS = {
    "linear": {"type": "linear"},
    "mlp": {"type": "mlp", "hidden_sizes": [16, 8]},
    "quantum2-z": {"type": "quantum", "n_qubits": 2, "n_layers": 2},
    "quantum4-probs": {"type": "quantum", "circuit": {"n_qubits": 4, "n_layers": 2, "measurement": "probs"}},
    "quantum8-z": {"type": "quantum", "circuit": {"n_qubits": 8, "n_layers": 3, "entanglement": "ring"}},
    "quantum8-probs": {"type": "quantum", "circuit": {"n_qubits": 8, "n_layers": 2, "measurement": "probs"}, "scaling": "pi"},
}


@pytest.mark.parametrize("name", list(HEADS))
def test_exported_graph_matches_pytorch(tmp_path, encoder_dir, name):
    run = _run(tmp_path, encoder_dir, HEADS[name], name)
    folder = export_run(run, progress=False)
    assert folder == run / "export"
    texts = _texts()
    expected, got = _torch_probabilities(run, texts), _onnx_probabilities(folder, texts)
    assert got.shape == expected.shape == (len(texts), 3)
    assert (got - expected).abs().max() < 1e-4, (got - expected).abs().max()
    info = json.loads((folder / "export.json").read_text())
    assert info["head"] == HEADS[name]["type"] and info["max_probability_difference"] < 1e-4
    assert json.loads((folder / "labels.json").read_text()) == ["class0", "class1", "class2"]


@pytest.mark.parametrize("n_qubits", [2, 4, 8])
@pytest.mark.parametrize("measurement", ["z", "zz", "probs"])
def test_real_circuit_equals_the_simulator(n_qubits, measurement):
    circuit = Circuit(n_qubits=n_qubits, n_layers=3, measurement=measurement, entanglement="ring" if n_qubits > 2 else "default")
    weights = circuit.init_weights(torch.Generator().manual_seed(0), dtype=torch.float64) * 300  # far from 0
    angles = torch.rand(16, n_qubits, generator=torch.Generator().manual_seed(1)) * 6 - 3
    assert torch.allclose(RealCircuit(circuit, weights)(angles), simulate(circuit, angles, weights.float()), atol=1e-5)


def test_readme_snippet_runs_without_qubert_or_torch(tmp_path, encoder_dir):
    run = _run(tmp_path, encoder_dir, HEADS["quantum2-z"], "run")
    folder = export_run(run, format="onnx", progress=False)
    readme = (folder / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    blocker = "import sys\nfor name in ('qubert', 'torch', 'transformers'):\n    sys.modules[name] = None\n"
    result = subprocess.run([sys.executable, "-c", blocker + snippet], cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    texts = re.search(r"texts = (\[.*\])", snippet).group(1)
    expected = _torch_probabilities(run, eval(texts))  # noqa: S307 - the snippet's own list literal
    for line, row in zip(lines, expected, strict=True):
        label, values = line.split(" ", 1)
        printed = json.loads(values[: values.index("]") + 1])
        assert label == f"class{int(row.argmax())}"
        assert max(abs(a - b) for a, b in zip(printed, row.tolist())) < 1e-3  # printed rounded to 4 places


def test_openvino_format_writes_ir_that_agrees(tmp_path, encoder_dir):
    ov = pytest.importorskip("openvino")
    run = _run(tmp_path, encoder_dir, HEADS["quantum2-z"], "run")
    folder = export_run(run, format="openvino", progress=False)
    compiled = ov.Core().compile_model(str(folder / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    from transformers import AutoTokenizer

    texts = _texts(20)
    batch = AutoTokenizer.from_pretrained(folder)(texts, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="np")
    out = compiled({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
    got = torch.from_numpy(out[compiled.output("probabilities")])
    assert (got - _torch_probabilities(run, texts)).abs().max() < 1e-4


def test_heads_that_cannot_be_exported_are_refused_in_one_line(tmp_path, encoder_dir):
    check_exportable(QuantumHead(8, 2, n_qubits=MAX_EXPORT_QUBITS, n_layers=1))  # the largest that exports
    refusals = {
        "noise": ({"type": "quantum", "n_qubits": 2, "n_layers": 1, "noise": "depolarizing:0.01"}, "shots, noise or a device"),
        "shots": ({"type": "quantum", "n_qubits": 2, "n_layers": 1, "shots": 100}, "shots, noise or a device"),
        "big": ({"type": "quantum", "n_qubits": MAX_EXPORT_QUBITS + 1, "n_layers": 1}, f"exported up to {MAX_EXPORT_QUBITS} qubits"),
        "complex": ({"type": "quantum", "circuit": {"n_qubits": 2, "ansatz": "strongly_entangling"}}, "only real H/RY + CNOT circuits export"),
    }
    from qubert.cli import app

    for name, (head, fragment) in refusals.items():
        run = _run(tmp_path, encoder_dir, head, name, n_classes=2)
        with pytest.raises(ExportError, match=re.escape(fragment)):
            export_run(run, progress=False)
        result = runner.invoke(app, ["export", str(run)])
        lines = [line for line in result.output.strip().splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and fragment in " ".join(result.output.split()), result.output
        assert not (run / "export").exists()  # nothing half-written
    result = runner.invoke(app, ["export", str(tmp_path / "big"), "--format", "tflite"])
    assert result.exit_code == 2 and "unknown export format 'tflite'" in result.output


def test_export_cli_writes_once_and_overwrites_on_request(tmp_path, encoder_dir):
    from qubert.cli import app

    run = _run(tmp_path, encoder_dir, HEADS["linear"], "run")
    first = runner.invoke(app, ["export", str(run / "model"), "-o", str(tmp_path / "out")])
    assert first.exit_code == 0, first.output
    assert (tmp_path / "out" / "model.onnx").is_file() and "README.md" in first.output
    again = runner.invoke(app, ["export", str(run), "-o", str(tmp_path / "out")])
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert runner.invoke(app, ["export", str(run), "-o", str(tmp_path / "out"), "--overwrite"]).exit_code == 0
