""":class:`TrainingConfig`: everything one training run depends on (its field names are the
``qubert train`` options), its validation and the defaults it resolves per mode.

Example:
    >>> TrainingConfig(dataset="sst2", head="linear").resolved_learning_rate
    0.01
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from qubert.heads import HEAD_REGISTRY
from qubert.training.errors import TrainingConfigError


HEADS = tuple(HEAD_REGISTRY)  # the built-in heads; qubert.heads.register_head adds more
MAX_LEARNING_RATE = 10.0  # above this no optimizer converges: the value is a typo, not a choice
MAX_LAYERS = 1000  # circuit depth cap: far beyond trainable (barren plateaus), and memory grows with it
NON_IDENTITY_FIELDS = ("resume", "progress", "overwrite_output_dir", "report_to")  # may differ when resuming a run


def option(text: str, **kwargs: Any) -> Any:
    """A dataclass field whose ``help`` metadata becomes the CLI option's help text."""
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
    dataset: str | None = option("Data set: registry name (sms_spam, sst2, imdb, ...), file, folder or Hub id.", default=None)
    data_dir: str | None = option("Folder with the benchmark data (default $QUBERT_DATA_DIR, then shared/data).", default=None)
    train_file: str | None = option("Training file (.csv/.tsv/.jsonl, optionally .gz).", default=None)
    validation_file: str | None = option("Validation file (default: carved from train).", default=None)
    test_file: str | None = option("Test file.", default=None)
    text_column: str = option("Column holding the text.", default="text")
    label_column: str = option("Column holding the label.", default="label")
    max_train_samples: int | None = option("Use a stratified subset of this many training rows (quick runs); a validation split carved from train shrinks in proportion unless --max-eval-samples is given.", default=None)
    max_eval_samples: int | None = option("Use stratified subsets of this many validation and test rows.", default=None)
    drop_empty: bool = option("Drop empty texts instead of failing.", default=False)
    # ---- model
    model: str = option("Encoder: Hugging Face hub name or local path; 'default' is the bundled all-MiniLM-L6-v2.", default="default")
    pooling: str = option("Sentence vector: mean (attention-mask weighted), cls or pooler (BERT's pooler output).", default="mean")
    max_length: int = option("Maximum tokens per text (longer texts are truncated).", default=128)
    mode: str = option("Encoder training: frozen (cached features), full, or top<k> (last k layers, e.g. top2).", default="frozen")
    precision: str = option("Encoder precision: auto (bf16 where the CPU/GPU runs it natively, else fp32), fp32, bf16 or fp16 (GPU). The head always computes in fp32.", default="auto")
    runtime: str = option("Encoder runtime for the passes that do not train: the feature pass (frozen) or the cached bottom layers (top<k>): torch, onnx or openvino, optionally name:precision (onnx:int8, openvino:bf16); cached per runtime. Not for full or --no-cache-bottom. See qubert.runtimes.", default="torch")
    cache_bottom: bool = option("top<k>: compute the fixed bottom layers once per split and train the top k layers on the cached outputs.", default=True)
    group_by_length: bool = option("full / top<k>: batch texts of similar length together (less padding).", default=True)
    head: str = option("Classification head: linear, mlp or quantum.", default="quantum")
    # ---- quantum head
    qubits: int = option("Quantum head: number of qubits.", default=8)
    layers: int = option(f"Quantum head: number of variational layers (circuit depth, at most {MAX_LAYERS}).", default=2)
    encoding: str = option("Quantum head: angle encoding (h_ry, ry, rx, rz, h_rz).", default="h_ry")
    ansatz: str = option("Quantum head: ansatz (brickwork, basic_entangler, strongly_entangling).", default="brickwork")
    entanglement: str = option("Quantum head: entanglement (default, none, linear, ring, all, ranged).", default="default")
    rotation: str = option("Quantum head: trainable rotation (rx, ry, rz).", default="ry")
    measurement: str = option("Quantum head: measurement (z, zz, probs).", default="z")
    init: str = option("Quantum head: weight initialisation (normal, uniform, identity).", default="normal")
    reupload: bool = option("Quantum head: re-upload the encoding before every layer.", default=False)
    scaling: str = option("Quantum head: features to angles (tanh_pi_2, tanh_pi, pi, none).", default="tanh_pi_2")
    freeze_circuit: bool = option("Quantum head: keep the circuit weights fixed (ablation).", default=False)
    strategy: str = option("Quantum head: simulator strategy (auto, analytic, adjoint, fused, gates).", default="auto")
    # ---- classical heads
    hidden_sizes: list[int] = option("MLP head: hidden layer widths (a single int means one layer).", default_factory=lambda: [256])
    dropout: float = option("Linear/MLP head: dropout.", default=0.0)
    # ---- optimisation
    learning_rate: float | None = option(f"Learning rate of the head (default 1e-2 frozen, 1e-3 otherwise; at most {MAX_LEARNING_RATE:g}).", default=None)
    encoder_learning_rate: float = option(f"Learning rate of the trainable encoder layers (full / top<k> modes; at most {MAX_LEARNING_RATE:g}).", default=2e-5)
    num_epochs: float | None = option("Epoch cap (default 100 frozen, where early stopping ends training; 3 otherwise).", default=None)
    batch_size: int | None = option("Training batch size (default 64 frozen, 16 otherwise; more than the training rows warns: each epoch is then one batch).", default=None)
    weight_decay: float = option("AdamW weight decay (not on biases, norms or circuit angles).", default=0.0)
    lr_scheduler_type: str = option("Learning-rate schedule (transformers names: linear, constant, cosine, ...).", default="linear")
    early_stopping_patience: int | None = option("Stop after this many epochs without a better validation macro-F1 (None: never).", default=5)
    max_steps: int = option("Stop after this many optimizer steps (-1: run all epochs).", default=-1)
    # ---- run
    seed: int = option("Random seed (data subsets, initialisation, shuffling).", default=42)
    data_seed: int | None = option("Seed of the stratified data subsets only (default: seed); fix it to vary only initialisation and batch order across seeds.", default=None)
    output_dir: str | None = option("Run directory (default runs/<dataset>-<head>-<mode>-s<seed>).", default=None)
    overwrite_output_dir: bool = option("Replace an existing run directory.", default=False)
    cache_dir: str | None = option("Embedding cache (default $QUBERT_CACHE_DIR or ~/.cache/qubert).", default=None)
    resume: bool = option("Continue an interrupted run from its last checkpoint (a finished run is returned as is).", default=False)
    progress: bool = option("Show progress bars.", default=True)
    report_to: str = option("Experiment tracker for the run's config, per-epoch and final metrics: none, tensorboard (event files in <run>/tensorboard), mlflow (local store unless MLFLOW_TRACKING_URI) or wandb (offline unless WANDB_MODE / WANDB_API_KEY).", default="none")

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
        if self.head not in HEAD_REGISTRY:
            fail(f"unknown head {self.head!r}; expected one of {', '.join(HEAD_REGISTRY)}")
        if self.pooling not in POOLINGS:
            fail(f"unknown pooling {self.pooling!r}; expected one of {', '.join(POOLINGS)}")
        try:
            parse_mode(self.mode)
        except ModelConfigError as err:
            raise TrainingConfigError(str(err)) from None
        self._validate_encoder_options(fail)
        if is_int(self.hidden_sizes):
            self.hidden_sizes = [self.hidden_sizes]  # `hidden_sizes: 32` in YAML: one hidden layer
        for name in ("max_length", "qubits"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                fail(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not is_int(self.layers) or self.layers < 0:
            fail(f"layers must be a non-negative integer, got {self.layers!r}")
        if self.layers > MAX_LAYERS:
            fail(f"layers must be at most {MAX_LAYERS}, got {self.layers}")
        for name in ("max_train_samples", "max_eval_samples", "batch_size", "early_stopping_patience"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < 1):
                fail(f"{name} must be a positive integer, got {value!r}")
        if not is_int(self.max_steps) or (self.max_steps < 1 and self.max_steps != -1):
            fail(f"max_steps must be a positive integer or -1, got {self.max_steps!r}")
        for name in ("learning_rate", "encoder_learning_rate"):
            value = getattr(self, name)
            if value is None and name == "learning_rate":
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or not math.isfinite(value):
                fail(f"{name} must be a positive number, got {value!r}")
            if value > MAX_LEARNING_RATE:
                fail(f"{name} {value:g} is surely a mistake (at most {MAX_LEARNING_RATE:g}; typical values are 1e-5 to 1e-1)")
        if self.num_epochs is not None and (
            not isinstance(self.num_epochs, (int, float)) or isinstance(self.num_epochs, bool) or not self.num_epochs > 0 or not math.isfinite(self.num_epochs)
        ):
            fail(f"num_epochs must be a positive, finite number, got {self.num_epochs!r}")
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            fail(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            fail(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.hidden_sizes, (list, tuple)) or not self.hidden_sizes or any(not is_int(h) or h < 1 for h in self.hidden_sizes):
            fail(f"hidden_sizes must be a non-empty list of positive integers, got {self.hidden_sizes!r}")
        if not is_int(self.seed):
            fail(f"seed must be an integer, got {self.seed!r}")
        if self.data_seed is not None and not is_int(self.data_seed):
            fail(f"data_seed must be an integer, got {self.data_seed!r}")
        from qubert.tracking import REPORT_TO

        if self.report_to not in REPORT_TO:
            fail(f"unknown report_to {self.report_to!r}; expected one of {', '.join(REPORT_TO)}")
        if HEAD_REGISTRY[self.head].quantum:
            try:
                circuit = self.circuit()  # built once here, checked below
            except ValueError as err:
                raise TrainingConfigError(f"quantum head: {err}") from None
            from qubert.heads import SCALINGS
            from qubert.quantum import check_strategy

            if self.scaling not in SCALINGS:
                fail(f"unknown scaling {self.scaling!r}; expected one of {', '.join(SCALINGS)}")
            try:
                check_strategy(circuit, self.strategy)
            except ValueError as err:
                fail(str(err))
        from transformers import SchedulerType

        if self.lr_scheduler_type not in {s.value for s in SchedulerType}:
            fail(f"unknown lr_scheduler_type {self.lr_scheduler_type!r}; e.g. linear, constant, cosine")

    def _validate_encoder_options(self, fail: Callable[[str], None]) -> None:
        """The encoder's precision and its inference runtime (qubert.runtimes): only for passes that do
        not train, the frozen feature pass and the cached bottom layers of top<k>."""
        from qubert.precision import PRECISIONS
        from qubert.runtimes import RuntimeOptionError, parse_runtime

        if self.precision not in PRECISIONS:
            fail(f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        try:
            runtime_name, _ = parse_runtime(self.runtime)
        except RuntimeOptionError as err:
            fail(str(err))
        if runtime_name != "torch" and self.mode == "full":
            fail(f"--runtime {self.runtime} needs --mode frozen or top<k>: in full fine-tuning every encoder layer trains, so it runs in PyTorch")
        if runtime_name != "torch" and self.mode != "frozen" and not self.cache_bottom:
            fail(f"--runtime {self.runtime} with --mode {self.mode} needs the cached bottom layers (drop --no-cache-bottom): "
                 "uncached, every pass runs the whole encoder, whose top layers train, in PyTorch")

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


def is_int(value: Any) -> bool:
    """Whether ``value`` is an ``int`` (``bool`` is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def head_config_from(config: TrainingConfig) -> dict[str, Any]:
    """The head's config dict for :func:`qubert.heads.build_head` (without in_features/n_classes).

    Example:
        >>> head_config_from(TrainingConfig(dataset="x", head="mlp", hidden_sizes=[32]))
        {'type': 'mlp', 'hidden_sizes': [32], 'dropout': 0.0}
    """
    return HEAD_REGISTRY[config.head].head_config(config)
