"""qubert's simulator strategies side by side at 8-24 qubits, and PennyLane lightning.qubit's adjoint method.

One "call" is the forward pass of the paper's circuit (H + RY encoding, CNOT brickwork, trainable
RY, <Z_i> on every qubit) on a batch and the backward pass of a random linear functional of the
outputs with respect to inputs and weights (one training step of the head).

- Time: in one process, per (threads, n, batch) the strategies that apply (``analytic`` up to 10
  qubits, ``adjoint``, ``gates`` while its memory estimate stays under ``--max-memory``, ``fused``
  up to 8 qubits) run in interleaved rounds; medians of the rounds, and each strategy's ratio
  to ``adjoint`` in the same rounds. Before timing, every strategy's outputs and gradients are
  checked against ``gates`` (or ``adjoint`` where gates is skipped) in double precision.
- Peak memory: each (strategy, n, batch) once more in a fresh subprocess, as peak RSS minus the RSS
  just before the call (glibc told to return freed memory at once; as tests/quantum/memory_probe.py),
  next to :func:`qubert.quantum.estimate_memory`.
- lightning.qubit (``diff_method="adjoint"``, through ``qml.qnn.TorchLayer``; it runs one circuit
  per sample): time and peak memory of one call in a subprocess, with qubert ``adjoint`` in a
  subprocess just before and after it (``--lightning-sizes``, ``--lightning-batches``).

Usage:
    python benchmarks/engine_scale.py [--sizes 8 10 12 14 16 18 20] [--batches 64 8] [--threads 1 0]
        [--extra 24:8] [--lightning-sizes 16 20] [--lightning-batches 8]

``--threads 0`` means torch's default (one per core). Prints Markdown tables and writes the rows
as JSON to ``docs/benchmarks/engine_scale.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from machine import close_machine, describe_machine, write_report
from quantum_head import pennylane_qnode
from qubert.quantum import Circuit, estimate_memory, simulate

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "benchmarks" / "engine_scale.json"
AGREEMENT_TOL = 1e-8
FUSED_MAX_QUBITS = 8
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_TOP_PAD_": "0"}


def strategies_for(n: int, batch: int, max_memory: float) -> tuple[list[str], dict[str, str]]:
    """The strategies timed at this size, and the reason each other one is skipped."""
    circuit = Circuit(n_qubits=n, n_layers=2)
    chosen, skipped = [], {}
    if n <= 10:
        chosen.append("analytic")
    chosen.append("adjoint")
    need = estimate_memory(circuit, batch, "gates", torch.float64)
    if need <= max_memory * 2**30:
        chosen.append("gates")
    else:
        skipped["gates"] = f"memory estimate {need / 2**30:.1f} GiB > {max_memory:g} GiB"
    if n <= FUSED_MAX_QUBITS:
        chosen.append("fused")
    return chosen, skipped


def inputs(circuit: Circuit, batch: int, seed: int = 0):
    """Angles as the head produces them (tanh * pi/2), random weights, the functional's coefficients."""
    g = torch.Generator().manual_seed(seed)
    x = torch.tanh(torch.randn(batch, circuit.n_qubits, generator=g, dtype=torch.float64)) * (math.pi / 2)
    w = (torch.rand(circuit.weight_shape, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    coef = torch.randn(batch, circuit.n_outputs, generator=g, dtype=torch.float64)
    return x, w, coef


def qubert_call(circuit: Circuit, strategy: str, x, w, coef):
    """Forward + backward; returns (seconds, outputs, d/dx, d/dw)."""
    x, w = x.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    start = time.perf_counter()
    out = simulate(circuit, x, w, strategy=strategy)
    (out * coef).sum().backward()
    return time.perf_counter() - start, out.detach(), x.grad, w.grad


def lightning_call(circuit: Circuit, x, w, coef):
    """lightning.qubit adjoint through TorchLayer, one call; returns (seconds, outputs, d/dx, d/dw)."""
    import pennylane as qml

    layer = qml.qnn.TorchLayer(pennylane_qnode(circuit, "lightning.qubit", "adjoint"), {"weights": circuit.weight_shape})
    with torch.no_grad():
        layer.weights.copy_(w)
    x = x.detach().clone().requires_grad_(True)
    start = time.perf_counter()
    out = layer(x)
    (out * coef.to(out.dtype)).sum().backward()
    return time.perf_counter() - start, out.detach(), x.grad, layer.weights.grad


def max_diff(a, b) -> float:
    return math.inf if a is None else (a.detach().double() - b.double()).abs().max().item()


# ---------------------------------------------------------------------------- in one process: time
def time_cell(n: int, batch: int, layers: int, max_memory: float, budget: float, max_rounds: int) -> list[dict]:
    circuit = Circuit(n_qubits=n, n_layers=layers)
    x, w, coef = inputs(circuit, batch)
    strategies, skipped = strategies_for(n, batch, max_memory)
    reference = "gates" if "gates" in strategies else "adjoint"
    first = {s: qubert_call(circuit, s, x, w, coef) for s in strategies}
    _, ref_out, ref_gx, ref_gw = first[reference]
    for s, (_, out, gx, gw) in first.items():
        diffs = [max_diff(out, ref_out), max_diff(gx, ref_gx), max_diff(gw, ref_gw)]
        if max(diffs) > AGREEMENT_TOL:
            raise SystemExit(f"{s} at n={n} disagrees with {reference}: {diffs}")
    # Interleaved rounds: every strategy once per round, as many rounds as the budget allows.
    per_round = sum(first[s][0] for s in strategies)
    rounds = max(1, min(max_rounds, int(budget / max(per_round, 1e-6))))
    times: dict[str, list[float]] = {s: [] for s in strategies}
    for _ in range(rounds):
        for s in strategies:
            times[s].append(qubert_call(circuit, s, x, w, coef)[0])
    gc.collect()
    rows = []
    for s in strategies:
        ratios = [a / b for a, b in zip(times[s], times["adjoint"])]
        rows.append({
            "n_qubits": n, "batch": batch, "strategy": s, "rounds": rounds,
            "first_ms": 1e3 * first[s][0], "median_ms": 1e3 * statistics.median(times[s]), "min_ms": 1e3 * min(times[s]),
            "x_vs_adjoint": statistics.median(ratios),
        })
    rows += [{"n_qubits": n, "batch": batch, "strategy": s, "skipped": why} for s, why in skipped.items()]
    return rows


# ---------------------------------------------------------------------------- subprocesses: memory
def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{key}:\s+(\d+) kB", f.read()).group(1)) * 1024


def child(case: dict) -> dict:
    """One call in this (fresh) process: its time and peak RSS above the RSS before it."""
    torch.set_num_threads(case["threads"])
    circuit = Circuit(n_qubits=case["n"], n_layers=case["layers"])
    x, w, coef = inputs(circuit, case["batch"])
    warm = Circuit(n_qubits=4, n_layers=case["layers"])  # load the kernels' code before measuring
    wx, ww, wc = inputs(warm, 2)
    if case["peer"] == "lightning":
        lightning_call(warm, wx, ww, wc)
    else:
        qubert_call(warm, case["peer"], wx, ww, wc)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status("VmRSS")
    if case["peer"] == "lightning":
        seconds = lightning_call(circuit, x, w, coef)[0]
    else:
        seconds = qubert_call(circuit, case["peer"], x, w, coef)[0]
    peak = _status("VmHWM") - before
    estimate = None if case["peer"] == "lightning" else estimate_memory(circuit, case["batch"], case["peer"], torch.float64)
    return {**case, "seconds": seconds, "peak_bytes": peak, "estimate_bytes": estimate}


def run_child(case: dict, timeout: float) -> dict:
    env = {**os.environ, **MALLOC_ENV}
    try:
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**case, "error": f"timed out after {timeout:.0f} s"}
    if out.returncode:
        return {**case, "error": (out.stderr.strip().splitlines() or ["exit %d" % out.returncode])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- reporting
def time_table(rows: list[dict], threads: int) -> str:
    lines = [
        f"torch threads: {threads}. Forward + backward (inputs and weights), 2 layers, float64; median of interleaved rounds.",
        "",
        "| n | batch | strategy | median (ms) | fastest (ms) | rounds | x adjoint's time (paired) | peak memory (MiB) | estimate (MiB) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['n_qubits']} | {r['batch']} | {r['strategy']} | skipped: {r['skipped']} | | | | | |")
            continue
        peak = f"{r['peak_bytes'] / 2**20:.0f}" if r.get("peak_bytes") is not None else ""
        est = f"{r['estimate_bytes'] / 2**20:.0f}" if r.get("estimate_bytes") is not None else ""
        lines.append(
            f"| {r['n_qubits']} | {r['batch']} | {r['strategy']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['rounds']} "
            f"| {r['x_vs_adjoint']:.2f} | {peak} | {est} |"
        )
    return "\n".join(lines)


def lightning_table(rows: list[dict]) -> str:
    lines = [
        "One call each in a fresh subprocess (1 torch thread), qubert adjoint just before and after lightning.",
        "",
        "| n | batch | peer | time (s) | peak memory (MiB) | lightning time / qubert time | qubert peak / lightning peak |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['n']} | {r['batch']} | {r['peer']} | {r['error']} | | | |")
            continue
        extra = f"| {r['time_ratio']:.1f} | {r['memory_ratio']:.2f} |" if "time_ratio" in r else "| | |"
        lines.append(f"| {r['n']} | {r['batch']} | {r['peer']} | {r['seconds']:.2f} | {r['peak_bytes'] / 2**20:.0f} {extra}")
    return "\n".join(lines)


def parse_cells(sizes: list[int], batches: list[int], extra: list[str], max_amplitudes: int) -> list[tuple[int, int]]:
    cells = [(n, b) for n in sizes for b in batches if b * 2**n <= max_amplitudes]
    for item in extra:
        n, b = (int(v) for v in item.split(":"))
        if (n, b) not in cells:
            cells.append((n, b))
    return cells


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[8, 10, 11, 12, 14, 16, 18, 20], help="register sizes (qubits)")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 8], help="batch sizes")
    parser.add_argument("--extra", nargs="*", default=["24:8"], help="more n:batch cells (e.g. 24:8)")
    parser.add_argument("--max-amplitudes", type=int, default=64 * 2**20, help="skip cells with batch * 2**n above this (but --extra)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 0], help="torch threads to run with (0: torch's default)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--max-memory", type=float, default=4.0, help="GiB: skip gates where its estimate is above")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timed rounds per cell")
    parser.add_argument("--rounds", type=int, default=15, help="most rounds per cell")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--lightning-sizes", type=int, nargs="*", default=[16, 20])
    parser.add_argument("--lightning-batches", type=int, nargs="*", default=[8])
    parser.add_argument("--child-timeout", type=float, default=3600.0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    machine = describe_machine(["pennylane", "pennylane_lightning"])
    started = time.perf_counter()
    report = {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()}, "time": {}, "lightning": []}
    cells = parse_cells(args.sizes, args.batches, args.extra, args.max_amplitudes)
    default_threads = torch.get_num_threads()
    for threads in args.threads:
        threads = threads or default_threads
        torch.set_num_threads(threads)
        rows = []
        for n, batch in cells:
            cell = time_cell(n, batch, args.layers, args.max_memory, args.budget, args.rounds)
            if not args.no_memory and threads == args.threads[0]:
                for row in cell:
                    if "skipped" not in row:
                        mem = run_child({"peer": row["strategy"], "n": n, "batch": batch, "layers": args.layers, "threads": 1}, args.child_timeout)
                        row["peak_bytes"], row["estimate_bytes"] = mem.get("peak_bytes"), mem.get("estimate_bytes")
            rows += cell
            print(time_table(cell, threads).split("\n", 4)[-1], flush=True)
        report["time"][str(threads)] = rows
        print("\n" + time_table(rows, threads) + "\n", flush=True)
        write_report(args.output, report)
    for n in args.lightning_sizes:
        for batch in args.lightning_batches:
            case = {"n": n, "batch": batch, "layers": args.layers, "threads": 1}
            before = run_child({**case, "peer": "adjoint"}, args.child_timeout)
            light = run_child({**case, "peer": "lightning"}, args.child_timeout)
            after = run_child({**case, "peer": "adjoint"}, args.child_timeout)
            qubert = [r for r in (before, after) if "error" not in r]
            if qubert and "error" not in light:
                q_time = statistics.mean(r["seconds"] for r in qubert)
                q_peak = max(r["peak_bytes"] for r in qubert)
                light["time_ratio"], light["memory_ratio"] = light["seconds"] / q_time, q_peak / light["peak_bytes"]
            report["lightning"] += [before, light, after]
            print(lightning_table([before, light, after]).split("\n", 4)[-1], flush=True)
            write_report(args.output, report)
    if report["lightning"]:
        print("\n" + lightning_table(report["lightning"]))
    close_machine(machine, started)
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))), flush=True)
    else:
        raise SystemExit(main())
