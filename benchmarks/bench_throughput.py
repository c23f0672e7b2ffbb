"""Frozen runs per second: today's Trainer path against the lean and the batched lean paths.

One frozen run = train a head on cached features to early stopping (validation macro-F1,
patience 5, the defaults of ``qubert train --mode frozen``), then score the test split. Three
ways, same heads, same rows, same seeds, one process, interleaved rounds (each round runs every
path once per head, so machine load hits all paths alike):

- **trainer**: :func:`qubert.training.run_training` in frozen mode, as ``qubert bench`` runs it
  today: one call per run (model load, features from the embedding cache, Hugging Face Trainer
  with a head checkpoint per epoch, run directory with predictions, plot and model).
- **lean**: :func:`qubert.lean.train_replicates` on the same features, one replicate per call
  (features loaded once, as the v3 bench keeps each pool's features in memory).
- **batched**: :func:`qubert.lean.train_replicates` with ``--replicates`` seeds trained at once.

Data: ``--rows`` (default 2,000) stratified SST-2 training rows and ``--eval-rows`` validation /
test rows through qubert's data loader (``data_seed`` fixed, so every run sees the same rows), their
all-MiniLM-L6-v2 features from the embedding cache (encoded on the first run). ``--synthetic``
writes random features of the same shape (384) into a private cache instead (no encoding).

Each row reports seconds per run (median over rounds; the batched path's call divided by its
replicates), runs per second, the speed-up over the trainer path (median of per-round ratios) and
the largest difference in test macro-F1 between the trainer and the lean run of the same seed.
Targets: >= 20x for linear / MLP, >= 10x for the 4-qubit quantum head.

Usage:
    python benchmarks/bench_throughput.py [--rounds 3] [--replicates 20] [--rows 2000] [--eval-rows 500]
                                          [--heads linear,mlp,mlp8,quantum4,quantum8] [--synthetic] [--threads N]

Prints a Markdown table and writes the rows as JSON to ``docs/benchmarks/bench_throughput.json``.
"""

from __future__ import annotations

import argparse
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

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "benchmarks" / "bench_throughput.json"
HEADS = {
    "linear": {"head": "linear"},
    "mlp": {"head": "mlp"},  # the default MLP: one hidden layer of 256
    "mlp8": {"head": "mlp", "hidden_sizes": [8]},  # the size of the 8-qubit head's parameter-matched MLP
    "quantum4": {"head": "quantum", "qubits": 4, "layers": 2},
    "quantum8": {"head": "quantum", "qubits": 8, "layers": 2},
}
TARGETS = {"linear": 20.0, "mlp": 20.0, "mlp8": 20.0, "quantum4": 10.0}


