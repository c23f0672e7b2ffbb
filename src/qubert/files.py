"""File-system helpers shared by run directories, caches and command outputs: atomic writes,
disk-full detection, inter-process locks and permissions.

Every file qubert writes goes through :func:`atomic_path` (or :func:`write_text`,
:func:`write_json`, :func:`write_bytes`, :func:`replace_dir` on top of it): the content is written
to a temporary sibling and moved into place with ``os.replace``, so a reader never sees half a file
and an interrupted write leaves the old file (or none). **Permission rule:** written files and
folders follow the process umask, exactly as ``open`` / ``mkdir`` would have made them (0o666 /
0o777 minus the umask), although ``mkstemp`` / ``mkdtemp`` create them 0600 / 0700.
:func:`is_disk_full` is the one test for "the disk filled up" (an ``ENOSPC`` ``OSError``, or the
text safetensors raises instead).

:func:`exclusive_lock` serialises processes on one name (a run directory, a cache entry): the
lock is an ``fcntl`` lock on a small file, so the kernel releases it when its holder dies, even by
SIGKILL, and the file is removed on release. :func:`apply_umask` gives a file made by
``tempfile.mkstemp`` / ``mkdtemp`` (always 0600 / 0700) the permissions an ordinary ``open`` or
``mkdir`` would have given it.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "metrics.json"
    >>> write_json(target, {"test_macro_f1": 0.9})
    >>> print(target.read_text(), end="")
    {
      "test_macro_f1": 0.9
    }
    >>> lock = Path(tempfile.mkdtemp()) / ".entry.lock"
    >>> with exclusive_lock(lock):
    ...     lock.is_file()
    True
    >>> lock.exists()
    False
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = [
    "LockHeld",
    "apply_umask",
    "atomic_path",
    "current_umask",
    "exclusive_lock",
    "is_disk_full",
    "replace_dir",
    "write_bytes",
    "write_json",
    "write_text",
]


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, make_parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path`` in one step.

    Args:
        path: the file to (re)place.
        make_parents: create missing parent folders (False: the caller has checked they exist).

    The temporary file is removed whatever happens; an ``OSError`` raised inside the block that
    names no file gets ``path`` as its ``filename`` (a full disk names the file, not the temporary).

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "figure.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("drawn")
        >>> target.read_text()
        'drawn'
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        apply_umask(tmp)  # mkstemp makes 0600; the file gets the permissions open() would give it
        os.replace(tmp, path)
    except OSError as err:
        err.filename = err.filename or str(path)
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike[str], text: str, *, make_parents: bool = True) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    with atomic_path(path, make_parents=make_parents) as tmp:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8", newline="") as fh:
            fh.write(text)


def write_bytes(path: str | os.PathLike[str], data: bytes, *, make_parents: bool = True) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, make_parents=make_parents) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike[str], data: Any, *, sort_keys: bool = False, default: Callable[[Any], Any] | None = None) -> None:
    """Write ``data`` as indented JSON (with a final newline) to ``path`` atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys, default=default) + "\n")


def replace_dir(build: Callable[[Path], None], target: str | os.PathLike[str]) -> None:
    """Build a folder with ``build(tmp)`` in a temporary sibling of ``target``, then swap it in.

    An existing ``target`` is moved to ``.<name>.old`` first and removed after the swap, so at
    every moment either the old or the new folder is complete.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "model"
        >>> replace_dir(lambda folder: (folder / "config.json").write_text("{}"), target)
        >>> sorted(p.name for p in target.iterdir())
        ['config.json']
    """
    target = Path(target)
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


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` says the disk filled up.

    safetensors reports I/O failures as ``SafetensorError`` text, not as an ``OSError`` with
    ``errno``, so the message is checked too.

    Example:
        >>> is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
        True
        >>> is_disk_full(ValueError("bad value"))
        False
    """
    return (isinstance(err, OSError) and err.errno == errno.ENOSPC) or "No space left on device" in str(err)
