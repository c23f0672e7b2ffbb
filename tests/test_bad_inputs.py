"""Every kind of bad input, through the CLI: exit code 2, one line on stderr, nothing left behind.

One table row per kind: what the data loader (``qubert.data``), ``TrainingConfig.validate``, the
``--config`` loader, the run directory, the encoder checks, ``load_model`` and ``qubert bench``
refuse. Each row builds its command line in a fresh folder; the test snapshots that folder (run
directory, embedding cache, output files) before the command and compares it after. Nothing here
trains: every case fails before the first epoch.
"""

from __future__ import annotations

import csv
import errno
import json
import pickle
import random
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

pytest.importorskip("transformers")
from typer.testing import CliRunner  # noqa: E402

from qubert.cli import app  # noqa: E402

runner = CliRunner()
WORDS = {0: ["bad", "awful", "dreadful", "poor"], 1: ["good", "great", "superb", "fine"]}


def _write_csv(path: Path, rows, header=("text", "label")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _rows(n: int, names=("neg", "pos"), seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(" ".join(rng.sample(WORDS[i % 2], 2)), names[i % 2]) for i in range(n)]


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


@pytest.fixture(scope="module")
def env(tmp_path_factory, save_tiny_bert) -> Path:
    """A tiny encoder, good and bad data files, a saved model and damaged copies of it."""
    import shutil

    from safetensors.torch import load_file, save_file

    from qubert.modeling import QubertForSequenceClassification, load_tokenizer

    root = tmp_path_factory.mktemp("bad_inputs")
    save_tiny_bert(root / "encoder", num_hidden_layers=1)
    for name, n in (("train", 40), ("validation", 12), ("test", 12)):
        _write_csv(root / f"{name}.csv", _rows(n, seed=len(name)))
    bad = root / "bad"
    (bad / "dir.csv").mkdir(parents=True)
    (bad / "notes.txt").write_text("good\nbad\n")
    (bad / "latin1.csv").write_bytes("text,label\ncaf\xe9,pos\nbad,neg\n".encode("latin-1"))
    (bad / "empty.csv").write_text("")
    (bad / "broken.jsonl").write_text('{"text": "good", "label": "pos"}\n{not json\n')
    _write_csv(bad / "sentence.csv", _rows(10), header=("sentence", "label"))
    _write_csv(bad / "nolabel.csv", _rows(10), header=("text", "y"))
    _write_csv(bad / "emptytext.csv", [(" " if i == 3 else t, lab) for i, (t, lab) in enumerate(_rows(10))])
    _write_csv(bad / "missinglabel.csv", [(t, "" if i == 4 else lab) for i, (t, lab) in enumerate(_rows(10))])
    _write_csv(bad / "ints.csv", [(t, "x" if i == 5 else str(i % 2)) for i, (t, _) in enumerate(_rows(10))])
    _write_csv(bad / "mixed.csv", [(t, {3: "0", 7: "1"}.get(i, lab)) for i, (t, lab) in enumerate(_rows(20, names=("ham", "spam")))])
    _write_csv(bad / "unseen.csv", _rows(11)[:10] + [("so so", "meh")])
    _write_csv(bad / "oneclass.csv", [(t, "pos") for t, _ in _rows(10)])
    _write_csv(bad / "tiny.csv", _rows(2))
    (bad / "nosplits").mkdir()
    _write_csv(bad / "data" / "sms_spam" / "train.csv", [(t, "maybe" if i == 1 else ("ham", "spam")[i % 2]) for i, (t, _) in enumerate(_rows(10))])
    configs = bad / "configs"
    configs.mkdir()
    for name, text in {
        "four": "qubits: four\n", "fraction": "qubits: 4.5\n", "unknown": "qubit: 4\n", "list": "- qubits\n",
        "yaml": "qubits: [4\n", "flag": "reupload: maybe\n", "widths": "hidden_sizes: [wide]\n",
    }.items():
        (configs / f"{name}.yaml").write_text(text)
    (bad / "afile").write_text("not a folder\n")

    # A saved model (no training needed) and damaged copies of it.
    model = QubertForSequenceClassification.from_encoder(
        str(root / "encoder"), head={"type": "quantum", "circuit": {"n_qubits": 2, "n_layers": 1}},
        id2label={0: "neg", 1: "pos"}, max_length=12, seed=0,
    )
    good = root / "model"
    model.save_pretrained(good)
    load_tokenizer(str(root / "encoder")).save_pretrained(good)
    for name in ("truncated", "shape", "missing", "pickled", "booby"):
        shutil.copytree(good, root / name)
    weights = root / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    config = json.loads((root / "shape" / "config.json").read_text())
    config["head_config"]["circuit"]["n_qubits"] = 3
    (root / "shape" / "config.json").write_text(json.dumps(config))
    state = load_file(str(root / "missing" / "model.safetensors"))
    save_file({k: v for k, v in state.items() if k != "head.q_weights"}, str(root / "missing" / "model.safetensors"), metadata={"format": "pt"})
    (root / "pickled" / "model.safetensors").unlink()
    import torch

    torch.save(state, root / "pickled" / "pytorch_model.bin")
    (root / "booby" / "trainer_state.pkl").write_bytes(pickle.dumps(_Evil()))
    return root


def _train(env: Path, out: Path, *extra: str) -> list[str]:
    """A good ``qubert train`` command line, then ``extra`` (a repeated option's last value wins)."""
    return [
        "train", "--train-file", str(env / "train.csv"), "--validation-file", str(env / "validation.csv"),
        "--test-file", str(env / "test.csv"), "--model", str(env / "encoder"), "--max-length", "12",
        "--num-epochs", "1", "--batch-size", "8", "--qubits", "2", "--layers", "1", "--no-progress",
        "--cache-dir", str(out / "cache"), "--output-dir", str(out / "run"), *extra,
    ]


def _file(env: Path, out: Path, name: str, *extra: str) -> list[str]:
    """Train on one bad file alone (``--train-file`` only)."""
    return ["train", "--train-file", str(env / "bad" / name), "--model", str(env / "encoder"), "--max-length", "12",
            "--no-progress", "--cache-dir", str(out / "cache"), "--output-dir", str(out / "run"), *extra]


def _eval(env: Path, out: Path, model: str, *extra: str) -> list[str]:
    return ["eval", str(env / model), "--test-file", str(env / "test.csv"), "--no-progress",
            "--cache-dir", str(out / "cache"), "--output", str(out / "metrics.json"), *extra]


def _predict(env: Path, out: Path, model: str, *extra: str) -> list[str]:
    return ["predict", str(env / model), "--output", str(out / "predictions.csv"), *extra]


def _config(env: Path, out: Path, name: str) -> list[str]:
    return ["train", "--config", str(env / "bad" / "configs" / f"{name}.yaml"), "--train-file", str(env / "train.csv"),
            "--no-progress", "--output-dir", str(out / "run")]


class Case(NamedTuple):
    argv: Callable[[Path, Path], list[str]]
    fragment: str  # must appear in the one error line
    setup: Callable[[Path, Path], None] | None = None
    stdin: str | None = None


def _existing_run(config: dict | None) -> Callable[[Path, Path], None]:
    def setup(env: Path, out: Path) -> None:
        (out / "run").mkdir()
        (out / "run" / "notes.txt").write_text("someone else's\n")
        if config is not None:
            import yaml

            (out / "run" / "config.yaml").write_text(yaml.safe_dump(config))

    return setup


def _file_at_output(env: Path, out: Path) -> None:
    (out / "run").write_text("a file, not a folder\n")


CASES: dict[str, Case] = {
    # ---- data files (qubert.data)
    "data file missing": Case(lambda e, o: _file(e, o, "missing.csv"), "not found"),
    "data file is a folder": Case(lambda e, o: _file(e, o, "dir.csv"), "is a directory, not a file"),
    "unsupported file type": Case(lambda e, o: _file(e, o, "notes.txt"), "unsupported file type"),
    "not UTF-8": Case(lambda e, o: _file(e, o, "latin1.csv"), "is not valid UTF-8: byte 0xe9"),
    "empty file": Case(lambda e, o: _file(e, o, "empty.csv"), "is empty (no header row)"),
    "malformed JSON lines": Case(lambda e, o: _file(e, o, "broken.jsonl"), "cannot parse"),
    "no text column": Case(lambda e, o: _file(e, o, "sentence.csv"), "no text column 'text'"),
    "no label column": Case(lambda e, o: _file(e, o, "nolabel.csv"), "no label column 'label'"),
    "same text and label column": Case(lambda e, o: _file(e, o, "nolabel.csv", "--label-column", "text"), "text_column and label_column are both"),
    "empty text": Case(lambda e, o: _file(e, o, "emptytext.csv"), "empty or whitespace-only text(s) at row 4"),
    "missing label": Case(lambda e, o: _file(e, o, "missinglabel.csv"), "missing label at row 5"),
    "a name among integer labels": Case(lambda e, o: _file(e, o, "ints.csv"), "unparseable label 'x' at row 6 (other labels are integers)"),
    "integers among label names": Case(lambda e, o: _file(e, o, "mixed.csv"), "integer label '0' at rows 4, 8 among class names"),
    "test label unseen in train": Case(lambda e, o: _train(e, o, "--test-file", str(e / "bad" / "unseen.csv")), "label 'meh' in the test split"),
    "a single class": Case(lambda e, o: _file(e, o, "oneclass.csv"), "has a single class"),
    "too few rows to split": Case(lambda e, o: _file(e, o, "tiny.csv"), "split is empty (too few rows)"),
    "max_train_samples below the classes": Case(lambda e, o: _train(e, o, "--max-train-samples", "1"), "fewer than the 2 classes"),
    "unknown data set": Case(lambda e, o: ["train", "--dataset", "sms_spma", "--no-progress", "--output-dir", str(o / "run")], "did you mean 'sms_spam'?"),
    "data dir missing": Case(lambda e, o: ["train", "--dataset", "sms_spam", "--data-dir", str(o / "nodata"), "--no-progress", "--output-dir", str(o / "run")], "does not exist (from --data-dir)"),
    "folder without split files": Case(lambda e, o: ["train", "--dataset", str(e / "bad" / "nosplits"), "--no-progress", "--output-dir", str(o / "run")], "has no train/validation/test"),
    "registry label unparseable": Case(lambda e, o: ["train", "--dataset", "sms_spam", "--data-dir", str(e / "bad" / "data"), "--model", str(e / "encoder"), "--no-progress", "--output-dir", str(o / "run")], "unparseable label 'maybe' at row 2"),
    # ---- TrainingConfig.validate
    "no data": Case(lambda e, o: ["train", "--no-progress", "--output-dir", str(o / "run")], "no data given"),
    "unknown head": Case(lambda e, o: _train(e, o, "--head", "svm"), "unknown head 'svm'"),
    "unknown pooling": Case(lambda e, o: _train(e, o, "--pooling", "max"), "unknown pooling 'max'"),
    "unknown mode": Case(lambda e, o: _train(e, o, "--mode", "half"), "unknown mode 'half'"),
    "max_length 0": Case(lambda e, o: _train(e, o, "--max-length", "0"), "max_length must be a positive integer"),
    "qubits 0": Case(lambda e, o: _train(e, o, "--qubits", "0"), "qubits must be a positive integer"),
    "layers -1": Case(lambda e, o: _train(e, o, "--layers", "-1"), "layers must be a non-negative integer"),
    "layers 100000": Case(lambda e, o: _train(e, o, "--layers", "100000"), "layers must be at most 1000"),
    "batch_size 0": Case(lambda e, o: _train(e, o, "--batch-size", "0"), "batch_size must be a positive integer"),
    "early_stopping_patience 0": Case(lambda e, o: _train(e, o, "--early-stopping-patience", "0"), "early_stopping_patience must be a positive integer"),
    "max_steps 0": Case(lambda e, o: _train(e, o, "--max-steps", "0"), "max_steps must be a positive integer or -1"),
    "learning_rate negative": Case(lambda e, o: _train(e, o, "--learning-rate", "-0.1"), "learning_rate must be a positive number"),
    "learning_rate 1e30": Case(lambda e, o: _train(e, o, "--learning-rate", "1e30"), "learning_rate 1e+30 is surely a mistake"),
    "encoder_learning_rate 50": Case(lambda e, o: _train(e, o, "--encoder-learning-rate", "50"), "encoder_learning_rate 50 is surely a mistake"),
    "num_epochs 0": Case(lambda e, o: _train(e, o, "--num-epochs", "0"), "num_epochs must be a positive number"),
    "weight_decay negative": Case(lambda e, o: _train(e, o, "--weight-decay", "-1"), "weight_decay must be >= 0"),
    "dropout 1": Case(lambda e, o: _train(e, o, "--dropout", "1"), "dropout must be in [0, 1)"),
    "hidden size 0": Case(lambda e, o: _train(e, o, "--head", "mlp", "--hidden-sizes", "0"), "hidden_sizes must be a non-empty list"),
    "unknown encoding": Case(lambda e, o: _train(e, o, "--encoding", "spin"), "quantum head:"),
    "unknown scaling": Case(lambda e, o: _train(e, o, "--scaling", "huge"), "unknown scaling 'huge'"),
    "unknown strategy": Case(lambda e, o: _train(e, o, "--strategy", "magic"), "strategy"),
    "unknown scheduler": Case(lambda e, o: _train(e, o, "--lr-scheduler-type", "zigzag"), "unknown lr_scheduler_type 'zigzag'"),
    # ---- --config YAML files
    "config: qubits four": Case(lambda e, o: _config(e, o, "four"), "four.yaml: qubits: 'four' is not valid"),
    "config: qubits 4.5": Case(lambda e, o: _config(e, o, "fraction"), "fraction.yaml: qubits: 4.5 is not valid"),
    "config: not a boolean": Case(lambda e, o: _config(e, o, "flag"), "flag.yaml: reupload: 'maybe' is not valid"),
    "config: not an integer list": Case(lambda e, o: _config(e, o, "widths"), "widths.yaml: hidden_sizes"),
    "config: unknown key": Case(lambda e, o: _config(e, o, "unknown"), "unknown option 'qubit' (did you mean 'qubits'?)"),
    "config: not a mapping": Case(lambda e, o: _config(e, o, "list"), "must be a mapping of option: value"),
    "config: bad YAML": Case(lambda e, o: _config(e, o, "yaml"), "cannot read config"),
    "config: file missing": Case(lambda e, o: _config(e, o, "absent"), "cannot read config"),
    # ---- run directory
    "output dir is a file": Case(lambda e, o: _train(e, o), "File exists", setup=_file_at_output),
    "output dir holds another run": Case(lambda e, o: _train(e, o), "already holds an unfinished run", setup=_existing_run(None)),
    "resume: nothing to resume": Case(lambda e, o: _train(e, o, "--resume"), "nothing to resume"),
    "resume: other options": Case(lambda e, o: _train(e, o, "--resume"), "options differ from the saved run", setup=_existing_run({"seed": 1})),
    # ---- encoder
    "model: missing folder": Case(lambda e, o: _train(e, o, "--model", str(o / "no-model")), "no such folder"),
    "model: relative missing folder": Case(lambda e, o: _train(e, o, "--model", "./no/such/encoder"), "no such folder"),
    "model: a file": Case(lambda e, o: _train(e, o, "--model", str(e / "train.csv")), "is a file"),
    "model: offline hub name": Case(lambda e, o: _train(e, o, "--model", "nobody/no-such-encoder"), "is not a local folder, and the Hugging Face Hub is unreachable"),
    "max_length above the encoder": Case(lambda e, o: _train(e, o, "--max-length", "100000"), "above the encoder's limit of 512 tokens"),
    "top-k above the encoder's layers": Case(lambda e, o: _train(e, o, "--mode", "top5"), "top5"),
    # ---- saved models: eval / predict / circuit
    "eval: not a model": Case(lambda e, o: _eval(e, o, "bad"), "is not a saved qubert model"),
    "eval: truncated weights": Case(lambda e, o: _eval(e, o, "truncated"), "not a loadable qubert model"),
    "eval: head shape changed": Case(lambda e, o: _eval(e, o, "shape"), "not a loadable qubert model"),
    "eval: tensor missing": Case(lambda e, o: _eval(e, o, "missing"), "lacks 1 tensor(s) the config needs, e.g. head.q_weights"),
    "eval: pickled weights": Case(lambda e, o: _eval(e, o, "pickled"), "qubert does not load pickle files"),
    "eval: pickled trainer state": Case(lambda e, o: _eval(e, o, "booby"), "qubert does not load pickle files"),
    "eval: nothing to score": Case(lambda e, o: ["eval", str(e / "model"), "--no-progress"], "nothing to evaluate on"),
    "eval: unknown label": Case(lambda e, o: _eval(e, o, "model", "--test-file", str(e / "bad" / "unseen.csv")), "label 'meh' is not one of the model's classes"),
    "eval: shots 0": Case(lambda e, o: _eval(e, o, "model", "--shots", "0"), "shots must be a positive integer"),
    "eval: output folder missing": Case(lambda e, o: _eval(e, o, "model", "--output", str(o / "no" / "m.json")), "output folder"),
    "predict: truncated weights": Case(lambda e, o: _predict(e, o, "truncated"), "not a loadable qubert model", stdin="good film\n"),
    "predict: pickled weights": Case(lambda e, o: _predict(e, o, "pickled"), "arbitrary code", stdin="good film\n"),
    "predict: empty input": Case(lambda e, o: _predict(e, o, "model"), "no texts to predict", stdin=""),
    "predict: input missing": Case(lambda e, o: _predict(e, o, "model", "--input", str(o / "none.txt")), "not found"),
    "predict: unknown format": Case(lambda e, o: _predict(e, o, "model", "--format", "xml"), "unknown --format 'xml'", stdin="good\n"),
    "predict: no text column": Case(lambda e, o: _predict(e, o, "model", "--input", str(e / "bad" / "sentence.csv")), "no text column 'text'"),
    "circuit: truncated weights": Case(lambda e, o: ["circuit", "draw", str(e / "truncated")], "not a loadable qubert model"),
    "circuit: head shape changed": Case(lambda e, o: ["circuit", "draw", str(e / "shape")], "not a loadable qubert model"),
    "circuit: pickled trainer state": Case(lambda e, o: ["circuit", "draw", str(e / "booby")], "qubert does not load pickle files"),
    # ---- bench
    "bench: output dir is a file": Case(lambda e, o: ["bench", "--config", str(Path(__file__).parents[1] / "configs" / "quick.yaml"), "--output-dir", str(e / "bad" / "afile"), "--dry-run"], "is a file, not a folder"),
}


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*")}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_leaves_nothing(name, env, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the offline-Hub row must not depend on the network
    case = CASES[name]
    if case.setup is not None:
        case.setup(env, tmp_path)
    before = _snapshot(tmp_path)
    result = runner.invoke(app, case.argv(env, tmp_path), input=case.stdin)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert case.fragment in " ".join(result.stderr.split()), result.stderr
    assert result.stdout == "", result.stdout
    assert _snapshot(tmp_path) == before, "files were left behind"
    assert "unpickled!" not in result.output


def test_disk_full_while_caching_is_one_line_and_leaves_no_run(env, tmp_path, monkeypatch):
    import safetensors.torch

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    result = runner.invoke(app, _train(env, tmp_path))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"Error: no space left on device while writing {tmp_path / 'cache' / 'embeddings'}; "
        "free space or choose another --output-dir/--cache-dir"
    ]
    assert not (tmp_path / "run").exists()
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_disk_full_while_writing_predictions_is_one_line(env, tmp_path, monkeypatch):
    import io
    import os

    import qubert.files

    class Full(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd, *args, **kwargs):
        os.close(fd)
        return Full()

    monkeypatch.setattr(qubert.files.os, "fdopen", fdopen)
    result = runner.invoke(app, _predict(env, tmp_path, "model"), input="good film\n")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"Error: no space left on device while writing {tmp_path / 'predictions.csv'}; "
        "free space or choose another output or --cache-dir"
    )
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_saving_the_model_keeps_checkpoints_only(env, tmp_path, monkeypatch):
    import transformers.modeling_utils

    real = transformers.modeling_utils.safe_save_file
    calls = []

    def full_on_final_save(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 1:  # the epoch checkpoint is saved; the final model/ is not
            return real(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full_on_final_save)
    result = runner.invoke(app, _train(env, tmp_path, "--early-stopping-patience", "1"))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left on device while writing" in lines[0] and "--resume" in lines[0], result.stderr
    run = tmp_path / "run"
    assert not (run / "model").exists() and not (run / "metrics.json").exists()
    assert [p for p in run.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")] == []
    assert any((c / "trainer_state.json").is_file() for c in (run / "checkpoints").iterdir())


def test_resume_refuses_a_booby_trapped_checkpoint_and_takes_a_real_one(env, tmp_path):
    args = _train(env, tmp_path, "--early-stopping-patience", "1")
    assert runner.invoke(app, args).exit_code == 0
    run = tmp_path / "run"
    (run / "metrics.json").unlink()  # unfinished: --resume continues from the last checkpoint
    result = runner.invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output  # the Trainer's own pickles (numpy RNG state) pass the check
    (run / "metrics.json").unlink()
    (checkpoint,) = (run / "checkpoints").glob("checkpoint-*")
    (checkpoint / "rng_state.pth").write_bytes(pickle.dumps(_Evil()))
    result = runner.invoke(app, [*args, "--resume"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot resume from {checkpoint}: rng_state.pth holds pickled objects other than tensors, and qubert "
        "does not unpickle those (unpickling can run arbitrary code); delete the checkpoint or use another --output-dir"
    ]
    assert "unpickled!" not in result.output and not (run / "metrics.json").exists()


def test_model_name_is_refused_fast_when_the_hub_does_not_answer(env, tmp_path, monkeypatch):
    import qubert.data.hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    probes = []
    monkeypatch.setattr(qubert.data.hub, "hub_reachable", lambda timeout=3.0: probes.append(timeout) or False)
    result = runner.invoke(app, _train(env, tmp_path, "--model", "nobody/no-such-encoder"))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == "Error: nobody/no-such-encoder is not a local folder, and the Hugging Face Hub is unreachable (offline)"
    assert probes and max(probes) <= 1.5  # one short probe, not the Hub client's retries


def test_version_and_readme_import():
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"qubert {version('qubert')}"
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "from qubert.training import TrainingConfig, run_training" in readme


# ---- legal but surely a mistake: accepted with a warning, or read the way it was meant


def test_scalar_hidden_sizes_and_an_oversized_batch_are_accepted(env, tmp_path):
    import yaml

    config = tmp_path / "mlp.yaml"
    config.write_text("head: mlp\nhidden_sizes: 16\n")
    result = runner.invoke(app, [*_train(env, tmp_path, "--batch-size", "1000"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "batch_size 1000 is more than the 40 training rows; every epoch is one batch of 40" in " ".join(result.stderr.split())
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["hidden_sizes"] == [16] and saved["batch_size"] == 1000  # kept as given: the config stays reusable


def test_training_config_reads_a_scalar_hidden_sizes_as_one_layer():
    from qubert.training import TrainingConfig

    assert TrainingConfig(dataset="x", head="mlp", hidden_sizes=32).hidden_sizes == [32]


def test_position_limit_leaves_out_the_roberta_padding_offset():
    from transformers import BertConfig, RobertaConfig

    from qubert.training.checks import position_limit as _position_limit

    assert _position_limit(BertConfig(max_position_embeddings=512)) == 512
    assert _position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
