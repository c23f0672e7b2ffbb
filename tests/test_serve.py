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


def test_model_info_health_and_docs(classifier):
    with TestClient(create_app(classifier, ServeSettings(max_texts=7))) as client:
        info = client.get("/v1/model").json()
        health = client.get("/health").json()
        docs = client.get("/docs")
        schema = client.get("/openapi.json").json()
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
    (b'{"texts": ["unterminated', 422, "JSON"),
    (b"[1, 2]", 422, "body"),
    (b"", 422, "body"),
    (b'{"texts": ["\\ud800 lone surrogate"]}', 422, "body.texts.0"),
    (b"\xff\xfe not utf-8", 422, "JSON decode error"),
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


def test_serve_command_refuses_bad_setups_in_one_line(run_dir, tmp_path):
    def one_red_line(args, fragment):
        result = runner.invoke(cli, ["serve", *args])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.strip().splitlines() if line.strip() and not line.startswith("Loading")]
        assert len(lines) == 1 and lines[0].startswith("Error:") and fragment in " ".join(result.output.split()), result.output

    threads = torch.get_num_threads()  # the serve command sets torch's threads for the process
    one_red_line([str(tmp_path)], "not a saved qubert model")
    one_red_line([str(run_dir), "--max-batch-size", "0"], "max-batch-size must be at least 1")
    one_red_line([str(run_dir), "--max-batch-tokens", "0"], "max-batch-tokens must be at least 1")
    one_red_line([str(run_dir), "--threads", "0"], "threads must be at least 1")
    one_red_line([str(run_dir), "--replicas", "2"], "--replicas needs --ray-address")
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

    slow = float(sys.argv[2])
    app = create_app(TextClassifier.load(sys.argv[1]), ServeSettings(), on_batch=lambda info: time.sleep(slow))
    sock = bind_socket("127.0.0.1", 0)
    print(sock.getsockname()[1], flush=True)
    serve_locally(app, sock, access_log=False, log_level="warning")
""")


def _read_line(stream, timeout: float) -> str:
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0] if line else ""


def test_sigterm_drains_a_real_uvicorn_server(run_dir, tmp_path):
    """In-flight requests finish, new ones get 503, then the process exits 0 (a real subprocess,
    ~10 s: most of it importing torch and transformers; every wait is bounded)."""
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    process = subprocess.Popen([sys.executable, str(launcher), str(run_dir), "1.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        port = _read_line(process.stdout, timeout=90).strip()
        assert port.isdigit(), process.stderr.read() if process.poll() is not None else "no port printed"
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
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
