"""The Hugging Face ``Trainer`` as qubert runs it: :class:`QubertTrainer` (separate head / encoder
learning rates, head-only checkpoints for a frozen encoder, length-grouped batches from the
datasets' own lengths), :class:`EpochReporter` (one line per epoch) and :func:`training_arguments`.

Importing this module imports ``transformers`` (about a second); :mod:`qubert.training.run`
imports it only when a run starts.

Example:
    >>> from qubert.training import TrainingConfig
    >>> args = training_arguments(TrainingConfig(dataset="sst2", head="linear"), Path("runs/x"), precision="fp32")
    >>> args.per_device_train_batch_size, args.metric_for_best_model
    (64, 'macro_f1')
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from transformers import Trainer, TrainerCallback, TrainingArguments

from qubert.training.config import TrainingConfig

__all__ = ["EpochReporter", "QubertTrainer", "training_arguments"]


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
        """One AdamW parameter group per learning rate and weight-decay rule, from ``model.parameter_groups``."""
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            opt_model = getattr(opt_model, "module", opt_model)  # DDP / DataParallel wrappers
            optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            kwargs.pop("params", None)
            kwargs.pop("lr", None)
            groups = opt_model.parameter_groups(self.args.learning_rate, self.encoder_learning_rate, self.args.weight_decay)
            self.optimizer = optimizer_cls(groups, **kwargs)
        return self.optimizer


class EpochReporter(TrainerCallback):
    """A rich progress bar over the optimizer steps (in a terminal only) and one line per epoch
    (train loss, validation loss and macro-F1, time) on stderr.

    Example line: ``epoch 2/10  train loss 0.4113  eval loss 0.3877  eval macro-F1 0.9120  1.8 s``
    """

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


def training_arguments(config: TrainingConfig, run_dir: Path, *, precision: str) -> TrainingArguments:
    """The ``TrainingArguments`` of a run: one evaluation and checkpoint per epoch, the best epoch
    (validation macro-F1) kept and loaded at the end, checkpoints in ``<run_dir>/checkpoints``.

    Args:
        config: the run's options.
        run_dir: the run directory.
        precision: ``fp32``, ``bf16`` or ``fp16`` mixed precision of the encoder.
    """
    cuda = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=config.resolved_batch_size,
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
        dataloader_pin_memory=cuda,
        use_cpu=not cuda,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        train_sampling_strategy="group_by_length" if config.group_by_length and not config.frozen else "random",
    )
