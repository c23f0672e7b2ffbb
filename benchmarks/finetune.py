"""Fine-tuning speed: cached top-k layers, bf16 autocast and length-grouped batches, side by side.

All runs go through ``run_training`` itself (Trainer loop, epoch-end validation, checkpoints) on
real SMS-spam rows (``--rows`` training rows, max_length 64, batch 16, quantum head 4 qubits /
2 layers), in one process:

1. ``epochs``: one row per setting, two epochs each. ``first epoch`` = building the cache (zero
   when nothing is cached) + the first epoch's training steps and validation; ``later epoch`` = the
   second epoch's. "today" is the path before caching: ``top2`` uncached, fp32, random batches.
   Ratios are today's epoch time over each setting's. ``top1`` / ``top2`` cached are also compared
   with full fine-tuning (bf16, grouped). The first row also gives the peak RSS of the process so
   far (it runs first) and the size of its cache on disk.
2. ``step``: one full fine-tuning step (forward + backward + AdamW, batch 16 x 64 tokens), bf16
   autocast against fp32, interleaved repeats, median of paired ratios.
3. ``f1``: test macro-F1 of cached ``top2`` in bf16 and fp32 on the same seeds (same data subsets
   and initialisation), and their differences.

Usage:
    python benchmarks/finetune.py [--data-dir ../shared/data] [--rows 4000] [--seeds 1 2 3]
                                  [--skip-epochs] [--skip-step] [--skip-f1] [--update]

``--update`` keeps the rows of the skipped parts from the existing JSON (rerun one part alone).

Prints Markdown tables and writes the same rows as JSON to ``docs/benchmarks/finetune.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from machine import close_machine, describe_machine, write_report  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from qubert.modeling import QubertForSequenceClassification  # noqa: E402
from qubert.precision import autocast, bf16_supported  # noqa: E402
from qubert.training import TrainingConfig, run_training  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "benchmarks" / "finetune.json"

# name -> (mode, cache_bottom, precision, group_by_length)
SETTINGS = {
    "top2 cached, bf16, grouped": ("top2", True, "bf16", True),
    "top2 today (uncached, fp32, random batches)": ("top2", False, "fp32", False),
    "top2 cached, fp32, random batches": ("top2", True, "fp32", False),
    "top2 uncached, bf16, grouped": ("top2", False, "bf16", True),
    "top1 cached, bf16, grouped": ("top1", True, "bf16", True),
    "full, bf16, grouped": ("full", False, "bf16", True),
}
TODAY = "top2 today (uncached, fp32, random batches)"


class EpochTimer(TrainerCallback):
    """Wall time from each epoch's start to the end of its validation."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.epochs: list[float] = []

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.starts.append(time.perf_counter())

    def on_evaluate(self, args, state, control, **kwargs):
        if len(self.epochs) < len(self.starts):
            self.epochs.append(time.perf_counter() - self.starts[len(self.epochs)])


def _config(data_dir: str | None, rows: int, cache_dir: str, output_dir: str, *, mode: str, cache_bottom: bool, precision: str,
            group_by_length: bool, seed: int = 42, num_epochs: int = 2) -> TrainingConfig:
    return TrainingConfig(
        dataset="sms_spam", data_dir=data_dir, max_train_samples=rows, max_length=64, mode=mode, head="quantum", qubits=4,
        layers=2, batch_size=16, num_epochs=num_epochs, early_stopping_patience=None, cache_bottom=cache_bottom,
        precision=precision, group_by_length=group_by_length, seed=seed, output_dir=output_dir, cache_dir=cache_dir,
        overwrite_output_dir=True, progress=False,
    )


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.safetensors")) if path.is_dir() else 0


