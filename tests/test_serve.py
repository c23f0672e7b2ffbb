"""``qubert serve``: the FastAPI app (TestClient / httpx), micro-batching, limits, and a real uvicorn
process drained by SIGTERM. Tiny random BERT with a 2-qubit quantum head, trained for 1 epoch."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from qubert.cli import app as cli  # noqa: E402
from qubert.serving import ServeSettings, TextClassifier, create_app  # noqa: E402

runner = CliRunner()
TEXTS = ["good great", "awful dreadful", "superb", "poor fine bad", "great " * 40]  # the last one has > max_length tokens
MAX_LENGTH = 12


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, save_tiny_bert):
    """A run directory as ``qubert train`` leaves it (model/ + metrics.json), built directly: an
    untrained head on a tiny random encoder classifies as deterministically as a trained one."""
    from transformers import AutoTokenizer

    from qubert.modeling import QubertForSequenceClassification

    root = tmp_path_factory.mktemp("serve")
    encoder = save_tiny_bert(root / "encoder", num_hidden_layers=1)
    model = QubertForSequenceClassification.from_encoder(
        encoder, head={"type": "quantum", "n_qubits": 2, "n_layers": 1}, id2label={0: "neg", 1: "pos"}, max_length=MAX_LENGTH, seed=0,
    )
    out = root / "run"
    model.save_pretrained(out / "model")
    AutoTokenizer.from_pretrained(encoder).save_pretrained(out / "model")
    (out / "metrics.json").write_text(json.dumps({"test_macro_f1": 0.5, "test_accuracy": 0.5}))
    return out


@pytest.fixture(scope="module")
def classifier(run_dir):
    return TextClassifier.load(run_dir)


def _predict_cli(run_dir: Path, texts: list[str]) -> list[dict]:
    result = runner.invoke(cli, ["predict", str(run_dir), "--format", "jsonl"], input="".join(t + "\n" for t in texts))
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_classify_agrees_with_qubert_predict_and_flags_truncation(run_dir, classifier):
    expected = _predict_cli(run_dir, TEXTS)
    with TestClient(create_app(classifier)) as client:
        response = client.post("/v1/classify", json={"texts": TEXTS})
        single = client.post("/v1/classify", json={"text": TEXTS[0]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["predictions"]) == len(TEXTS)
    for got, want in zip(body["predictions"], expected):
        assert got["label"] == want["label"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)
        assert got["score"] == pytest.approx(max(want["probabilities"].values()), abs=1e-5)
    assert body["metadata"]["truncated"] == [len(TEXTS) - 1]  # only the long text, cut as training cuts it
    assert [p["truncated"] for p in body["predictions"]] == [False] * (len(TEXTS) - 1) + [True]
    assert body["metadata"]["max_length"] == MAX_LENGTH
    assert single.status_code == 200 and single.json()["predictions"][0]["probabilities"] == pytest.approx(expected[0]["probabilities"], abs=1e-5)


def test_model_info_health_and_docs(classifier, run_dir):
    with TestClient(create_app(classifier, ServeSettings(max_texts=7))) as client:
        raw_info = client.get("/v1/model").text
        info = json.loads(raw_info)
        health = client.get("/health").json()
        docs = client.get("/docs")
        schema = client.get("/openapi.json").json()
    assert info["name"] == run_dir.name and str(run_dir.parent) not in raw_info  # the model's name, not the server's paths
    assert info["encoder"]["name"] == "encoder"
    assert "/v1/classify" in docs.text and "<script" not in docs.text and "cdn" not in docs.text.lower()  # works offline
    request = schema["components"]["schemas"]["ClassifyRequest"]
    assert request["oneOf"] == [{"required": ["texts"]}, {"required": ["text"]}]
    assert "null" not in json.dumps(request["properties"])
    assert info["labels"] == ["neg", "pos"] and info["head"]["type"] == "quantum"
    assert info["circuit"]["n_qubits"] == 2 and "diagram" in info["circuit"]
    assert info["encoder"]["hidden_size"] == 32 and info["max_length"] == MAX_LENGTH
    assert "test_macro_f1" in info["metrics"] and info["serving"]["max_texts"] == 7
    assert health["status"] == "ok" and health["in_flight"] == 0
    assert docs.status_code == 200 and "/v1/classify" in schema["paths"]


async def _concurrent(app, bodies: list[dict]) -> list[httpx.Response]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.wait_for(asyncio.gather(*(client.post("/v1/classify", json=b) for b in bodies)), timeout=60)


@pytest.mark.parametrize("max_batch_size, expected_batches", [(8, [2, 6]), (1, [2, 2, 2, 2])])
def test_requests_queued_while_the_model_runs_are_gathered_into_one_call(classifier, max_batch_size, expected_batches):
    """The first request's call is held (batch hook) until three more are queued; they then run as
    one call (or one call each with batching off), and each gets its own texts' answers back."""
    batches, running, release = [], threading.Event(), threading.Event()

    def hold_the_first_call(info) -> None:
        batches.append(info.n_texts)
        if len(batches) == 1:
            running.set()
            release.wait(30)

    app = create_app(classifier, ServeSettings(max_batch_size=max_batch_size, max_wait_ms=0), on_batch=hold_the_first_call)
    bodies = [{"texts": TEXTS[i : i + 2]} for i in range(4)]

    async def scenario() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
                first = asyncio.ensure_future(client.post("/v1/classify", json=bodies[0]))
                assert await asyncio.to_thread(running.wait, 30)
                rest = [asyncio.ensure_future(client.post("/v1/classify", json=b)) for b in bodies[1:]]
                for _ in range(3000):  # until the three are queued behind the running call (bounded)
                    if app.state.batcher.queued >= 3:
                        break
                    await asyncio.sleep(0.01)
                release.set()
                return await asyncio.wait_for(asyncio.gather(first, *rest), timeout=60)

    responses = asyncio.run(scenario())
    assert batches == expected_batches
    solo = classifier.classify(TEXTS[:5]).probabilities.tolist()
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        got = [v for p in response.json()["predictions"] for v in p["probabilities"].values()]
        assert got == pytest.approx([v for row in solo[i : i + 2] for v in row], abs=1e-5)
        assert response.json()["metadata"]["batch_requests"] == (1 if i == 0 or max_batch_size == 1 else 3)


