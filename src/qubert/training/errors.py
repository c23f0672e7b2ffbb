"""The errors of a training run; each message is one line, meant to be shown to the user as is.

Example:
    >>> str(TrainingConfigError("qubits must be a positive integer, got 0"))
    'qubits must be a positive integer, got 0'
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class TrainingConfigError(ValueError):
    """An invalid training option (one-line message)."""

    __module__ = "qubert.training"  # its public home (tracebacks and docs)


class RunDirectoryError(ValueError):
    """The run directory cannot be used as asked (exists, unfinished, resumed with other options)."""

    __module__ = "qubert.training"  # its public home (tracebacks and docs)


class DiskFullError(OSError):
    """The disk filled up while writing ``path``; the partial files were removed."""

    __module__ = "qubert.training"  # its public home (tracebacks and docs)

    def __init__(self, path: str | os.PathLike[str], kept: Path | None = None) -> None:
        resume = f" (the completed checkpoints are kept in {kept}: then add --resume)" if kept else ""
        super().__init__(errno.ENOSPC, f"no space left on device while writing {path}; free space or choose another --output-dir/--cache-dir{resume}")

    def __str__(self) -> str:
        return str(self.strerror)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_training`; ``run_dir`` holds complete checkpoints only."""

    __module__ = "qubert.training"  # its public home (tracebacks and docs)

    def __init__(self, run_dir: Path) -> None:
        super().__init__(f"training interrupted; resume the run in {run_dir} with resume=True (--resume)")
        self.run_dir = run_dir