def epochs(data_dir: str | None, rows: int, work: Path, settings: list[str]) -> list[dict]:
    out = []
    for name in settings:
        mode, cache_bottom, precision, grouped = SETTINGS[name]
        cache = work / f"cache-{len(out)}"  # a cold cache per setting: the first epoch pays for building it
        timer = EpochTimer()
        metrics = run_training(
            _config(data_dir, rows, str(cache), str(work / "run"), mode=mode, cache_bottom=cache_bottom, precision=precision, group_by_length=grouped),
            callbacks=[timer],
        )
        row = {
            "benchmark": "epochs", "setting": name, "mode": mode, "cache_bottom": cache_bottom, "precision": precision,
            "group_by_length": grouped, "rows": metrics["train_samples"], "cache_build_s": round(metrics.get("encode_runtime", 0.0) if cache_bottom else 0.0, 2),
            "epoch_s": [round(t, 2) for t in timer.epochs], "test_macro_f1": round(metrics["test_macro_f1"], 4),
            "cache_bytes": _dir_size(cache / "hidden_states"),
        }
        row["first_epoch_s"] = round(row["cache_build_s"] + timer.epochs[0], 2)
        row["later_epoch_s"] = timer.epochs[1]
        if not out:  # the first setting runs first: the process peak so far is its peak
            row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        out.append(row)
        print(f"  {name}: first {row['first_epoch_s']:.1f} s, later {row['later_epoch_s']:.1f} s", file=sys.stderr)
    today = next((r for r in out if r["setting"] == TODAY), None)
    full = next((r for r in out if r["mode"] == "full"), None)
    for r in out:
        if today is not None:
            r["first_epoch_speedup_vs_today"] = round(today["first_epoch_s"] / r["first_epoch_s"], 2)
            r["later_epoch_speedup_vs_today"] = round(today["later_epoch_s"] / r["later_epoch_s"], 2)
        if full is not None:
            r["later_epoch_speedup_vs_full"] = round(full["later_epoch_s"] / r["later_epoch_s"], 2)
    return out


def full_step(repeats: int, warmup: int = 2, batch: int = 16, tokens: int = 64) -> list[dict]:
    torch.manual_seed(0)
    model = QubertForSequenceClassification.from_encoder(
        "default", head={"type": "quantum", "circuit": {"n_qubits": 4, "n_layers": 2}}, id2label={0: "ham", 1: "spam"},
        mode="full", max_length=tokens, seed=0,
    ).train()
    optimizer = torch.optim.AdamW(model.parameter_groups(1e-3, 2e-5))
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "input_ids": torch.randint(1000, model.config.encoder.vocab_size, (batch, tokens), generator=generator),
        "attention_mask": torch.ones(batch, tokens, dtype=torch.long),
        "labels": torch.randint(0, 2, (batch,), generator=generator),
    }

    def step(precision: str) -> float:
        start = time.perf_counter()
        with autocast(precision, "cpu"):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - start

    for _ in range(warmup):
        step("fp32"), step("bf16")
    times = {"fp32": [], "bf16": []}
    for _ in range(repeats):
        for precision in ("fp32", "bf16"):
            times[precision].append(step(precision))
    paired = statistics.median(a / b for a, b in zip(times["fp32"], times["bf16"]))
    return [{
        "benchmark": "step", "setting": "full fine-tuning step, batch 16 x 64 tokens", "repeats": repeats,
        "fp32_ms": round(statistics.median(times["fp32"]) * 1000, 1), "bf16_ms": round(statistics.median(times["bf16"]) * 1000, 1),
        "bf16_speedup": round(paired, 3),
    }]


def f1_agreement(data_dir: str | None, rows: int, work: Path, seeds: list[int], num_epochs: int) -> list[dict]:
    out = []
    for seed in seeds:
        scores = {}
        for precision in ("fp32", "bf16"):
            metrics = run_training(_config(data_dir, rows, str(work / "f1-cache"), str(work / "run"), mode="top2", cache_bottom=True,
                                           precision=precision, group_by_length=True, seed=seed, num_epochs=num_epochs))
            scores[precision] = metrics["test_macro_f1"]
        out.append({"benchmark": "f1", "setting": f"top2 cached, {num_epochs} epochs", "seed": seed, "fp32_macro_f1": round(scores["fp32"], 4),
                    "bf16_macro_f1": round(scores["bf16"], 4), "difference": round(scores["bf16"] - scores["fp32"], 4)})
        print(f"  seed {seed}: fp32 {scores['fp32']:.4f}, bf16 {scores['bf16']:.4f}", file=sys.stderr)
    return out