def test_a_lone_request_on_an_idle_server_does_not_wait_for_company(classifier):
    """With a 10-minute max wait, a single request is still answered at once, alone in its call
    (if it waited, the bounded wait in _concurrent would fail the test)."""
    batches = []
    app = create_app(classifier, ServeSettings(max_wait_ms=600_000), on_batch=lambda info: batches.append(info.n_requests))
    (response,) = asyncio.run(_concurrent(app, [{"texts": TEXTS[:2]}]))
    assert response.status_code == 200 and batches == [1]


def test_token_budget_chunks_bound_the_encoder_call_and_keep_the_answers(run_dir, classifier):
    """Chunking by a padded-token budget changes no answer (vs one text per call) and no chunk is
    larger than the budget, except a single text longer than it."""
    texts = TEXTS * 3 + ["good", "awful superb great poor"]
    one_at_a_time = torch.cat([classifier.classify([t]).probabilities for t in texts])
    small = TextClassifier.load(run_dir, max_batch_tokens=16)
    shapes = []
    encode = small.model.encode
    small.model.encode = lambda ids, *args: shapes.append(tuple(ids.shape)) or encode(ids, *args)
    chunked = small.classify(texts)
    assert torch.allclose(chunked.probabilities, one_at_a_time, atol=1e-5)
    assert chunked.truncated == [t.startswith("great great") for t in texts]
    assert sum(rows for rows, _ in shapes) == len(texts) and len(shapes) > 1
    assert all(rows * length <= 16 or rows == 1 for rows, length in shapes)
    assert torch.allclose(TextClassifier.load(run_dir, max_batch_tokens=10_000).classify(texts).probabilities, one_at_a_time, atol=1e-5)


