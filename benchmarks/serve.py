"""``qubert serve`` under load, on loopback: micro-batching against none, and a storm of bad requests.

One server process holds one model and serves it twice, on two loopback ports: with the defaults
of ``qubert serve`` (micro-batching: up to 64 texts per call, 10 ms wait, run in length-sorted
encoder chunks of at most 256 padded tokens; torch threads = usable cores - 1) and with
micro-batching off (max batch = one request: every request is its own encoder + head call, with
the same chunking and threads). This process is the client.

1. Throughput: the same ``--requests`` requests (1-8 sms_spam test texts each, seeded) from
   ``--clients`` concurrent clients to each server in turn: errors (non-200, wrong answer),
   requests/s, texts/s, p50 / p99 latency, and the ratio batched / unbatched. Target: 0 errors,
   ratio >= 3. Every answer is checked against ``predict_texts`` (what ``qubert predict`` runs).
2. Storm: 200 malformed requests (bad JSON, wrong types, missing fields, empty, huge, lone
   surrogates and invalid UTF-8, wrong method / path) shuffled among 200 good ones (with valid
   Unicode edge cases: emoji, RTL, combining marks, zero-width, NUL, over-long texts), twice.
   Target: every bad one 4xx, every good one 200 with the right answer, and the server's RSS back
   to its baseline (taken after the throughput phase) once the storm is over.
3. Runtimes: the same server defaults with the encoder in each of ``--runtimes`` (``qubert serve
   --runtime ...``: torch bf16 autocast, ONNX Runtime, OpenVINO fp32 / bf16; each its own model in
   the server process) against today's default (torch in the model's precision, fp32), in
   ``--runtime-rounds`` interleaved rounds of ``--runtime-requests`` requests: texts/s, the ratio to
   torch, p50 / p99, and labels changed / largest probability difference against ``predict_texts``
   in fp32. Target (issue 20): >= 2x texts/s at the same p99 or better, probabilities within 1e-3.

The model is the default MiniLM encoder with a 4-qubit quantum head trained in frozen mode for one
epoch on 300 sms_spam rows (made in a temporary folder, ~1 minute; ``--run-dir`` reuses a run).
Everything stops by itself: the server exits when this process closes its stdin, each phase has
a deadline (``--phase-timeout``).

Usage:
    python benchmarks/serve.py [--requests 2000] [--clients 32] [--run-dir RUN] [--quick]
        [--runtimes torch:bf16,onnx,openvino,openvino:bf16] [--runtime-rounds 3] [--runtime-requests 400]

Prints Markdown tables and writes the rows to ``docs/benchmarks/serve.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import close_machine, describe_machine, write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "docs" / "benchmarks" / "serve.json"
TOLERANCE = 1e-4  # probabilities: the server pads texts with other requests' texts, predict with its own


# ------------------------------------------------------------------------------------------
# The server process: one model, two apps (batched / unbatched), two ports
# ------------------------------------------------------------------------------------------
def server_main(run_dir: str, runtimes: list[str], cache_dir: str) -> None:
    import uvicorn

    from qubert.serving import ServeSettings, TextClassifier, create_app
    from qubert.serving.classifier import default_threads
    from qubert.serving.server import bind_socket

    classifier = TextClassifier.load(run_dir, threads=default_threads())  # what qubert serve does
    apps = {"batched": create_app(classifier, ServeSettings()), "unbatched": create_app(classifier, ServeSettings(max_batch_size=1, max_wait_ms=0))}
    for runtime in runtimes:  # qubert serve --runtime RUNTIME: its own model, the same defaults
        other = TextClassifier.load(run_dir, threads=default_threads(), runtime=runtime, cache_dir=cache_dir)
        apps[f"runtime {runtime}"] = create_app(other, ServeSettings())
    sockets = {name: bind_socket("127.0.0.1", 0) for name in apps}
    servers = {name: uvicorn.Server(uvicorn.Config(app, log_level="error", access_log=False, lifespan="on")) for name, app in apps.items()}
    for server in servers.values():
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]  # two servers, one process: stdin decides

    def stop_when_stdin_closes() -> None:
        sys.stdin.read()
        for server in servers.values():
            server.should_exit = True

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    print(json.dumps({name: sock.getsockname()[1] for name, sock in sockets.items()}), flush=True)

    async def both() -> None:
        await asyncio.gather(*(servers[name].serve(sockets=[sockets[name]]) for name in servers))

    asyncio.run(both())


# ------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------
def make_run(folder: Path) -> Path:
    from qubert.training import TrainingConfig, run_training

    out = folder / "run"
    config = TrainingConfig(
        dataset="sms_spam", head="quantum", qubits=4, layers=2, mode="frozen", num_epochs=1, max_train_samples=300,
        max_eval_samples=100, output_dir=str(out), cache_dir=str(folder / "cache"), progress=False, seed=42, precision="fp32",
    )
    metrics = run_training(config)
    print(f"trained {out}: test macro-F1 {metrics['test_macro_f1']:.3f}", file=sys.stderr)
    return out


def sms_texts(n: int, seed: int) -> list[str]:
    import pandas as pd

    from qubert.data import resolve_data_dir

    frame = pd.read_csv(Path(resolve_data_dir(None)) / "sms_spam" / "test.csv.gz")
    column = "text" if "text" in frame.columns else frame.columns[0]
    texts = [t for t in frame[column].astype(str).tolist() if t.strip()]
    random.Random(seed).shuffle(texts)
    return texts[:n]


# ------------------------------------------------------------------------------------------
# Clients
# ------------------------------------------------------------------------------------------
def _deviation(body: dict, texts: list[str], expected: dict[str, dict[str, float]]) -> tuple[int, float]:
    """(labels that differ from the reference, largest absolute probability difference) of one answer;
    ``(len(texts), inf)`` for an answer of the wrong shape."""
    predictions = body.get("predictions", [])
    if len(predictions) != len(texts):
        return len(texts), float("inf")
    changed, largest = 0, 0.0
    for p, t in zip(predictions, texts):
        want = expected[t]
        changed += p["label"] != max(want, key=want.get)
        largest = max([largest] + [abs(p["probabilities"][k] - v) for k, v in want.items()])
    return changed, largest


def _correct(body: dict, texts: list[str], expected: dict[str, dict[str, float]], tolerance: float = TOLERANCE) -> bool:
    changed, largest = _deviation(body, texts, expected)
    return changed == 0 and largest <= tolerance


async def load_phase(port: int, requests: list[list[str]], clients: int, expected, deadline_s: float, tolerance: float = TOLERANCE) -> dict:
    """Closed-loop load: ``clients`` workers send ``requests`` one after another; an answer whose
    label differs from ``expected`` or whose probabilities are off by more than ``tolerance`` is an error."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    deviations = {"labels_changed": 0, "max_prob_diff": 0.0}
    pending = list(enumerate(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60) as client:

        async def worker() -> None:
            while pending:
                _, texts = pending.pop()
                start = time.perf_counter()
                try:
                    response = await client.post("/v1/classify", json={"texts": texts})
                    latencies.append(time.perf_counter() - start)
                    if response.status_code != 200:
                        errors.append(f"{response.status_code}: {response.text[:100]}")
                        continue
                    changed, largest = _deviation(response.json(), texts, expected)
                    deviations["labels_changed"] += changed
                    deviations["max_prob_diff"] = max(deviations["max_prob_diff"], largest)
                    if changed or largest > tolerance:
                        errors.append("wrong answer")
                except httpx.HTTPError as err:
                    errors.append(f"{type(err).__name__}: {err}")

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(clients))), timeout=deadline_s)
        elapsed = time.perf_counter() - start
    latencies.sort()
    n_texts = sum(len(r) for r in requests)
    return {
        "latencies": latencies, "requests": len(requests), "texts": n_texts, "errors": len(errors), "first_errors": errors[:3], "seconds": round(elapsed, 2),
        "requests_per_s": round(len(requests) / elapsed, 1), "texts_per_s": round(n_texts / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1), "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
        "labels_changed": deviations["labels_changed"], "max_prob_diff": float(f"{deviations['max_prob_diff']:.2e}"),
    }


