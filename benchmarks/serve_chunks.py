"""What ``qubert serve``'s model call costs, in process (no HTTP): the numbers behind its defaults.

The same 48 requests (1-8 sms_spam test texts each, seeded; the mix of ``benchmarks/serve.py``)
are classified by :class:`qubert.serving.TextClassifier` in two ways, side by side in one process:

- one call per request (micro-batching off), and
- gathered 64 texts per call (micro-batching on), each call run length-sorted in encoder chunks of
  at most ``--budgets`` padded tokens (a budget of 1e9: the whole call as one chunk).

for every torch thread count in ``--threads`` and precision in ``--precisions`` (each combination
in its own subprocess, since torch's thread count is per process). Prints seconds and the ratio
one-call-per-request / gathered.

Usage:
    python benchmarks/serve_chunks.py --run-dir RUN [--threads 1,2] [--precisions fp32,bf16] [--budgets 128,256,512,1024,1000000000]

``RUN`` is a run directory, e.g. the model ``benchmarks/serve.py`` trains (``make_run``); without
``--run-dir`` one is trained in a temporary folder (~1 minute). Writes ``docs/benchmarks/serve_chunks.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import close_machine, describe_machine, write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "docs" / "benchmarks" / "serve_chunks.json"


def measure(run_dir: str, threads: int, precision: str, budgets: list[int]) -> dict:
    """One combination, in this process: seconds per way of running the 48 requests."""
    import torch

    from serve import sms_texts

    from qubert.serving import TextClassifier
    from qubert.serving.classifier import DEFAULT_MAX_BATCH_TOKENS

    classifier = TextClassifier.load(run_dir, precision=precision, threads=threads)
    pool = sms_texts(300, seed=0)
    rng = random.Random(0)
    requests = [rng.sample(pool, rng.randint(1, 8)) for _ in range(48)]
    texts = [t for r in requests for t in r]
    classifier.classify(pool[:8])  # warm-up

    def seconds(calls: list[list[str]], budget: int) -> float:
        classifier.max_batch_tokens = budget
        start = time.perf_counter()
        for call in calls:
            classifier.classify(call)
        return round(time.perf_counter() - start, 2)

    gathered = [texts[i : i + 64] for i in range(0, len(texts), 64)]
    row = {"threads": torch.get_num_threads(), "precision": classifier.model.config.precision, "requests": len(requests), "texts": len(texts)}
    row["one_call_per_request_s"] = seconds(requests, DEFAULT_MAX_BATCH_TOKENS)  # what the unbatched server runs
    row["gathered_64"] = {str(b): seconds(gathered, b) for b in budgets}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--budgets", default="128,256,512,1024,1000000000")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: "threads,precision"
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    if args.one:
        threads, precision = args.one.split(",")
        print(json.dumps(measure(str(args.run_dir), int(threads), precision, budgets)))
        return
    started = time.perf_counter()
    machine = describe_machine(["transformers"])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="qubert-serve-chunks-") as tmp:
        if args.run_dir is None:
            from serve import make_run

            args.run_dir = make_run(Path(tmp))
        for threads in args.threads.split(","):
            for precision in args.precisions.split(","):
                out = subprocess.run([sys.executable, __file__, "--run-dir", str(args.run_dir), "--one", f"{threads},{precision}", "--budgets", args.budgets],
                                     capture_output=True, text=True, env=env, timeout=900)
                if out.returncode != 0:
                    print(f"threads {threads}, {precision}: failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                    continue
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(rows[-1], file=sys.stderr)
    write_report(args.output, {"machine": close_machine(machine, started), "rows": rows})
    print("\n| threads | precision | one call per request (s) | " + " | ".join(f"gathered 64, chunks <= {b if b < 10**8 else 'all'} tokens (s)" for b in budgets) + " |")
    print("|---:|---|---:|" + "---:|" * len(budgets))
    for r in rows:
        cells = [f"{r['gathered_64'][str(b)]} ({r['one_call_per_request_s'] / r['gathered_64'][str(b)]:.2f}x)" for b in budgets]
        print(f"| {r['threads']} | {r['precision']} | {r['one_call_per_request_s']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