BAD_BODIES = [
    # (body: JSON-able or raw bytes, status, what the error names)
    ({"texts": ["a"] * 5}, 413, "too many texts"),
    ({"texts": ["ok", "x" * 101]}, 413, "texts[1] is too long"),
    ({"text": "x" * 101}, 413, "texts[0] is too long"),
    (b'{"texts": ["' + b"y" * 20_000 + b'"]}', 413, "request body too large"),
    ({}, 422, "exactly one of 'texts'"),
    ({"texts": []}, 422, "body.texts"),
    ({"texts": "one string"}, 422, "body.texts"),
    ({"texts": ["fine", 3]}, 422, "body.texts.1"),
    ({"texts": [["nested"]]}, 422, "body.texts.0"),
    ({"text": 5}, 422, "body.text"),
    ({"text": None, "texts": None}, 422, "exactly one of"),
    ({"texts": ["a"], "text": "b"}, 422, "exactly one of"),
    ({"txt": "a"}, 422, "body.txt"),
    (b'{"texts": ["unterminated', 422, "the body is not valid JSON: unterminated string starting at character 11"),
    (b'{"texts": ["a"],}', 422, "the body is not valid JSON"),
    ({"text": "", "texts": ["a"]}, 422, "exactly one of"),
    ({"text": None}, 422, "'text' must be a string, not null"),
    ('{"texts": ["a"]}'.encode("utf-16"), 422, "not UTF-8: byte 0xff at position 0"),
    ('{"texts": ["a"]}'.encode("utf-16-le"), 422, "NUL byte at position 1: UTF-16 or UTF-32?"),
    ('{"texts": ["a"]}'.encode("utf-32"), 422, "not UTF-8"),
    (b"[1, 2]", 422, "body"),
    (b"", 422, "body"),
    (b'{"texts": ["\\ud800 lone surrogate"]}', 422, "body.texts.0"),
    (b"\xfe not utf-8", 422, "not UTF-8: byte 0xfe at position 0"),
]


@pytest.mark.parametrize("body, status, fragment", BAD_BODIES, ids=[f"{s}-{i}" for i, (_, s, _) in enumerate(BAD_BODIES)])
def test_limits_and_bad_inputs_are_4xx_with_the_field_named(classifier, body, status, fragment):
    settings = ServeSettings(max_texts=4, max_chars=100)
    with TestClient(create_app(classifier, settings), raise_server_exceptions=False) as client:
        if isinstance(body, bytes):
            response = client.post("/v1/classify", content=body, headers={"content-type": "application/json"})
        else:
            response = client.post("/v1/classify", json=body)
        assert response.status_code == status, response.text
        assert fragment in response.text
        assert "y" * 100 not in response.text  # the input is not echoed back
        assert client.post("/v1/classify", json={"texts": ["still serving"]}).status_code == 200
        assert client.get("/v1/classify").status_code == 405


def _held_app(classifier, settings):
    """An app whose first model call waits for ``release``; ``running`` is set when it starts."""
    running, release, sizes = threading.Event(), threading.Event(), []

    def hold(info) -> None:
        sizes.append(info.n_texts)
        if len(sizes) == 1:
            running.set()
            release.wait(30)

    return create_app(classifier, settings, on_batch=hold), running, release, sizes


async def _raw_post(app, body: dict, hang_up: asyncio.Event | None = None) -> int:
    """POST through the bare ASGI interface; the client hangs up when ``hang_up`` is set."""
    messages = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await (hang_up or asyncio.Event()).wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http", "path": "/v1/classify",
             "raw_path": b"/v1/classify", "query_string": b"", "root_path": "", "headers": [(b"content-type", b"application/json")],
             "client": ("127.0.0.1", 1), "server": ("test", 80)}
    await app(scope, receive, send)
    return sent[0]["status"]


