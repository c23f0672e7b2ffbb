"""Training and evaluation on the Hugging Face ``Trainer``: config, metrics, run directory, resume.

:func:`run_training` loads the data, builds a :class:`~qubert.modeling.QubertForSequenceClassification`,
trains it with early stopping on validation macro-F1 (the best checkpoint is kept), evaluates it on
the test split and writes one run directory (see :mod:`qubert.training.rundir`).

Every file is written atomically (temporary file, then ``os.replace``), and ``metrics.json`` is
written last: a run directory with ``metrics.json`` is complete, one without it was interrupted and
``resume=True`` continues it from its last complete checkpoint.

In ``frozen`` mode the encoder never runs during training: pooled features come from the
:mod:`qubert.embeddings` cache and the model is called with ``features=``.

The package, one concept per module:

- :mod:`~qubert.training.config`: :class:`TrainingConfig` and its validation;
- :mod:`~qubert.training.errors`: the run's one-line errors;
- :mod:`~qubert.training.checks`: everything refused before any work;
- :mod:`~qubert.training.datasets`: the run's data and the Trainer's datasets per mode;
- :mod:`~qubert.training.trainer`: the ``Trainer`` subclass and the epoch reporter;
- :mod:`~qubert.training.rundir`: lock, resume, checkpoints and every file written;
- :mod:`~qubert.training.metrics`: classification metrics and epoch history;
- :mod:`~qubert.training.run`: :func:`run_training`.

Saved models are loaded and used by :mod:`qubert.inference` and scored by
:mod:`qubert.evaluation`; their functions are importable from here too.

Example:
    >>> from qubert.training import TrainingConfig, run_training
    >>> metrics = run_training(TrainingConfig(dataset="sms_spam", head="quantum", qubits=8,
    ...                                       max_train_samples=1000))  # doctest: +SKIP
    >>> metrics["test_macro_f1"]  # doctest: +SKIP
    0.93
"""

from qubert.training.checks import PICKLE_SUFFIXES, check_no_pickles
from qubert.training.config import HEADS, MAX_LAYERS, MAX_LEARNING_RATE, TrainingConfig, head_config_from
from qubert.training.errors import DiskFullError, RunDirectoryError, TrainingConfigError, TrainingInterrupted
from qubert.training.metrics import classification_metrics, confusion_matrix
from qubert.training.rundir import RunMetrics
from qubert.training.run import run_training

# Saved-model functions live in qubert.inference / qubert.evaluation, which import this package's
# modules: importing them here at once would be circular, so they load on first access.
_ELSEWHERE = {"evaluate_model": "qubert.evaluation", "load_model": "qubert.inference", "predict_texts": "qubert.inference"}


def __getattr__(name: str):
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module 'qubert.training' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_ELSEWHERE})


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
