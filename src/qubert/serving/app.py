"""The FastAPI app: ``POST /v1/classify``, ``GET /v1/model``, ``GET /health`` (OpenAPI docs at ``/docs``).

Client mistakes never reach the model and never give a 500: a body over the size limit, more than
``max_texts`` texts or a text over ``max_chars`` characters is a 413 with a message; a body that is
not UTF-8 JSON (RFC 8259: UTF-16 or UTF-32 is refused, not guessed), a missing or misspelt field,
an empty list, a wrong type or a string that is not valid Unicode is a 422 that names the field
(``loc``) and says what is wrong in words, without echoing the input back.

Load: at most ``max_queued_texts`` texts wait for the model; a request that would exceed that gets
503 with ``Retry-After`` at once rather than a long wait. A request whose client hangs up is
dropped from the queue and never computed. While the server shuts down, new requests get 503, the
ones in flight finish, and those still running when the grace period ends get 503
(:class:`ServingState`). ``/docs`` is a self-contained HTML page (no CDN), ``/openapi.json`` the
schema.

Example:
    >>> from fastapi.testclient import TestClient
    >>> app = create_app(TextClassifier.load("runs/sms_spam-quantum-frozen-s42"))  # doctest: +SKIP
    >>> with TestClient(app) as client:  # doctest: +SKIP
    ...     client.post("/v1/classify", json={"texts": ["WIN a FREE prize now"]}).json()["predictions"][0]["label"]
    'spam'
"""

from __future__ import annotations

import asyncio
import html
import json
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Callable, Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import WithJsonSchema

from qubert.serving.batching import BatcherStopped, BatchInfo, MicroBatcher, QueueFull
from qubert.serving.classifier import TextClassifier

__all__ = ["ClassifyRequest", "ClassifyResponse", "ServeSettings", "ServingState", "api_page", "create_app"]


@dataclass(frozen=True)
class ServeSettings:
    """Batching and request limits of one server.

    ``max_queued_texts`` bounds the texts waiting for the model (default 256: four full calls of
    64, a few seconds on a small CPU); a request that would overflow it gets 503 with
    ``Retry-After``.

    Example:
        >>> ServeSettings(max_texts=4, max_chars=100).max_body_bytes
        6528
    """

    max_batch_size: int = 64
    max_wait_ms: float = 10.0
    max_texts: int = 64
    max_chars: int = 10_000
    max_queued_texts: int = 256

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_texts", "max_chars", "max_queued_texts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max-wait-ms must be >= 0, got {self.max_wait_ms}")
        if self.max_queued_texts < self.max_texts:
            raise ValueError(f"max-queued-texts ({self.max_queued_texts}) must be at least max-texts ({self.max_texts}), or a full request could never be queued")

    @property
    def max_body_bytes(self) -> int:
        """Largest body read: room for ``max_texts`` texts of ``max_chars`` JSON-escaped characters
        (``\\uXXXX`` is 6 bytes per character) plus the punctuation; anything larger is a 413."""
        return self.max_texts * (6 * self.max_chars + 8) + 4096


class ServingState:
    """Requests in flight, whether the server is draining (then new requests get 503), and the
    cut-off at the end of the grace period (then the requests still running get 503)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.draining = False
        self.worker_stop_timeout = 30.0  # how long the lifespan's shutdown waits for the model worker
        self.worker_abandoned = False  # the worker was still in a model call when the app stopped
        self._cut_off: asyncio.Event | None = None

    def cut_off_event(self) -> asyncio.Event:
        """Set when the grace period is over (created in the running event loop on first use)."""
        if self._cut_off is None:
            self._cut_off = asyncio.Event()
        return self._cut_off

    def cut_off(self) -> None:
        """End the grace period: every request still waiting for the model answers 503 now."""
        self.worker_stop_timeout = 1.0  # the worker's current call is abandoned; its thread is a daemon
        self.cut_off_event().set()


# ------------------------------------------------------------------------------------------
# Request and response bodies (they make the OpenAPI schema at /docs)
# ------------------------------------------------------------------------------------------
class ClassifyRequest(BaseModel):
    """``{"texts": [...]}`` or ``{"text": "..."}``: exactly one of the two, never null (the
    schema's ``oneOf`` says so, so schema-driven clients and fuzzers agree with the server)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"oneOf": [{"required": ["texts"]}, {"required": ["text"]}], "examples": [{"texts": ["WIN a FREE prize now", "see you at 6"]}]},
    )

    # Optional (so a missing field is None) but never null in the schema: null is refused below.
    texts: Annotated[Optional[list[str]], WithJsonSchema({"type": "array", "items": {"type": "string"}, "minItems": 1})] = Field(
        None, min_length=1, description="Texts to classify (at least one)."
    )
    text: Annotated[Optional[str], WithJsonSchema({"type": "string"})] = Field(None, description="One text to classify (instead of texts).")

    @model_validator(mode="after")
    def _one_of_text_or_texts(self) -> "ClassifyRequest":
        given = [name for name in ("texts", "text") if name in self.model_fields_set]
        if len(given) != 1:
            raise ValueError("give exactly one of 'texts' (a list of strings) or 'text' (one string)")
        if getattr(self, given[0]) is None:
            raise ValueError(f"'{given[0]}' must be {'a list of strings' if given[0] == 'texts' else 'a string'}, not null")
        return self

    @property
    def all_texts(self) -> list[str]:
        return self.texts if self.texts is not None else [self.text]  # type: ignore[list-item]