# ------------------------------------------------------------------------------------------
# The storm
# ------------------------------------------------------------------------------------------
MAX_TEXTS, MAX_CHARS = 64, 10_000  # the server's defaults (ServeSettings)


def bad_requests(rng: random.Random) -> list[dict]:
    """200 malformed requests: ``{"kind", "method", "path", "body" (bytes or an iterator), "headers"}``."""
    good = ["hello there", "free entry in 2 a wkly comp", "ok see you"]
    out: list[dict] = []

    def add(kind: str, body, method: str = "POST", path: str = "/v1/classify", headers=None) -> None:
        out.append({"kind": kind, "method": method, "path": path, "body": body, "headers": headers or {"content-type": "application/json"}})

    def dumps(obj) -> bytes:
        return json.dumps(obj).encode()

    # bad JSON (40)
    for text in ['{', '{"texts": [', '{"texts": ["a",]}', "{'texts': ['a']}", 'texts=a', '{"texts": ["a"]} x', '{"texts": ["a"}',
                 '{"texts" ["a"]}', '{"texts": [a]}', '{"texts": ["a\\x"]}', '{"texts": ["\\u12"]}', '{"texts": ["tab\there"]}',
                 '{,}', '}{', '[', '"unterminated', 'nul', 'tru', '{"texts": ["a"], }', '{"texts": ["a"]}}']:
        add("bad JSON", text.encode("utf-8"))
    for _ in range(15):
        add("bad JSON", bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))))
    add("bad JSON", b"[" * 100_000)  # nesting deeper than the JSON parser's recursion limit
    add("bad JSON", b'{"texts": ' * 50_000)
    add("bad JSON", b"")
    add("bad JSON", b"   ")
    add("bad JSON", b"\x00")
    # wrong types (50)
    wrong = ["a string", 3, 3.5, None, True, {"a": 1}, [1, 2], [None], [["nested"]], [{"text": "a"}], [True], ["ok", 5],
             ["ok", None], [[]], [1e308], {"texts": ["a"]}]
    for value in wrong:
        add("wrong type", dumps({"texts": value}))
    for value in [3, 3.5, True, ["a"], {"a": 1}, [None], ["a", "b"], 0, -1, [], {}]:
        add("wrong type", dumps({"text": value}))
    for _ in range(23):
        texts = list(good)
        texts.insert(rng.randrange(len(texts) + 1), rng.choice([7, None, False, [], {}, ["x"], 2.5]))
        add("wrong type", dumps({"texts": texts}))
    # missing / unknown fields, wrong shape (25)
    for obj in [{}, {"txt": "a"}, {"Texts": ["a"]}, {"texts": ["a"], "extra": 1}, {"texts": ["a"], "text": "b"}, {"text": None},
                {"texts": None}, {"text": None, "texts": None}, ["a", "b"], "just a string", 42, None, True, {"input": ["a"]},
                {"data": {"texts": ["a"]}}, {"texts": ["a"], "options": {}}, {"TEXT": "a"}, {"texts ": ["a"]}, {" text": "a"}, {"": "a"}]:
        add("missing field", dumps(obj))
    for _ in range(5):
        add("missing field", dumps({rng.choice(["txts", "tex", "label", "sentences", "inputs"]): good}))
    # empty (10)
    for obj in [{"texts": []}] * 5 + [[], {"texts": [[]]}, {"texts": [[], []]}, {"text": []}, {"texts": {}}]:
        add("empty", dumps(obj))
    # huge (30)
    for char in ["x", "é", "😀", "中", "\u0301"]:
        add("huge text", dumps({"texts": ["ok", char * (MAX_CHARS + 1)]}))
        add("huge text", dumps({"text": char * (MAX_CHARS + rng.randint(1, 5000))}))
    for n in [MAX_TEXTS + 1, MAX_TEXTS * 2, 1000, 10_000]:
        add("too many texts", dumps({"texts": ["hi"] * n}))
    for size in [4, 8, 16, 50]:
        add("body too large", dumps({"texts": ["z" * (size * 250_000)]}))
    for size in [4, 8]:  # no Content-Length: counted as the chunks arrive
        add("body too large (chunked)", ("chunked", size * 10))
    for _ in range(8):
        add("huge text", dumps({"texts": good + ["q" * rng.randint(MAX_CHARS + 1, 3 * MAX_CHARS)]}))
    # Unicode that no tokenizer can take (25)
    for s in ["\\ud800", "\\udfff", "\\udc00\\ud800", "end \\ud83d", "\\ude00 start", "a\\ud800b"]:
        add("lone surrogate", f'{{"texts": ["ok", "{s}"]}}'.encode())
        add("lone surrogate", f'{{"text": "{s}"}}'.encode())
    for raw in [b"\xff", b"\xc0\xaf", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xfe\xff", b"caf\xe9", b"\xf4\x90\x80\x80", b"\xc3"]:
        add("invalid UTF-8", b'{"texts": ["' + raw + b'"]}')
    for _ in range(3):
        add("invalid UTF-8", b'{"texts": ["ok", "' + bytes([rng.randrange(0x80, 0x100)]) + b'"]}')
    # wrong method / path / content type (20 to reach 200)
    for method in ["GET", "PUT", "DELETE", "PATCH"]:
        add("wrong method", dumps({"texts": good}), method=method)
    for path in ["/v1/classify/", "/classify", "/v2/classify", "/v1/Classify", "/v1/classify/x", "/v1/model/x"]:
        add("wrong path", dumps({"texts": good}), path=path)
    while len(out) < 200:
        add("wrong path", dumps({"texts": good}), path=f"/nope/{len(out)}")
    return out[:200]


GOOD_EDGE_CASES = [
    "😀😀 FREE 🎁 call now", "مرحبا كيف حالك", "שלום", "e\u0301e\u0301e\u0301 combining", "zero\u200bwidth\u200djoiner",
    "NUL \u0000 inside", "中文短信测试", "   leading and trailing   ", "", "\ufeffbom", "tab\tand\nnewline",
    "word " * 600,  # far more tokens than max_length: truncated, still answered
]


async def storm_phase(port: int, bad: list[dict], good: list[list[str]], expected, rng: random.Random, deadline_s: float) -> dict:
    import httpx

    items = [("bad", b) for b in bad] + [("good", g) for g in good]
    rng.shuffle(items)
    results = {"bad_4xx": 0, "bad_not_4xx": [], "good_ok": 0, "good_wrong": []}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        semaphore = asyncio.Semaphore(16)

        async def send(kind, item) -> None:
            async with semaphore:
                try:
                    if kind == "good":
                        response = await client.post("/v1/classify", json={"texts": item})
                        if response.status_code == 200 and _correct(response.json(), item, expected):
                            results["good_ok"] += 1
                        else:
                            results["good_wrong"].append(f"{response.status_code}: {response.text[:80]}")
                        return
                    body = item["body"]
                    if isinstance(body, tuple):  # sent in chunks, no Content-Length
                        body = _chunks(body[1])
                    response = await client.request(item["method"], item["path"], content=body, headers=item["headers"])
                    if 400 <= response.status_code < 500:
                        results["bad_4xx"] += 1
                    else:
                        results["bad_not_4xx"].append(f"{item['kind']}: {response.status_code} {response.text[:80]}")
                except httpx.HTTPError as err:  # a server that hangs up on a 413 body mid-upload counts as refused, not as 4xx
                    results["bad_not_4xx" if kind == "bad" else "good_wrong"].append(f"{item['kind'] if kind == 'bad' else kind}: {type(err).__name__}")

        await asyncio.wait_for(asyncio.gather(*(send(k, i) for k, i in items)), timeout=deadline_s)
    return results


async def _chunks(n: int):
    yield b'{"texts": ["'
    for _ in range(n):
        yield b"w" * 100_000
    yield b'"]}'


RUNTIMES = ("torch:bf16", "onnx", "openvino", "openvino:bf16")
RUNTIME_TOLERANCE = 1e-3  # issue 20: probabilities within 1e-3 of the fp32 model


def available_runtimes(specs: list[str]) -> list[str]:
    """The runtimes of ``specs`` this machine can run (installed, bf16 only on a CPU that computes it)."""
    from qubert.precision import bf16_supported
    from qubert.runtimes import MissingRuntimeError, parse_runtime, require_runtime

    keep = []
    for spec in specs:
        name, precision = parse_runtime(spec)
        if precision == "bf16" and not bf16_supported("cpu"):
            continue
        try:
            if name != "torch":
                require_runtime(name)
        except MissingRuntimeError:
            continue
        keep.append(spec)
    return keep


def compare_runtimes(ports: dict, runtimes: list[str], pool: list[str], expected, args, rng: random.Random) -> dict:
    """Each runtime's batched server against torch's (``batched``), the same requests, rounds
    interleaved so load hits all alike: texts/s (median round), the per-round ratio to torch
    (median), p50 / p99 over all rounds, and how far answers are from the fp32 model."""
    import statistics

    if not runtimes:
        return {}
    names = ["batched"] + [f"runtime {r}" for r in runtimes]
    per_round = {name: [] for name in names}
    for r in range(args.runtime_rounds):
        requests = [rng.sample(pool, rng.randint(1, 8)) for _ in range(args.runtime_requests)]
        for name in names:
            tolerance = TOLERANCE if name == "batched" else RUNTIME_TOLERANCE
            per_round[name].append(asyncio.run(load_phase(ports[name], requests, args.clients, expected, args.phase_timeout, tolerance=tolerance)))
        print(f"  runtime round {r + 1}/{args.runtime_rounds}: " + ", ".join(f"{n} {per_round[n][-1]['texts_per_s']}/s" for n in names), file=sys.stderr, flush=True)
    out = {}
    for name in names:
        rounds = per_round[name]
        latencies = sorted(x for row in rounds for x in row["latencies"])
        ratio = [row["texts_per_s"] / ref["texts_per_s"] for row, ref in zip(rounds, per_round["batched"])]
        out["torch (today's default)" if name == "batched" else name.removeprefix("runtime ")] = {
            "texts_per_s": statistics.median(row["texts_per_s"] for row in rounds), "vs_torch": round(statistics.median(ratio), 2),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1), "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
            "errors": sum(row["errors"] for row in rounds), "labels_changed": sum(row["labels_changed"] for row in rounds),
            "max_prob_diff": max(row["max_prob_diff"] for row in rounds), "texts_per_s_rounds": [row["texts_per_s"] for row in rounds],
        }
    return out


