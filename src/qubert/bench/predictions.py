"""Per-example predictions of every finished bench run, kept compact for the report's bootstrap.

Each run directory holds ``predictions.npz``: ``test_index`` (int32 row indices into the data set's
test pool), ``labels`` (int16) and ``probabilities`` (float16, ``(n_test, n_classes)``). Rows of two
heads of the same replicate have the same ``test_index`` (the replicate's test draw), so a paired
bootstrap over replicates and test rows can resample both at once.

Example:
    >>> import numpy as np, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = write_predictions(folder, np.array([3, 5]), np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]))
    >>> read_predictions(folder)["probabilities"].dtype
    dtype('float16')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PREDICTIONS_FILE", "read_predictions", "write_predictions"]

PREDICTIONS_FILE = "predictions.npz"


def write_predictions(run_dir: str | os.PathLike[str], test_index: Any, labels: Any, probabilities: Any) -> Path:
    """Write ``predictions.npz`` into ``run_dir`` atomically; returns its path."""
    from qubert.files import atomic_path

    path = Path(run_dir) / PREDICTIONS_FILE
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, test_index=np.asarray(test_index, dtype=np.int32), labels=np.asarray(labels, dtype=np.int16),
                            probabilities=np.asarray(probabilities, dtype=np.float16))
    return path


def read_predictions(run_dir: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """``{test_index, labels, probabilities}`` of a run directory's ``predictions.npz``."""
    with np.load(Path(run_dir) / PREDICTIONS_FILE, allow_pickle=False) as data:
        return {key: data[key] for key in ("test_index", "labels", "probabilities")}
