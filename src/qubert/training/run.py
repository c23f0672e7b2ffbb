""":func:`run_training`: one training run from a :class:`~qubert.training.TrainingConfig` to a
finished run directory (see :mod:`qubert.training`).

Data flows one way: :func:`~qubert.training.checks.check_run` refuses bad requests before any
work; :func:`~qubert.training.datasets.load_bundle` reads the data; :func:`build_model` builds the
model; :func:`~qubert.training.datasets.prepare_datasets` makes the Trainer's datasets for the
mode; :func:`train` trains and scores; :mod:`~qubert.training.rundir` writes every file.

Example:
    >>> from qubert.training import TrainingConfig, run_training
    >>> metrics = run_training(TrainingConfig(dataset="sms_spam", head="linear"))  # doctest: +SKIP
    >>> metrics.run_dir  # doctest: +SKIP
    PosixPath('runs/sms_spam-linear-frozen-s42')
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from qubert.files import is_disk_full, write_text
from qubert.training import metrics as run_metrics
from qubert.training.checks import check_checkpoint_pickles, check_run, warn_batch_size
from qubert.training.config import TrainingConfig, head_config_from
from qubert.training.datasets import LengthSorted, TrainerData, load_bundle, prepare_datasets
from qubert.training.errors import DiskFullError, TrainingInterrupted
from qubert.training.rundir import (
    RunMetrics,
    TrainResult,
    complete_checkpoints,
    discard_incomplete_checkpoints,
    lock_run_dir,
    prepare_run_dir,
    read_metrics,
    remove_stale_temporaries,
    resolved_options,
    say,
    write_outputs,
    write_versions,
    written_path,
)

__all__ = ["build_model", "run_training", "train"]


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """:func:`qubert.modeling.quiet_transformers`, imported when used (modeling imports transformers)."""
    from qubert.modeling import quiet_transformers as quiet

    with quiet():
        yield


def run_training(config: TrainingConfig, callbacks: Sequence[Any] = (), *, data: Any = None) -> RunMetrics:
    """Train, keep the best epoch by validation macro-F1, evaluate on test and write the run directory.

    Args:
        config: the run's options (see :class:`TrainingConfig`).
        callbacks: extra ``transformers.TrainerCallback`` objects (timers, loggers) for the Trainer.
        data: data already in memory instead of the config's data set or files: a pandas
            ``DataFrame`` (``text_column`` / ``label_column``), ``(texts, labels)``, a Hugging Face
            ``datasets.Dataset`` / ``DatasetDict``, a :class:`~qubert.data.DatasetBundle`, or a
            mapping of splits of those (see :func:`qubert.data.bundle_from_memory`);
            ``config.dataset`` then names the data (run directory, logs).

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
    check_run(config)  # everything refused before any data is read or anything written
    bundle = load_bundle(config, data)
    warn_batch_size(config, len(bundle.train))
    run_dir = Path(config.output_dir or Path("runs") / config.run_name(bundle.name)).expanduser().resolve()
    # config.yaml keeps output_dir as given (None: derived from dataset and seed), so a run's own
    # config.yaml with another --seed makes a new run; resume / overwrite are per-invocation.
    resolved = resolved_options(config)
    with lock_run_dir(run_dir):
        remove_stale_temporaries(run_dir)
        if config.resume and (run_dir / "metrics.json").is_file():
            prepare_run_dir(run_dir, resolved, config)  # same options? then the finished run is the answer
            return RunMetrics(read_metrics(run_dir), run_dir=run_dir)
        resume_from = prepare_run_dir(run_dir, resolved, config)
        if resume_from is not None:
            check_checkpoint_pickles(resume_from)
        model, tokenizer = build_model(config, bundle)  # a bad --model fails before anything is written
        fresh = not (run_dir.is_dir() and any(run_dir.iterdir()))
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            import yaml

            saved = {k: v for k, v in resolved.items() if k not in ("resume", "overwrite_output_dir")}
            write_text(run_dir / "config.yaml", yaml.safe_dump(saved, sort_keys=False))
            encoder_id = write_versions(run_dir, config, model)
            if config.progress:
                say(f"{bundle.summary()}\nRun directory: {run_dir}" + (f" (resuming from {resume_from.name})" if resume_from else ""))
            trainer_data = prepare_datasets(config, bundle, model, tokenizer, encoder_id)
            result = train(config, bundle, run_dir, trainer_data, model, tokenizer, resume_from=resume_from, callbacks=callbacks)
            write_outputs(run_dir, config, bundle, result, tokenizer)
            return RunMetrics(result.metrics, run_dir=run_dir)
        except TrainingInterrupted:
            raise
        except KeyboardInterrupt:
            raise TrainingInterrupted(run_dir) from None
        except Exception as err:
            if not is_disk_full(err):
                raise
            path = written_path(err, run_dir)
            discard_incomplete_checkpoints(run_dir / "checkpoints")
            kept = bool(complete_checkpoints(run_dir / "checkpoints"))
            if fresh and not kept:
                shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth resuming: leave no unfinished run behind
            raise DiskFullError(path, kept=run_dir if kept else None) from None


