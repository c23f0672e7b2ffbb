"""Forward + backward time of the quantum head's circuit: qubert against PennyLane, in one process.

The circuit is the paper's (H + RY angle encoding, CNOT brickwork, trainable RY, <Z_i> on every
qubit), with a batch of inputs; one "call" is the forward pass and the backward pass of a random
linear functional of the outputs with respect to both the inputs and the circuit weights, which is
what one training step of the head costs. Peers:

- qubert ``simulate`` with strategy ``auto``, ``fused`` (up to 12 qubits) and ``gates``, single
  precision (plus ``auto`` in double precision, as PennyLane computes in complex128);
- PennyLane ``default.qubit`` through ``qml.qnn.TorchLayer`` with parameter broadcasting over the
  batch and backprop;
- PennyLane ``lightning.qubit`` through ``TorchLayer`` with the adjoint method (it does not
  broadcast: PennyLane splits the batch into one circuit per sample, which is what users get);
- the paper's way: one ``default.qubit`` QNode call per sample in a Python loop (small registers).

Before timing, every peer's outputs and gradients are checked against qubert's double-precision
result (outputs: max abs difference < 1e-4; gradients: max abs difference < 1e-4 of their largest
entry). The first call (compilation, caches, warm-up) is reported
separately from the steady-state median of the following calls ("steady"; the ratios use it); the
fastest call is shown too, as it is the figure least disturbed by other load on a shared machine.

Usage:
    python benchmarks/quantum_head.py [--sizes 4 8 12 16] [--batch 64] [--layers 2] [--repeats N]

Prints a Markdown table and writes the same rows as JSON to ``docs/benchmarks/quantum_head.json``.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from machine import close_machine, describe_machine, write_report

from qubert.quantum import Circuit, choose_strategy, simulate

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "benchmarks" / "quantum_head.json"
AGREEMENT_TOL = 1e-4
FUSED_MAX_BENCH_QUBITS = 12  # beyond this the 2**n x 2**n matrices are too big to be worth timing
LOOP_SIZES = (4, 8)  # the per-sample loop is far too slow beyond this
REFERENCE_PEER = "qubert auto"
# Speed-ups qubert auto should reach (issue 2): (peer, sizes, minimum "x slower than qubert").
TARGETS = [
    ("pennylane default.qubit", (4, 8), 20.0),
    ("pennylane default.qubit", (12, 16), 10.0),
    ("pennylane per-sample loop", (8,), 100.0),
]

# A peer turns a circuit into ``run(x, w) -> outputs (B, n_outputs)``; the returned callable
# must make ``x.grad`` and the weights' gradient available after ``backward``.
Runner = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Peer:
    name: str
    build: Callable[[Circuit], tuple[Runner, Callable[[], torch.Tensor | None]]]  # (run, weights-grad getter)
    available_for: Callable[[int], bool]
    precision: str


# ---------------------------------------------------------------------------- peers
def qubert_peer(strategy: str, dtype: torch.dtype) -> Callable:
    def build(circuit: Circuit):
        holder: dict[str, torch.Tensor] = {}

        def run(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            holder["w"] = w
            return simulate(circuit, x.to(dtype), w.to(dtype), strategy=strategy)

        return run, lambda: holder["w"].grad

    return build


def pennylane_qnode(circuit: Circuit, device_name: str, diff_method: str):
    """A QNode ``f(inputs, weights)`` applying ``circuit.operations()`` gate by gate (TorchLayer signature)."""
    import pennylane as qml

    ops = circuit.operations()
    n = circuit.n_qubits
    gate = {"H": qml.Hadamard, "RX": qml.RX, "RY": qml.RY, "RZ": qml.RZ, "Rot": qml.Rot, "CNOT": qml.CNOT}

    @qml.qnode(qml.device(device_name, wires=n), interface="torch", diff_method=diff_method)
    def qnode(inputs, weights):
        flat = weights.reshape(-1)
        for op in ops:
            angles = [inputs[..., p.index] if p.source == "x" else flat[p.index] for p in op.params]
            gate[op.name](*angles, wires=list(op.wires))
        return [qml.expval(qml.PauliZ(i)) for i in range(n)]

    return qnode


def torch_layer_peer(device_name: str, diff_method: str) -> Callable:
    def build(circuit: Circuit):
        import pennylane as qml

        layer = qml.qnn.TorchLayer(pennylane_qnode(circuit, device_name, diff_method), {"weights": circuit.weight_shape})

        def run(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                layer.weights.copy_(w)
            layer.weights.grad = None
            return layer(x)

        return run, lambda: layer.weights.grad

    return build


def per_sample_loop_peer(circuit: Circuit):
    """The paper's prototype: one ``default.qubit`` QNode call per sample, outputs concatenated."""
    qnode = pennylane_qnode(circuit, "default.qubit", "backprop")
    holder: dict[str, torch.Tensor] = {}

    def run(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        holder["w"] = w
        return torch.stack([torch.stack(list(qnode(sample, w))) for sample in x]).float()

    return run, lambda: holder["w"].grad


def all_peers() -> list[Peer]:
    return [
        Peer("qubert auto", qubert_peer("auto", torch.float32), lambda n: True, "float32"),
        Peer("qubert fused", qubert_peer("fused", torch.float32), lambda n: n <= FUSED_MAX_BENCH_QUBITS, "float32"),
        Peer("qubert gates", qubert_peer("gates", torch.float32), lambda n: True, "float32"),
        Peer("qubert auto float64", qubert_peer("auto", torch.float64), lambda n: True, "float64"),
        Peer("pennylane default.qubit", torch_layer_peer("default.qubit", "backprop"), lambda n: True, "complex128"),
        Peer("pennylane lightning.qubit", torch_layer_peer("lightning.qubit", "adjoint"), lambda n: True, "complex128"),
        Peer("pennylane per-sample loop", per_sample_loop_peer, lambda n: n in LOOP_SIZES, "complex128"),
    ]


# ---------------------------------------------------------------------------- measuring
def benchmark_inputs(circuit: Circuit, batch: int, seed: int = 0):
    """Angles as the head produces them (tanh * pi/2), random weights, the functional's coefficients."""
    g = torch.Generator().manual_seed(seed)
    x = torch.tanh(torch.randn(batch, circuit.n_qubits, generator=g)) * (math.pi / 2)
    w = (torch.rand(circuit.weight_shape, generator=g) * 2 - 1) * math.pi
    coef = torch.randn(batch, circuit.n_outputs, generator=g)
    return x, w, coef


def reference_result(circuit: Circuit, x: torch.Tensor, w: torch.Tensor, coef: torch.Tensor):
    """qubert in double precision: outputs and gradients every peer must reproduce."""
    x64 = x.double().requires_grad_(True)
    w64 = w.double().requires_grad_(True)
    out = simulate(circuit, x64, w64, strategy="gates")
    (out * coef.double()).sum().backward()
    return out.detach(), x64.grad, w64.grad


def one_call(run: Runner, weight_grad, x: torch.Tensor, w: torch.Tensor, coef: torch.Tensor):
    """Forward + backward; returns (seconds, outputs, d/dx, d/dw)."""
    x = x.detach().clone().requires_grad_(True)
    w = w.detach().clone().requires_grad_(True)
    start = time.perf_counter()
    out = run(x, w)
    (out * coef.to(out.dtype)).sum().backward()
    elapsed = time.perf_counter() - start
    return elapsed, out.detach(), x.grad, weight_grad()


def max_diff(a: torch.Tensor | None, b: torch.Tensor) -> float:
    if a is None:
        return math.inf
    return (a.detach().double() - b.double()).abs().max().item()


def measure(peer: Peer, circuit: Circuit, batch: int, max_repeats: int, budget_s: float) -> dict:
    x, w, coef = benchmark_inputs(circuit, batch)
    ref_out, ref_gx, ref_gw = reference_result(circuit, x, w, coef)
    build_start = time.perf_counter()
    run, weight_grad = peer.build(circuit)
    build_s = time.perf_counter() - build_start
    first_s, out, gx, gw = one_call(run, weight_grad, x, w, coef)
    # Outputs lie in [-1, 1]: absolute error. Gradients sum over the batch and the outputs, so their
    # error is taken relative to their size (float32 sums over 2**n terms lose digits as n grows).
    diffs = {
        "outputs": max_diff(out, ref_out),
        "d_inputs": max_diff(gx, ref_gx) / max(1.0, ref_gx.abs().max().item()),
        "d_weights": max_diff(gw, ref_gw) / max(1.0, ref_gw.abs().max().item()),
    }
    if max(diffs.values()) > AGREEMENT_TOL:
        raise SystemExit(f"{peer.name} at n={circuit.n_qubits} disagrees with qubert (double precision): {diffs}")
    # Slow peers get fewer repeats: as many as fit in the budget, at least one.
    repeats = max(1, min(max_repeats, int(budget_s / max(first_s, 1e-6))))
    times = [one_call(run, weight_grad, x, w, coef)[0] for _ in range(repeats)]
    del run, weight_grad
    gc.collect()
    return {
        "n_qubits": circuit.n_qubits,
        "peer": peer.name,
        "precision": peer.precision,
        "first_call_ms": 1e3 * (build_s + first_s),
        "steady_ms": 1e3 * statistics.median(times),
        "min_ms": 1e3 * min(times),
        "repeats": repeats,
        "max_abs_diff_outputs": diffs["outputs"],
        "max_rel_diff_gradients": max(diffs["d_inputs"], diffs["d_weights"]),
    }


# ---------------------------------------------------------------------------- reporting
def add_ratios(rows: list[dict]) -> None:
    reference = {r["n_qubits"]: r["steady_ms"] for r in rows if r["peer"] == REFERENCE_PEER}
    for row in rows:
        ref = reference.get(row["n_qubits"])
        row["x_slower_than_qubert"] = row["steady_ms"] / ref if ref else None


def check_targets(rows: list[dict]) -> list[dict]:
    by_key = {(r["peer"], r["n_qubits"]): r for r in rows}
    results = []
    for peer, sizes, minimum in TARGETS:
        for n in sizes:
            row = by_key.get((peer, n))
            ratio = row["x_slower_than_qubert"] if row else None
            status = "not measured" if ratio is None else ("met" if ratio >= minimum else "NOT met")
            results.append({"peer": peer, "n_qubits": n, "target_x": minimum, "measured_x": ratio, "status": status})
    return results


def markdown_table(rows: list[dict], batch: int, layers: int) -> str:
    lines = [
        f"Forward + backward (inputs and weights), batch {batch}, {layers} layers, h_ry encoding, brickwork, <Z> on every qubit.",
        "",
        "| n | peer | precision | first call (ms) | steady (ms) | fastest (ms) | repeats | x slower than qubert auto |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = "" if r["x_slower_than_qubert"] is None else f"{r['x_slower_than_qubert']:.1f}"
        lines.append(
            f"| {r['n_qubits']} | {r['peer']} | {r['precision']} | {r['first_call_ms']:.1f} | {r['steady_ms']:.2f} | {r['min_ms']:.2f} "
            f"| {r['repeats']} | {ratio} |"
        )
    return "\n".join(lines)


def targets_table(targets: list[dict]) -> str:
    lines = ["| target | n | required | measured | status |", "|---|---:|---:|---:|---|"]
    for t in targets:
        measured = "" if t["measured_x"] is None else f"{t['measured_x']:.1f}x"
        lines.append(f"| qubert auto vs {t['peer']} | {t['n_qubits']} | >= {t['target_x']:.0f}x | {measured} | {t['status']} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 12, 16], help="register sizes (qubits)")
    parser.add_argument("--batch", type=int, default=64, help="samples per call")
    parser.add_argument("--layers", type=int, default=2, help="variational layers")
    parser.add_argument("--repeats", type=int, default=30, help="most timed calls per peer after the first")
    parser.add_argument("--budget", type=float, default=8.0, help="seconds of timed calls per peer and size (slow peers get fewer repeats)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the machine's core count)")
    parser.add_argument("--peers", nargs="+", default=None, help="only these peers (names as in the table)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the JSON rows")
    args = parser.parse_args(argv)
    if min(args.sizes) < 1 or args.batch < 1 or args.layers < 0 or args.repeats < 1 or args.budget <= 0 or (args.threads or 1) < 1:
        parser.error("sizes, batch, repeats and threads must be positive, layers non-negative, budget > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(args.threads or cores)
    peers = all_peers()
    if args.peers:
        unknown = set(args.peers) - {p.name for p in peers}
        if unknown:
            raise SystemExit(f"unknown peer(s): {', '.join(sorted(unknown))}; choose from: {', '.join(p.name for p in peers)}")
        peers = [p for p in peers if p.name in args.peers or p.name == REFERENCE_PEER]
    try:
        import pennylane  # noqa: F401
    except ImportError:
        print("PennyLane is not installed: timing qubert only (pip install pennylane pennylane-lightning)", file=sys.stderr)
        peers = [p for p in peers if p.name.startswith("qubert")]

    machine = describe_machine(["pennylane", "pennylane_lightning"])
    started = time.perf_counter()
    rows = []
    for n in args.sizes:
        circuit = Circuit(n_qubits=n, n_layers=args.layers)
        for peer in peers:
            if not peer.available_for(n):
                continue
            row = measure(peer, circuit, args.batch, args.repeats, args.budget)
            if peer.name == "qubert auto":
                row["resolved_strategy"] = choose_strategy(circuit, args.batch, torch.float32)
            rows.append(row)
            print(f"  n={n:>2} {peer.name:<28} first {row['first_call_ms']:>10.1f} ms  steady {row['steady_ms']:>10.2f} ms  ({row['repeats']} repeats)", file=sys.stderr, flush=True)
    add_ratios(rows)
    targets = check_targets(rows)
    close_machine(machine, started)

    print(markdown_table(rows, args.batch, args.layers))
    print()
    print(targets_table(targets))
    settings = {"threads": torch.get_num_threads(), "sizes": args.sizes, "batch": args.batch, "layers": args.layers, "max_repeats": args.repeats, "budget_s": args.budget}
    payload = {"machine": machine, "settings": settings, "rows": rows, "targets": targets}
    write_report(args.output, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