class Prediction(BaseModel):
    label: str = Field(description="The most probable class.")
    score: float = Field(description="Its probability.")
    probabilities: dict[str, float] = Field(description="Probability of every class, by name.")
    truncated: bool = Field(description="The text had more tokens than max_length and was cut, as in training.")


class ClassifyMetadata(BaseModel):
    max_length: int = Field(description="Token limit of the model; longer texts are truncated as in training.")
    truncated: list[int] = Field(description="Indices of the texts that were truncated.")
    batch_texts: int = Field(description="Texts in the model call this request ran in (micro-batching).")
    batch_requests: int = Field(description="Requests in that model call.")


class ClassifyResponse(BaseModel):
    predictions: list[Prediction]
    metadata: ClassifyMetadata


# ------------------------------------------------------------------------------------------
# Middleware: drain on shutdown, bound the body before anything parses it
# ------------------------------------------------------------------------------------------
async def _send_json(send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers]})
    await send({"type": "http.response.body", "body": payload})


_DRAIN_LIMIT = 256 * 2**20  # bytes of a refused upload read and dropped before the connection is closed


class _Guard:
    """Pure ASGI middleware (it must see the raw body stream, so not ``BaseHTTPMiddleware``):
    503 while draining, in-flight counting, and a 413 for bodies over ``max_body_bytes``, counted
    as they arrive so a huge or endless body is never held in memory."""

    def __init__(self, app, state: ServingState, max_body_bytes: int) -> None:
        self.app = app
        self.state = state
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.state.draining:
            return await _send_json(send, 503, {"detail": "the server is shutting down; retry on another instance"}, [(b"connection", b"close"), (b"retry-after", b"1")])
        self.state.in_flight += 1
        try:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                receive = await self._bounded_body(scope, receive, send)
                if receive is None:
                    return
            await self.app(scope, receive, send)
        finally:
            self.state.in_flight -= 1

    async def _refuse(self, send, receive, body: dict[str, Any], more: bool = True) -> None:
        """Read and drop (never keep) the rest of the upload, up to a bound, then 413: closing a
        connection with unread data resets it, and the client would see the reset, not the 413."""
        dropped = 0
        while more and dropped < _DRAIN_LIMIT:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            dropped += len(message.get("body", b""))
            more = message.get("more_body", False)
        await _send_json(send, 413, body, [(b"connection", b"close")])

    async def _bounded_body(self, scope, receive, send):
        too_large = {"detail": f"request body too large: at most {self.max_body_bytes:,} bytes (see --max-texts and --max-chars)"}
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                if int(declared) > self.max_body_bytes:
                    await self._refuse(send, receive, too_large)
                    return None
            except ValueError:
                await _send_json(send, 400, {"detail": "invalid Content-Length header"}, [(b"connection", b"close")])
                return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._refuse(send, receive, too_large, more=message.get("more_body", False))
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False
        del chunks
        wrong = _not_utf8(body)
        if wrong is not None:
            await _send_json(send, 422, {"detail": [{"loc": ["body"], "msg": wrong, "type": "utf8"}], "message": f"body: {wrong}"})
            return None

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _not_utf8(body: bytes) -> str | None:
    """Why ``body`` is not UTF-8 JSON text, or ``None``. JSON exchanged between systems must be
    UTF-8 (RFC 8259 section 8.1); Python's ``json.loads`` would otherwise guess UTF-16 or UTF-32
    from the first bytes and accept what no other client sent on purpose."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"not UTF-8: byte 0x{body[err.start]:02x} at position {err.start} (send JSON as UTF-8)"
    if b"\x00" in body:  # UTF-16/32 of ASCII text decodes as "UTF-8" with NULs between the characters
        position = body.index(b"\x00")
        return f"holds a NUL byte at position {position}: UTF-16 or UTF-32? (send JSON as UTF-8)"
    return None


# ------------------------------------------------------------------------------------------
# The app
# ------------------------------------------------------------------------------------------
def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """422 naming each field (``loc``), without the offending input (it may be huge, or not encodable)."""
    details = [{"loc": list(e.get("loc", ())), "msg": _in_words(e), "type": str(e.get("type", ""))} for e in error.errors()]
    first = details[0] if details else {"loc": ["body"], "msg": "invalid request"}
    if first.get("type") == "json_invalid":  # loc is ("body", character position): say it in words
        return JSONResponse(status_code=422, content={"detail": details, "message": f"body: {first['msg']}"})
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return JSONResponse(status_code=422, content={"detail": details, "message": f"{where}: {first['msg']}"})


def _in_words(error: dict[str, Any]) -> str:
    """Pydantic's message, except "JSON decode error", which says neither what nor where."""
    if error.get("type") == "json_invalid":
        loc = error.get("loc", ())
        where = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        reason = str((error.get("ctx") or {}).get("error", "")).strip() or "malformed"
        reason = reason[0].lower() + reason[1:]
        if reason.endswith(" at") and where:  # "Unterminated string starting at" + " character 11"
            where = where[len(" at"):]
        return f"the body is not valid JSON: {reason}{where}"
    return str(error.get("msg", ""))


