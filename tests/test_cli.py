"""The ``qubert`` command through typer's CliRunner (tiny random BERT, small CSV files)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
from typer.testing import CliRunner  # noqa: E402

from qubert.cli import app  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory, save_tiny_bert, write_word_splits):
    root = tmp_path_factory.mktemp("cli")
    save_tiny_bert(root / "encoder", num_hidden_layers=1)
    return write_word_splits(root, {"train": 40, "validation": 12, "test": 12})


def _train_args(env, out, *extra):
    return [
        "train", "--train-file", str(env / "train.csv"), "--validation-file", str(env / "validation.csv"),
        "--test-file", str(env / "test.csv"), "--model", str(env / "encoder"), "--max-length", "12",
        "--num-epochs", "1", "--batch-size", "8", "--qubits", "2", "--layers", "1", "--no-progress",
        "--cache-dir", str(env / "cache"), "--output-dir", str(out), *extra,
    ]


def _one_red_line(result, fragment):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert fragment in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def trained(env, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    result = runner.invoke(app, _train_args(env, out))
    assert result.exit_code == 0, result.output
    return out


def test_help_lists_commands_and_options():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "eval", "predict", "datasets"):
        assert command in result.output
    result = runner.invoke(app, ["train", "--help"])
    for option in ("--dataset", "--output-dir", "--train-file", "--learning-rate", "--num-epochs", "--qubits", "--layers", "--mode", "--head", "--config", "--resume"):
        assert option in result.output


def test_train_writes_run_and_prints_results(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert "test_macro_f1" in metrics and (trained / "model" / "model.safetensors").is_file()


def test_train_bad_input_is_one_red_line(env, tmp_path):
    _one_red_line(runner.invoke(app, _train_args(env, tmp_path / "r", "--head", "svm")), "unknown head 'svm'")
    _one_red_line(runner.invoke(app, _train_args(env, tmp_path / "r", "--mode", "half")), "unknown mode 'half'")
    _one_red_line(runner.invoke(app, ["train", "--train-file", str(tmp_path / "missing.csv"), "--no-progress"]), "not found")
    _one_red_line(runner.invoke(app, _train_args(env, tmp_path / "r", "--model", str(tmp_path / "no-model"))), "no such folder")
    assert not (tmp_path / "r").exists()  # nothing written for a run that could not start


def test_train_refuses_an_existing_run(env, trained):
    _one_red_line(runner.invoke(app, _train_args(env, trained)), "--resume")


def test_train_options_from_yaml(env, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"head: linear\nnum-epochs: 1\nseed: 5\ncache_dir: {env / 'cache'}\n")
    out = tmp_path / "yaml-run"
    args = [a for a in _train_args(env, out) if a not in ()]
    result = runner.invoke(app, [*args, "--config", str(config), "--seed", "6"])
    assert result.exit_code == 0, result.output
    import yaml

    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["head"] == "linear" and saved["seed"] == 6  # YAML value used, command line wins
    config.write_text("head: linear\nqubit: 3\n")
    _one_red_line(runner.invoke(app, [*args, "--config", str(config)]), "unknown option 'qubit' (did you mean 'qubits'?)")
    config.write_text("[not, a, mapping]\n")
    _one_red_line(runner.invoke(app, [*args, "--config", str(config)]), "must be a mapping")


def test_eval_on_a_file_and_bad_requests(env, trained, tmp_path):
    out = tmp_path / "metrics.json"
    result = runner.invoke(app, ["eval", str(trained), "--test-file", str(env / "test.csv"), "--no-progress", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "test_macro_f1" in result.output and json.loads(out.read_text())["test_samples"] == 12
    _one_red_line(runner.invoke(app, ["eval", str(tmp_path / "nowhere"), "--test-file", str(env / "test.csv")]), "not a saved qubert model")
    _one_red_line(runner.invoke(app, ["eval", str(tmp_path)]), "not a saved qubert model")
    _one_red_line(runner.invoke(app, ["eval", str(trained), "--test-file", str(env / "test.csv"), "--noise", "depolarizing"]), "noise")


def test_predict_from_stdin_and_files(env, trained, tmp_path):
    result = runner.invoke(app, ["predict", str(trained)], input="good great\nawful dreadful\n\n")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "text,label,prob_neg,prob_pos" and len(lines) == 3
    src = tmp_path / "texts.txt"
    src.write_text("superb\npoor\n")
    out = tmp_path / "pred.jsonl"
    result = runner.invoke(app, ["predict", str(trained), "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["superb", "poor"]
    assert all(r["label"] in ("neg", "pos") and sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-5) for r in rows)
    result = runner.invoke(app, ["predict", str(trained), "--input", str(env / "test.csv")])
    assert result.exit_code == 0 and len(result.stdout.strip().splitlines()) == 13
    _one_red_line(runner.invoke(app, ["predict", str(trained), "--input", str(tmp_path / "none.txt")]), "not found")
    _one_red_line(runner.invoke(app, ["predict", str(trained), "--format", "xml"], input="hi\n"), "unknown --format 'xml'")
    _one_red_line(runner.invoke(app, ["predict", str(trained)], input=""), "no texts")
    _one_red_line(runner.invoke(app, ["predict", str(trained), "--input", str(env / "test.csv"), "--text-column", "body"]), "no text column 'body'")


def test_datasets_table(tmp_path):
    result = runner.invoke(app, ["datasets", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "sms_spam" in result.output and "imdb" in result.output


def test_datasets_table_is_readable_at_80_columns(tmp_path):
    """Locations are shown whole, relative to the data directory, and counts keep their split's name."""
    (tmp_path / "twitter_airline_sentiment").mkdir()
    (tmp_path / "twitter_airline_sentiment" / "train.csv").write_text("text,label\nok,positive\nbad,negative\n")
    result = runner.invoke(app, ["datasets", "--data-dir", str(tmp_path)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines) and "…" not in result.output, result.output
    assert any(line.strip().startswith("twitter_airline_sentiment") for line in lines), result.output
    assert "train 2" in result.output and str(tmp_path / "twitter") not in result.output
    _one_red_line(runner.invoke(app, ["datasets", "--data-dir", str(tmp_path / "nope")]), "does not exist")


def test_ctrl_c_during_training_exits_130_and_says_how_to_resume(env, tmp_path, monkeypatch):
    import qubert.training
    from qubert.training import TrainingInterrupted

    def interrupted(config):
        raise TrainingInterrupted(tmp_path / "run")

    monkeypatch.setattr(qubert.training, "run_training", interrupted)
    result = runner.invoke(app, _train_args(env, tmp_path / "run"))
    assert result.exit_code == 130
    assert "Interrupted" in result.output and "--resume" in result.output
    assert "Traceback" not in result.output


def test_train_refuses_a_register_too_large_before_encoding_and_writes_nothing(env, tmp_path, monkeypatch):
    import qubert.embeddings

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded before refusing the register")

    monkeypatch.setattr(qubert.embeddings, "cached_features", no_encoding)
    args = _train_args(env, tmp_path / "r", "--cache-dir", str(tmp_path / "cache"))
    result = runner.invoke(app, [*args[: args.index("--qubits")], "--qubits", "40", *args[args.index("--qubits") + 2 :]])
    _one_red_line(result, "simulating 40 qubits with batch 8")
    assert "GiB" in result.output and "use fewer qubits or a smaller batch" in result.output
    assert not (tmp_path / "r").exists() and not (tmp_path / "cache").exists()
