"""``qubert serve``: a trained model behind an HTTP JSON API (FastAPI + uvicorn, or Ray Serve)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from qubert.cli.common import config_option, usage_error, error_message, user_errors, err_console, warn_if_quantized

_SERVE_EXTRA = 'qubert serve needs FastAPI and uvicorn: pip install "qubert[serve]"'
_RAY_EXTRA = 'qubert serve --ray-address needs Ray Serve: pip install "ray[serve]"'


def serve(
    model_dir: Path = typer.Argument(..., help="A run directory or its model/ folder.", show_default=False),
    config: Optional[Path] = config_option(),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    max_batch_size: int = typer.Option(64, help="Micro-batching: most texts run in one model call (1: no batching).", rich_help_panel="Batching"),
    max_wait_ms: float = typer.Option(10.0, help="Micro-batching: how long queued requests may wait for more to join their call (a lone request on an idle server runs at once).", rich_help_panel="Batching"),
    max_batch_tokens: int = typer.Option(256, help="Micro-batching: a call's texts run length-sorted in encoder chunks of at most this many padded tokens (256: measured best on a 2-core CPU, see docs/serving.md).", rich_help_panel="Batching"),
    threads: Optional[int] = typer.Option(None, help="Torch CPU threads (default: the usable cores minus one, left to the HTTP event loop; on Ray: what Ray gives each replica).", show_default=False),
    max_texts: int = typer.Option(64, help="Most texts in one request (more: 413).", rich_help_panel="Limits"),
    max_queued_texts: int = typer.Option(256, help="Most texts waiting for the model across all requests; a request that would exceed it gets 503 with Retry-After at once instead of a long wait.", rich_help_panel="Limits"),
    max_chars: int = typer.Option(10_000, help="Most characters in one text (more: 413). Texts over the model's max_length tokens are truncated as in training.", rich_help_panel="Limits"),
    precision: Optional[str] = typer.Option(None, help="Encoder precision: auto, fp32, bf16 or fp16 (default: the one the model was trained in, so answers match qubert predict; bf16 is faster on CPUs with AVX512-BF16 but changes probabilities slightly)."),
    runtime: str = typer.Option("auto", help="Encoder runtime: auto (openvino where the openvino extra is installed and the model runs on the CPU, else torch; in the model's precision; in fp32 its answers equal PyTorch's to about 1e-7), torch, onnx or openvino, optionally name:precision (onnx:int8 opt-in, openvino:bf16). See docs/serving.md."),
    cache_dir: Optional[str] = typer.Option(None, help="Cache folder for the exported encoder graph (--runtime onnx / openvino)."),
    grace: float = typer.Option(30.0, help="On SIGTERM: seconds to let requests in flight finish (new ones get 503; those still running at the end get 503); the process exits about this long after the signal."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="Log every request."),
    ray_address: Optional[str] = typer.Option(None, help="Deploy on Ray Serve at this cluster address (auto, ray://host:10001, or local for a new one).", rich_help_panel="Scale-out"),
    replicas: int = typer.Option(1, help="With --ray-address: number of model replicas.", rich_help_panel="Scale-out"),
) -> None:
    """Serve a trained model: POST /v1/classify, GET /v1/model, GET /health, API docs at /docs.

    Example: qubert serve runs/sms_spam-quantum-frozen-s42 --port 8000
    then: curl -s localhost:8000/v1/classify -H 'content-type: application/json' -d '{"texts": ["WIN a FREE prize now"]}'
    """
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise usage_error(_SERVE_EXTRA) from None
    from qubert.serving.app import ServeSettings

    try:
        settings = ServeSettings(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_texts=max_texts, max_chars=max_chars, max_queued_texts=max_queued_texts)
        if not 0 <= port <= 65535:
            raise ValueError(f"--port must be between 0 and 65535, got {port}")
        if replicas < 1:
            raise ValueError(f"--replicas must be at least 1, got {replicas}")
        if replicas != 1 and ray_address is None:
            raise ValueError("--replicas needs --ray-address (locally qubert serve is one process)")
        if not math.isfinite(grace) or grace < 0:
            raise ValueError(f"--grace must be a finite number of seconds >= 0, got {grace}")
        if not math.isfinite(max_wait_ms):
            raise ValueError(f"--max-wait-ms must be a finite number, got {max_wait_ms}")
        if max_batch_tokens < 1:
            raise ValueError(f"--max-batch-tokens must be at least 1, got {max_batch_tokens}")
        if threads is not None and threads < 1:
            raise ValueError(f"--threads must be at least 1, got {threads}")
        from qubert.serving.classifier import TextClassifier, default_threads

        warn_if_quantized(runtime)
        model_options = {"precision": precision, "max_batch_tokens": max_batch_tokens, "threads": threads, "runtime": runtime, "cache_dir": cache_dir}
        if ray_address is not None:  # Ray gives each replica its CPUs (OMP_NUM_THREADS); --threads overrides
            return _serve_on_ray(model_dir, ray_address, replicas, host, port, settings, model_options)
        model_options["threads"] = threads or default_threads()
        from qubert.serving.app import create_app
        from qubert.serving.server import bind_socket, serve_locally

        err_console.print(f"Loading {model_dir} ...", highlight=False)
        classifier = TextClassifier.load(model_dir, **model_options)  # before the port is bound
        sock = bind_socket(host, port)
    except KeyboardInterrupt:
        raise typer.Exit(130)
    except user_errors() as err:
        raise usage_error(error_message(err))
    shown = f"[{host}]" if ":" in host else host
    bound = sock.getsockname()[1]
    described = classifier.describe()  # once: it draws the circuit and reads the run's metrics
    head = described["head"].get("type", "?")
    err_console.print(
        f"Serving {model_dir} ({head} head, encoder runtime {described['runtime']}, labels {', '.join(classifier.labels)}) on http://{shown}:{bound}  "
        f"(API docs: http://{shown}:{bound}/docs; SIGTERM or Ctrl-C drains and stops)", highlight=False, soft_wrap=True,
    )

    def drained(left: int) -> None:
        suffix = f"; {left} request(s) still running after --grace {grace:g} s were answered 503" if left else ""
        err_console.print(f"Draining: new requests get 503{suffix}", highlight=False)

    serve_locally(create_app(classifier, settings), sock, grace_s=grace, access_log=access_log, on_drained=drained,
                  on_stopped=lambda: err_console.print("Stopped.", highlight=False))


def _serve_on_ray(model_dir: Path, address: str, replicas: int, host: str, port: int, settings, model_options: dict) -> None:
    try:
        from ray import serve as _ray_serve  # noqa: F401
    except ImportError:
        raise ValueError(_RAY_EXTRA) from None
    from qubert.serving.classifier import TextClassifier
    from qubert.serving.server import deploy_on_ray

    TextClassifier.load(model_dir, **{**model_options, "threads": None})  # a bad run dir fails here, before Ray starts
    err_console.print(f"Deploying {model_dir} on Ray Serve ({address}, {replicas} replica(s)) at http://{host}:{port}", highlight=False)
    deploy_on_ray(str(Path(model_dir).expanduser().resolve()), address=address, replicas=replicas, host=host, port=port, settings=settings, model_options=model_options)