def _check_limits(texts: list[str], settings: ServeSettings) -> None:
    if len(texts) > settings.max_texts:
        raise HTTPException(413, f"too many texts: {len(texts)} in one request, at most {settings.max_texts} (--max-texts)")
    for i, text in enumerate(texts):
        if len(text) > settings.max_chars:
            raise HTTPException(413, f"texts[{i}] is too long: {len(text):,} characters, at most {settings.max_chars:,} (--max-chars)")
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # JSON's "\ud800": a lone surrogate, which no tokenizer can take
            raise RequestValidationError([{"loc": ("body", "texts", i), "msg": "not valid Unicode (a lone surrogate code point)", "type": "unicode"}]) from None


# Long: the routes are closures over one batcher and settings; FastAPI declares them inside the factory.
def create_app(classifier: TextClassifier, settings: ServeSettings | None = None, *, on_batch: Callable[[BatchInfo], None] | None = None) -> FastAPI:
    """The serving app for ``classifier``; its model worker starts and stops with the app's lifespan.

    ``app.state.batcher`` is the :class:`~qubert.serving.batching.MicroBatcher` and
    ``app.state.serving`` the :class:`ServingState` (set ``draining`` to refuse new requests).
    ``on_batch`` is the batcher's hook (see :class:`~qubert.serving.batching.MicroBatcher`).
    """
    settings = settings or ServeSettings()
    labels = classifier.labels

    def run_batch(texts: list[str]) -> list[dict[str, Any]]:
        result = classifier.classify(texts)
        rows = []
        for probs, cut in zip(result.probabilities.tolist(), result.truncated):
            best = max(range(len(probs)), key=probs.__getitem__)
            rows.append({"label": labels[best], "score": probs[best], "probabilities": dict(zip(labels, probs)), "truncated": cut})
        return rows

    batcher = MicroBatcher(run_batch, max_batch_size=settings.max_batch_size, max_wait_ms=settings.max_wait_ms, on_batch=on_batch, max_queued_texts=settings.max_queued_texts)
    state = ServingState()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        try:
            yield
        finally:
            state.worker_abandoned = not batcher.stop(timeout=state.worker_stop_timeout)

    app = FastAPI(
        title="qubert",
        summary="Text classification with a qubert model (BERT-family encoder + quantum or classical head).",
        version=_version(),
        lifespan=lifespan,
        redirect_slashes=False,  # "/v1/classify/" is a 404, not a redirect a POST client may not follow
        docs_url=None,  # FastAPI's Swagger UI loads its scripts from a CDN: blank offline; see /docs below
        redoc_url=None,
    )
    app.state.batcher = batcher
    app.state.serving = state
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_middleware(_Guard, state=state, max_body_bytes=settings.max_body_bytes)
    description = classifier.describe()

    @app.post(
        "/v1/classify",
        response_model=ClassifyResponse,
        responses={
            413: {"description": "Too many texts, a text too long, or a body too large"},
            503: {"description": f"Shutting down, or more than {settings.max_queued_texts} texts already queued (see the Retry-After header)"},
        },
    )
    async def classify(body: ClassifyRequest, request: Request) -> Any:
        """Labels and class probabilities for one text or a list of texts."""
        texts = body.all_texts
        _check_limits(texts, settings)
        try:
            outcome = await _until_done_or_gone(batcher.submit(texts), request, state)
        except BatcherStopped:
            raise HTTPException(503, "the server is shutting down") from None
        except QueueFull as err:
            raise HTTPException(503, f"the server is busy: {err} (--max-queued-texts); retry later", headers={"Retry-After": "1"}) from None
        if outcome is _GONE:  # nobody to answer; 499 is the access logs' "client closed request"
            return Response(status_code=499)
        if outcome is _CUT_OFF:
            raise HTTPException(503, "the server is shutting down: the request was cut off at the end of the grace period; retry", headers={"Retry-After": "1", "Connection": "close"})
        predictions, info = outcome
        return {
            "predictions": predictions,
            "metadata": {
                "max_length": classifier.max_length,
                "truncated": [i for i, p in enumerate(predictions) if p["truncated"]],
                "batch_texts": info.n_texts,
                "batch_requests": info.n_requests,
            },
        }

    @app.get("/v1/model")
    async def model_info() -> dict[str, Any]:
        """Labels, head, circuit (quantum heads), encoder, the run's metrics, and the server's limits."""
        return {**description, "serving": asdict(settings)}

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(api_page(app.openapi()))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and load: requests in flight, queued, and what the worker has run so far."""
        return {
            "status": "ok" if batcher.running else "stopped",
            "in_flight": state.in_flight - 1,  # not counting this request
            "queued": batcher.queued,
            "queued_texts": batcher.queued_texts,
            "dropped": batcher.dropped,
            "batches": batcher.batches,
            "requests": batcher.requests,
            "texts": batcher.texts,
        }

    return app


_GONE, _CUT_OFF = object(), object()


async def _until_done_or_gone(work, request: Request, state: ServingState) -> Any:
    """Await ``work`` unless the client hangs up (then ``_GONE``) or the grace period of a
    shutdown ends (then ``_CUT_OFF``); either way ``work`` is cancelled, which takes its texts out
    of the batcher's queue. Starlette does not cancel a handler whose client went away, so this
    listens for the ASGI ``http.disconnect`` message itself (the body has been read already)."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watchers = [asyncio.ensure_future(disconnected()), asyncio.ensure_future(state.cut_off_event().wait())]
    try:
        await asyncio.wait([task, *watchers], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for watcher in watchers:
            watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return _GONE if watchers[0].done() and not watchers[0].cancelled() else _CUT_OFF


def api_page(schema: dict[str, Any]) -> str:
    """A self-contained HTML page describing the API from its OpenAPI ``schema``: every path with
    its methods, summary, request body schema and responses. Written by hand because Swagger UI and
    ReDoc need their JavaScript bundles: FastAPI loads them from a CDN (a blank page offline) and
    the only packaged Swagger UI on the registry (swagger-ui-bundle 1.1.0, Swagger UI 4.15) cannot
    read the OpenAPI 3.1 schemas FastAPI writes.

    Example:
        >>> page = api_page({"info": {"title": "t", "version": "1"}, "paths": {"/health": {"get": {"summary": "Health"}}}})
        >>> "<h2>GET /health</h2>" in page
        True
    """
    info = schema.get("info", {})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(str(info.get('title', 'API')))} API</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "pre{background:#f4f4f4;padding:.6em;overflow-x:auto}h2{font-family:monospace}</style></head><body>",
        f"<h1>{html.escape(str(info.get('title', 'API')))} {html.escape(str(info.get('version', '')))}</h1>",
        f"<p>{html.escape(str(info.get('summary') or info.get('description') or ''))}</p>",
        "<p>The machine-readable schema is at <a href='/openapi.json'>/openapi.json</a>.</p>",
    ]
    components = schema.get("components", {}).get("schemas", {})
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            parts.append(f"<h2>{html.escape(method.upper())} {html.escape(path)}</h2>")
            parts.append(f"<p><b>{html.escape(str(op.get('summary', '')))}</b> {html.escape(str(op.get('description', '')))}</p>")
            content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if content:
                ref = content.get("schema", {}).get("$ref", "")
                body = components.get(ref.rsplit("/", 1)[-1], content.get("schema", {}))
                parts.append(f"<p>Request body (JSON):</p><pre>{html.escape(json.dumps(body, indent=2))}</pre>")
            rows = "".join(f"<li><code>{html.escape(code)}</code>: {html.escape(str(r.get('description', '')))}</li>" for code, r in op.get("responses", {}).items())
            parts.append(f"<p>Responses:</p><ul>{rows}</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qubert")
    except PackageNotFoundError:
        from qubert import __version__

        return __version__
