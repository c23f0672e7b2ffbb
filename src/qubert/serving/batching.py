"""Dynamic micro-batching: requests that arrive together run as one model call.

One worker thread owns the model. Each request (a list of texts) is queued with an asyncio future;
the worker takes the oldest one and every request already queued behind it (up to
``max_batch_size`` texts), runs them as one call and hands each request its own slice of the
results. A lone request on an idle worker runs at once: it waits for nobody, and whatever arrives
during its call is gathered into the next one. When others were queued with it (concurrent
traffic), the worker keeps gathering until the batch holds ``max_batch_size`` texts or
``max_wait_ms`` have passed since the oldest one arrived (under load that moment is usually past,
so nobody waits). A request is never split, so one larger than ``max_batch_size`` runs alone;
``max_batch_size=1`` turns batching off (one request per call).

Written by hand because the pieces that exist do other things: Ray Serve's ``@serve.batch`` batches
calls, not texts, and only inside Ray; a thread that owns the model keeps torch off the event loop.

Example:
    >>> import asyncio
    >>> sizes = []
    >>> batcher = MicroBatcher(lambda texts: [len(t) for t in texts], max_batch_size=8, max_wait_ms=50,
    ...                        on_batch=lambda info: sizes.append(info.n_texts))
    >>> async def two_clients():
    ...     return await asyncio.gather(batcher.submit(["a", "bb"]), batcher.submit(["ccc"]))
    >>> batcher.start()
    >>> [results for results, _ in asyncio.run(two_clients())]
    [[1, 2], [3]]
    >>> batcher.stop(); sum(sizes)  # one call of 3 texts, or 2 then 1 if the worker was quicker
    3
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

__all__ = ["BatchInfo", "BatcherStopped", "MicroBatcher"]


class BatcherStopped(RuntimeError):
    """The batcher is not running (not started yet, or shutting down)."""


@dataclass(frozen=True)
class BatchInfo:
    """One model call: how many requests and texts it gathered."""

    n_requests: int
    n_texts: int


@dataclass
class _Pending:
    texts: Sequence[str]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    arrived: float = field(default_factory=time.monotonic)


_STOP = object()


def _resolve(future: asyncio.Future, value: Any, error: BaseException | None) -> None:
    if future.done():  # the client went away and its handler was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class MicroBatcher:
    """Gather concurrent requests into batches run by one worker thread (see the module docstring).

    Args:
        run_batch: ``texts -> a sequence of one result per text``; called only from the worker thread.
        max_batch_size: most texts per call (``1``: no batching, one request per call).
        max_wait_ms: how long the oldest queued request may wait for others to join it.
        on_batch: called with a :class:`BatchInfo` in the worker thread before each call (a test
            hook: it records batch sizes, or sleeps to make a call slow).
    """

    def __init__(self, run_batch: Callable[[list[str]], Any], *, max_batch_size: int = 64, max_wait_ms: float = 10.0, on_batch: Callable[[BatchInfo], None] | None = None) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.run_batch = run_batch
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.on_batch = on_batch
        self.batches = 0
        self.texts = 0
        self.requests = 0
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._accepting = False

    @property
    def running(self) -> bool:
        return self._accepting

    @property
    def queued(self) -> int:
        """Requests waiting for the worker (approximate, as for any queue)."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._accepting = True
        self._thread = threading.Thread(target=self._work, name="qubert-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Refuse new requests, finish the queued ones, then stop the worker."""
        self._accepting = False
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    async def submit(self, texts: Sequence[str]) -> tuple[Any, BatchInfo]:
        """Queue ``texts``; returns ``(their results, the BatchInfo of the call they ran in)``.

        Raises:
            BatcherStopped: the batcher is not running.
        """
        if not self._accepting:
            raise BatcherStopped("the model worker is not running")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Pending(list(texts), future, loop))
        return await future

    # ------------------------------------------------------------------ worker thread
    def _work(self) -> None:
        carry: Any = None
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is _STOP:
                return
            batch, carry = self._gather(first)
            self._run(batch)

    def _gather(self, first: _Pending) -> tuple[list[_Pending], Any]:
        batch, n_texts = [first], len(first.texts)
        deadline = first.arrived + self.max_wait
        while n_texts < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                if remaining > 0 and len(batch) > 1:  # concurrent traffic: worth waiting for more
                    item = self._queue.get(timeout=remaining)
                else:  # a lone request on an idle worker does not wait; nor does anyone past the deadline
                    item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP or n_texts + len(item.texts) > self.max_batch_size:
                return batch, item  # runs next (a stop is honoured after this batch)
            batch.append(item)
            n_texts += len(item.texts)
        return batch, None

    def _run(self, batch: list[_Pending]) -> None:
        batch = [p for p in batch if not p.future.cancelled()]
        if not batch:
            return
        sizes = [len(p.texts) for p in batch]
        info = BatchInfo(n_requests=len(batch), n_texts=sum(sizes))
        try:
            if self.on_batch is not None:
                self.on_batch(info)
            results = self.run_batch([t for p in batch for t in p.texts])
            if len(results) != info.n_texts:
                raise RuntimeError(f"run_batch returned {len(results)} results for {info.n_texts} texts")
            outcome = [(part, None) for part in _split(results, sizes)]
        except Exception as err:  # the model failed: every request of the batch gets the error
            outcome = [(None, err)] * len(batch)
        self.batches += 1
        self.requests += len(batch)
        self.texts += info.n_texts
        for pending, (part, error) in zip(batch, outcome):
            value = (part, info) if error is None else None
            try:
                pending.loop.call_soon_threadsafe(_resolve, pending.future, value, error)
            except RuntimeError:  # that request's event loop is closed
                pass


def _split(results: Sequence[Any], sizes: Sequence[int]) -> list[Any]:
    parts, start = [], 0
    for n in sizes:
        parts.append(list(results[start : start + n]))
        start += n
    return parts
