"""The FastAPI app: ``POST /v1/classify``, ``GET /v1/model``, ``GET /health`` (OpenAPI docs at ``/docs``).

Client mistakes never reach the model and never give a 500: a body over the size limit, more than
``max_texts`` texts or a text over ``max_chars`` characters is a 413 with a message; a body that is
not JSON, a missing or misspelt field, an empty list, a wrong type or a string that is not valid
Unicode is a 422 that names the field (``loc``), without echoing the input back. While the server
shuts down, new requests get 503 and the ones in flight finish (:class:`ServingState`).

Example:
    >>> from fastapi.testclient import TestClient
    >>> app = create_app(TextClassifier.load("runs/sms_spam-quantum-frozen-s42"))  # doctest: +SKIP
    >>> with TestClient(app) as client:  # doctest: +SKIP
    ...     client.post("/v1/classify", json={"texts": ["WIN a FREE prize now"]}).json()["predictions"][0]["label"]
    'spam'
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from qubert.serving.batching import BatcherStopped, BatchInfo, MicroBatcher
from qubert.serving.classifier import TextClassifier

__all__ = ["ClassifyRequest", "ClassifyResponse", "ServeSettings", "ServingState", "create_app"]


@dataclass(frozen=True)
class ServeSettings:
    """Batching and request limits of one server.

    Example:
        >>> ServeSettings(max_texts=4, max_chars=100).max_body_bytes
        6528
    """

    max_batch_size: int = 64
    max_wait_ms: float = 10.0
    max_texts: int = 64
    max_chars: int = 10_000

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_texts", "max_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max-wait-ms must be >= 0, got {self.max_wait_ms}")

    @property
    def max_body_bytes(self) -> int:
        """Largest body read: room for ``max_texts`` texts of ``max_chars`` JSON-escaped characters
        (``\\uXXXX`` is 6 bytes per character) plus the punctuation; anything larger is a 413."""
        return self.max_texts * (6 * self.max_chars + 8) + 4096


class ServingState:
    """Requests in flight and whether the server is draining (then new requests get 503)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.draining = False


# ------------------------------------------------------------------------------------------
# Request and response bodies (they make the OpenAPI schema at /docs)
# ------------------------------------------------------------------------------------------
class ClassifyRequest(BaseModel):
    """``{"texts": [...]}`` or ``{"text": "..."}``."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"texts": ["WIN a FREE prize now", "see you at 6"]}]})

    texts: Optional[list[str]] = Field(None, min_length=1, description="Texts to classify (at least one).")
    text: Optional[str] = Field(None, description="One text to classify (instead of texts).")

    @model_validator(mode="after")
    def _one_of_text_or_texts(self) -> "ClassifyRequest":
        if (self.texts is None) == (self.text is None):
            raise ValueError("give exactly one of 'texts' (a list of strings) or 'text' (one string)")
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

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


# ------------------------------------------------------------------------------------------
# The app
# ------------------------------------------------------------------------------------------
def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """422 naming each field (``loc``), without the offending input (it may be huge, or not encodable)."""
    details = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in error.errors()]
    first = details[0] if details else {"loc": ["body"], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return JSONResponse(status_code=422, content={"detail": details, "message": f"{where}: {first['msg']}"})


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

    batcher = MicroBatcher(run_batch, max_batch_size=settings.max_batch_size, max_wait_ms=settings.max_wait_ms, on_batch=on_batch)
    state = ServingState()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    app = FastAPI(
        title="qubert",
        summary="Text classification with a qubert model (BERT-family encoder + quantum or classical head).",
        version=_version(),
        lifespan=lifespan,
        redirect_slashes=False,  # "/v1/classify/" is a 404, not a redirect a POST client may not follow
    )
    app.state.batcher = batcher
    app.state.serving = state
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_middleware(_Guard, state=state, max_body_bytes=settings.max_body_bytes)
    description = classifier.describe()

    @app.post("/v1/classify", response_model=ClassifyResponse, responses={413: {"description": "Too many texts, a text too long, or a body too large"}, 503: {"description": "Shutting down"}})
    async def classify(request: ClassifyRequest) -> dict[str, Any]:
        """Labels and class probabilities for one text or a list of texts."""
        texts = request.all_texts
        _check_limits(texts, settings)
        try:
            predictions, info = await batcher.submit(texts)
        except BatcherStopped:
            raise HTTPException(503, "the server is shutting down") from None
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

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and load: requests in flight, queued, and what the worker has run so far."""
        return {
            "status": "ok" if batcher.running else "stopped",
            "in_flight": state.in_flight - 1,  # not counting this request
            "queued": batcher.queued,
            "batches": batcher.batches,
            "requests": batcher.requests,
            "texts": batcher.texts,
        }

    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qubert")
    except PackageNotFoundError:
        from qubert import __version__

        return __version__