def load_features(base: dict, synthetic: bool, work: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(features, labels) per split, from the embedding cache the trainer path reads too."""
    from qubert.data import load_dataset_bundle
    from qubert.embeddings import EmbeddingCache, cache_key, cached_features
    from qubert.modeling import QubertForSequenceClassification, encoder_identity, load_tokenizer
    from qubert.training import TrainingConfig

    config = TrainingConfig(**base, head="linear")
    bundle = load_dataset_bundle(config.dataset, data_dir=config.data_dir, max_train_samples=config.max_train_samples,
                                 max_eval_samples=config.max_eval_samples, seed=config.data_seed)
    model = QubertForSequenceClassification.from_encoder(config.model, head={"type": "linear"}, id2label=bundle.id2label, mode="frozen",
                                                         max_length=config.max_length, precision=config.resolved_precision)
    tokenizer, cache, encoder_id = load_tokenizer(config.model), EmbeddingCache(config.cache_dir), encoder_identity(model.encoder)
    out = {}
    generator = torch.Generator().manual_seed(0)
    for split in ("train", "validation", "test"):
        data = bundle.split(split)
        labels = torch.tensor(data.labels)
        if synthetic:  # random vectors of MiniLM's shape and norm, with a small label-dependent shift
            features = torch.randn(len(data), 384, generator=generator) * 0.2 + 0.05 * (2 * labels[:, None].float() - 1)
            key = cache_key(encoder_id=encoder_id, pooling=config.pooling, max_length=config.max_length, fingerprint=bundle.fingerprint(split),
                            split=split, precision=config.resolved_precision)
            cache.save(key, features, {"synthetic": "random features for benchmarking"})
        else:
            print(f"features of {split} ({len(data)} rows) from the embedding cache (encoded on a miss)", file=sys.stderr, flush=True)
            features, _ = cached_features(model, tokenizer, data.texts, fingerprint=bundle.fingerprint(split), split=split, cache=cache,
                                          encoder_id=encoder_id, progress=False)
        out[split] = (features, labels)
    return out


def run(args: argparse.Namespace) -> list[dict]:
    from qubert.lean import LeanSettings, train_replicates
    from qubert.training import TrainingConfig, head_config_from, run_training

    work = Path(tempfile.mkdtemp(prefix="qubert-throughput-"))
    try:
        base = dict(dataset="sst2", data_dir=args.data_dir, mode="frozen", max_train_samples=args.rows, max_eval_samples=args.eval_rows,
                    data_seed=0, progress=False, cache_dir=str(work / "cache") if args.synthetic else args.cache_dir)
        splits = load_features(base, args.synthetic, work)
        n_classes = int(max(int(splits["train"][1].max()), int(splits["test"][1].max())) + 1)
        heads = [h.strip() for h in args.heads.split(",")]
        times: dict[tuple[str, str], list[float]] = {(h, p): [] for h in heads for p in ("trainer", "lean", "batched")}
        ratios: dict[tuple[str, str], list[float]] = {(h, p): [] for h in heads for p in ("lean", "batched")}
        f1_gap: dict[str, float] = {h: 0.0 for h in heads}
        epochs: dict[str, list[int]] = {h: [] for h in heads}
        # Warm-up, untimed: the first run_training / train_replicates calls pay one-off imports and allocations.
        warm = TrainingConfig(**base, head="linear", seed=0, num_epochs=1, output_dir=str(work / "warm-up"))
        run_training(warm)
        train_replicates({**head_config_from(warm), "in_features": splits["train"][0].shape[1], "n_classes": n_classes},
                         [splits["train"]] * 2, [splits["validation"]] * 2, [], [0, 1], LeanSettings(max_epochs=1))
        for round_ in range(args.rounds):
            for name in heads:
                seed = round_
                config = TrainingConfig(**base, **HEADS[name], seed=seed, output_dir=str(work / f"{name}-{seed}"))
                settings = LeanSettings.from_training_config(config)
                head_config = {**head_config_from(config), "in_features": splits["train"][0].shape[1], "n_classes": n_classes}

                start = time.perf_counter()
                metrics = run_training(config)
                trainer_s = time.perf_counter() - start
                shutil.rmtree(work / f"{name}-{seed}", ignore_errors=True)

                start = time.perf_counter()
                lean = train_replicates(head_config, [splits["train"]], [splits["validation"]], [splits["test"]], [seed], settings)[0]
                lean_s = time.perf_counter() - start

                seeds = [1000 * (round_ + 1) + r for r in range(args.replicates)]
                start = time.perf_counter()
                batch = train_replicates(head_config, [splits["train"]] * len(seeds), [splits["validation"]] * len(seeds),
                                         [splits["test"]] * len(seeds), seeds, settings, batched=True)
                batched_s = (time.perf_counter() - start) / len(seeds)

                for path, seconds in (("trainer", trainer_s), ("lean", lean_s), ("batched", batched_s)):
                    times[(name, path)].append(seconds)
                ratios[(name, "lean")].append(trainer_s / lean_s)
                ratios[(name, "batched")].append(trainer_s / batched_s)
                f1_gap[name] = max(f1_gap[name], abs(metrics["test_macro_f1"] - lean.test_macro_f1))
                epochs[name] += [int(metrics["epochs_trained"]), lean.epochs_run, *(r.epochs_run for r in batch)]
                print(f"round {round_ + 1}/{args.rounds} {name}: trainer {trainer_s:.2f} s, lean {lean_s:.3f} s, batched {batched_s:.3f} s/run "
                      f"(test macro-F1 trainer {metrics['test_macro_f1']:.4f}, lean {lean.test_macro_f1:.4f})", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for name in heads:
        for path in ("trainer", "lean", "batched"):
            median = statistics.median(times[(name, path)])
            speedup = 1.0 if path == "trainer" else statistics.median(ratios[(name, path)])
            rows.append({
                "head": name, "path": path, "rows": args.rows, "eval_rows": args.eval_rows, "rounds": args.rounds,
                "replicates_per_call": args.replicates if path == "batched" else 1,
                "features": "synthetic (random, 384-d)" if args.synthetic else "SST-2, all-MiniLM-L6-v2 (embedding cache)",
                "seconds_per_run": median, "runs_per_second": 1.0 / median, "speedup_vs_trainer": speedup,
                "target_speedup": TARGETS.get(name) if path != "trainer" else None,
                "median_epochs": statistics.median(epochs[name]),
                "max_abs_test_f1_gap_trainer_vs_lean": f1_gap[name] if path == "lean" else None,
            })
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| head | path | s / run | runs / s | vs trainer | target | notes |", "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        target = f"≥ {r['target_speedup']:g}x" if r["target_speedup"] else ""
        note = f"{r['replicates_per_call']} replicates per call" if r["path"] == "batched" else ""
        if r["max_abs_test_f1_gap_trainer_vs_lean"] is not None:
            note = f"same seed: test macro-F1 differs by at most {r['max_abs_test_f1_gap_trainer_vs_lean']:.2g} from trainer"
        lines.append(f"| {r['head']} | {r['path']} | {r['seconds_per_run']:.3f} | {r['runs_per_second']:.2f} | {r['speedup_vs_trainer']:.1f}x | {target} | {note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each runs every path once per head)")
    parser.add_argument("--replicates", type=int, default=20, help="replicates per batched call")
    parser.add_argument("--rows", type=int, default=2000, help="SST-2 training rows")
    parser.add_argument("--eval-rows", type=int, default=500, help="validation and test rows")
    parser.add_argument("--heads", default="linear,mlp,mlp8,quantum4,quantum8", help=f"comma-separated, from {', '.join(HEADS)}")
    parser.add_argument("--synthetic", action="store_true", help="random 384-d features instead of encoded SST-2 rows")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--data-dir", default=None, help="benchmark data (default $QUBERT_DATA_DIR)")
    parser.add_argument("--cache-dir", default=None, help="embedding cache (default qubert's)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    for name in ("rounds", "replicates", "rows", "eval_rows"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    unknown = sorted(set(h.strip() for h in args.heads.split(",")) - set(HEADS))
    if unknown:
        parser.error(f"unknown head(s) in --heads: {', '.join(unknown)}; choose from {', '.join(HEADS)}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    machine = describe_machine(["transformers"])
    rows = run(args)
    close_machine(machine, started)
    print(markdown(rows))
    write_report(args.output, {"machine": machine, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