def rss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


# ------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--run-dir", type=Path, default=None, help="Reuse this run instead of training one.")
    parser.add_argument("--phase-timeout", type=float, default=900.0)
    parser.add_argument("--quick", action="store_true", help="200 requests: a smoke test of the script.")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help="encoder runtimes served side by side with today's default (torch, the model's precision); empty: none")
    parser.add_argument("--runtime-rounds", type=int, default=3, help="interleaved rounds of the runtime comparison")
    parser.add_argument("--runtime-requests", type=int, default=400, help="requests per runtime per round")
    parser.add_argument("--server", default=None, help=argparse.SUPPRESS)  # internal: run the server process
    parser.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)  # internal: the server's export cache
    args = parser.parse_args()
    runtimes = available_runtimes([r for r in args.runtimes.split(",") if r])
    if args.server:
        return server_main(args.server, runtimes, args.cache_dir)
    if args.quick:
        args.requests, args.runtime_requests, args.runtime_rounds = 200, 60, 1
    started = time.perf_counter()
    machine = describe_machine(["fastapi", "uvicorn", "httpx", "transformers"])
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="qubert-serve-bench-") as tmp:
        run_dir = args.run_dir or make_run(Path(tmp))
        pool = sms_texts(300, seed=0)
        requests = [rng.sample(pool, rng.randint(1, 8)) for _ in range(args.requests)]
        good_storm = [rng.sample(pool, rng.randint(1, 4)) + [rng.choice(GOOD_EDGE_CASES)] for _ in range(200)]

        from qubert.training import predict_texts

        unique = sorted(set(pool) | set(GOOD_EDGE_CASES))
        names, _, probabilities = predict_texts(run_dir, unique)
        expected = {t: dict(zip(names, row)) for t, row in zip(unique, probabilities.tolist())}

        env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        command = [sys.executable, __file__, "--server", str(run_dir), "--runtimes", ",".join(runtimes), "--cache-dir", str(Path(tmp) / "cache")]
        server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        try:
            ports = json.loads(server.stdout.readline())
            import httpx

            server_info = httpx.get(f"http://127.0.0.1:{ports['batched']}/v1/model", timeout=60).json()
            warm = [rng.sample(pool, 4) for _ in range(64)]
            for name in ports:
                asyncio.run(load_phase(ports[name], warm, args.clients, expected, args.phase_timeout, tolerance=1.0))
            rows = {}
            for name in ("unbatched", "batched"):
                rows[name] = asyncio.run(load_phase(ports[name], requests, args.clients, expected, args.phase_timeout))
                rows[name].pop("latencies")
                print(f"{name}: {rows[name]}", file=sys.stderr)
            runtime_rows = compare_runtimes(ports, runtimes, pool, expected, args, random.Random(2))
            ratio = rows["batched"]["requests_per_s"] / rows["unbatched"]["requests_per_s"]
            baseline = rss_mb(server.pid)
            storms = []
            bad = bad_requests(random.Random(1))
            for round_ in range(2):
                result = asyncio.run(storm_phase(ports["batched"], bad, good_storm, expected, random.Random(round_), args.phase_timeout))
                time.sleep(1.0)
                result["rss_after_mb"] = rss_mb(server.pid)
                storms.append(result)
                print(f"storm {round_ + 1}: {result}", file=sys.stderr)
        finally:
            server.stdin.close()  # the server stops by itself
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    kinds: dict[str, int] = {}
    for b in bad:
        kinds[b["kind"]] = kinds.get(b["kind"], 0) + 1
    report = {
        "machine": close_machine(machine, started),
        "model": "default MiniLM encoder + quantum head (4 qubits, 2 layers), frozen, fp32, 1 epoch on 300 sms_spam rows",
        "clients": args.clients,
        "server": {"threads": server_info.get("threads"), "max_batch_tokens": server_info.get("max_batch_tokens"), "precision": server_info.get("precision")},
        "throughput": rows,
        "batched_over_unbatched": round(ratio, 2),
        "runtimes": runtime_rows,
        "storm": {"bad_requests": len(bad), "bad_kinds": kinds, "good_requests": len(good_storm), "rss_baseline_mb": baseline, "rounds": storms},
    }
    write_report(args.output, report)
    print("\n| server | requests | errors | requests/s | texts/s | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['requests']} | {row['errors']} | {row['requests_per_s']} | {row['texts_per_s']} | {row['p50_ms']} | {row['p99_ms']} |")
    print(f"\nbatched / unbatched throughput: {ratio:.2f}x")
    if runtime_rows:
        print(f"\nRuntimes (batched defaults, {args.runtime_rounds} interleaved rounds of {args.runtime_requests} requests; reference: torch in the model's precision)\n")
        print("| runtime | texts/s | vs torch | p50 ms | p99 ms | errors | labels changed | max prob diff |\n|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, row in runtime_rows.items():
            print(f"| {name} | {row['texts_per_s']} | {row['vs_torch']:.2f} | {row['p50_ms']} | {row['p99_ms']} | {row['errors']} | {row['labels_changed']} | {row['max_prob_diff']:.1e} |")
    print("\n| storm round | bad -> 4xx | bad not 4xx | good correct | good wrong | RSS after (MiB; baseline " f"{baseline}) |\n|---|---:|---:|---:|---:|---:|")
    for i, s in enumerate(storms, 1):
        print(f"| {i} | {s['bad_4xx']}/{len(bad)} | {len(s['bad_not_4xx'])} | {s['good_ok']}/{len(good_storm)} | {len(s['good_wrong'])} | {s['rss_after_mb']} |")


if __name__ == "__main__":
    main()
