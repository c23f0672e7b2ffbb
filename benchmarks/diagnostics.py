"""Barren plateaus, expressibility and entanglement of the paper's circuit and two alternatives.

For each circuit design (all with the paper's H + RY(x) encoding and <Z> measurement):

- ``paper``: brickwork CNOTs (0,1),(2,3).. then (1,2),(3,4).., then RY on every qubit;
- ``basic_entangler_rx``: RX on every qubit, then a CNOT ring (``qml.BasicEntanglerLayers``);
- ``strongly_entangling``: Rot on every qubit, then CNOTs of range r (``qml.StronglyEntanglingLayers``);

it runs :func:`qubert.quantum.diagnostics.analyze` over qubits 2-8, depths 1, 2, 4, 8 and the three
init strategies (uniform, small, identity), 2000 draws per point, and times each design. With
``--timing`` it also times the paper's grid with 1 and with 2 torch threads, alternately in this
process, and prints the ratio.

Run:
    python benchmarks/diagnostics.py                  # ~2-4 min on 2 shared cores
    python benchmarks/diagnostics.py --timing
    python benchmarks/diagnostics.py --replot         # redraw the figure from the JSON

Writes Markdown tables to stdout, docs/benchmarks/diagnostics.json ({"machine", "settings",
"designs", "timing"}) and the figure docs/figures/diagnostics_variance.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from machine import close_machine, describe_machine, write_report

from qubert.quantum import Circuit
from qubert.quantum.diagnostics import analyze, fit_rows, table_rows

REPO = Path(__file__).resolve().parents[1]
DESIGNS = {
    "paper": Circuit(n_qubits=4, n_layers=2),
    "basic_entangler_rx": Circuit(n_qubits=4, n_layers=2, ansatz="basic_entangler", rotation="rx"),
    "strongly_entangling": Circuit(n_qubits=4, n_layers=2, ansatz="strongly_entangling"),
}
INIT_COLORS = {"uniform": "#d62728", "small": "#1f77b4", "identity": "#2ca02c"}


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def figure(results: dict, depths: list[int], path: Path) -> None:
    """Var[dC/dtheta_0] vs qubits (log axis): a column per design, a row per cost, colour = init, style = depth."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    styles = dict(zip(depths, ["-", "--", ":", "-."]))
    fig = Figure(figsize=(13, 7.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(results), sharex=True, squeeze=False)
    for c, (name, result) in enumerate(results.items()):
        for r, (key, label) in enumerate((("var_z0", "Var[∂⟨Z₀⟩/∂θ₀]"), ("var_loss", "Var[∂loss/∂θ₀] (dressed head)"))):
            ax = axes[r][c]
            for init, color in INIT_COLORS.items():
                for depth in depths:
                    rows = [row for row in result.rows if row["init"] == init and row["n_layers"] == depth and row[key] > 1e-24]
                    if rows:
                        ax.plot([row["n_qubits"] for row in rows], [row[key] for row in rows], color=color, linestyle=styles[depth], marker="o", markersize=4, label=f"{init}, {depth} layers")
            qubits = sorted({row["n_qubits"] for row in result.rows})
            ax.plot(qubits, [0.5 * 2.0 ** (qubits[0] - n) for n in qubits], color="grey", linewidth=1, linestyle=(0, (1, 3)), label="∝ 2⁻ⁿ")
            ax.set_yscale("log")
            ax.set_xticks(qubits)
            ax.tick_params(labelsize=9)
            ax.grid(True, alpha=0.3)
            if r == 0:
                zero = any(row["init"] == "identity" and row[key] <= 1e-24 for row in result.rows)
                ax.set_title(name + ("\n(identity: ∂θ₀ = 0 for every draw, not drawn)" if zero else ""), fontsize=11)
            if c == 0:
                ax.set_ylabel(label, fontsize=10)
            if r == 1:
                ax.set_xlabel("qubits", fontsize=10)
    axes[1][0].legend(fontsize=8.5, loc="lower left", ncol=2)
    fig.savefig(path, dpi=150)
    print(f"wrote {path}")


class Rows:
    """A design's analysis as plain dicts (what the JSON holds)."""

    def __init__(self, analysis) -> None:
        data = analysis.to_dict()
        self.rows, self.fits = data["rows"], data["fits"]
        self.analysis = analysis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--qubits", default="2,4,6,8")
    parser.add_argument("--depths", default="1,2,4,8")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the main runs (see --timing)")
    parser.add_argument("--timing", action="store_true", help="also time the paper's grid with 1 and 2 threads")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "diagnostics.json")
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "figures" / "diagnostics_variance.png")
    parser.add_argument("--replot", action="store_true", help="only redraw the figure from --output's JSON")
    args = parser.parse_args()
    if args.replot:
        import json
        from types import SimpleNamespace

        payload = json.loads(args.output.read_text())
        results = {name: SimpleNamespace(**design) for name, design in payload["designs"].items()}
        depths = payload["settings"]["depths"]
        figure(results, [d for d in (2, 8) if d in depths] or depths[:2], args.figure)
        return
    qubits = [int(v) for v in args.qubits.split(",")]
    depths = [int(v) for v in args.depths.split(",")]
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    machine = describe_machine()

    results, seconds = {}, {}
    for name, circuit in DESIGNS.items():
        t = time.perf_counter()
        results[name] = Rows(analyze(circuit, qubits, depths, samples=args.samples, seed=args.seed))
        seconds[name] = round(time.perf_counter() - t, 1)
        points = len(results[name].rows)
        print(f"\n## {name}: {points} points x {args.samples} draws in {seconds[name]} s ({args.threads} thread(s))\n")
        print(markdown(*table_rows(results[name].analysis)))
        print()
        print(markdown(*fit_rows(results[name].analysis)))

    timing = None
    if args.timing:
        runs = {1: [], 2: []}
        for _ in range(2):
            for threads in (1, 2):
                torch.set_num_threads(threads)
                t = time.perf_counter()
                analyze(DESIGNS["paper"], qubits, depths, samples=args.samples, seed=args.seed)
                runs[threads].append(round(time.perf_counter() - t, 2))
        timing = {"design": "paper", "seconds_by_threads": runs, "ratio_2_over_1": round(min(runs[2]) / min(runs[1]), 2)}
        print(f"\npaper grid: 1 thread {min(runs[1])} s, 2 threads {min(runs[2])} s (best of 2 each; ratio 2/1 = {timing['ratio_2_over_1']})")

    figure(results, [d for d in (2, 8) if d in depths] or depths[:2], args.figure)
    payload = {
        "machine": close_machine(machine, started),
        "settings": {"samples": args.samples, "seed": args.seed, "qubits": qubits, "depths": depths, "threads": args.threads, "inputs": "random"},
        "designs": {name: {"circuit": DESIGNS[name].to_dict(), "seconds": seconds[name], "rows": r.rows, "fits": r.fits} for name, r in results.items()},
        "timing": timing,
    }
    write_report(args.output, payload)


if __name__ == "__main__":
    main()
