"""What a run was made with: package versions, the encoder's identity and the source commit.

:func:`run_versions` is written to ``<run_dir>/versions.json`` when a run starts (a resumed run
adds its own record under ``resumed``, so a run continued under other versions says so)::

    {"qubert": "0.1.0", "torch": "2.13.0+cpu", "transformers": "5.24.0", "python": "3.11.7",
     "encoder": {"model": "default", "path": ".../all-MiniLM-L6-v2", "identity": "3f9c0a..."},
     "git": {"commit": "ae548eb...", "dirty": false}, "recorded_at": "2025-12-01T11:40:00+00:00"}

``encoder.identity`` is :func:`qubert.modeling.encoder_identity` (a hash of the encoder's
architecture and weights, the key of the embedding caches); ``git`` is ``null`` unless qubert is
imported from a git checkout of its own source.

Example:
    >>> sorted(run_versions(model="default", path="/m", identity="ab12"))
    ['encoder', 'git', 'python', 'qubert', 'recorded_at', 'torch', 'transformers']
"""

from __future__ import annotations

import datetime
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["git_revision", "run_versions"]


def run_versions(*, model: str, path: str, identity: str | None) -> dict[str, Any]:
    """The versions record of a run whose encoder is ``model`` (as given), loaded from ``path``."""
    import torch
    import transformers

    import qubert

    return {
        "qubert": qubert.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "encoder": {"model": model, "path": path, "identity": identity},
        "git": git_revision(),
        "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def git_revision(source: Path | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the qubert checkout the code runs from, else None.

    Only a checkout of qubert itself counts (``<repo>/src/qubert`` beside a ``.git`` and a
    ``pyproject.toml`` naming qubert): an installed copy inside some other repository (a virtual
    environment in a project folder) has no commit of its own. ``dirty``: tracked files differ
    from the commit.
    """
    package = (source or Path(__file__)).resolve().parent
    repo = package.parent.parent
    pyproject = repo / "pyproject.toml"
    if package.name != "qubert" or not (repo / ".git").exists() or not pyproject.is_file():
        return None
    if 'name = "qubert"' not in pyproject.read_text(encoding="utf-8", errors="replace"):
        return None
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):  # no git binary, not a work tree, a slow file system
        return None
    return {"commit": commit, "dirty": bool(status.strip())}
