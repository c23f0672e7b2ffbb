"""Running the app: one local uvicorn process with a graceful drain, or Ray Serve replicas.

Locally, SIGTERM (or Ctrl-C) starts a drain: new requests get 503, the ones in flight finish, then
uvicorn stops (a second signal stops at once). ``grace_s`` bounds the whole drain: requests still
waiting for the model when it ends are answered 503 (not cut off with a 500), and uvicorn's own
graceful shutdown then gets only a short remainder, so the process exits about ``grace_s`` (plus
at most ~1 s) after the signal, not twice that. On Ray Serve the same
app runs in every replica (each with its own micro-batcher) behind Ray's HTTP proxy, which does
the load balancing; Ray drains replicas its own way when the app is deleted.

Example:
    >>> app = create_app(TextClassifier.load("runs/sms_spam-quantum-frozen-s42"))  # doctest: +SKIP
    >>> serve_locally(app, bind_socket("127.0.0.1", 8000))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from dataclasses import asdict
from typing import Any, Callable

__all__ = ["DrainingServer", "bind_socket", "deploy_on_ray", "serve_locally"]


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``OSError`` with a one-line message when taken).

    Binding before uvicorn starts turns "address in use" into a one-line user error instead of a log
    message and ``sys.exit(1)`` from inside uvicorn.

    Example:
        >>> sock = bind_socket("127.0.0.1", 0)
        >>> sock.getsockname()[1] > 0
        True
        >>> sock.close()
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise OSError(err.errno, f"cannot listen on {host}:{port}: {err.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


_CUT_OFF_WAIT_S = 0.5  # after the cut-off: how long the handlers get to send their 503s


def _drop_cancelled(record: logging.LogRecord) -> bool:
    """Log filter: False for the errors uvicorn logs when a forced stop cancels the lifespan task
    (its traceback is the message) or a request still running (its exception is attached)."""
    import asyncio

    cancelled = record.exc_info is not None and isinstance(record.exc_info[1], asyncio.CancelledError)
    return not (record.levelno >= logging.ERROR and (cancelled or "CancelledError" in record.getMessage()))


def _draining_server_class():
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn's server with a drain before shutdown: on the first SIGTERM / SIGINT the app's
        :class:`~qubert.serving.app.ServingState` starts refusing requests (503); uvicorn's own
        shutdown begins once nothing is in flight, or once ``grace_s`` has passed and the requests
        still running have been answered 503 (:meth:`ServingState.cut_off`)."""

        def __init__(self, config, state, grace_s: float = 30.0, on_drained: Callable[[int], None] | None = None) -> None:
            super().__init__(config)
            self.state = state
            self.grace_s = grace_s
            self.on_drained = on_drained
            self._drain_started: float | None = None
            self._cut_at: float | None = None
            self._cut_count = 0

        def handle_exit(self, sig, frame) -> None:  # runs in the signal handler: set flags only
            if self._drain_started is not None:  # a second signal: stop now
                # uvicorn then cancels the app's tasks and logs each cancellation as an error with
                # its traceback; the user asked for exactly this stop, so it is not reported.
                logging.getLogger("uvicorn.error").addFilter(_drop_cancelled)
                self.force_exit = self.should_exit = True
                return
            self._drain_started = time.monotonic()
            self.state.draining = True

        async def on_tick(self, counter: int) -> bool:
            if self._drain_started is not None and not self.should_exit:
                now = time.monotonic()
                if self.state.in_flight == 0 or (self._cut_at is not None and now - self._cut_at > _CUT_OFF_WAIT_S):
                    self._stop(now)
                elif self._cut_at is None and now - self._drain_started > self.grace_s:
                    self._cut_count = self.state.in_flight
                    self._cut_at = now
                    self.state.cut_off()  # the handlers answer 503 and return; in_flight falls to 0
            return await super().on_tick(counter)

        def _stop(self, now: float) -> None:
            # uvicorn's graceful shutdown waits again for connections and tasks, up to
            # timeout_graceful_shutdown: give it what is left of grace_s, at least a moment to
            # flush the 503s, so the total stays about grace_s.
            left = self.grace_s - (now - self._drain_started)
            self.config.timeout_graceful_shutdown = max(_CUT_OFF_WAIT_S, left)
            if self.on_drained is not None:
                self.on_drained(self._cut_count)
            self.should_exit = True

    return DrainingServer


def __getattr__(name: str) -> Any:  # DrainingServer without importing uvicorn at module import
    if name == "DrainingServer":
        return _draining_server_class()
    raise AttributeError(name)


def serve_locally(
    app, sock: socket.socket, *, grace_s: float = 30.0, access_log: bool = True, log_level: str = "info",
    on_drained: Callable[[int], None] | None = None, on_stopped: Callable[[], None] | None = None,
) -> None:
    """Run ``app`` with uvicorn on an already bound socket until SIGTERM / SIGINT (then drain).

    ``on_stopped`` runs once the server has stopped. If the model worker was still inside a call
    cut off at the end of the grace period, the process then exits at once (``os._exit(0)``):
    with torch imported, the interpreter's exit waits for every thread, daemon or not, so the
    abandoned call would hold the process for the rest of its run, beyond ``grace_s``.
    """
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=grace_s, lifespan="on")
    server = _draining_server_class()(config, app.state.serving, grace_s=grace_s, on_drained=on_drained)
    server.run(sockets=[sock])
    if on_stopped is not None:
        on_stopped()
    if app.state.serving.worker_abandoned:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def deploy_on_ray(model_dir: str, *, address: str, replicas: int, host: str, port: int, settings, model_options: dict[str, Any] | None = None, app_name: str = "qubert") -> None:
    """Deploy the same app on Ray Serve: ``replicas`` copies, each loading the model and batching
    its own requests, behind Ray's HTTP proxy on ``host:port``. Blocks until SIGTERM / Ctrl-C,
    then deletes the app (Ray drains its replicas).

    Args:
        address: a Ray cluster address (``auto``, ``ray://head:10001``, ``host:6379``) or ``local``
            for a new single-machine Ray instance.
        model_options: keyword arguments of :meth:`TextClassifier.load` (``precision``,
            ``max_batch_tokens``, ``threads``) that every replica loads its model with.
    """
    import signal

    import ray
    from ray import serve

    from qubert.serving.app import ServeSettings

    options = asdict(settings)

    @serve.deployment(num_replicas=replicas, name="qubert-classifier")
    @serve.ingress()
    class QubertDeployment:
        def __init__(self, model_dir: str, options: dict[str, Any], model_options: dict[str, Any]) -> None:
            from qubert.serving.classifier import TextClassifier

            self.classifier = TextClassifier.load(model_dir, **model_options)
            self.settings = ServeSettings(**options)

        def __serve_build_asgi_app__(self):
            from qubert.serving.app import create_app

            return create_app(self.classifier, self.settings)

    ray.init(address=None if address == "local" else address, ignore_reinit_error=True, logging_level="WARNING")
    serve.start(http_options={"host": host, "port": port})
    serve.run(QubertDeployment.bind(model_dir, options, dict(model_options or {})), name=app_name, route_prefix="/")
    stop = {"now": False}

    def request_stop(sig, frame) -> None:
        stop["now"] = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop["now"]:
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        serve.delete(app_name)