def build_model(config: TrainingConfig, bundle):
    """``(model, tokenizer)`` for a run: the encoder with a fresh head for the bundle's classes."""
    from transformers import set_seed

    from qubert.modeling import QubertForSequenceClassification, load_tokenizer

    set_seed(config.seed)  # the head's layers draw from torch's global generator
    with quiet_transformers():
        model = QubertForSequenceClassification.from_encoder(
            config.model, head=head_config_from(config), id2label=bundle.id2label, pooling=config.pooling,
            mode=config.mode, max_length=config.max_length, seed=config.seed, precision=config.resolved_precision,
        )
        tokenizer = load_tokenizer(config.model)
    if config.cache_bottom and model.trainable_layers:
        model._split()  # an encoder family that cannot be split fails here, before anything is written
    return model, tokenizer


def train(
    config: TrainingConfig, bundle: Any, run_dir: Path, data: TrainerData, model: Any, tokenizer: Any, *,
    resume_from: Path | None = None, callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train with early stopping on validation macro-F1, then score the best model on validation and test."""
    from transformers import EarlyStoppingCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from qubert.tracking import RunTracker
    from qubert.training.trainer import EpochReporter, QubertTrainer, training_arguments

    datasets = data.datasets
    precision = "fp32" if config.frozen else model.config.precision  # a frozen run trains only the head: fp32
    RunTracker.prepare_environment(config.report_to, run_dir)
    stopping = [EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience)] if config.early_stopping_patience else []
    trainer = QubertTrainer(
        model=model,
        args=training_arguments(config, run_dir, precision=precision),
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        data_collator=data.collator,
        processing_class=None if config.frozen else tokenizer,
        compute_metrics=run_metrics.compute_metrics,
        callbacks=[*stopping, *callbacks],
        encoder_learning_rate=config.encoder_learning_rate,
        head_only_checkpoints=config.frozen,
    )
    for printer in (PrinterCallback, ProgressCallback):  # raw dicts and tqdm bars; EpochReporter instead
        trainer.remove_callback(printer)
    tracker = RunTracker(trainer, config.report_to, run_dir) if config.report_to != "none" else None
    reporter = EpochReporter() if config.progress else None
    if reporter is not None:
        trainer.add_callback(reporter)

    discard_incomplete_checkpoints(run_dir / "checkpoints")
    try:
        with quiet_transformers():
            train_output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        if reporter is not None:
            reporter.close()  # the bar, also when Ctrl-C ends training
    best_model = trainer.model
    # Before the best model's re-evaluation below, which the Trainer logs at the last epoch.
    history = run_metrics.epoch_history(trainer.state.log_history)
    eval_metrics = trainer.evaluate(datasets["validation"], metric_key_prefix="eval")
    test_output = trainer.predict(datasets["test"], metric_key_prefix="test")

    logits = torch.as_tensor(test_output.predictions[0] if isinstance(test_output.predictions, tuple) else test_output.predictions)
    if isinstance(datasets["test"], LengthSorted):
        logits = datasets["test"].in_input_order(logits)
    probabilities = torch.softmax(logits.float(), dim=-1).numpy()

    metrics: dict[str, Any] = {k: v for k, v in train_output.metrics.items() if k != "total_flos"}
    metrics["train_loss"] = run_metrics.run_train_loss(trainer.state.log_history, default=metrics.get("train_loss"))
    metrics.update(eval_metrics)
    metrics.update(test_output.metrics)
    if data.encode_runtime is not None:  # features or bottom-layer states computed ahead (or read from the cache)
        metrics["encode_runtime"] = data.encode_runtime
    metrics.update(
        {
            "trainable_params": int(best_model.head.trainable_params),
            "encoder_trainable_params": int(sum(p.numel() for p in best_model.encoder.parameters() if p.requires_grad)),
            "best_epoch": run_metrics.best_epoch(history),
            "epochs_trained": round(float(trainer.state.epoch or 0.0), 4),
            "stopped_by": run_metrics.stopped_by(trainer.state, config),
            "train_samples": len(bundle.train),
            "eval_samples": len(bundle.validation),
            "test_samples": len(bundle.test),
        }
    )
    if tracker is not None:
        tracker.finish(resolved_options(config, identity=True), metrics)
    return TrainResult(metrics, history, best_model, probabilities)
