"""File-system helpers shared by run directories and caches: inter-process locks and permissions.

:func:`exclusive_lock` serialises processes on one name (a run directory, a cache entry): the
lock is an ``fcntl`` lock on a small file, so the kernel releases it when its holder dies, even by
SIGKILL, and the file is removed on release. :func:`apply_umask` gives a file made by
``tempfile.mkstemp`` / ``mkdtemp`` (always 0600 / 0700) the permissions an ordinary ``open`` or
``mkdir`` would have given it.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> lock = Path(tempfile.mkdtemp()) / ".entry.lock"
    >>> with exclusive_lock(lock):
    ...     lock.is_file()
    True
    >>> lock.exists()
    False
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

__all__ = ["LockHeld", "apply_umask", "current_umask", "exclusive_lock"]


class LockHeld(OSError):
    """The lock is held by another process (``pid``: its process id, or ``None`` if unknown)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        super().__init__(f"{path} is locked by process {pid if pid is not None else '(unknown)'}")
        self.path = path
        self.pid = pid


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str], *, blocking: bool = True) -> Iterator[Path]:
    """Hold an exclusive inter-process lock on ``path`` (created, and removed on release).

    Args:
        path: the lock file; its folder must exist.
        blocking: wait for the lock (True), or raise :class:`LockHeld` at once when another
            process holds it (False).

    The holder's pid is written into the file so a refused process can say who holds it. Where
    ``fcntl`` does not exist (Windows) the lock is a no-op.
    """
    path = Path(path)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield path
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise LockHeld(path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        # The previous holder may have removed the file between our open and our lock: then we
        # hold a lock on a deleted file, and must lock the file now at ``path`` instead.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # before unlocking, so a waiter that got the old file retries
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


def current_umask() -> int:
    """The process umask (``os.umask`` can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike[str], *, directory: bool = False) -> None:
    """Give ``path`` the mode ``open`` / ``mkdir`` would have: 0o666 / 0o777 minus the umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())
