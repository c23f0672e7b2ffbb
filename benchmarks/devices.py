"""What would a trained quantum head score on an IBM device, and how close is qubert's device mapping to Aer?

For each data set (default: sms_spam and trec, 6 classes), frozen all-MiniLM-L6-v2 embeddings (mean
pooling, max_length 64) of a stratified subset (1000 train / 300 test) are cached under /tmp, and a
QuantumHead (4 qubits, 2 layers, the paper's circuit) is trained on them noiselessly with plain
torch. It is then scored (macro-F1 on the test subset) under

- ``exact``: expectation values; ``shots``: 1024 shots; ``abstract noise``: qubert's own
  ``depolarizing:0.01,readout:0.02`` with 1024 shots;
- for each device (default fake_manila, fake_kyiv, fake_fez): ``Aer``: the circuit transpiled for
  the device (optimization level 1, seed 0) on Aer's SamplerV2 with the device's noise model, one
  call per 256 samples, 1024 shots; ``qubert mapping``: the device's calibration mapped to qubert's
  channels (``device_simulator="qubert"``), same shots.

Sampled scores are the mean over ``--eval-seeds`` seeds. Seconds per 1,000 samples are measured for
Aer, the mapping and exact simulation in the same process. The agreement table compares the
mapping with Aer's exact density matrix (no shots) of the same transpiled circuit, on 64 random
inputs with random weights, for three circuit designs, and on the trained heads' own test inputs.

Run:
    QUBERT_DATA_DIR=/work/shared/data python benchmarks/devices.py          # ~10-20 min on 2 busy cores
    python benchmarks/devices.py --from-json                                 # redraw the figure only

Writes Markdown tables to stdout, docs/benchmarks/devices.json ({"machine", ...}) and
docs/figures/devices.png.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from machine import close_machine, describe_machine, write_report
from noise_robustness import DATASETS, embed, load_subsets, train_head

REPO = Path(__file__).resolve().parents[1]
ABSTRACT_NOISE = "depolarizing:0.01,readout:0.02"
SHOTS = 1024


def score(head, features, labels, batch: int = 256) -> tuple[float, float]:
    """(macro-F1, seconds) of the head as currently configured, one circuit call per ``batch`` samples."""
    from sklearn.metrics import f1_score

    start, predicted = time.perf_counter(), []
    with torch.no_grad():
        for offset in range(0, len(features), batch):
            predicted.append(head(features[offset : offset + batch]).argmax(-1))
    seconds = time.perf_counter() - start
    return float(f1_score(labels.numpy(), torch.cat(predicted).numpy(), average="macro")), seconds


def f1_rows(name: str, head, features, labels, args) -> list[dict]:
    conditions = [("exact", "exact", {}), ("shots", f"{SHOTS} shots", {"shots": SHOTS}), ("abstract noise", ABSTRACT_NOISE, {"shots": SHOTS, "noise": ABSTRACT_NOISE})]
    for device in args.devices:
        conditions.append((f"{device} Aer", device, {"shots": SHOTS, "backend": device, "device_simulator": "aer"}))
        conditions.append((f"{device} qubert mapping", device, {"shots": SHOTS, "backend": device, "device_simulator": "qubert"}))
    score(head, features[:32], labels[:32])  # warm-up: lazy imports and first-call costs stay out of the timings
    rows = []
    for label, what, options in conditions:
        seeds = [0] if not options else list(range(args.eval_seeds))
        results = []
        for seed in seeds:
            head.set_execution(shots=None, noise=None, backend=None, device_simulator="aer")
            head.set_execution(**options, seed=seed)
            results.append(score(head, features, labels))
        f1s = [f1 for f1, _ in results]
        seconds = statistics.median(s for _, s in results)
        rows.append({
            "dataset": name, "condition": label, "setting": what, "macro_f1": statistics.fmean(f1s),
            "macro_f1_std": statistics.stdev(f1s) if len(f1s) > 1 else 0.0, "eval_seeds": len(seeds),
            "seconds_per_1000": 1000 * seconds / len(labels),
        })
        print(f"{name:9s} {label:28s} macro-F1 {rows[-1]['macro_f1']:.3f}  {rows[-1]['seconds_per_1000']:.2f} s/1000", file=sys.stderr)
    head.set_execution(shots=None, noise=None, backend=None, device_simulator="aer")
    return rows


def agreement_rows(args, trained: dict) -> list[dict]:
    """|<Z> mapping - <Z> Aer| on the same transpiled circuits (Aer exact density matrix, no shots)."""
    from qubert.quantum import Circuit, devices, execute, simulate

    designs = {
        "brickwork (paper)": Circuit(n_qubits=args.qubits, n_layers=args.layers),
        "basic_entangler ring": Circuit(n_qubits=args.qubits, n_layers=args.layers, ansatz="basic_entangler"),
        "strongly_entangling": Circuit(n_qubits=args.qubits, n_layers=args.layers, ansatz="strongly_entangling"),
    }
    generator = torch.Generator().manual_seed(args.seed)
    cases = []
    for design, circuit in designs.items():
        x = (torch.rand(64, circuit.n_qubits, generator=generator, dtype=torch.float64) - 0.5) * math.pi
        w = torch.rand(circuit.weight_shape, generator=generator, dtype=torch.float64) * 2 * math.pi
        cases.append((design + ", random weights", circuit, x, w))
    for name, (head, features) in trained.items():
        with torch.no_grad():
            x = head.angles(features[:64]).double()
        cases.append((f"trained head ({name})", head.circuit, x, head.q_weights.detach().double()))
    rows = []
    for device in args.devices:
        for case, circuit, x, w in cases:
            transpiled = devices.transpile_head(circuit, device)
            model = devices.device_noise_model(circuit, device)
            reference = devices.aer_expectations(transpiled, x, w)
            start = time.perf_counter()
            mapped = execute(circuit, x, w, device=device, device_simulator="qubert")
            mapped_seconds = time.perf_counter() - start
            abstract = execute(circuit, x, w, noise=ABSTRACT_NOISE)
            difference = (mapped - reference).abs()
            rows.append({
                "device": device, "case": case, "cnots": sum(op.name == "CNOT" for op in circuit.operations()),
                "two_qubit_gates": transpiled.two_qubit_gates, "routing_gates_charged": round(sum(p.routing_gates * sum(op.wires == wires for op in circuit.operations()) for wires, p in model.pairs), 2),
                "layout": list(transpiled.layout), "final_layout": list(transpiled.final_layout),
                "max_abs_mapping_vs_aer": float(difference.max()), "mean_abs_mapping_vs_aer": float(difference.mean()),
                "mean_abs_abstract_vs_aer": float((abstract - reference).abs().mean()),
                "mean_abs_exact_vs_aer": float((simulate(circuit, x, w) - reference).abs().mean()),
                "mapping_ms_per_sample": 1000 * mapped_seconds / len(x),
            })
            print(f"{device:12s} {case:40s} max|map-aer| {difference.max():.4f}  mean|exact-aer| {rows[-1]['mean_abs_exact_vs_aer']:.4f}", file=sys.stderr)
    return rows


# ---------------------------------------------------------------------------- reporting
def markdown(payload: dict) -> str:
    lines = ["Macro-F1 on the test subset (sampled conditions: mean ± std over eval seeds)", ""]
    datasets = list(dict.fromkeys(r["dataset"] for r in payload["f1"]))
    conditions = list(dict.fromkeys(r["condition"] for r in payload["f1"]))
    lines.append("| condition | " + " | ".join(datasets) + " | s per 1,000 samples |")
    lines.append("|---|" + "---:|" * (len(datasets) + 1))
    for condition in conditions:
        cells = []
        for dataset in datasets:
            row = next(r for r in payload["f1"] if r["dataset"] == dataset and r["condition"] == condition)
            cells.append(f"{row['macro_f1']:.3f}" + (f" ± {row['macro_f1_std']:.3f}" if row["eval_seeds"] > 1 else ""))
        seconds = statistics.fmean(r["seconds_per_1000"] for r in payload["f1"] if r["condition"] == condition)
        lines.append(f"| {condition} | " + " | ".join(cells) + f" | {seconds:.2f} |")
    lines += ["", "Mapping vs Aer: |<Z_i>| differences over 64 inputs x 4 outputs (Aer: exact density matrix of the transpiled circuit)", ""]
    lines.append("| device | circuit | CNOTs | 2q gates transpiled | routing 2q gates charged | max mapping-Aer | mean mapping-Aer | mean abstract-Aer | mean exact-Aer |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in payload["agreement"]:
        lines.append(
            f"| {r['device']} | {r['case']} | {r['cnots']} | {r['two_qubit_gates']} | {r['routing_gates_charged']:g} | {r['max_abs_mapping_vs_aer']:.4f} | "
            f"{r['mean_abs_mapping_vs_aer']:.4f} | {r['mean_abs_abstract_vs_aer']:.4f} | {r['mean_abs_exact_vs_aer']:.4f} |"
        )
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in payload["f1"]))
    conditions = list(dict.fromkeys(r["condition"] for r in payload["f1"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 0.42 * len(conditions) + 1.6), sharey=True, squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = {r["condition"]: r for r in payload["f1"] if r["dataset"] == dataset}
        for y, condition in enumerate(conditions):
            row = rows[condition]
            color = "tab:gray" if " " not in condition.split(" ")[0] and "fake" not in condition else ("tab:blue" if "Aer" in condition else "tab:orange")
            marker = "o" if "Aer" in condition or "fake" not in condition else "D"
            ax.errorbar(row["macro_f1"], y, xerr=row["macro_f1_std"] or None, fmt=marker, color=color, capsize=3, markersize=6)
        exact = rows["exact"]["macro_f1"]
        ax.axvline(exact, color="tab:gray", linestyle=":", linewidth=1)
        ax.set_title(f"{dataset} ({payload['test_size']} test rows)", fontsize=11)
        ax.set_xlabel("macro-F1", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=9)
    axes[0][0].set_yticks(range(len(conditions)), conditions, fontsize=9)
    axes[0][0].invert_yaxis()
    fig.suptitle(f"Trained 4-qubit head (frozen MiniLM): exact, shots, abstract noise and IBM device snapshots ({SHOTS} shots)", fontsize=10)
    fig.text(0.01, 0.01, "blue: Aer with the device noise model (transpiled circuit); orange diamonds: qubert's mapping of the same calibration; bars: std over shot seeds; dotted: exact", fontsize=8.5)
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    print(f"wrote {path}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["sms_spam", "trec"], choices=sorted(DATASETS))
    parser.add_argument("--devices", nargs="+", default=["fake_manila", "fake_kyiv", "fake_fez"])
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--test-size", type=int, default=300)
    parser.add_argument("--qubits", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-seeds", type=int, default=3)
    parser.add_argument("--from-json", action="store_true", help="Only redraw the figure and reprint the tables from --json.")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/qubert-noise-benchmark"))
    parser.add_argument("--json", type=Path, default=REPO / "docs" / "benchmarks" / "devices.json")
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "figures" / "devices.png")
    args = parser.parse_args()
    if args.from_json:
        payload = json.loads(args.json.read_text())
    else:
        started = time.perf_counter()
        machine = describe_machine(["qiskit", "qiskit-aer", "qiskit-ibm-runtime"])
        f1, trained = [], {}
        for name in args.datasets:
            train_texts, train_labels, test_texts, test_labels = load_subsets(name, args.train_size, args.test_size, args.seed)
            train_x, test_x = embed(train_texts, args.cache_dir), embed(test_texts, args.cache_dir)
            train_y, test_y = torch.tensor(train_labels), torch.tensor(test_labels)
            head = train_head(train_x, train_y, args, noise=None)
            trained[name] = (head, test_x)
            f1 += f1_rows(name, head, test_x, test_y, args)
        agreement = agreement_rows(args, trained)
        payload = {
            "machine": close_machine(machine, started), "settings": {k: str(v) for k, v in vars(args).items()},
            "test_size": args.test_size, "f1": f1, "agreement": agreement,
        }
        write_report(args.json, payload)
    print(markdown(payload))
    plot(payload, args.figure)


if __name__ == "__main__":
    main()
