"""The run directory: one process at a time (a lock beside it), checks before it is reused or
resumed, and every file a run writes, each atomically (:mod:`qubert.files`)::

    <output_dir>/
      config.yaml             resolved TrainingConfig
      checkpoints/            Trainer checkpoints (resume from here; head only when the encoder is frozen)
      model/                  the best model + tokenizer (save_pretrained; loads in transformers.pipeline)
      history.json            per-epoch train loss and validation metrics
      training_curve.png      the same, plotted
      predictions.csv         test texts, labels, predictions, class probabilities
      confusion_matrix.json   test confusion matrix (rows: true labels, columns: predictions)
      versions.json           qubert / torch / transformers versions, encoder identity, git commit
      tensorboard/            with report_to="tensorboard": event files (qubert.tracking)
      metrics.json            flat metrics; written last: its presence marks a finished run

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> complete_checkpoints(Path(tempfile.mkdtemp()) / "checkpoints")
    []
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from qubert.files import atomic_path, replace_dir, write_json
from qubert.training.config import NON_IDENTITY_FIELDS, TrainingConfig
from qubert.training.errors import RunDirectoryError
from qubert.training.metrics import confusion_matrix


def run_identity(config_dict: dict[str, Any]) -> dict[str, Any]:
    """The options that make a run what it is (those a resumed run must share)."""
    return {k: v for k, v in config_dict.items() if k not in NON_IDENTITY_FIELDS}


def complete_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Checkpoints whose trainer state was written (the Trainer writes it last), oldest first."""
    if not checkpoint_dir.is_dir():
        return []
    found = []
    for path in checkpoint_dir.glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if step.isdigit() and (path / "trainer_state.json").is_file():
            found.append((int(step), path))
    return [p for _, p in sorted(found)]


def prepare_run_dir(run_dir: Path, resolved: dict[str, Any], config: TrainingConfig) -> Path | None:
    """Check the run directory against the request; return the checkpoint to resume from."""
    config_file = run_dir / "config.yaml"
    has_content = run_dir.is_dir() and any(run_dir.iterdir())
    if has_content and config.overwrite_output_dir and not config.resume:
        shutil.rmtree(run_dir)
        has_content = False
    if not has_content:
        if config.resume:
            raise RunDirectoryError(f"nothing to resume: run directory {run_dir} is empty or missing")
        return None
    if not config.resume:
        state = "a finished run" if (run_dir / "metrics.json").is_file() else "an unfinished run"
        raise RunDirectoryError(
            f"run directory {run_dir} already holds {state}; pass --resume to continue it, "
            "--overwrite-output-dir to replace it, or another --output-dir"
        )
    if not config_file.is_file():
        raise RunDirectoryError(f"cannot resume: {run_dir} has no config.yaml (not a qubert run directory)")
    import yaml

    saved = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    differing = sorted(k for k, v in run_identity(resolved).items() if k != "output_dir" and saved.get(k) != v)
    if differing:
        raise RunDirectoryError(
            f"cannot resume {run_dir}: options differ from the saved run ({', '.join(differing)}); "
            "use the same options or another --output-dir"
        )
    checkpoints = complete_checkpoints(run_dir / "checkpoints")
    return checkpoints[-1] if checkpoints else None


def say(message: str) -> None:
    """Print ``message`` (rich markup) on stderr."""
    from rich.console import Console

    Console(stderr=True, highlight=False).print(message)


def read_metrics(run_dir: Path) -> dict[str, float]:
    """The finished run's ``metrics.json``."""
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


class RunMetrics(dict):
    """The flat metrics of a run (a ``dict``, as in ``metrics.json``) and where the run lives (``run_dir``)."""

    def __init__(self, metrics: dict[str, Any], *, run_dir: Path) -> None:
        super().__init__(metrics)
        self.run_dir = run_dir


@contextlib.contextmanager
def lock_run_dir(run_dir: Path) -> Iterator[None]:
    """One process per run directory: a second one fails at once, naming the first one's pid.

    The lock file ``.<name>.lock`` lies beside the run directory (inside, it would be deleted by
    ``overwrite_output_dir``) and is removed on release; the kernel frees it if the holder dies.
    """
    from qubert.files import LockHeld, exclusive_lock

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_lock(run_dir.parent / f".{run_dir.name}.lock", blocking=False):
            yield
    except LockHeld as held:
        raise RunDirectoryError(f"run directory {run_dir} is in use by another qubert process (pid {held.pid})") from None


def remove_stale_temporaries(run_dir: Path) -> None:
    """Remove what an interrupted save left (``.<name>.*.tmp`` files and folders, ``.model.old``).

    Only called with the run directory locked, so no other process is writing these.
    """
    if not run_dir.is_dir():
        return
    for path in [*run_dir.glob(".*.tmp"), run_dir / ".model.old"]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)
KILL_AT_ENV = "QUBERT_TEST_KILL_AT"


def kill_point_for_tests(stage: str) -> None:
    """Tests only: SIGKILL this process at ``stage`` when ``$QUBERT_TEST_KILL_AT`` names it."""
    if os.environ.get(KILL_AT_ENV) == stage:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def written_path(err: BaseException, run_dir: Path) -> Path | str:
    """What was being written when the disk filled up: the error's file (the caches name their
    folder), else the run directory."""
    return getattr(err, "filename", None) or run_dir


