"""Experiment trackers for a training run: ``report_to`` = ``none``, ``tensorboard``, ``mlflow`` or ``wandb``.

The logging itself is the Hugging Face Trainer's (``TrainingArguments(report_to=...)`` and its
integration callbacks: per-epoch train loss and validation metrics). qubert adds what the
integrations cannot know: the run's :class:`~qubert.training.TrainingConfig` as parameters and the
final metrics (the best model's validation and test scores), logged before the tracker's run is
closed. Every tracker works offline:

- ``tensorboard``: event files in ``<run_dir>/tensorboard/`` (``$TENSORBOARD_LOGGING_DIR`` wins);
  the config and final metrics also as TensorBoard HParams (``<run_dir>/tensorboard/hparams``).
- ``mlflow``: MLflow's own local store unless ``$MLFLOW_TRACKING_URI`` says otherwise.
- ``wandb``: an offline run (``$WANDB_MODE=offline``, files in ``<run_dir>/wandb``) unless
  ``$WANDB_MODE`` or ``$WANDB_API_KEY`` is set.

Example:
    >>> check_tracker("none")
    >>> check_tracker("neptune")
    Traceback (most recent call last):
    ...
    qubert.tracking.TrackerError: unknown report_to 'neptune'; expected one of none, tensorboard, mlflow, wandb
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

__all__ = ["REPORT_TO", "RunTracker", "TrackerError", "check_tracker"]

REPORT_TO = ("none", "tensorboard", "mlflow", "wandb")
# (the module the integration needs, the install that brings it)
_REQUIREMENTS = {
    "tensorboard": ("tensorboard", 'pip install "qubert[trackers]"'),
    "mlflow": ("mlflow", "pip install mlflow"),
    "wandb": ("wandb", "pip install wandb"),
}


class TrackerError(ValueError):
    """An unknown tracker, or one whose package is not installed (one-line message)."""


def check_tracker(name: str) -> None:
    """Raise :class:`TrackerError` unless ``name`` is a known tracker whose package is installed."""
    if name not in REPORT_TO:
        raise TrackerError(f"unknown report_to {name!r}; expected one of {', '.join(REPORT_TO)}")
    if name == "none":
        return
    module, install = _REQUIREMENTS[name]
    if importlib.util.find_spec(module) is None:
        raise TrackerError(f"--report-to {name} needs the {module} package, which is not installed: {install}")


class RunTracker:
    """The tracker callbacks the Trainer built from ``report_to``, held open until :meth:`finish`.

    The Trainer closes its trackers at the end of ``train()``, before the best model is scored on
    the test split; their end-of-training hook is deferred here so that the final metrics land in
    the same tracker run.

    Example:
        >>> tracker = RunTracker(trainer, "tensorboard", run_dir)  # doctest: +SKIP
        >>> trainer.train()  # doctest: +SKIP
        >>> tracker.finish(config.to_dict(), metrics)  # doctest: +SKIP
    """

    def __init__(self, trainer, name: str, run_dir: Path) -> None:
        from transformers.integrations import INTEGRATION_TO_CALLBACK

        self.trainer, self.name, self.run_dir = trainer, name, Path(run_dir)
        kind = INTEGRATION_TO_CALLBACK[name]
        self.callbacks = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, kind)]
        for callback in self.callbacks:
            if name == "tensorboard" and not os.environ.get("TENSORBOARD_LOGGING_DIR"):
                callback.logging_dir = str(self.run_dir / "tensorboard")
            # Deferred: the Trainer calls on_train_end; finish() calls the real one.
            callback._qubert_train_end = callback.on_train_end
            callback.on_train_end = _no_op

    @staticmethod
    def prepare_environment(name: str, run_dir: Path) -> None:
        """Offline defaults, set before the Trainer builds its callbacks (wandb reads them at setup)."""
        if name == "wandb" and not os.environ.get("WANDB_MODE") and not os.environ.get("WANDB_API_KEY"):
            os.environ["WANDB_MODE"] = "offline"
            os.environ.setdefault("WANDB_DIR", str(run_dir))

    def finish(self, params: dict[str, Any], metrics: dict[str, Any]) -> None:
        """Log ``params`` (the run's config) and the final numeric ``metrics``, then close the tracker."""
        args, state, control = self.trainer.args, self.trainer.state, self.trainer.control
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        flat = {k: _param_value(v) for k, v in params.items()}
        for callback in self.callbacks:
            callback.on_log(args, state, control, logs=dict(numbers))  # the integration's own logging
            self._log_params(callback, flat, numbers)
            callback._qubert_train_end(args, state, control)

    def _log_params(self, callback, params: dict[str, Any], metrics: dict[str, float]) -> None:
        # The integrations log TrainingArguments and the model config; the qubert options (data set,
        # head, circuit, mode, ...) only exist here, so each tracker gets them through its own API.
        if self.name == "tensorboard" and callback.tb_writer is not None:
            import yaml

            callback.tb_writer.add_text("qubert_config", "```\n" + yaml.safe_dump(params, sort_keys=False) + "```")
            callback.tb_writer.add_hparams(params, {f"hparam/{k}": v for k, v in metrics.items()}, run_name="hparams")
            callback.tb_writer.flush()
        elif self.name == "mlflow":
            import mlflow

            if mlflow.active_run() is not None:
                mlflow.log_params({f"qubert.{k}": v for k, v in params.items()})
        elif self.name == "wandb":
            import wandb

            if wandb.run is not None:
                wandb.config.update({"qubert": params}, allow_val_change=True)
                wandb.run.summary.update(metrics)


def _no_op(*args: Any, **kwargs: Any) -> None:
    return None


def _param_value(value: Any) -> Any:
    """A tracker-friendly parameter value: numbers, strings and booleans as they are, the rest as text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return "None" if value is None else str(value)
