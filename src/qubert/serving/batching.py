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

The queue is bounded in texts (``max_queued_texts``): a request that would overflow it is refused
at once with :class:`QueueFull` (the server answers 503 with ``Retry-After``), so a burst cannot
make later requests wait without limit. A request whose caller stopped waiting (its future was
cancelled: the HTTP client hung up) leaves the queue's count at once and is dropped by the worker
without being computed.

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
    >>> batcher.stop(), sum(sizes)  # one call of 3 texts, or 2 then 1 if the worker was quicker
    (True, 3)
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

__all__ = ["BatchInfo", "BatcherStopped", "MicroBatcher", "QueueFull"]


class BatcherStopped(RuntimeError):
    """The batcher is not running (not started yet, or shutting down)."""


class QueueFull(RuntimeError):
    """Queuing the request would exceed ``max_queued_texts``; try again later."""


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
    counted: bool = True  # still counted in the batcher's queued texts


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
        max_queued_texts: most texts waiting for the worker (not counting the call it is running);
            ``None``: no bound.
    """

    def __init__(self, run_batch: Callable[[list[str]], Any], *, max_batch_size: int = 64, max_wait_ms: float = 10.0, on_batch: Callable[[BatchInfo], None] | None = None, max_queued_texts: int | None = None) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queued_texts is not None and max_queued_texts < 1:
            raise ValueError(f"max_queued_texts must be at least 1, got {max_queued_texts}")
        self.run_batch = run_batch
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.on_batch = on_batch
        self.max_queued_texts = max_queued_texts
        self.batches = 0
        self.texts = 0
        self.requests = 0
        self.dropped = 0  # requests whose caller had gone before the worker reached them
        self._queued_texts = 0
        self._count_lock = threading.Lock()
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

    @property
    def queued_texts(self) -> int:
        """Texts of the requests waiting for the worker whose callers still wait."""
        return self._queued_texts

    def _uncount(self, pending: _Pending) -> None:
        with self._count_lock:
            if pending.counted:
                pending.counted = False
                self._queued_texts -= len(pending.texts)

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._accepting = True
        self._thread = threading.Thread(target=self._work, name="qubert-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Refuse new requests, finish the queued ones, then stop the worker.

        Returns False when the worker was still in a call after ``timeout`` seconds (it is a
        daemon thread, left to finish or to die with the process), True otherwise.
        """
        self._accepting = False
        if self._thread is None:
            return True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        ended = not self._thread.is_alive()
        self._thread = None
        return ended

    async def submit(self, texts: Sequence[str]) -> tuple[Any, BatchInfo]:
        """Queue ``texts``; returns ``(their results, the BatchInfo of the call they ran in)``.

        Cancelling the awaiting task (a client that hung up) takes the texts out of the queue's
        count at once; the worker then skips them.

        Raises:
            BatcherStopped: the batcher is not running.
            QueueFull: the queue holds too many texts to take these (``max_queued_texts``).
        """
        if not self._accepting:
            raise BatcherStopped("the model worker is not running")
        loop = asyncio.get_running_loop()
        pending = _Pending(list(texts), loop.create_future(), loop)
        with self._count_lock:
            if self.max_queued_texts is not None and self._queued_texts + len(pending.texts) > self.max_queued_texts:
                raise QueueFull(f"{self._queued_texts} texts are queued; at most {self.max_queued_texts} may wait")
            self._queued_texts += len(pending.texts)
        pending.future.add_done_callback(lambda future: self._uncount(pending) if future.cancelled() else None)
        self._queue.put(pending)
        return await pending.future

    # ------------------------------------------------------------------ worker thread
    def _work(self) -> None:
        carry: Any = None
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is _STOP:
                return
            self._uncount(first)
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
            self._uncount(item)
            batch.append(item)
            n_texts += len(item.texts)
        return batch, None

    def _run(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.done()]  # done before its result: cancelled
        self.dropped += len(batch) - len(live)
        batch = live
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
