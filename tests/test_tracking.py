"""--report-to trackers (tensorboard event files read back) and the run's versions.json."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("transformers")
from typer.testing import CliRunner  # noqa: E402

import qubert  # noqa: E402
from qubert.cli import app  # noqa: E402
from qubert.provenance import git_revision  # noqa: E402
from qubert.tracking import TrackerError, check_tracker  # noqa: E402
from qubert.training import TrainingConfig, TrainingConfigError, run_training  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory, save_tiny_bert, write_word_splits):
    root = tmp_path_factory.mktemp("tracking")
    save_tiny_bert(root / "encoder", num_hidden_layers=1)
    return write_word_splits(root, {"train": 24, "validation": 8, "test": 8})


def _config(env, out, **overrides):
    base = dict(
        train_file=str(env / "train.csv"), validation_file=str(env / "validation.csv"), test_file=str(env / "test.csv"),
        model=str(env / "encoder"), max_length=12, head="linear", num_epochs=2, batch_size=8, progress=False,
        cache_dir=str(env / "cache"), output_dir=str(out), early_stopping_patience=None,
    )
    return TrainingConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def tensorboard_run(env, tmp_path_factory):
    pytest.importorskip("tensorboard")
    out = tmp_path_factory.mktemp("runs") / "tb"
    return out, run_training(_config(env, out, report_to="tensorboard"))


def test_tensorboard_run_logs_epochs_final_metrics_and_config(tensorboard_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    out, metrics = tensorboard_run
    logs = out / "tensorboard"
    assert list(logs.glob("events.out.tfevents.*")), sorted(p.name for p in logs.iterdir())
    events = EventAccumulator(str(logs))
    events.Reload()
    scalars = events.Tags()["scalars"]
    per_epoch = [e.value for e in events.Scalars("eval/macro_f1")]
    assert len(per_epoch) >= 2  # two epochs, then the best model's final validation
    assert events.Scalars("eval/macro_f1")[-1].value == pytest.approx(metrics["eval_macro_f1"])
    assert events.Scalars("test/macro_f1")[-1].value == pytest.approx(metrics["test_macro_f1"])
    assert "train/loss" in scalars
    hparams = EventAccumulator(str(logs / "hparams"))
    hparams.Reload()
    start = plugin_data_pb2.HParamsPluginData.FromString(hparams.SummaryMetadata("_hparams_/session_start_info").plugin_data.content)
    logged = start.session_start_info.hparams
    assert logged["head"].string_value == "linear"
    assert logged["max_length"].number_value == 12
    assert logged["num_epochs"].number_value == 2
    assert hparams.Scalars("hparam/test_macro_f1")[-1].value == pytest.approx(metrics["test_macro_f1"])


def test_report_to_is_not_part_of_the_run_identity(env, tensorboard_run):
    out, metrics = tensorboard_run
    again = run_training(_config(env, out, report_to="none", resume=True))  # a finished run is returned as is
    assert again["test_macro_f1"] == metrics["test_macro_f1"]


def test_versions_file(tensorboard_run, env):
    import torch
    import transformers

    from qubert.modeling import encoder_identity
    from qubert.training import load_model

    out, _ = tensorboard_run
    versions = json.loads((out / "versions.json").read_text())
    assert versions["qubert"] == qubert.__version__
    assert versions["torch"] == torch.__version__ and versions["transformers"] == transformers.__version__
    assert versions["encoder"]["model"] == str(env / "encoder")
    model, _ = load_model(out)
    assert versions["encoder"]["identity"] == encoder_identity(model.encoder)  # frozen: the trained model's encoder
    repo = Path(qubert.__file__).resolve().parents[2]
    if (repo / ".git").exists():
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        assert versions["git"]["commit"] == head and isinstance(versions["git"]["dirty"], bool)
    else:
        assert versions["git"] is None
    assert json.loads((out / "metrics.json").read_text())["test_macro_f1"] >= 0  # metrics.json unchanged in shape


def test_git_revision_ignores_a_copy_outside_a_qubert_checkout(tmp_path):
    fake = tmp_path / "site-packages" / "qubert" / "provenance.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("")
    (tmp_path / ".git").mkdir()
    assert git_revision(fake) is None


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="mlflow is installed")
def test_missing_tracker_is_one_line_before_any_work(env, tmp_path):
    out = tmp_path / "run"
    args = [
        "train", "--train-file", str(env / "train.csv"), "--validation-file", str(env / "validation.csv"),
        "--test-file", str(env / "test.csv"), "--model", str(env / "encoder"), "--max-length", "12",
        "--no-progress", "--output-dir", str(out), "--cache-dir", str(tmp_path / "cache"), "--report-to", "mlflow",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert "pip install mlflow" in result.output and "Traceback" not in result.output
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_unknown_tracker_is_refused():
    with pytest.raises(TrackerError, match="expected one of none, tensorboard, mlflow, wandb"):
        check_tracker("comet")
    with pytest.raises(TrainingConfigError, match="unknown report_to 'comet'"):
        TrainingConfig(train_file="x.csv", report_to="comet")


def test_train_help_lists_report_to():
    result = runner.invoke(app, ["train", "--help"], terminal_width=200)
    assert "--report-to" in result.output and "tensorboard" in result.output