def write_versions(run_dir: Path, config: TrainingConfig, model) -> str:
    """Write ``versions.json`` (see :mod:`qubert.provenance`); return the encoder's identity.

    A resumed run keeps its first record and adds this invocation's under ``resumed``.
    """
    from qubert.modeling import encoder_identity, resolve_model_path
    from qubert.provenance import run_versions

    encoder_id = encoder_identity(model.encoder)
    record = run_versions(model=config.model, path=resolve_model_path(config.model), identity=encoder_id)
    path = run_dir / "versions.json"
    try:
        earlier = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except ValueError:
        earlier = None  # unreadable: this record replaces it
    if isinstance(earlier, dict) and config.resume:
        record = {**earlier, "resumed": [*earlier.get("resumed", []), record]}
    write_json(path, record)
    return encoder_id


def discard_incomplete_checkpoints(checkpoint_dir: Path) -> None:
    """Remove checkpoint folders an interruption left half-written (no trainer_state.json)."""
    if not checkpoint_dir.is_dir():
        return
    for path in checkpoint_dir.glob("checkpoint-*"):
        if path.is_dir() and not (path / "trainer_state.json").is_file():
            shutil.rmtree(path, ignore_errors=True)


def write_predictions(path: Path, texts: Sequence[str], labels: Sequence[int], predicted: Sequence[int], probabilities, label_names: Sequence[str]) -> None:
    """Write ``predictions.csv``: text, label, predicted label and one probability column per class."""
    import pandas as pd

    frame = pd.DataFrame({"text": list(texts), "label": [label_names[i] for i in labels], "predicted": [label_names[i] for i in predicted]})
    for k, name in enumerate(label_names):
        frame[f"prob_{name}"] = probabilities[:, k]
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def plot_history(history: list[dict[str, float]], path: Path, title: str) -> None:
    """Plot the loss and validation macro-F1 per epoch to ``path`` (PNG), the best epoch marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    for key, label in (("train_loss", "train loss"), ("eval_loss", "validation loss")):
        points = [(r["epoch"], r[key]) for r in history if key in r]
        if points:
            ax_loss.plot(*zip(*points), marker="o", label=label)
    ax_loss.set_ylabel("cross-entropy loss")
    points = [(r["epoch"], r["eval_macro_f1"]) for r in history if "eval_macro_f1" in r]
    if points:
        ax_f1.plot(*zip(*points), marker="o", color="tab:green", label="validation macro-F1")
        best = max(points, key=lambda p: p[1])
        ax_f1.axvline(best[0], color="grey", linestyle=":", label=f"best (epoch {best[0]:g})")
    ax_f1.set_ylabel("validation macro-F1")
    for ax in (ax_loss, ax_f1):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=10)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # below the plot, never over the data
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, fontsize=10, frameon=False)
    fig.suptitle(title, fontsize=12)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def resolved_options(config: TrainingConfig, *, identity: bool = False) -> dict[str, Any]:
    """The config with its defaults resolved (batch size, epochs, learning rate, precision), as
    ``config.yaml`` stores it; ``identity=True``: the options a tracker records (no precision, no
    per-invocation options)."""
    resolved = {**config.to_dict(), "batch_size": config.resolved_batch_size, "num_epochs": config.resolved_num_epochs, "learning_rate": config.resolved_learning_rate}
    if identity:
        return run_identity(resolved)
    return {**resolved, "precision": config.resolved_precision}


@dataclass
class TrainResult:
    """What training produced: the flat ``metrics``, the per-epoch ``history``, the best ``model``
    and its test class ``probabilities`` (N, n_classes)."""

    metrics: dict[str, Any]
    history: list[dict[str, float]]
    model: Any
    probabilities: Any


def write_outputs(run_dir: Path, config: TrainingConfig, bundle: Any, result: TrainResult, tokenizer: Any) -> None:
    """Write predictions, confusion matrix, history and its plot, the best model, and
    ``metrics.json`` last (its presence marks a finished run)."""
    from qubert.modeling import quiet_transformers

    predicted = result.probabilities.argmax(-1).tolist()
    test = bundle.test
    write_predictions(run_dir / "predictions.csv", test.texts, test.labels, predicted, result.probabilities, bundle.label_names)
    write_json(run_dir / "confusion_matrix.json", {"labels": bundle.label_names, "matrix": confusion_matrix(test.labels, predicted, bundle.n_classes)})
    write_json(run_dir / "history.json", result.history)
    plot_history(result.history, run_dir / "training_curve.png", title=f"{bundle.name}: {config.head} head, {config.mode}")
    tokenizer.model_max_length = config.max_length

    def save_model(folder: Path) -> None:
        result.model.save_pretrained(folder)
        kill_point_for_tests("save_model")
        tokenizer.save_pretrained(folder)

    with quiet_transformers():
        replace_dir(save_model, run_dir / "model")
    write_json(run_dir / "metrics.json", result.metrics)
