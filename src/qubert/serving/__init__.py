"""Serving a trained model over HTTP (``qubert serve``; the ``[serve]`` extra: FastAPI + uvicorn).

- :mod:`qubert.serving.classifier`: :class:`TextClassifier`, a saved model behind one call.
- :mod:`qubert.serving.batching`: :class:`MicroBatcher`, dynamic micro-batching on one worker thread.
- :mod:`qubert.serving.app`: :func:`create_app`, the FastAPI app (``/v1/classify``, ``/v1/model``, ``/health``).
- :mod:`qubert.serving.server`: :func:`serve_locally` (uvicorn, drain on SIGTERM) and :func:`deploy_on_ray`.

Example:
    >>> from qubert.serving import TextClassifier, create_app, ServeSettings  # doctest: +SKIP
    >>> app = create_app(TextClassifier.load("runs/sms_spam-quantum-frozen-s42"), ServeSettings(max_batch_size=32))  # doctest: +SKIP
"""

from __future__ import annotations

from qubert.serving.batching import BatchInfo, MicroBatcher
from qubert.serving.classifier import ClassifiedTexts, TextClassifier

__all__ = ["BatchInfo", "ClassifiedTexts", "MicroBatcher", "ServeSettings", "TextClassifier", "create_app", "deploy_on_ray", "serve_locally"]


def __getattr__(name: str):  # the FastAPI / uvicorn parts load on first use
    if name in ("ServeSettings", "create_app"):
        from qubert.serving import app

        return getattr(app, name)
    if name in ("deploy_on_ray", "serve_locally"):
        from qubert.serving import server

        return getattr(server, name)
    raise AttributeError(f"module 'qubert.serving' has no attribute {name!r}")