def markdown(rows: list[dict]) -> str:
    lines = []
    epoch_rows = [r for r in rows if r["benchmark"] == "epochs"]
    if epoch_rows:
        lines += ["| setting | cache build | first epoch | later epoch | vs today (first / later) | vs full (later) | test macro-F1 |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in epoch_rows:
            vs_today = f"{r.get('first_epoch_speedup_vs_today', float('nan')):.2f}x / {r.get('later_epoch_speedup_vs_today', float('nan')):.2f}x"
            lines.append(f"| {r['setting']} | {r['cache_build_s']:.1f} s | {r['first_epoch_s']:.1f} s | {r['later_epoch_s']:.1f} s | {vs_today} | "
                         f"{r.get('later_epoch_speedup_vs_full', float('nan')):.2f}x | {r['test_macro_f1']:.4f} |")
        first = epoch_rows[0]
        lines.append(f"\n{first['rows']:,} training rows. `{first['setting']}`: peak RSS {first.get('peak_rss_mib', float('nan')):.0f} MiB, "
                     f"hidden-state cache {first['cache_bytes'] / 2**20:.1f} MiB on disk (train + validation + test).\n")
    for r in (r for r in rows if r["benchmark"] == "step"):
        lines += ["| step | fp32 | bf16 | bf16 speed-up (paired median) |", "|---|---:|---:|---:|",
                  f"| {r['setting']} | {r['fp32_ms']:.0f} ms | {r['bf16_ms']:.0f} ms | {r['bf16_speedup']:.2f}x |", ""]
    f1_rows = [r for r in rows if r["benchmark"] == "f1"]
    if f1_rows:
        lines += ["| seed | fp32 macro-F1 | bf16 macro-F1 | bf16 - fp32 |", "|---:|---:|---:|---:|"]
        lines += [f"| {r['seed']} | {r['fp32_macro_f1']:.4f} | {r['bf16_macro_f1']:.4f} | {r['difference']:+.4f} |" for r in f1_rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="benchmark data (default $QUBERT_DATA_DIR, then ../shared/data)")
    parser.add_argument("--rows", type=int, default=4000, help="SMS-spam training rows")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), metavar="SETTING")
    parser.add_argument("--repeats", type=int, default=10, help="interleaved full-step repeats per precision")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--f1-epochs", type=int, default=3)
    parser.add_argument("--skip-epochs", action="store_true")
    parser.add_argument("--skip-step", action="store_true")
    parser.add_argument("--skip-f1", action="store_true")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--update", action="store_true", help="keep the skipped parts' rows from the existing --output file")
    args = parser.parse_args(argv)
    if not bf16_supported("cpu") and not torch.cuda.is_available():
        print("this machine runs no native bf16; the bf16 rows would measure emulation", file=sys.stderr)

    started = time.perf_counter()
    machine = describe_machine(["transformers"])
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="qubert-finetune-bench-") as work:
        if not args.skip_epochs:
            rows += epochs(args.data_dir, args.rows, Path(work), args.settings)
        if not args.skip_step:
            rows += full_step(args.repeats)
        if not args.skip_f1:
            rows += f1_agreement(args.data_dir, args.rows, Path(work), args.seeds, args.f1_epochs)
    close_machine(machine, started)
    if args.update and args.output.is_file():
        skipped = {kind for kind, skip in (("epochs", args.skip_epochs), ("step", args.skip_step), ("f1", args.skip_f1)) if skip}
        previous = json.loads(args.output.read_text())
        kept = [r for r in previous["rows"] if r["benchmark"] in skipped]
        rows = sorted(rows + kept, key=lambda r: ("epochs", "step", "f1").index(r["benchmark"]))
        machine = {"this_run": machine, "kept_rows_from": previous["machine"]}

    print(markdown(rows))
    write_report(args.output, {"machine": machine, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