async def _until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_a_client_that_hangs_up_is_dropped_from_the_queue_and_never_computed(classifier):
    app, running, release, sizes = _held_app(classifier, ServeSettings())
    batcher = app.state.batcher

    async def scenario():
        async with app.router.lifespan_context(app):
            first = asyncio.ensure_future(_raw_post(app, {"texts": ["good great"]}))
            await asyncio.get_running_loop().run_in_executor(None, running.wait, 30)
            hang_up = asyncio.Event()
            gone = asyncio.ensure_future(_raw_post(app, {"texts": ["bad"] * 20}, hang_up))
            await _until(lambda: batcher.queued_texts == 20)
            hang_up.set()
            status_gone = await asyncio.wait_for(gone, 30)
            queued_after = batcher.queued_texts
            release.set()
            status_first = await asyncio.wait_for(first, 30)
            await _until(lambda: batcher.dropped == 1)
            return status_gone, queued_after, status_first

    status_gone, queued_after, status_first = asyncio.run(scenario())
    assert status_gone == 499 and queued_after == 0 and status_first == 200
    assert sizes == [1]  # the 20 texts of the client that left never reached the model


def test_a_full_queue_answers_503_with_retry_after_at_once(classifier):
    app, running, release, sizes = _held_app(classifier, ServeSettings(max_texts=3, max_queued_texts=3))

    async def scenario():
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
                first = asyncio.ensure_future(client.post("/v1/classify", json={"text": "good"}))
                await asyncio.get_running_loop().run_in_executor(None, running.wait, 30)
                queued = asyncio.ensure_future(client.post("/v1/classify", json={"texts": ["a", "b"]}))
                await _until(lambda: app.state.batcher.queued_texts == 2)
                full = await asyncio.wait_for(client.post("/v1/classify", json={"texts": ["c", "d"]}), 10)
                fits = asyncio.ensure_future(client.post("/v1/classify", json={"text": "e"}))  # 2 + 1 <= 3
                await _until(lambda: app.state.batcher.queued_texts == 3)
                release.set()
                return full, await asyncio.gather(first, queued, fits)

    full, done = asyncio.run(scenario())
    assert full.status_code == 503 and full.headers["retry-after"] == "1"
    assert "at most 3 may wait" in full.json()["detail"]
    assert [r.status_code for r in done] == [200, 200, 200]


def test_serve_settings_refuse_a_queue_smaller_than_one_request():
    with pytest.raises(ValueError, match="max-queued-texts .* must be at least max-texts"):
        ServeSettings(max_texts=64, max_queued_texts=10)


def test_serve_command_refuses_bad_setups_in_one_line(run_dir, tmp_path):
    def one_red_line(args, fragment):
        result = runner.invoke(cli, ["serve", *args])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.strip().splitlines() if line.strip() and not line.startswith(("Loading", "Exporting"))]  # progress lines
        assert len(lines) == 1 and lines[0].startswith("Error:") and fragment in " ".join(result.output.split()), result.output

    threads = torch.get_num_threads()  # the serve command sets torch's threads for the process
    one_red_line([str(tmp_path)], "not a saved qubert model")
    one_red_line([str(run_dir), "--max-batch-size", "0"], "max-batch-size must be at least 1")
    one_red_line([str(run_dir), "--max-batch-tokens", "0"], "max-batch-tokens must be at least 1")
    one_red_line([str(run_dir), "--threads", "0"], "threads must be at least 1")
    one_red_line([str(run_dir), "--replicas", "2"], "--replicas needs --ray-address")
    one_red_line([str(run_dir), "--grace", "nan"], "--grace must be a finite number")
    one_red_line([str(run_dir), "--max-queued-texts", "8"], "max-queued-texts (8) must be at least max-texts (64)")
    one_red_line([str(run_dir), "--precision", "fp16"], "fp16 needs a CUDA GPU") if not _cuda() else None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        one_red_line([str(run_dir), "--port", str(taken.getsockname()[1])], "cannot listen on 127.0.0.1")
    torch.set_num_threads(threads)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


