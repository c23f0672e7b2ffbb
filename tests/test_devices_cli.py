"""``qubert eval --device`` and ``qubert devices`` through typer's CliRunner (tiny random BERT, small CSV files)."""

from __future__ import annotations

import json
import sys

import numpy as np
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


# ---------------------------------------------------------------------------- issue 19: mitigation, budget, dry run, shots
def test_eval_with_mitigation_reports_it_and_keeps_the_output_layer(env, quantum_run, tmp_path):
    out = tmp_path / "readout.json"
    result = _eval(env, quantum_run, "--device", "fake_manila", "--shots", "256", "--mitigation", "readout", "--output", str(out))
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["mitigation"] == "readout correction" and "readout correction" in " ".join(result.output.split())
    assert 0.0 <= metrics["test_macro_f1"] <= 1.0 and sum(map(sum, metrics["confusion_matrix"])) == 12


def test_dry_run_prints_the_plan_and_runs_nothing(env, quantum_run, tmp_path, monkeypatch):
    from qiskit_aer.primitives import SamplerV2 as AerSampler

    def refuse(*args, **kwargs):
        raise AssertionError("a dry run must not run a circuit")

    monkeypatch.setattr(AerSampler, "run", refuse)
    from qubert import embeddings

    monkeypatch.setattr(embeddings, "encode_texts", refuse)
    monkeypatch.setattr(embeddings, "cached_features", refuse)
    result = _eval(env, quantum_run, "--device", "fake_manila", "--shots", "100", "--mitigation", "zne", "--dry-run", "--output", str(tmp_path / "m.json"))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Dry run on fake_manila" in text and "12 parameter rows x 100 shots" in text and "noise x5" in text
    assert "two-qubit gates" in text and "estimated QPU time" in text
    assert not (tmp_path / "m.json").exists()


def test_an_over_budget_job_is_refused_before_anything_runs(env, quantum_run, monkeypatch):
    from qubert import embeddings

    def refuse(*args, **kwargs):
        raise AssertionError("refused jobs must not encode or run")

    monkeypatch.setattr(embeddings, "encode_texts", refuse)
    monkeypatch.setattr(embeddings, "cached_features", refuse)
    _one_red_line(_eval(env, quantum_run, "--device", "fake_manila", "--shots", "4096", "--max-qpu-seconds", "3"), "over --max-qpu-seconds 3")


def test_mitigation_bad_inputs_are_one_red_line(env, quantum_run):
    _one_red_line(_eval(env, quantum_run, "--device", "fake_manila", "--mitigation", "trex"), "unknown mitigation 'trex'")
    _one_red_line(_eval(env, quantum_run, "--mitigation", "readout"), "--mitigation needs --device")
    _one_red_line(_eval(env, quantum_run, "--device", "fake_manila", "--mitigation", "zne", "--zne-factors", "1,3,2"), "strictly increasing")
    _one_red_line(_eval(env, quantum_run, "--device", "fake_manila", "--max-qpu-seconds", "0"), "--max-qpu-seconds must be a positive number")
    _one_red_line(_eval(env, quantum_run, "--device", "fake_manila", "--max-qpu-seconds", "-1"), "--max-qpu-seconds must be a positive number")
    _one_red_line(_eval(env, quantum_run, "--device", "fake_manila", "--shots", "0"), "--shots must be a positive integer")


def test_ibm_runs_every_sample_as_one_pub_in_one_job(env, quantum_run, tmp_path, monkeypatch):
    from qiskit_ibm_runtime import EstimatorV2, SamplerV2
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    class Service:  # stands in for QiskitRuntimeService(): a "hardware" backend that runs locally
        def backend(self, name):
            return FakeManilaV2()

    submitted = []
    for primitive in (SamplerV2, EstimatorV2):
        real_run = primitive.run
        monkeypatch.setattr(primitive, "run", lambda self, pubs, *a, _real=real_run, **k: submitted.append((type(self).__name__, list(pubs), self)) or _real(self, pubs, *a, **k))
    devices._hardware_backend.cache_clear()
    monkeypatch.setattr(devices, "_runtime_service", Service)
    try:
        for mitigation, primitive in (("none", "SamplerV2"), ("all", "EstimatorV2")):
            submitted.clear()
            result = _eval(env, quantum_run, "--device", "ibm_test", "--shots", "64", "--mitigation", mitigation)
            assert result.exit_code == 0, result.output
            assert len(submitted) == 1, submitted  # one job
            name, pubs, instance = submitted[0]
            assert name == primitive and len(pubs) == 1  # one PUB ...
            values = np.asarray(pubs[0][-1] if primitive == "EstimatorV2" else pubs[0][1])
            assert values.shape[0] == 12  # ... with one parameter row per test sample
            if primitive == "EstimatorV2":
                options = instance.options
                assert options.resilience.measure_mitigation and options.resilience.zne_mitigation and options.twirling.enable_gates
                assert tuple(options.resilience.zne.noise_factors) == (1.0, 3.0, 5.0)
    finally:
        devices._hardware_backend.cache_clear()


def test_circuit_shots_plans_and_checks_against_measured_runs(env, quantum_run, tmp_path):
    out = tmp_path / "shots.json"
    result = runner.invoke(app, ["circuit", "shots", str(quantum_run), "--data", str(env / "test.csv"), "--shots", "4,64,4096", "--repeats", "50", "--check-seeds", "2", "--gap", "0.05", "--output", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert [row["shots"] for row in payload["predictions"]] == [4, 64, 4096] and payload["rows"] == 12
    assert all(0 <= row["expected_macro_f1"] <= 1 and row["measured_seeds"] == 2 for row in payload["predictions"])
    assert "Shots within 0.05 of exact" in result.output or "No K up to 4096" in result.output
    bad = runner.invoke(app, ["circuit", "shots", str(quantum_run), "--data", str(env / "test.csv"), "--shots", "0,16"])
    _one_red_line(bad, "--shots must be comma-separated positive integers")
