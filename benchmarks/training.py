"""Training speed: what the quantum head costs next to a linear head, in full and frozen mode.

Three measurements, one process:

1. Full fine-tuning step (all-MiniLM-L6-v2, batch 16, 128 tokens, forward + backward + AdamW
   step with the head / encoder parameter groups ``run_training`` uses): quantum head (n = 8,
   2 layers) against a linear head. The two models step in alternation (interleaved repeats) so
   machine load hits both alike; we report the median step of each and the median of the
   per-round ratios. Target: the quantum head within 2 % of the linear head.
2. Frozen mode, cached embeddings: one epoch over 25,000 training rows, batch 64, through
   ``run_training`` itself (Trainer loop, epoch-end validation on 1,000 rows, head-only checkpoint).
   The features are **random vectors of the right shape (384) with IMDb's label balance
   (12,500 / 12,500)**, written into the embedding cache under the keys ``run_training`` looks up,
   because encoding 25,000 IMDb reviews takes ~10 minutes on 2 cores. Training cost does not depend
   on the feature values. Targets: quantum <= 2x linear and <= 10 s on 2 cores.
3. Encoding throughput of the frozen encoder on ~200 real IMDb test reviews (128 tokens), which
   is the one-off cost the cache removes.

Usage:
    python benchmarks/training.py [--repeats 10] [--frozen-rows 25000] [--encode-texts 200]
                                  [--skip-full] [--skip-frozen] [--skip-encode]

Prints a Markdown table and writes the same rows as JSON to ``docs/benchmarks/training.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from machine import close_machine, describe_machine, write_report  # noqa: E402

from qubert.embeddings import EmbeddingCache, cache_key, encode_texts  # noqa: E402
from qubert.modeling import QubertForSequenceClassification, encoder_identity, load_tokenizer  # noqa: E402
from qubert.training import TrainingConfig, run_training  # noqa: E402
from qubert.training.datasets import load_bundle  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "benchmarks" / "training.json"
QUANTUM = {"type": "quantum", "circuit": {"n_qubits": 8, "n_layers": 2}}
LINEAR = {"type": "linear"}
LABELS = {0: "neg", 1: "pos"}


# ---------------------------------------------------------------------------- 1. full fine-tuning step
def full_step(repeats: int, warmup: int = 2, batch: int = 16, tokens: int = 128) -> list[dict]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    models, optimizers = {}, {}
    for name, head in (("quantum (n=8, 2 layers)", QUANTUM), ("linear", LINEAR)):
        torch.manual_seed(0)
        model = QubertForSequenceClassification.from_encoder("default", head=head, id2label=LABELS, mode="full", max_length=tokens, seed=0).to(device)
        model.train()
        models[name] = model
        optimizers[name] = torch.optim.AdamW(model.parameter_groups(1e-3, 2e-5))
    vocab = models["linear"].config.encoder.vocab_size
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "input_ids": torch.randint(1000, vocab, (batch, tokens), generator=generator).to(device),
        "attention_mask": torch.ones(batch, tokens, dtype=torch.long, device=device),
        "labels": torch.randint(0, 2, (batch,), generator=generator).to(device),
    }

    def step(name: str) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = models[name](**inputs).loss
        loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(warmup + repeats):
        order = list(models) if round_ % 2 == 0 else list(reversed(models))  # alternate who goes first
        for name in order:
            elapsed = step(name)
            if round_ >= warmup:
                times[name].append(elapsed)
        print(f"  full step round {round_ + 1}/{warmup + repeats}: " + ", ".join(f"{n} {times[n][-1] * 1000:.0f} ms" for n in models if times[n]), file=sys.stderr, flush=True)
    q, lin = times["quantum (n=8, 2 layers)"], times["linear"]
    paired = statistics.median(a / b for a, b in zip(q, lin))
    rows = []
    for name, values in times.items():
        rows.append({
            "benchmark": "full fine-tune step", "head": name, "batch": batch, "tokens": tokens, "repeats": repeats,
            "median_s": statistics.median(values), "min_s": min(values), "max_s": max(values),
            "ratio_to_linear": statistics.median(values) / statistics.median(lin),
            "paired_ratio_to_linear": paired if name != "linear" else 1.0,
            "target": "quantum within 2 % of linear",
        })
    return rows


# ---------------------------------------------------------------------------- 2. frozen epoch
def _write_split(path: Path, n: int, prefix: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i in range(n):
            writer.writerow([f"{prefix} review {i}", i % 2])  # IMDb: exactly half positive


def frozen_epoch(rows: int, eval_rows: int, repeats: int, strategies: list[str]) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="qubert-bench-"))
    try:
        return _frozen_epoch(work, rows, eval_rows, repeats, strategies)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # synthetic data, cache and run directories


def _frozen_epoch(work: Path, rows: int, eval_rows: int, repeats: int, strategies: list[str]) -> list[dict]:
    for split, n in (("train", rows), ("validation", eval_rows), ("test", eval_rows)):
        _write_split(work / f"{split}.csv", n, split)
    base = dict(
        train_file=str(work / "train.csv"), validation_file=str(work / "validation.csv"), test_file=str(work / "test.csv"),
        mode="frozen", max_length=128, batch_size=64, num_epochs=1, early_stopping_patience=None,
        cache_dir=str(work / "cache"), progress=False, seed=0,
    )
    # Fill the cache with random features under the keys run_training will look up.
    probe = TrainingConfig(**base, head="linear", output_dir=str(work / "probe"))
    bundle = load_bundle(probe)
    model = QubertForSequenceClassification.from_encoder("default", head=LINEAR, id2label=bundle.id2label, max_length=128)
    encoder_id = encoder_identity(model.encoder)
    cache = EmbeddingCache(work / "cache")
    generator = torch.Generator().manual_seed(0)
    for split in ("train", "validation", "test"):
        data = bundle.split(split)
        labels = torch.tensor(data.labels, dtype=torch.float32)
        # MiniLM mean-pooled vectors have norm ~4; a small label-dependent shift keeps learning non-trivial.
        features = torch.randn(len(data), 384, generator=generator) * 0.2 + 0.05 * (2 * labels[:, None] - 1)
        key = cache_key(encoder_id=encoder_id, pooling="mean", max_length=128, fingerprint=bundle.fingerprint(split), split=split)
        cache.save(key, features, {"synthetic": "random features for benchmarking"})

    heads = [("linear", {"head": "linear"})] + [(f"quantum (n=8, 2 layers, strategy {s})", {"head": "quantum", "qubits": 8, "layers": 2, "strategy": s}) for s in strategies]
    results: dict[str, list[dict]] = {name: [] for name, _ in heads}
    for r in range(repeats):
        for name, options in heads:
            out = work / f"run-{len(results[name])}-{options.get('strategy', 'lin')}"
            metrics = run_training(TrainingConfig(**base, **options, output_dir=str(out)))
            history = json.loads((out / "history.json").read_text())
            eval_s = history[0].get("eval_runtime", 0.0) if history else 0.0
            results[name].append({"train_runtime": metrics["train_runtime"], "eval_runtime": eval_s, "encode_runtime": metrics["encode_runtime"]})
            print(f"  frozen epoch {name} repeat {r + 1}: train_runtime {metrics['train_runtime']:.2f} s (epoch-end validation {eval_s:.2f} s)", file=sys.stderr, flush=True)
    linear_median = statistics.median(x["train_runtime"] for x in results["linear"])
    steps = -(-rows // 64)
    out_rows = []
    for name, values in results.items():
        median = statistics.median(x["train_runtime"] for x in values)
        out_rows.append({
            "benchmark": "frozen epoch (cached features)", "head": name, "rows": rows, "batch": 64, "steps": steps,
            "repeats": repeats, "features": "random, shape (N, 384), IMDb label balance",
            "median_s": median, "min_s": min(x["train_runtime"] for x in values),
            "epoch_end_validation_s": statistics.median(x["eval_runtime"] for x in values),
            "ms_per_step": 1000 * median / steps, "ratio_to_linear": median / linear_median,
            "target": "quantum <= 2x linear and <= 10 s",
        })
    return out_rows


# ---------------------------------------------------------------------------- 3. encoding throughput
def encoding_throughput(n_texts: int, data_dir: str | None) -> list[dict]:
    texts, source = None, "synthetic"
    try:
        from qubert.data import load_dataset_bundle

        bundle = load_dataset_bundle("imdb", data_dir=data_dir, max_eval_samples=n_texts)
        texts, source = bundle.test.texts[:n_texts], "imdb test reviews"
    except (ValueError, OSError):
        pass
    if texts is None:
        texts = [" ".join(["a long review sentence about a film"] * 40)] * n_texts
    model = QubertForSequenceClassification.from_encoder("default", head=LINEAR, id2label=LABELS, max_length=128)
    tokenizer = load_tokenizer("default")
    if torch.cuda.is_available():
        model.cuda()
    encode_texts(model, tokenizer, texts[:16], progress=False)  # warm-up
    start = time.perf_counter()
    encode_texts(model, tokenizer, texts, batch_size=64, progress=False)
    elapsed = time.perf_counter() - start
    return [{
        "benchmark": "frozen encoding (eval, inference_mode, length-sorted batches)", "head": "-", "texts": len(texts),
        "source": source, "tokens": 128, "median_s": elapsed, "texts_per_s": len(texts) / elapsed,
        "imdb_25k_estimate_min": 25_000 / (len(texts) / elapsed) / 60,
    }]


# ---------------------------------------------------------------------------- report
def markdown(rows: list[dict]) -> str:
    lines = ["| benchmark | head | time (median) | vs linear | notes |", "|---|---|---:|---:|---|"]
    for r in rows:
        if "texts_per_s" in r:
            note = f"{r['texts']} {r['source']}, {r['texts_per_s']:.1f} texts/s (25k IMDb ~{r['imdb_25k_estimate_min']:.1f} min)"
            lines.append(f"| {r['benchmark']} | - | {r['median_s']:.2f} s | - | {note} |")
            continue
        ratio = f"{r['ratio_to_linear']:.3f}x"
        if r["benchmark"].startswith("full"):
            note = f"batch {r['batch']}, {r['tokens']} tokens, {r['repeats']} interleaved repeats; paired ratio {r['paired_ratio_to_linear']:.3f}"
            lines.append(f"| {r['benchmark']} | {r['head']} | {r['median_s'] * 1000:.0f} ms | {ratio} | {note} |")
        else:
            note = f"{r['rows']:,} rows, {r['steps']} steps ({r['ms_per_step']:.1f} ms/step), incl. {r['epoch_end_validation_s']:.2f} s epoch-end validation; {r['features']}"
            lines.append(f"| {r['benchmark']} | {r['head']} | {r['median_s']:.2f} s | {ratio} | {note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="interleaved full-step repeats per head")
    parser.add_argument("--frozen-rows", type=int, default=25_000)
    parser.add_argument("--frozen-eval-rows", type=int, default=1_000)
    parser.add_argument("--frozen-repeats", type=int, default=2)
    parser.add_argument("--strategies", nargs="+", default=["auto", "gates"], help="quantum simulator strategies to time in frozen mode")
    parser.add_argument("--encode-texts", type=int, default=200)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-frozen", action="store_true")
    parser.add_argument("--skip-encode", action="store_true")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    machine = describe_machine(["transformers"])
    rows: list[dict] = []
    if not args.skip_full:
        rows += full_step(args.repeats)
    if not args.skip_frozen:
        rows += frozen_epoch(args.frozen_rows, args.frozen_eval_rows, args.frozen_repeats, args.strategies)
    if not args.skip_encode:
        rows += encoding_throughput(args.encode_texts, args.data_dir)
    close_machine(machine, started)

    print(markdown(rows))
    write_report(args.output, {"machine": machine, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
