"""Training and evaluation on the Hugging Face ``Trainer``: config, metrics, run directory, resume.

:func:`run_training` loads the data, builds a :class:`~qubert.modeling.QubertForSequenceClassification`,
trains it with early stopping on validation macro-F1 (the best checkpoint is kept), evaluates it on
the test split and writes one run directory::

    <output_dir>/
      config.yaml             resolved TrainingConfig
      checkpoints/            Trainer checkpoints (resume from here; head only when the encoder is frozen)
      model/                  the best model + tokenizer (save_pretrained; loads in transformers.pipeline)
      history.json            per-epoch train loss and validation metrics
      training_curve.png      the same, plotted
      predictions.csv         test texts, labels, predictions, class probabilities
      confusion_matrix.json   test confusion matrix (rows: true labels, columns: predictions)
      versions.json           qubert / torch / transformers versions, encoder identity, git commit (qubert.provenance)
      tensorboard/            with report_to="tensorboard": event files (qubert.tracking)
      metrics.json            flat metrics (test_macro_f1, eval_macro_f1, train_runtime, ...); written last

Every file is written atomically (temporary file, then ``os.replace``), and ``metrics.json`` is
written last: a run directory with ``metrics.json`` is complete, one without it was interrupted and
``resume=True`` continues it from its last complete checkpoint.

In ``frozen`` mode the encoder never runs during training: pooled features come from the
:mod:`qubert.embeddings` cache and the model is called with ``features=``.

Example:
    >>> from qubert.training import TrainingConfig, run_training
    >>> metrics = run_training(TrainingConfig(dataset="sms_spam", head="quantum", qubits=8,
    ...                                       max_train_samples=1000))  # doctest: +SKIP
    >>> metrics["test_macro_f1"]  # doctest: +SKIP
    0.93
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import pickle
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from qubert.files import apply_umask

__all__ = [
    "DiskFullError",
    "RunDirectoryError",
    "RunMetrics",
    "TrainingInterrupted",
    "TrainingConfig",
    "TrainingConfigError",
    "classification_metrics",
    "confusion_matrix",
    "evaluate_model",
    "head_config_from",
    "load_model",
    "predict_texts",
    "run_training",
]

HEADS = ("linear", "mlp", "quantum")
MAX_LEARNING_RATE = 10.0  # above this no optimizer converges: the value is a typo, not a choice
MAX_LAYERS = 1000  # circuit depth cap: far beyond trainable (barren plateaus), and memory grows with it
_NON_IDENTITY_FIELDS = ("resume", "progress", "overwrite_output_dir", "report_to")  # may differ when resuming a run


class TrainingConfigError(ValueError):
    """An invalid training option (one-line message)."""


class RunDirectoryError(ValueError):
    """The run directory cannot be used as asked (exists, unfinished, resumed with other options)."""


class DiskFullError(OSError):
    """The disk filled up while writing ``path``; the partial files were removed."""

    def __init__(self, path: str | os.PathLike[str], kept: Path | None = None) -> None:
        resume = f" (the completed checkpoints are kept in {kept}: then add --resume)" if kept else ""
        super().__init__(errno.ENOSPC, f"no space left on device while writing {path}; free space or choose another --output-dir/--cache-dir{resume}")

    def __str__(self) -> str:
        return str(self.strerror)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_training`; ``run_dir`` holds complete checkpoints only."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(f"training interrupted; resume the run in {run_dir} with resume=True (--resume)")
        self.run_dir = run_dir


def _help(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


@dataclass
class TrainingConfig:
    """Everything one training run depends on; field names are the CLI's option names.

    Example:
        >>> TrainingConfig(dataset="sst2", head="mlp").resolved_batch_size
        64
        >>> TrainingConfig(dataset="sst2", mode="full").resolved_num_epochs
        3.0
    """

    # ---- data
    dataset: str | None = _help("Data set: registry name (sms_spam, sst2, imdb, ...), file, folder or Hub id.", default=None)
    data_dir: str | None = _help("Folder with the benchmark data (default $QUBERT_DATA_DIR, then shared/data).", default=None)
    train_file: str | None = _help("Training file (.csv/.tsv/.jsonl, optionally .gz).", default=None)
    validation_file: str | None = _help("Validation file (default: carved from train).", default=None)
    test_file: str | None = _help("Test file.", default=None)
    text_column: str = _help("Column holding the text.", default="text")
    label_column: str = _help("Column holding the label.", default="label")
    max_train_samples: int | None = _help("Use a stratified subset of this many training rows (quick runs); a validation split carved from train shrinks in proportion unless --max-eval-samples is given.", default=None)
    max_eval_samples: int | None = _help("Use stratified subsets of this many validation and test rows.", default=None)
    drop_empty: bool = _help("Drop empty texts instead of failing.", default=False)
    # ---- model
    model: str = _help("Encoder: Hugging Face hub name or local path; 'default' is the bundled all-MiniLM-L6-v2.", default="default")
    pooling: str = _help("Sentence vector: mean (attention-mask weighted), cls or pooler (BERT's pooler output).", default="mean")
    max_length: int = _help("Maximum tokens per text (longer texts are truncated).", default=128)
    mode: str = _help("Encoder training: frozen (cached features), full, or top<k> (last k layers, e.g. top2).", default="frozen")
    precision: str = _help("Encoder precision: auto (bf16 where the CPU/GPU runs it natively, else fp32), fp32, bf16 or fp16 (GPU). The head always computes in fp32.", default="auto")
    cache_bottom: bool = _help("top<k>: compute the fixed bottom layers once per split and train the top k layers on the cached outputs.", default=True)
    group_by_length: bool = _help("full / top<k>: batch texts of similar length together (less padding).", default=True)
    head: str = _help("Classification head: linear, mlp or quantum.", default="quantum")
    # ---- quantum head
    qubits: int = _help("Quantum head: number of qubits.", default=8)
    layers: int = _help(f"Quantum head: number of variational layers (circuit depth, at most {MAX_LAYERS}).", default=2)
    encoding: str = _help("Quantum head: angle encoding (h_ry, ry, rx, rz, h_rz).", default="h_ry")
    ansatz: str = _help("Quantum head: ansatz (brickwork, basic_entangler, strongly_entangling).", default="brickwork")
    entanglement: str = _help("Quantum head: entanglement (default, none, linear, ring, all, ranged).", default="default")
    rotation: str = _help("Quantum head: trainable rotation (rx, ry, rz).", default="ry")
    measurement: str = _help("Quantum head: measurement (z, zz, probs).", default="z")
    init: str = _help("Quantum head: weight initialisation (normal, uniform, identity).", default="normal")
    reupload: bool = _help("Quantum head: re-upload the encoding before every layer.", default=False)
    scaling: str = _help("Quantum head: features to angles (tanh_pi_2, tanh_pi, pi, none).", default="tanh_pi_2")
    freeze_circuit: bool = _help("Quantum head: keep the circuit weights fixed (ablation).", default=False)
    strategy: str = _help("Quantum head: simulator strategy (auto, analytic, adjoint, fused, gates).", default="auto")
    # ---- classical heads
    hidden_sizes: list[int] = _help("MLP head: hidden layer widths (a single int means one layer).", default_factory=lambda: [256])
    dropout: float = _help("Linear/MLP head: dropout.", default=0.0)
    # ---- optimisation
    learning_rate: float | None = _help(f"Learning rate of the head (default 1e-2 frozen, 1e-3 otherwise; at most {MAX_LEARNING_RATE:g}).", default=None)
    encoder_learning_rate: float = _help(f"Learning rate of the trainable encoder layers (full / top<k> modes; at most {MAX_LEARNING_RATE:g}).", default=2e-5)
    num_epochs: float | None = _help("Epoch cap (default 100 frozen, where early stopping ends training; 3 otherwise).", default=None)
    batch_size: int | None = _help("Training batch size (default 64 frozen, 16 otherwise; more than the training rows warns: each epoch is then one batch).", default=None)
    weight_decay: float = _help("AdamW weight decay (not on biases, norms or circuit angles).", default=0.0)
    lr_scheduler_type: str = _help("Learning-rate schedule (transformers names: linear, constant, cosine, ...).", default="linear")
    early_stopping_patience: int | None = _help("Stop after this many epochs without a better validation macro-F1 (None: never).", default=5)
    max_steps: int = _help("Stop after this many optimizer steps (-1: run all epochs).", default=-1)
    # ---- run
    seed: int = _help("Random seed (data subsets, initialisation, shuffling).", default=42)
    data_seed: int | None = _help("Seed of the stratified data subsets only (default: seed); fix it to vary only initialisation and batch order across seeds.", default=None)
    output_dir: str | None = _help("Run directory (default runs/<dataset>-<head>-<mode>-s<seed>).", default=None)
    overwrite_output_dir: bool = _help("Replace an existing run directory.", default=False)
    cache_dir: str | None = _help("Embedding cache (default $QUBERT_CACHE_DIR or ~/.cache/qubert).", default=None)
    resume: bool = _help("Continue an interrupted run from its last checkpoint (a finished run is returned as is).", default=False)
    progress: bool = _help("Show progress bars.", default=True)
    report_to: str = _help("Experiment tracker for the run's config, per-epoch and final metrics: none, tensorboard (event files in <run>/tensorboard), mlflow (local store unless MLFLOW_TRACKING_URI) or wandb (offline unless WANDB_MODE / WANDB_API_KEY).", default="none")

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise :class:`TrainingConfigError` on the first invalid option."""
        from qubert.modeling import POOLINGS, ModelConfigError, parse_mode

        def fail(message: str) -> None:
            raise TrainingConfigError(message)

        if self.dataset is None and self.train_file is None:
            fail("no data given: set dataset (--dataset) or train_file (--train-file)")
        if self.head not in HEADS:
            fail(f"unknown head {self.head!r}; expected one of {', '.join(HEADS)}")
        if self.pooling not in POOLINGS:
            fail(f"unknown pooling {self.pooling!r}; expected one of {', '.join(POOLINGS)}")
        try:
            parse_mode(self.mode)
        except ModelConfigError as err:
            raise TrainingConfigError(str(err)) from None
        from qubert.precision import PRECISIONS

        if self.precision not in PRECISIONS:
            fail(f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        if _is_int(self.hidden_sizes):
            self.hidden_sizes = [self.hidden_sizes]  # `hidden_sizes: 32` in YAML: one hidden layer
        for name in ("max_length", "qubits"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                fail(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not _is_int(self.layers) or self.layers < 0:
            fail(f"layers must be a non-negative integer, got {self.layers!r}")
        if self.layers > MAX_LAYERS:
            fail(f"layers must be at most {MAX_LAYERS}, got {self.layers}")
        for name in ("max_train_samples", "max_eval_samples", "batch_size", "early_stopping_patience"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                fail(f"{name} must be a positive integer, got {value!r}")
        if not _is_int(self.max_steps) or (self.max_steps < 1 and self.max_steps != -1):
            fail(f"max_steps must be a positive integer or -1, got {self.max_steps!r}")
        for name in ("learning_rate", "encoder_learning_rate"):
            value = getattr(self, name)
            if value is None and name == "learning_rate":
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or not math.isfinite(value):
                fail(f"{name} must be a positive number, got {value!r}")
            if value > MAX_LEARNING_RATE:
                fail(f"{name} {value:g} is surely a mistake (at most {MAX_LEARNING_RATE:g}; typical values are 1e-5 to 1e-1)")
        if self.num_epochs is not None and (not isinstance(self.num_epochs, (int, float)) or not self.num_epochs > 0):
            fail(f"num_epochs must be a positive number, got {self.num_epochs!r}")
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            fail(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            fail(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.hidden_sizes, (list, tuple)) or not self.hidden_sizes or any(not _is_int(h) or h < 1 for h in self.hidden_sizes):
            fail(f"hidden_sizes must be a non-empty list of positive integers, got {self.hidden_sizes!r}")
        if not _is_int(self.seed):
            fail(f"seed must be an integer, got {self.seed!r}")
        if self.data_seed is not None and not _is_int(self.data_seed):
            fail(f"data_seed must be an integer, got {self.data_seed!r}")
        from qubert.tracking import REPORT_TO

        if self.report_to not in REPORT_TO:
            fail(f"unknown report_to {self.report_to!r}; expected one of {', '.join(REPORT_TO)}")
        if self.head == "quantum":
            try:
                self.circuit()
            except ValueError as err:
                raise TrainingConfigError(f"quantum head: {err}") from None
            from qubert.heads import SCALINGS
            from qubert.quantum import check_strategy

            if self.scaling not in SCALINGS:
                fail(f"unknown scaling {self.scaling!r}; expected one of {', '.join(SCALINGS)}")
            try:
                check_strategy(self.circuit(), self.strategy)
            except ValueError as err:
                fail(str(err))
        from transformers import SchedulerType

        if self.lr_scheduler_type not in {s.value for s in SchedulerType}:
            fail(f"unknown lr_scheduler_type {self.lr_scheduler_type!r}; e.g. linear, constant, cosine")

    # ------------------------------------------------------------------ derived values
    @property
    def frozen(self) -> bool:
        return self.mode == "frozen"

    @property
    def resolved_batch_size(self) -> int:
        return self.batch_size or (64 if self.frozen else 16)

    @property
    def resolved_eval_batch_size(self) -> int:
        """Evaluation batch: at least 256 rows over cached features, twice the training batch otherwise."""
        batch = self.resolved_batch_size
        return max(batch, 256 if self.frozen else 2 * batch)

    @property
    def resolved_learning_rate(self) -> float:
        return float(self.learning_rate if self.learning_rate is not None else (1e-2 if self.frozen else 1e-3))

    @property
    def resolved_precision(self) -> str:
        """``fp32``, ``bf16`` or ``fp16`` on this machine (raises PrecisionError when unsupported)."""
        from qubert.precision import resolve_precision

        return resolve_precision(self.precision)

    @property
    def resolved_num_epochs(self) -> float:
        # Frozen: epochs over cached features cost little, so the cap is high and early stopping
        # (validation macro-F1, patience 5) decides; a small cap cut slow heads off mid-descent.
        return float(self.num_epochs if self.num_epochs is not None else (100 if self.frozen else 3))

    def circuit(self):
        """The quantum head's :class:`~qubert.quantum.Circuit` description."""
        from qubert.quantum import Circuit

        return Circuit(
            n_qubits=self.qubits, n_layers=self.layers, encoding=self.encoding, reupload=self.reupload,
            ansatz=self.ansatz, entanglement=self.entanglement, rotation=self.rotation,
            measurement=self.measurement, init=self.init,
        )

    def run_name(self, dataset_name: str | None = None) -> str:
        name = dataset_name or Path(str(self.dataset or self.train_file)).name.split(".")[0]
        return f"{name}-{self.head}-{self.mode}-s{self.seed}"

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingConfig":
        """A config from a dict (e.g. a YAML file); unknown keys are an error.

        Example:
            >>> TrainingConfig.from_dict({"dataset": "sst2", "qubit": 4})
            Traceback (most recent call last):
            ...
            qubert.training.TrainingConfigError: unknown training option 'qubit' (did you mean 'qubits'?)
        """
        import difflib

        for key in data:
            if key not in cls.field_names():
                close = difflib.get_close_matches(str(key), cls.field_names(), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise TrainingConfigError(f"unknown training option {key!r}{hint}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], **overrides: Any) -> "TrainingConfig":
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise TrainingConfigError(f"cannot read config {path}: {' '.join(str(err).split())}") from None
        if not isinstance(data, dict):
            raise TrainingConfigError(f"config {path} must be a mapping of option: value")
        return cls.from_dict({**{k.replace("-", "_"): v for k, v in data.items()}, **overrides})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def head_config_from(config: TrainingConfig) -> dict[str, Any]:
    """The head's config dict for :func:`qubert.heads.build_head` (without in_features/n_classes).

    Example:
        >>> head_config_from(TrainingConfig(dataset="x", head="mlp", hidden_sizes=[32]))
        {'type': 'mlp', 'hidden_sizes': [32], 'dropout': 0.0}
    """
    if config.head == "linear":
        return {"type": "linear", "dropout": config.dropout}
    if config.head == "mlp":
        return {"type": "mlp", "hidden_sizes": list(config.hidden_sizes), "dropout": config.dropout}
    return {"type": "quantum", "circuit": config.circuit().to_dict(), "scaling": config.scaling, "strategy": config.strategy, "freeze_circuit": config.freeze_circuit}


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def classification_metrics(labels: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
    """Accuracy, macro-F1 (the headline), weighted F1, macro precision and macro recall.

    Example:
        >>> m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1])
        >>> m["accuracy"], round(m["macro_f1"], 3)
        (0.75, 0.733)
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(labels, predictions, average="weighted", zero_division=0)),
        "precision": float(precision_score(labels, predictions, average="macro", zero_division=0)),
        "recall": float(recall_score(labels, predictions, average="macro", zero_division=0)),
    }


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], n_classes: int) -> list[list[int]]:
    """Counts ``[true][predicted]`` over all ``n_classes`` classes.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 0, 1], 2)
        [[1, 0], [1, 1]]
    """
    from sklearn.metrics import confusion_matrix as sk_confusion

    return sk_confusion(labels, predictions, labels=list(range(n_classes))).tolist()


def _compute_metrics(eval_pred) -> dict[str, float]:
    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    return classification_metrics(eval_pred.label_ids, logits.argmax(-1))


# ---------------------------------------------------------------------------------------------
# Atomic files
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        apply_umask(tmp)  # mkstemp makes 0600; a run's files are as readable as any other file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_text(path: Path, text: str) -> None:
    with _atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_json(path: Path, data: Any) -> None:
    _write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def _replace_dir(build: Callable[[Path], None], target: Path) -> None:
    """Build a directory in a temporary sibling, then swap it in for ``target``."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        apply_umask(tmp, directory=True)
        build(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Datasets for the Trainer
# ---------------------------------------------------------------------------------------------


class _FeatureDataset(torch.utils.data.Dataset):
    """Cached pooled features + labels (frozen mode)."""

    def __init__(self, features: torch.Tensor, labels: Sequence[int]) -> None:
        self.features = features
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"features": self.features[i], "labels": self.labels[i]}


class _TokenDataset(torch.utils.data.Dataset):
    """Tokenised texts + labels (full / top<k> modes); padded per batch by the collator.

    ``lengths`` (tokens per row) feed length-grouped training batches.
    """

    def __init__(self, tokenizer, texts: Sequence[str], labels: Sequence[int], max_length: int) -> None:
        self.encodings = tokenizer(list(texts), truncation=True, max_length=max_length)
        self.keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in self.encodings]
        self.labels = list(labels)
        self.lengths = [len(ids) for ids in self.encodings["input_ids"]]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**{k: self.encodings[k][i] for k in self.keys}, "labels": self.labels[i]}


class _LengthSorted(torch.utils.data.Dataset):
    """An evaluation dataset read longest row first (batches padded to similar lengths);
    :meth:`in_input_order` puts predictions back in the dataset's own order."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset
        self.order = sorted(range(len(dataset)), key=lambda i: dataset.lengths[i], reverse=True)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.dataset[self.order[i]]

    def in_input_order(self, rows: Any) -> Any:
        restored = rows.copy() if hasattr(rows, "copy") else rows.clone()
        restored[self.order] = rows
        return restored


# ---------------------------------------------------------------------------------------------
# Run directory
# ---------------------------------------------------------------------------------------------


def _identity(config_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config_dict.items() if k not in _NON_IDENTITY_FIELDS}


def _complete_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Checkpoints whose trainer state was written (the Trainer writes it last), oldest first."""
    if not checkpoint_dir.is_dir():
        return []
    found = []
    for path in checkpoint_dir.glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if step.isdigit() and (path / "trainer_state.json").is_file():
            found.append((int(step), path))
    return [p for _, p in sorted(found)]


def _prepare_run_dir(run_dir: Path, resolved: dict[str, Any], config: TrainingConfig) -> Path | None:
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
    differing = sorted(k for k, v in _identity(resolved).items() if k != "output_dir" and saved.get(k) != v)
    if differing:
        raise RunDirectoryError(
            f"cannot resume {run_dir}: options differ from the saved run ({', '.join(differing)}); "
            "use the same options or another --output-dir"
        )
    checkpoints = _complete_checkpoints(run_dir / "checkpoints")
    return checkpoints[-1] if checkpoints else None


def _say(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False).print(message)


def _read_metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _make_trainer_class():
    from transformers import Trainer

    class QubertTrainer(Trainer):
        """A Trainer with separate head / encoder learning rates and, for a frozen encoder,
        head-only checkpoints (the encoder never changes, so saving it every epoch is waste)."""

        def __init__(self, *args: Any, encoder_learning_rate: float, head_only_checkpoints: bool = False, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.encoder_learning_rate = encoder_learning_rate
            self.head_only_checkpoints = head_only_checkpoints

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy == "group_by_length" and hasattr(dataset, "lengths"):
                from transformers.trainer_pt_utils import LengthGroupedSampler

                # Our datasets know their lengths; the Trainer would otherwise look for input_ids in every row.
                return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=dataset.lengths)
            return super()._get_train_sampler(train_dataset)

        def _get_eval_sampler(self, eval_dataset):
            # In order: predictions must line up with the rows (the Trainer would shuffle them by length).
            return torch.utils.data.SequentialSampler(eval_dataset)

        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            if self.head_only_checkpoints and state_dict is None:
                model = getattr(self.model, "module", self.model)
                state_dict = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
            super()._save(output_dir, state_dict=state_dict)

        def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
            if self.optimizer is None:
                opt_model = self.model if model is None else model
                opt_model = getattr(opt_model, "module", opt_model)  # DDP / DataParallel wrappers
                optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
                kwargs.pop("params", None)
                kwargs.pop("lr", None)
                groups = opt_model.parameter_groups(self.args.learning_rate, self.encoder_learning_rate, self.args.weight_decay)
                self.optimizer = optimizer_cls(groups, **kwargs)
            return self.optimizer

    return QubertTrainer


def _epoch_reporter():
    """A TrainerCallback: a rich progress bar over the optimizer steps (in a terminal only) and
    one line per epoch (train loss, validation loss and macro-F1, time) on stderr.

    Example line: ``epoch 2/10  train loss 0.4113  eval loss 0.3877  eval macro-F1 0.9120  1.8 s``
    """
    from rich.console import Console
    from transformers import TrainerCallback

    class EpochReporter(TrainerCallback):
        def __init__(self) -> None:
            self.console = Console(stderr=True, highlight=False)
            self.bar = None
            self.training = False
            self.train_loss: float | None = None
            self.epoch_start = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.training = True
            self.epoch_start = time.perf_counter()
            if self.console.is_terminal:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

                self.bar = Progress(
                    TextColumn("[bold]Training"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True,
                )
                self.task = self.bar.add_task("train", total=state.max_steps, completed=state.global_step)
                self.bar.start()

        def on_epoch_begin(self, args, state, control, **kwargs):
            self.epoch_start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(self.task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.train_loss = float(logs["loss"])

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if not self.training:  # the best model's final re-evaluation is not an epoch
                return
            metrics = metrics or {}
            parts = [f"epoch {state.epoch:g}/{args.num_train_epochs:g}" if args.max_steps <= 0 else f"epoch {state.epoch:.2f}"]
            for name, value in (("train loss", self.train_loss), ("eval loss", metrics.get("eval_loss")), ("eval macro-F1", metrics.get("eval_macro_f1"))):
                if value is not None:
                    parts.append(f"{name} {value:.4f}")
            parts.append(f"{time.perf_counter() - self.epoch_start:.1f} s")
            self.console.print("  ".join(parts), markup=False)
            self.train_loss = None

        def on_train_end(self, args, state, control, **kwargs):
            self.close()

        def close(self) -> None:
            self.training = False
            if self.bar is not None:
                self.bar.stop()
                self.bar = None

    return EpochReporter()


def _load_bundle(config: TrainingConfig):
    from qubert.data import load_dataset_bundle

    return load_dataset_bundle(
        config.dataset, data_dir=config.data_dir, train_file=config.train_file, validation_file=config.validation_file,
        test_file=config.test_file, text_column=config.text_column, label_column=config.label_column,
        max_train_samples=config.max_train_samples, max_eval_samples=config.max_eval_samples,
        seed=config.seed if config.data_seed is None else config.data_seed,
        drop_empty=config.drop_empty,
    )


def _quiet_transformers():
    from qubert.modeling import quiet_transformers

    return quiet_transformers()


def run_training(config: TrainingConfig, callbacks: Sequence[Any] = ()) -> dict[str, float]:
    """Train, keep the best epoch by validation macro-F1, evaluate on test and write the run directory.

    Args:
        config: the run's options (see :class:`TrainingConfig`).
        callbacks: extra ``transformers.TrainerCallback`` objects (timers, loggers) for the Trainer.

    Returns:
        Flat metrics (also in ``metrics.json``): ``test_macro_f1``, ``test_accuracy``,
        ``test_weighted_f1``, ``test_precision``, ``test_recall``, ``test_runtime``, the same
        with ``eval_`` for the validation split, ``train_runtime``, ``train_loss``,
        ``encode_runtime`` (frozen and cached top<k> modes: seconds spent producing cached features
        or bottom-layer states), ``trainable_params``
        (the head's), ``encoder_trainable_params``, ``best_epoch`` and split sizes; a
        :class:`RunMetrics` dict whose ``run_dir`` is the run directory.

    Raises:
        TrainingConfigError, RunDirectoryError, qubert.data.DataError, qubert.modeling.ModelConfigError:
            bad input (one-line messages), checked before any data is encoded: e.g. ``max_length``
            above the encoder's positions, a missing model folder, an unreachable Hub, a checkpoint
            holding pickled objects, a ``report_to`` tracker that is not installed.
        DiskFullError: the disk filled up; partial files are removed (and a new run directory
            with no complete checkpoint).
        TrainingInterrupted: Ctrl-C (a ``KeyboardInterrupt``); the run directory then holds
            complete checkpoints only, and ``resume=True`` continues from the last one.
    """
    config.validate()
    from qubert.tracking import check_tracker

    check_tracker(config.report_to)  # a tracker that is not installed: one line, before any work
    if config.head == "quantum":  # refuse a register that cannot fit before loading, encoding or writing anything
        from qubert.heads import check_head_memory

        batch, device = config.resolved_batch_size, "cuda" if torch.cuda.is_available() else "cpu"
        for size in (batch, config.resolved_eval_batch_size):  # the train and the eval batch
            check_head_memory(config.circuit(), size, config.strategy, device=device)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _check_encoder(config)  # a bad --model or --max-length fails before any data is read
    bundle = _load_bundle(config)
    _warn_batch_size(config, len(bundle.train))
    run_dir = Path(config.output_dir or Path("runs") / config.run_name(bundle.name)).expanduser().resolve()
    # config.yaml keeps output_dir as given (None: derived from dataset and seed), so a run's own
    # config.yaml with another --seed makes a new run; resume / overwrite are per-invocation.
    resolved = {**config.to_dict(), "batch_size": config.resolved_batch_size, "num_epochs": config.resolved_num_epochs, "learning_rate": config.resolved_learning_rate, "precision": config.resolved_precision}
    with _lock_run_dir(run_dir):
        _remove_stale_temporaries(run_dir)
        if config.resume and (run_dir / "metrics.json").is_file():
            _prepare_run_dir(run_dir, resolved, config)  # same options? then the finished run is the answer
            return RunMetrics(_read_metrics(run_dir), run_dir=run_dir)
        resume_from = _prepare_run_dir(run_dir, resolved, config)
        if resume_from is not None:
            _check_checkpoint_pickles(resume_from)
        model, tokenizer = _build_model(config, bundle)  # a bad --model fails before anything is written
        fresh = not (run_dir.is_dir() and any(run_dir.iterdir()))
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            import yaml

            saved = {k: v for k, v in resolved.items() if k not in ("resume", "overwrite_output_dir")}
            _write_text(run_dir / "config.yaml", yaml.safe_dump(saved, sort_keys=False))
            encoder_id = _write_versions(run_dir, config, model)
            if config.progress:
                _say(f"{bundle.summary()}\nRun directory: {run_dir}" + (f" (resuming from {resume_from.name})" if resume_from else ""))
            return RunMetrics(_train(config, bundle, run_dir, resume_from, model, tokenizer, callbacks, encoder_id=encoder_id), run_dir=run_dir)
        except TrainingInterrupted:
            raise
        except KeyboardInterrupt:
            raise TrainingInterrupted(run_dir) from None
        except Exception as err:
            if not _is_disk_full(err):
                raise
            path = _written_path(err, run_dir)
            _discard_incomplete_checkpoints(run_dir / "checkpoints")
            kept = bool(_complete_checkpoints(run_dir / "checkpoints"))
            if fresh and not kept:
                shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth resuming: leave no unfinished run behind
            raise DiskFullError(path, kept=run_dir if kept else None) from None


class RunMetrics(dict):
    """The flat metrics of a run (a ``dict``, as in ``metrics.json``) and where the run lives (``run_dir``)."""

    def __init__(self, metrics: dict[str, Any], *, run_dir: Path) -> None:
        super().__init__(metrics)
        self.run_dir = run_dir


@contextlib.contextmanager
def _lock_run_dir(run_dir: Path) -> Iterator[None]:
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


def _remove_stale_temporaries(run_dir: Path) -> None:
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


_KILL_AT_ENV = "QUBERT_TEST_KILL_AT"


def _test_kill_point(stage: str) -> None:
    """Tests only: SIGKILL this process at ``stage`` when ``$QUBERT_TEST_KILL_AT`` names it."""
    if os.environ.get(_KILL_AT_ENV) == stage:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _check_checkpoint_pickles(checkpoint: Path) -> None:
    """Refuse, before any work, a checkpoint whose trainer state is not plain tensors.

    The Trainer reloads optimizer, scheduler and RNG state with ``torch.load(weights_only=True)``
    (plus a few numpy types), which stops at anything else (a crafted pickle could run code) with
    a multi-line traceback. ``training_args.bin`` is never read back, so it is not opened here.
    """
    import warnings

    from transformers.trainer_pt_utils import safe_globals  # the numpy types the Trainer allows in rng_state.pth

    for path in sorted(checkpoint.iterdir()):
        if path.suffix.lower() not in PICKLE_SUFFIXES or path.name == "training_args.bin":
            continue
        try:
            with warnings.catch_warnings(), safe_globals():
                warnings.simplefilter("ignore")  # torch warns about pickle protocols first
                torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise RunDirectoryError(
                f"cannot resume from {checkpoint}: {path.name} holds pickled objects other than tensors, and qubert does "
                "not unpickle those (unpickling can run arbitrary code); delete the checkpoint or use another --output-dir"
            ) from None
        except Exception as err:  # a truncated or corrupted file
            raise RunDirectoryError(f"cannot resume from {checkpoint}: {path.name} is unreadable ({_first_line(err)}); delete the checkpoint") from None


def _first_line(err: BaseException) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def _check_encoder(config: TrainingConfig) -> None:
    """Read the encoder's config (small, local or cached) and check ``max_length`` against it.

    A name that is neither a folder nor reachable is refused at once, instead of after the Hub
    client's retries; a path-like name that does not exist is "no such folder", not a bad repo id.
    """
    from transformers import AutoConfig

    from qubert.modeling import ModelConfigError, resolve_model_path

    name = resolve_model_path(config.model)
    local = Path(name).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelConfigError(f"--model {name}: is a file; pass a model folder or a Hugging Face Hub name")
    elif _looks_like_path(name):
        raise ModelConfigError(f"--model {name}: no such folder")
    elif not _in_hub_cache(name):
        offline = _hub_unreachable_reason()
        if offline is not None:
            raise ModelConfigError(f"{name} is not a local folder, and the Hugging Face Hub is unreachable ({offline})")
    try:
        encoder_config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise ModelConfigError(f"cannot load encoder {config.model!r}: {_first_line(err)}") from None
    limit = _position_limit(encoder_config)
    if limit is not None and config.max_length > limit:
        raise TrainingConfigError(
            f"max_length {config.max_length} is above the encoder's limit of {limit} tokens "
            f"(max_position_embeddings in {name}/config.json); use --max-length {limit} or less"
        )


def _looks_like_path(name: str) -> bool:
    """``./enc``, ``~/m``, ``/abs/m``, ``a/b/c``: a folder, never a Hub id (``org/name``)."""
    seps = {os.sep, os.altsep or os.sep}
    return name.startswith((".", "~", *seps)) or any(sep != "/" and sep in name for sep in seps) or name.count("/") > 1


def _in_hub_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # an invalid repo id: certainly not cached
        return False


def _hub_unreachable_reason() -> str | None:
    """Why the Hub cannot be used now (an offline flag, or no answer within a second), else None."""
    from qubert.data import _hub_reachable

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"offline: {var}={os.environ[var]}"
    return None if _hub_reachable(timeout=1.0) else "offline"


def _position_limit(encoder_config) -> int | None:
    """Tokens the encoder can position: ``max_position_embeddings``, less RoBERTa-style padding offsets."""
    limit = getattr(encoder_config, "max_position_embeddings", None)
    if not _is_int(limit):
        return None
    model_type = str(getattr(encoder_config, "model_type", ""))
    if "roberta" in model_type or model_type in ("camembert", "longformer", "mpnet"):
        limit -= int(getattr(encoder_config, "pad_token_id", 1) or 1) + 1  # positions start after the padding index
    return limit


def _warn_batch_size(config: TrainingConfig, rows: int) -> None:
    """Warn when a ``batch_size`` given is above the training rows (each epoch is then one batch).

    The option is kept as given: the data loader makes the same single batch either way, and the
    run's config.yaml stays reusable (``--config`` of it resumes or seeds new runs).
    """
    if config.batch_size is not None and config.batch_size > rows:
        _say(f"[yellow]Warning: batch_size {config.batch_size} is more than the {rows} training rows; every epoch is one batch of {rows}.[/yellow]")


def _is_disk_full(err: BaseException) -> bool:
    # safetensors reports I/O failures as SafetensorError text, not as an OSError with errno.
    return (isinstance(err, OSError) and err.errno == errno.ENOSPC) or "No space left on device" in str(err)


def _written_path(err: BaseException, run_dir: Path) -> Path | str:
    """What was being written when the disk filled up: the error's file (the caches name their
    folder), else the run directory."""
    return getattr(err, "filename", None) or run_dir


def _build_model(config: TrainingConfig, bundle):
    from transformers import set_seed

    from qubert.modeling import QubertForSequenceClassification, load_tokenizer

    set_seed(config.seed)  # the head's layers draw from torch's global generator
    with _quiet_transformers():
        model = QubertForSequenceClassification.from_encoder(
            config.model, head=head_config_from(config), id2label=bundle.id2label, pooling=config.pooling,
            mode=config.mode, max_length=config.max_length, seed=config.seed, precision=config.resolved_precision,
        )
        tokenizer = load_tokenizer(config.model)
    if config.cache_bottom and model.trainable_layers:
        model._split()  # an encoder family that cannot be split fails here, before anything is written
    return model, tokenizer


def _write_versions(run_dir: Path, config: TrainingConfig, model) -> str:
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
    _write_json(path, record)
    return encoder_id


def _train(config: TrainingConfig, bundle, run_dir: Path, resume_from: Path | None, model, tokenizer, extra_callbacks: Sequence[Any] = (), encoder_id: str | None = None) -> dict[str, float]:
    from transformers import EarlyStoppingCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from qubert.embeddings import EmbeddingCache, cached_features
    from qubert.modeling import encoder_identity

    encode_start = time.perf_counter()
    cached_bottom = bool(config.cache_bottom and model.trainable_layers)
    if config.frozen or cached_bottom:  # features or bottom-layer states are computed ahead, once per split
        model.to("cuda" if torch.cuda.is_available() else "cpu")
        encoder_id = encoder_id or encoder_identity(model.encoder)
    if config.frozen:
        cache = EmbeddingCache(config.cache_dir)
        datasets = {}
        for split in ("train", "validation", "test"):
            data = bundle.split(split)
            feats, _ = cached_features(
                model, tokenizer, data.texts, fingerprint=bundle.fingerprint(split), split=split, cache=cache,
                encoder_id=encoder_id, progress=config.progress,
            )
            datasets[split] = _FeatureDataset(feats, data.labels)
        collator = None
    elif cached_bottom:
        from qubert.layer_cache import HiddenStateDataset, cached_hidden_states, collate_hidden_states

        datasets = {}
        for split in ("train", "validation", "test"):
            data = bundle.split(split)
            states, _ = cached_hidden_states(
                model, tokenizer, data.texts, fingerprint=bundle.fingerprint(split), split=split, cache_dir=config.cache_dir,
                encoder_id=encoder_id, progress=config.progress,
            )
            datasets[split] = HiddenStateDataset(states, data.labels)
        collator = collate_hidden_states
    else:
        from transformers import DataCollatorWithPadding

        datasets = {s: _TokenDataset(tokenizer, bundle.split(s).texts, bundle.split(s).labels, config.max_length) for s in ("train", "validation", "test")}
        collator = DataCollatorWithPadding(tokenizer)
    encode_runtime = time.perf_counter() - encode_start
    if not config.frozen:
        for split in ("validation", "test"):
            datasets[split] = _LengthSorted(datasets[split])

    batch_size = config.resolved_batch_size
    precision = "fp32" if config.frozen else model.config.precision  # a frozen run trains only the head: fp32
    from qubert.tracking import RunTracker

    RunTracker.prepare_environment(config.report_to, run_dir)
    args = TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=config.resolved_eval_batch_size,
        num_train_epochs=config.resolved_num_epochs,
        max_steps=config.max_steps,
        learning_rate=config.resolved_learning_rate,
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.lr_scheduler_type,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        save_total_limit=1,  # with load_best_model_at_end the best checkpoint is kept as well as the last
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        seed=config.seed,
        data_seed=config.seed,
        report_to=config.report_to,
        disable_tqdm=not config.progress,
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        train_sampling_strategy="group_by_length" if config.group_by_length and not config.frozen else "random",
    )
    callbacks = [EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience)] if config.early_stopping_patience else []
    trainer = _make_trainer_class()(
        model=model,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        data_collator=collator,
        processing_class=None if config.frozen else tokenizer,
        compute_metrics=_compute_metrics,
        callbacks=[*callbacks, *extra_callbacks],
        encoder_learning_rate=config.encoder_learning_rate,
        head_only_checkpoints=config.frozen,
    )
    for printer in (PrinterCallback, ProgressCallback):  # raw dicts and tqdm bars; _epoch_reporter instead
        trainer.remove_callback(printer)
    tracker = RunTracker(trainer, config.report_to, run_dir) if config.report_to != "none" else None
    reporter = _epoch_reporter() if config.progress else None
    if reporter is not None:
        trainer.add_callback(reporter)

    _discard_incomplete_checkpoints(run_dir / "checkpoints")
    try:
        with _quiet_transformers():
            train_output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        if reporter is not None:
            reporter.close()  # the bar, also when Ctrl-C ends training
    best_model = trainer.model
    # Before the best model's re-evaluation below, which the Trainer logs at the last epoch.
    history = _history(trainer.state.log_history)
    eval_metrics = trainer.evaluate(datasets["validation"], metric_key_prefix="eval")
    test_output = trainer.predict(datasets["test"], metric_key_prefix="test")

    logits = torch.as_tensor(test_output.predictions[0] if isinstance(test_output.predictions, tuple) else test_output.predictions)
    if isinstance(datasets["test"], _LengthSorted):
        logits = datasets["test"].in_input_order(logits)
    probabilities = torch.softmax(logits.float(), dim=-1).numpy()
    predicted = probabilities.argmax(-1).tolist()

    metrics: dict[str, float] = {}
    metrics.update({k: v for k, v in train_output.metrics.items() if k != "total_flos"})
    metrics["train_loss"] = _run_train_loss(trainer.state.log_history, default=metrics.get("train_loss"))
    metrics.update(eval_metrics)
    metrics.update(test_output.metrics)
    if config.frozen or cached_bottom:  # features or bottom-layer states computed ahead (or read from the cache)
        metrics["encode_runtime"] = round(encode_runtime, 4)
    metrics.update(
        {
            "trainable_params": int(best_model.head.trainable_params),
            "encoder_trainable_params": int(sum(p.numel() for p in best_model.encoder.parameters() if p.requires_grad)),
            "best_epoch": _best_epoch(history),
            "epochs_trained": round(float(trainer.state.epoch or 0.0), 4),
            "stopped_by": _stopped_by(trainer.state, config),
            "train_samples": len(bundle.train),
            "eval_samples": len(bundle.validation),
            "test_samples": len(bundle.test),
        }
    )

    if tracker is not None:
        tracker.finish(_identity({**config.to_dict(), "batch_size": batch_size, "num_epochs": config.resolved_num_epochs, "learning_rate": config.resolved_learning_rate}), metrics)
    _write_predictions(run_dir / "predictions.csv", bundle.test.texts, bundle.test.labels, predicted, probabilities, bundle.label_names)
    _write_json(run_dir / "confusion_matrix.json", {"labels": bundle.label_names, "matrix": confusion_matrix(bundle.test.labels, predicted, bundle.n_classes)})
    _write_json(run_dir / "history.json", history)
    _plot_history(history, run_dir / "training_curve.png", title=f"{bundle.name}: {config.head} head, {config.mode}")
    tokenizer.model_max_length = config.max_length

    def save_model(folder: Path) -> None:
        best_model.save_pretrained(folder)
        _test_kill_point("save_model")
        tokenizer.save_pretrained(folder)

    with _quiet_transformers():
        _replace_dir(save_model, run_dir / "model")
    _write_json(run_dir / "metrics.json", metrics)  # last: its presence marks a finished run
    return metrics


def _discard_incomplete_checkpoints(checkpoint_dir: Path) -> None:
    """Remove checkpoint folders an interruption left half-written (no trainer_state.json)."""
    if not checkpoint_dir.is_dir():
        return
    for path in checkpoint_dir.glob("checkpoint-*"):
        if path.is_dir() and not (path / "trainer_state.json").is_file():
            shutil.rmtree(path, ignore_errors=True)


def _history(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """One row per epoch: train loss and validation metrics from the Trainer's log."""
    rows: dict[float, dict[str, float]] = {}
    for entry in log_history:
        epoch = entry.get("epoch")
        if epoch is None or "train_runtime" in entry:
            continue
        row = rows.setdefault(round(float(epoch), 4), {"epoch": round(float(epoch), 4)})
        if "loss" in entry:
            row["train_loss"] = float(entry["loss"])
        for key, value in entry.items():
            if key.startswith("eval_") and isinstance(value, (int, float)):
                row[key] = float(value)
    return [rows[k] for k in sorted(rows)]


def _run_train_loss(log_history: list[dict[str, Any]], default: float | None) -> float | None:
    """Mean training loss over every step of the run, also those before a resume.

    The Trainer's own ``train_loss`` covers only the steps of the last ``train()`` call; the
    per-epoch ``loss`` entries (restored from the checkpoint on resume) cover them all.
    """
    total, steps, previous = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            n = int(entry["step"]) - previous
            total, steps, previous = total + float(entry["loss"]) * n, steps + n, int(entry["step"])
    return total / steps if steps else default


def _stopped_by(state, config: TrainingConfig) -> str:
    """Why training ended: ``patience`` (early stopping), ``epoch_cap`` or ``max_steps``.

    A run that ends at its cap may have been cut off while still improving (compare
    ``best_epoch`` with ``epochs_trained``); one stopped by patience had converged on validation.
    """
    if state.global_step < state.max_steps:
        return "patience"
    return "max_steps" if config.max_steps > 0 else "epoch_cap"


def _best_epoch(history: list[dict[str, float]]) -> float:
    scored = [row for row in history if "eval_macro_f1" in row]
    return max(scored, key=lambda r: r["eval_macro_f1"])["epoch"] if scored else float("nan")


def _write_predictions(path: Path, texts: Sequence[str], labels: Sequence[int], predicted: Sequence[int], probabilities, label_names: Sequence[str]) -> None:
    import pandas as pd

    frame = pd.DataFrame({"text": list(texts), "label": [label_names[i] for i in labels], "predicted": [label_names[i] for i in predicted]})
    for k, name in enumerate(label_names):
        frame[f"prob_{name}"] = probabilities[:, k]
    with _atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _plot_history(history: list[dict[str, float]], path: Path, title: str) -> None:
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
    with _atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Saved models: evaluation and prediction
# ---------------------------------------------------------------------------------------------


def load_model(model_dir: str | os.PathLike[str], device: str | None = None):
    """A saved qubert model and its tokenizer: ``(model, tokenizer)``, model in eval mode.

    ``model_dir`` is a ``model/`` folder or a run directory holding one; ``device`` defaults to
    CUDA when available.
    """
    from transformers import AutoTokenizer

    from qubert.modeling import ModelConfigError, QubertForSequenceClassification

    path = Path(model_dir).expanduser()
    if (path / "model" / "config.json").is_file():
        path = path / "model"
    if not (path / "config.json").is_file():
        raise ModelConfigError(f"{model_dir} is not a saved qubert model (no config.json); pass a run directory or its model/ folder")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelConfigError(f"cannot read {path / 'config.json'}: {err}") from None
    if config.get("model_type") != "qubert":
        raise ModelConfigError(f"{path} holds a {config.get('model_type')!r} model, not a qubert model")
    check_no_pickles(path)
    try:
        _check_weights(path)
        with _quiet_transformers():
            model = QubertForSequenceClassification.from_pretrained(str(path))
            tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception as err:  # SafetensorError, size mismatches, bad config values, missing files, ...
        raise ModelConfigError(f"not a loadable qubert model: {path}: {_first_line(err)}") from None
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.eval()
    return model, tokenizer


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def check_no_pickles(folder: str | os.PathLike[str]) -> None:
    """Refuse a model folder that holds pickle files (``pytorch_model.bin``, ``*.pt``, ``*.pkl``, ...).

    qubert saves and loads safetensors only: unpickling a file can run arbitrary code, so a folder
    with pickles is refused rather than trusted, even where a loader would skip them.

    Example:
        >>> check_no_pickles("runs/sst2-quantum-frozen-s42/model")  # doctest: +SKIP
    """
    from qubert.modeling import ModelConfigError

    pickles = sorted(p.name for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ModelConfigError(
            f"{folder} holds pickle files ({', '.join(pickles)}): qubert does not load pickle files, since "
            "unpickling can run arbitrary code; keep the weights as model.safetensors and remove the pickles"
        )


def _check_weights(path: Path) -> None:
    """Compare the tensors in ``model.safetensors`` (or its shards) with the shapes ``config.json`` implies.

    A truncated file fails here at its header; a head changed in ``config.json`` (e.g. ``n_qubits``)
    is a shape mismatch; a missing tensor would otherwise be initialised at random without a word.
    """
    from safetensors import safe_open

    from qubert.modeling import QubertConfig, QubertForSequenceClassification

    index = path / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    elif (path / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError("no model.safetensors")
    found: dict[str, list[int]] = {}
    for name in files:
        with safe_open(str(path / name), framework="pt") as fh:
            found.update({key: list(fh.get_slice(key).get_shape()) for key in fh.keys()})  # noqa: SIM118
    with torch.device("meta"), _quiet_transformers():  # shapes only: nothing is allocated
        expected = {k: list(v.shape) for k, v in QubertForSequenceClassification(QubertConfig.from_pretrained(str(path))).state_dict().items()}
    missing = [k for k in expected if k not in found]
    if missing:
        raise ValueError(f"model.safetensors lacks {len(missing)} tensor(s) the config needs, e.g. {missing[0]}")
    for key, shape in expected.items():
        if found[key] != shape:
            raise ValueError(f"{key} has shape {found[key]} in model.safetensors but config.json implies {shape}")


def _configure_execution(model, shots: int | None, noise: Any, seed: int | None) -> None:
    """Finite shots / a noise model for a quantum head (the head parses and checks ``noise``)."""
    if shots is None and not noise:
        return
    from qubert.heads import QuantumHead

    if not isinstance(model.head, QuantumHead):
        raise TrainingConfigError(f"--shots and --noise need a quantum head; this model has a {model.head.head_type} head")
    if shots is not None and shots < 1:
        raise TrainingConfigError(f"shots must be a positive integer, got {shots}")
    if not hasattr(model.head, "set_execution"):
        raise TrainingConfigError("this version of QuantumHead cannot simulate shots or noise (no set_execution)")
    model.head.set_execution(shots=shots, noise=noise, seed=seed)


def _features(model, tokenizer, texts: Sequence[str], *, batch_size: int, progress: bool, cache_dir: str | None, fingerprint: str | None, split: str) -> torch.Tensor:
    from qubert.embeddings import EmbeddingCache, cached_features, encode_texts

    if model.encoder_frozen and fingerprint is not None:
        feats, _ = cached_features(model, tokenizer, texts, fingerprint=fingerprint, split=split, cache=EmbeddingCache(cache_dir), batch_size=batch_size, progress=progress)
        return feats
    return encode_texts(model, tokenizer, texts, batch_size=batch_size, progress=progress, description=f"Encoding {split}")


def _head_probabilities(model, features: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            logits = model(features=features[start : start + batch_size].to(device)).logits
            out.append(torch.softmax(logits.float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.num_labels)


def evaluate_model(
    model_dir: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    test_file: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    max_eval_samples: int | None = None,
    batch_size: int = 64,
    shots: int | None = None,
    noise: Any = None,
    seed: int = 42,
    cache_dir: str | None = None,
    progress: bool = True,
    device: Any = None,
    optimization_level: int = 1,
) -> dict[str, Any]:
    """Metrics of a saved model on a data set split or a labelled file.

    Args:
        model_dir: a run directory or its ``model/`` folder.
        dataset, data_dir, split: a data set (as for training) and the split to score.
        test_file, text_column, label_column: a labelled file instead (labels: the model's class
            names or integer ids).
        max_eval_samples: score a stratified subset.
        shots, noise, seed: quantum head only: finite-shot sampling and a noise model such as
            ``"depolarizing:0.01,readout:0.02"``.
        cache_dir: embedding cache (frozen-mode models reuse their training features).
        device, optimization_level: quantum head only: run the circuit as on an IBM device
            (``"fake_manila"``, ``"ibm_kyiv"``; needs ``qubert[devices]``), transpiled at this level,
            on Aer with the device's noise model (``shots`` per sample, default 1024).

    Returns:
        Flat metrics prefixed by the split (``test_macro_f1``, ...), ``<split>_runtime``,
        ``<split>_samples`` and ``confusion_matrix`` (a nested list). With ``device`` the split's
        metrics are the device's, and ``exact_macro_f1``, ``shots_macro_f1``, ``device`` (the
        transpilation facts) and ``device_seconds_per_1000`` are added.
    """
    from qubert.data import DataError, TextDataset, load_dataset_bundle, read_table

    model, tokenizer = load_model(model_dir)
    transpiled = _check_device(model, device, noise, optimization_level) if device is not None else None
    _configure_execution(model, shots, noise, seed)
    label2id = {str(k): int(v) for k, v in (model.config.label2id or {}).items()}
    n_classes = model.config.num_labels
    if split not in ("train", "validation", "test"):
        raise DataError(f"unknown split {split!r}; expected train, validation or test")
    if test_file is not None:
        texts, raw = read_table(test_file, text_column=text_column, label_column=label_column)
        labels = [_label_id(v, label2id, n_classes, test_file, row) for row, v in enumerate(raw, start=2)]
        split = "test"
        fingerprint = TextDataset(texts, labels).fingerprint()  # frozen models reuse the features
        evaluated_on = str(test_file)
    else:
        if dataset is not None:
            bundle = load_dataset_bundle(dataset, data_dir=data_dir, max_eval_samples=max_eval_samples, seed=seed, text_column=text_column, label_column=label_column)
        else:
            bundle = _run_bundle(model_dir, max_eval_samples=max_eval_samples)
        model_labels = [model.config.id2label[i] for i in range(n_classes)]
        if bundle.label_names != model_labels:
            raise DataError(f"data set {bundle.name!r} has labels {bundle.label_names}, the model predicts {model_labels}")
        data = bundle.split(split)
        texts, labels, fingerprint = data.texts, data.labels, bundle.fingerprint(split)
        evaluated_on = f"{bundle.name} ({split} split)" + ("" if dataset is not None else ", the run's own data")
    start = time.perf_counter()
    features = _features(model, tokenizer, texts, batch_size=batch_size, progress=progress, cache_dir=cache_dir, fingerprint=fingerprint, split=split)
    if transpiled is not None:
        return _evaluate_on_device(model, features, labels, transpiled, device, shots=shots, seed=seed, split=split, evaluated_on=evaluated_on, progress=progress)
    predicted = _head_probabilities(model, features).argmax(-1).tolist()
    runtime = time.perf_counter() - start
    metrics: dict[str, Any] = {f"{split}_{k}": v for k, v in classification_metrics(labels, predicted).items()}
    metrics.update({f"{split}_runtime": round(runtime, 4), f"{split}_samples": len(texts), "confusion_matrix": confusion_matrix(labels, predicted, n_classes)})
    metrics["evaluated_on"] = evaluated_on
    if model.head.head_type == "quantum":
        metrics["execution"] = _execution_summary(shots, noise)
    return metrics


def _check_device(model, device: Any, noise: Any, optimization_level: int):
    """The head transpiled for ``device``, before any text is encoded (so bad requests fail fast)."""
    from qubert.heads import QuantumHead
    from qubert.quantum import devices

    if not isinstance(model.head, QuantumHead):
        raise TrainingConfigError(f"--device needs a quantum head; this model has a '{model.head.head_type}' head")
    if noise:
        raise TrainingConfigError("give either --noise or --device (the device's calibration is the noise model), not both")
    return devices.transpile_head(model.head.circuit, device, optimization_level=optimization_level)


def _evaluate_on_device(model, features: torch.Tensor, labels, transpiled, device: Any, *, shots: int | None, seed: int, split: str, evaluated_on: str, progress: bool) -> dict[str, Any]:
    """Device metrics next to the exact and shot-only ones, from the same features and the same shots."""
    from qubert.embeddings import encoding_pass
    from qubert.quantum import devices

    head = model.head
    shots = shots or devices.DEFAULT_DEVICE_SHOTS
    scores: dict[str, list[int]] = {}
    head.set_execution(shots=None, noise=None, device=None)
    scores["exact"] = _head_probabilities(model, features).argmax(-1).tolist()
    head.set_execution(shots=shots, seed=seed)
    scores["shots"] = _head_probabilities(model, features).argmax(-1).tolist()
    head.set_execution(device=device, optimization_level=transpiled.optimization_level, seed=seed)
    start, predicted = time.perf_counter(), []
    batch = 256  # one Aer call per batch: a progress bar that moves, and bounded memory for the counts
    with encoding_pass(model, len(features), progress=progress, description=f"On {transpiled.device}") as advance:
        for offset in range(0, len(features), batch):
            logits = model(features=features[offset : offset + batch].to(next(model.parameters()).device)).logits
            predicted += logits.argmax(-1).tolist()
            advance(min(batch, len(features) - offset))
    runtime = time.perf_counter() - start
    n_classes = model.config.num_labels
    metrics: dict[str, Any] = {f"{split}_{k}": v for k, v in classification_metrics(labels, predicted).items()}
    metrics["exact_macro_f1"] = classification_metrics(labels, scores["exact"])["macro_f1"]
    metrics["shots_macro_f1"] = classification_metrics(labels, scores["shots"])["macro_f1"]
    metrics.update({
        f"{split}_runtime": round(runtime, 4), f"{split}_samples": len(labels),
        "device_seconds_per_1000": round(1000 * runtime / max(len(labels), 1), 3),
        "confusion_matrix": confusion_matrix(labels, predicted, n_classes), "evaluated_on": evaluated_on,
        "device": transpiled.summary(),
        "execution": f"{transpiled.device}, {shots} shots, " + ("through qiskit-ibm-runtime" if transpiled.runtime else "on Aer with its calibrated noise model"),
    })
    return metrics


def _execution_summary(shots: int | None, noise: Any) -> str:
    """How the circuit ran, in words: ``exact simulation`` or ``1000 shots, noise depolarizing:0.01``."""
    parts = [f"{shots} shots" if shots is not None else "exact expectation values"]
    if noise:
        parts.append(f"noise {noise}")
    return ", ".join(parts) if shots is not None or noise else "exact simulation"


def _run_bundle(model_dir: str | os.PathLike[str], *, max_eval_samples: int | None):
    """The data set a run was trained on, split as in training (from the run's ``config.yaml``)."""
    import yaml

    from qubert.data import DataError

    path = Path(model_dir).expanduser()
    config_file = next((d / "config.yaml" for d in (path, path.parent) if (d / "config.yaml").is_file()), None)
    if config_file is None:
        raise DataError(f"nothing to evaluate on: {model_dir} has no run config.yaml; pass --dataset or --test-file")
    try:
        saved = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        config = TrainingConfig.from_dict({k: v for k, v in saved.items() if k in TrainingConfig.field_names()})
    except (OSError, yaml.YAMLError, TypeError, ValueError) as err:
        raise DataError(f"cannot read the run's data set from {config_file}: {err}; pass --dataset or --test-file") from None
    if max_eval_samples is not None:
        config.max_eval_samples = max_eval_samples
    return _load_bundle(config)


def _label_id(value: Any, label2id: dict[str, int], n_classes: int, path: Any, row: int) -> int:
    from qubert.data import DataError

    text = str(value).strip()
    if text in label2id:
        return label2id[text]
    try:
        as_int = int(float(text))
    except ValueError:
        as_int = None
    if as_int is not None and 0 <= as_int < n_classes and float(text) == as_int:
        return as_int
    raise DataError(f"{path}: row {row}: label {text!r} is not one of the model's classes ({', '.join(label2id)}) or ids 0..{n_classes - 1}")


def predict_texts(model_dir: str | os.PathLike[str], texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> tuple[list[str], list[str], torch.Tensor]:
    """Predicted label names and class probabilities for raw texts.

    Returns:
        ``(class_names, predicted_labels, probabilities (N, n_classes))``.

    Example:
        >>> names, labels, probs = predict_texts("runs/sms_spam-quantum-frozen-s42", ["WIN a prize!"])  # doctest: +SKIP
        >>> labels  # doctest: +SKIP
        ['spam']
    """
    from qubert.embeddings import encode_texts

    model, tokenizer = load_model(model_dir)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    features = encode_texts(model, tokenizer, texts, batch_size=batch_size, progress=progress, description="Encoding")
    probabilities = _head_probabilities(model, features)
    return names, [names[i] for i in probabilities.argmax(-1).tolist()], probabilities