LAUNCHER = textwrap.dedent("""
    import sys, time
    from qubert.serving import ServeSettings, TextClassifier, create_app
    from qubert.serving.server import bind_socket, serve_locally

    slow, grace = float(sys.argv[2]), float(sys.argv[3])
    app = create_app(TextClassifier.load(sys.argv[1]), ServeSettings(max_batch_size=1), on_batch=lambda info: time.sleep(slow))
    sock = bind_socket("127.0.0.1", 0)
    print(sock.getsockname()[1], flush=True)
    serve_locally(app, sock, grace_s=grace, access_log=False, log_level="warning")
""")


def _read_line(stream, timeout: float) -> str:
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0] if line else ""


def _start_server(run_dir: Path, tmp_path: Path, slow: float, grace: float):
    """A real uvicorn subprocess (most of its start-up is importing torch and transformers)
    whose every model call sleeps ``slow`` s first; returns ``(process, base URL)``."""
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    process = subprocess.Popen([sys.executable, str(launcher), str(run_dir), str(slow), str(grace)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    port = _read_line(process.stdout, timeout=90).strip()
    if not port.isdigit():
        process.kill()
        raise AssertionError(process.stderr.read() if process.poll() is not None else "no port printed")
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    return process, base


def test_sigterm_drains_a_real_uvicorn_server(run_dir, tmp_path):
    """In-flight requests finish, new ones get 503, then the process exits 0 (a real subprocess,
    ~10 s; every wait is bounded)."""
    process, base = _start_server(run_dir, tmp_path, slow=1.5, grace=30)
    try:
        deadline = time.monotonic() + 60
        slow: dict = {}
        request = threading.Thread(target=lambda: slow.update(r=httpx.post(f"{base}/v1/classify", json={"texts": ["good great"]}, timeout=30)), daemon=True)
        request.start()
        while time.monotonic() < deadline and httpx.get(f"{base}/health", timeout=2).json()["in_flight"] < 1:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = httpx.post(f"{base}/v1/classify", json={"texts": ["too late"]}, timeout=10)
        assert refused.status_code == 503 and "shutting down" in refused.text
        request.join(30)
        assert slow["r"].status_code == 200 and slow["r"].json()["predictions"][0]["label"] in ("neg", "pos")
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_sigterm_drain_ends_about_grace_after_the_signal_and_cut_off_requests_get_503(run_dir, tmp_path):
    """--grace bounds the whole drain: with model calls of 8 s and a grace of 1 s, the running and
    the queued request are answered 503 when the grace ends, and the process exits about then
    (before this, qubert waited the grace, uvicorn waited it again, then the worker's call: over
    8 s, with 500s). The bound below leaves room for a loaded machine, not for a second grace."""
    grace = 1.0
    process, base = _start_server(run_dir, tmp_path, slow=8.0, grace=grace)
    try:
        answers: list = []
        clients = [threading.Thread(target=lambda t=t: answers.append(httpx.post(f"{base}/v1/classify", json={"text": t}, timeout=30)), daemon=True) for t in ("good", "bad")]
        for client in clients:
            client.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and httpx.get(f"{base}/health", timeout=2).json()["in_flight"] < 2:
            time.sleep(0.05)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        took = time.monotonic() - signalled
        for client in clients:
            client.join(10)
        assert sorted(r.status_code for r in answers) == [503, 503], [r.text for r in answers]
        assert all("cut off at the end of the grace period" in r.text for r in answers)
        assert took < grace + 3.0, f"the drain took {took:.1f} s with --grace {grace:g}"
        assert "CancelledError" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_a_second_signal_stops_at_once_without_a_traceback(run_dir, tmp_path):
    """Ctrl-C twice (or `timeout` plus a kill): the drain is cut short, the process exits, and
    stderr holds no traceback (uvicorn logs the cancelled lifespan task as an error otherwise)."""
    process, base = _start_server(run_dir, tmp_path, slow=5.0, grace=30)
    try:
        threading.Thread(target=lambda: httpx.post(f"{base}/v1/classify", json={"texts": ["good"]}, timeout=30), daemon=True).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and httpx.get(f"{base}/health", timeout=2).json()["in_flight"] < 1:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)  # long before the 5 s model call and the 30 s grace would end
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
