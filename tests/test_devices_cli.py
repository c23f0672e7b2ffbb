"""``qubert eval --device`` and ``qubert devices`` through typer's CliRunner (tiny random BERT, small CSV files)."""

from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("transformers")
pytest.importorskip("qiskit_aer")
pytest.importorskip("qiskit_ibm_runtime")
from typer.testing import CliRunner  # noqa: E402

from qubert.cli import app  # noqa: E402
from qubert.quantum import devices  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory, save_tiny_bert, write_word_splits):
    root = tmp_path_factory.mktemp("devices-cli")
    save_tiny_bert(root / "encoder", num_hidden_layers=1)
    return write_word_splits(root, {"train": 24, "validation": 8, "test": 12})


def _train(env, out, *extra):
    args = [
        "train", "--train-file", str(env / "train.csv"), "--validation-file", str(env / "validation.csv"),
        "--test-file", str(env / "test.csv"), "--model", str(env / "encoder"), "--max-length", "12",
        "--num-epochs", "1", "--batch-size", "8", "--qubits", "2", "--layers", "1", "--no-progress",
        "--cache-dir", str(env / "cache"), "--output-dir", str(out), *extra,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def quantum_run(env, tmp_path_factory):
    return _train(env, tmp_path_factory.mktemp("runs") / "quantum")


def _eval(env, run, *extra):
    return runner.invoke(app, ["eval", str(run), "--test-file", str(env / "test.csv"), "--no-progress", "--cache-dir", str(env / "cache"), *extra])


def _one_red_line(result, fragment):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert fragment in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_eval_on_a_device_reports_it_next_to_exact_and_shots(env, quantum_run, tmp_path):
    out = tmp_path / "device.json"
    result = _eval(env, quantum_run, "--device", "manila", "--shots", "256", "--optimization-level", "2", "--output", str(out))
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    for key in ("test_macro_f1", "exact_macro_f1", "shots_macro_f1", "device_seconds_per_1000"):
        assert key in metrics and key in result.output.replace("s per 1,000", "device_seconds_per_1000")
    facts = metrics["device"]
    assert facts["device"] == "fake_manila" and facts["optimization_level"] == 2 and len(facts["layout"]) == 2
    assert facts["two_qubit_gates"] >= 1 and "Transpiled for fake_manila" in " ".join(result.output.split())
    again = tmp_path / "again.json"
    assert _eval(env, quantum_run, "--device", "fake_manila", "--shots", "256", "--optimization-level", "2", "--output", str(again)).exit_code == 0
    assert json.loads(again.read_text())["confusion_matrix"] == metrics["confusion_matrix"]  # same seed, same counts


def test_eval_device_bad_inputs_are_one_red_line(env, quantum_run, tmp_path, monkeypatch):
    _one_red_line(_eval(env, quantum_run, "--device", "fake_manilla"), "did you mean 'fake_manila'")
    _one_red_line(_eval(env, quantum_run, "--device", "fake_armonk"), "the head has 2 qubits but fake_armonk has only 1")
    _one_red_line(_eval(env, quantum_run, "--device", "fake_manila", "--noise", "readout:0.01"), "either --noise or --device")
    _one_red_line(_eval(env, quantum_run, "--device", "fake_manila", "--optimization-level", "4"), "optimization level must be 0, 1, 2 or 3")
    mlp = _train(env, tmp_path / "mlp", "--head", "mlp")
    _one_red_line(_eval(env, mlp, "--device", "fake_manila"), "this model has a 'mlp' head")

    import qiskit
    from qiskit.transpiler.exceptions import TranspilerError

    def failing_transpile(*args, **kwargs):
        raise TranspilerError("no routing found")

    monkeypatch.setattr(qiskit, "transpile", failing_transpile)
    _one_red_line(_eval(env, quantum_run, "--device", "fake_lima"), "cannot transpile the head for fake_lima: no routing found")
    monkeypatch.undo()

    from qiskit_aer import AerError

    class OutOfMemory:
        def run(self, pubs, shots=None):
            raise AerError("Insufficient memory to run circuit")

    monkeypatch.setattr(devices, "aer_sampler", lambda *args: OutOfMemory())
    _one_red_line(_eval(env, quantum_run, "--device", "fake_manila"), "Aer ran out of memory")
    monkeypatch.undo()

    monkeypatch.setitem(sys.modules, "qiskit_aer", None)  # as if the extra were not installed
    _one_red_line(_eval(env, quantum_run, "--device", "fake_manila"), 'pip install "qubert[devices]"')


def test_ibm_devices_go_through_the_saved_account_and_the_runtime_sampler(env, quantum_run, tmp_path, monkeypatch):
    from qiskit_ibm_runtime import SamplerV2
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    def no_account():
        raise RuntimeError("Unable to find account.")

    devices._hardware_backend.cache_clear()
    monkeypatch.setattr(devices, "_runtime_service", no_account)
    _one_red_line(_eval(env, quantum_run, "--device", "ibm_nowhere"), "cannot use IBM Quantum device 'ibm_nowhere': Unable to find account")

    class Service:  # stands in for QiskitRuntimeService(): a "hardware" backend that runs locally
        def backend(self, name):
            return FakeManilaV2()

    used = []
    real_run = SamplerV2.run
    monkeypatch.setattr(SamplerV2, "run", lambda self, *a, **k: used.append(1) or real_run(self, *a, **k))
    devices._hardware_backend.cache_clear()
    monkeypatch.setattr(devices, "_runtime_service", Service)
    result = _eval(env, quantum_run, "--device", "ibm_test", "--shots", "128", "--output", str(tmp_path / "m.json"))
    devices._hardware_backend.cache_clear()
    assert result.exit_code == 0, result.output
    assert used and "qiskit-ibm-runtime" in json.loads((tmp_path / "m.json").read_text())["execution"]


def test_devices_lists_the_snapshots(monkeypatch):
    monkeypatch.setattr(devices, "fake_backend_classes", lambda: {"fake_manila": "FakeManilaV2", "fake_kyiv": "FakeKyiv"})  # 2 of 68: fast
    table = runner.invoke(app, ["devices"])
    assert table.exit_code == 0 and "fake_manila" in table.output and "fake_kyiv" in table.output, table.output
    result = runner.invoke(app, ["devices", "--json", "--min-qubits", "100"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["name"] for row in rows] == ["fake_kyiv"]
    kyiv = next(row for row in rows if row["name"] == "fake_kyiv")
    assert kyiv["two_qubit_gate"] == "ecr" and 0 < kyiv["two_qubit_error"] < 0.1 and 0 < kyiv["readout_error"] < 0.2 and kyiv["t1_us"] > 10
