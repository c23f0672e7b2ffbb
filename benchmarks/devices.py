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

``--part mitigation`` (issue 19) trains the same heads and scores them on each device with every
error mitigation (none, readout, zne, twirling, all; 1024 shots, ``--eval-seeds`` shot seeds),
with the Aer wall time next to the dry-run QPU estimate of the same job (different things: one
is this machine simulating, the other a model of hardware time); compares the shot planner's
expected macro-F1 at K = 16-4096 with measured shot runs; and trains a noise-aware head under
each device's mapped noise, scored on Aer beside the exact-trained head, with and without
``--aware-mitigation``. It writes docs/benchmarks/devices_mitigation.json and
docs/figures/devices_mitigation.png.

Run:
    QUBERT_DATA_DIR=/work/shared/data python benchmarks/devices.py          # ~10-20 min on 2 busy cores
    QUBERT_DATA_DIR=/work/shared/data python benchmarks/devices.py --part mitigation --datasets trec   # ~15 min per data set
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



# ---------------------------------------------------------------------------- issue 19: mitigation, shot planner, noise-aware training
MITIGATION_PART_JSON = REPO / "docs" / "benchmarks" / "devices_mitigation.json"
MITIGATION_PART_FIGURE = REPO / "docs" / "figures" / "devices_mitigation.png"
PLANNER_SHOTS = (16, 64, 256, 1024, 4096)


def train_aware_head(features: torch.Tensor, labels: torch.Tensor, args, device: str):
    """As noise_robustness.train_head, under ``device``'s calibration mapped to qubert's channels (differentiable)."""
    head = train_head(features, labels, args, None, backend=device, device_simulator="qubert")
    head.set_execution(backend=None, device_simulator="aer")
    return head


def device_f1(head, features, labels, transpiled, method: str, seeds) -> dict:
    """Macro-F1 (mean, std over shot seeds) and seconds of ``head`` on ``transpiled``'s device under ``method``."""
    from sklearn.metrics import f1_score

    from qubert.quantum.mitigation import Mitigation, mitigated_logits
    from qubert.quantum.qpu_budget import plan_evaluation

    mitigation = Mitigation(method)
    f1s, seconds = [], []
    for seed in seeds:
        logits, run = mitigated_logits(head, features, transpiled, mitigation, shots=SHOTS, seed=seed)
        f1s.append(float(f1_score(labels.numpy(), logits.argmax(-1).numpy(), average="macro", zero_division=0)))
        seconds.append(run.seconds)
    plan = plan_evaluation(transpiled, len(labels), SHOTS, mitigation)
    return {
        "macro_f1": statistics.fmean(f1s), "macro_f1_std": statistics.stdev(f1s) if len(f1s) > 1 else 0.0, "seeds": len(f1s),
        "aer_seconds": statistics.median(seconds), "sweeps": len(plan.circuits), "estimated_qpu_seconds": plan.qpu_seconds,
    }


def mitigation_part(args) -> dict:
    from sklearn.metrics import f1_score

    from qubert.quantum import devices
    from qubert.quantum.mitigation import MITIGATIONS
    from qubert.quantum.shot_planning import plan_head_shots, shots_for_gap

    seeds = list(range(args.eval_seeds))
    rows, planner, aware = [], [], []
    for name in args.datasets:
        train_texts, train_labels, test_texts, test_labels = load_subsets(name, args.train_size, args.test_size, args.seed)
        train_x, test_x = embed(train_texts, args.cache_dir), embed(test_texts, args.cache_dir)
        train_y, test_y = torch.tensor(train_labels), torch.tensor(test_labels)
        head = train_head(train_x, train_y, args, noise=None)
        with torch.no_grad():
            exact = float(f1_score(test_y.numpy(), head(test_x).argmax(-1).numpy(), average="macro", zero_division=0))
        # shot planner: predicted (multinomial Monte Carlo) vs measured (qubert's shot sampling, eval seeds)
        exact_planned, predictions = plan_head_shots(head, test_x, test_labels, PLANNER_SHOTS, repeats=args.planner_repeats, seed=args.seed)
        for prediction in predictions:
            measured = []
            for seed in seeds:
                head.set_execution(shots=prediction.shots, seed=seed)
                with torch.no_grad():
                    measured.append(float(f1_score(test_y.numpy(), head(test_x).argmax(-1).numpy(), average="macro", zero_division=0)))
            head.set_execution(shots=None)
            planner.append({
                "dataset": name, "shots": prediction.shots, "exact": exact_planned, "predicted": prediction.mean, "predicted_std": prediction.std,
                "measured": statistics.fmean(measured), "measured_std": statistics.stdev(measured) if len(measured) > 1 else 0.0,
            })
            print(f"{name:9s} planner K={prediction.shots:5d} predicted {prediction.mean:.3f} measured {planner[-1]['measured']:.3f}", file=sys.stderr)
        planner.append({"dataset": name, "shots_within_0.01": shots_for_gap(predictions, exact_planned, 0.01), "exact": exact_planned})
        for device in args.devices:
            transpiled = devices.transpile_head(head.circuit, device)
            for method in MITIGATIONS:
                row = {"dataset": name, "device": device, "mitigation": method, "exact": exact, **device_f1(head, test_x, test_y, transpiled, method, seeds)}
                rows.append(row)
                print(f"{name:9s} {device:12s} {method:9s} macro-F1 {row['macro_f1']:.3f} ± {row['macro_f1_std']:.3f}  Aer {row['aer_seconds']:.1f} s  "
                      f"est. QPU {row['estimated_qpu_seconds']:.0f} s", file=sys.stderr)
            if device in args.aware_devices:
                aware_head = train_aware_head(train_x, train_y, args, device)
                aware_transpiled = devices.transpile_head(aware_head.circuit, device)
                for training, trained, t in (("exact", head, transpiled), ("noise-aware", aware_head, aware_transpiled)):
                    for method in ("none", args.aware_mitigation):
                        result = device_f1(trained, test_x, test_y, t, method, seeds)
                        aware.append({"dataset": name, "device": device, "training": training, "mitigation": method, **result})
                        print(f"{name:9s} {device:12s} {training:11s} {method:5s} macro-F1 {result['macro_f1']:.3f}", file=sys.stderr)
    return {"rows": rows, "planner": planner, "aware": aware}


def recovery(payload: dict) -> list[dict]:
    """Per data set and device: the share of the macro-F1 lost to noise that the best mitigation wins back."""
    out = []
    for dataset, device in dict.fromkeys((r["dataset"], r["device"]) for r in payload["rows"]):
        group = {r["mitigation"]: r for r in payload["rows"] if r["dataset"] == dataset and r["device"] == device}
        noisy, exact = group["none"]["macro_f1"], group["none"]["exact"]
        best = max((m for m in group if m != "none"), key=lambda m: group[m]["macro_f1"])
        lost = exact - noisy
        out.append({"dataset": dataset, "device": device, "exact": exact, "noisy": noisy, "best": best, "best_f1": group[best]["macro_f1"],
                    "recovered": (group[best]["macro_f1"] - noisy) / lost if lost > 0 else float("nan")})
    return out


def mitigation_markdown(payload: dict) -> str:
    lines = [f"Macro-F1 on the device (Aer, {SHOTS} shots, mean ± std over {payload['settings']['eval_seeds']} shot seeds); "
             "Aer s: wall time of one evaluation on this machine; est. QPU s: the dry-run estimate for the same job on hardware", ""]
    lines.append("| data set | device | exact | " + " | ".join(m for m in ("none", "readout", "zne", "twirling", "all")) + " |")
    lines.append("|---|---|---:|" + "---:|" * 5)
    for dataset, device in dict.fromkeys((r["dataset"], r["device"]) for r in payload["rows"]):
        group = {r["mitigation"]: r for r in payload["rows"] if r["dataset"] == dataset and r["device"] == device}
        cells = [f"{group[m]['macro_f1']:.3f} ± {group[m]['macro_f1_std']:.3f}" for m in ("none", "readout", "zne", "twirling", "all")]
        lines.append(f"| {dataset} | {device} | {group['none']['exact']:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "Time per evaluation of the test subset: Aer wall time (this machine, under load) vs the dry-run QPU estimate (hardware); sweeps = parameter sweeps (PUBs)", ""]
    lines.append("| device | mitigation | sweeps | Aer s (mean over data sets) | est. QPU s |")
    lines.append("|---|---|---:|---:|---:|")
    for device, method in dict.fromkeys((r["device"], r["mitigation"]) for r in payload["rows"]):
        group = [r for r in payload["rows"] if r["device"] == device and r["mitigation"] == method]
        lines.append(f"| {device} | {method} | {group[0]['sweeps']} | {statistics.fmean(r['aer_seconds'] for r in group):.1f} | "
                     f"{statistics.fmean(r['estimated_qpu_seconds'] for r in group):.0f} |")
    lines += ["", "Share of the macro-F1 lost to device noise that the best mitigation recovers: (best - none) / (exact - none)", ""]
    lines.append("| data set | device | exact | none | best | best macro-F1 | recovered |")
    lines.append("|---|---|---:|---:|---|---:|---:|")
    for r in recovery(payload):
        lines.append(f"| {r['dataset']} | {r['device']} | {r['exact']:.3f} | {r['noisy']:.3f} | {r['best']} | {r['best_f1']:.3f} | " + (f"{r['recovered']:.0%}" if r["recovered"] == r["recovered"] else "no loss to recover") + " |")
    lines += ["", "Shot planner: expected macro-F1 at K shots (multinomial Monte Carlo) vs measured (qubert's shot sampling, mean ± std over seeds)", ""]
    lines.append("| data set | K | exact | predicted | measured | predicted - measured |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for r in payload["planner"]:
        if "shots" in r:
            lines.append(f"| {r['dataset']} | {r['shots']} | {r['exact']:.3f} | {r['predicted']:.3f} ± {r['predicted_std']:.3f} | "
                         f"{r['measured']:.3f} ± {r['measured_std']:.3f} | {r['predicted'] - r['measured']:+.3f} |")
    for r in payload["planner"]:
        if "shots_within_0.01" in r:
            lines.append(f"\n{r['dataset']}: smallest K of the grid within 0.01 of exact: {r['shots_within_0.01']}")
    if payload["aware"]:
        lines += ["", "Noise-aware (trained under the device's mapped noise) vs exact training, scored on the device (Aer)", ""]
        lines.append("| data set | device | training | mitigation | macro-F1 |")
        lines.append("|---|---|---|---|---:|")
        for r in payload["aware"]:
            lines.append(f"| {r['dataset']} | {r['device']} | {r['training']} | {r['mitigation']} | {r['macro_f1']:.3f} ± {r['macro_f1_std']:.3f} |")
    return "\n".join(lines)


def mitigation_plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in payload["rows"]))
    device_names = list(dict.fromkeys(r["device"] for r in payload["rows"]))
    methods = ("none", "readout", "zne", "twirling", "all")
    colors = dict(zip(methods, ("tab:gray", "tab:blue", "tab:orange", "tab:purple", "tab:green")))
    fig, axes = plt.subplots(2, len(datasets), figsize=(6.4 * len(datasets), 8.2), squeeze=False)
    for col, dataset in enumerate(datasets):
        ax = axes[0][col]
        for d, device in enumerate(device_names):
            for k, method in enumerate(methods):
                row = next(r for r in payload["rows"] if r["dataset"] == dataset and r["device"] == device and r["mitigation"] == method)
                ax.errorbar(d + (k - 2) * 0.14, row["macro_f1"], yerr=row["macro_f1_std"] or None, fmt="o", color=colors[method], capsize=3,
                            label=method if d == 0 else None)
        exact = next(r["exact"] for r in payload["rows"] if r["dataset"] == dataset)
        ax.axhline(exact, color="black", linestyle=":", linewidth=1, label="exact")
        ax.set_xticks(range(len(device_names)), device_names)
        ax.set_ylabel("macro-F1")
        ax.set_title(f"{dataset}: mitigation on the device ({SHOTS} shots)", fontsize=11)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False, handletextpad=0.3, columnspacing=0.9)
        ax = axes[1][col]
        rows = [r for r in payload["planner"] if r["dataset"] == dataset and "shots" in r]
        ks = [r["shots"] for r in rows]
        ax.errorbar(ks, [r["predicted"] for r in rows], yerr=[r["predicted_std"] for r in rows], fmt="-o", capsize=3, label="predicted (planner)")
        ax.errorbar([k * 1.12 for k in ks], [r["measured"] for r in rows], yerr=[r["measured_std"] for r in rows], fmt="s", capsize=3,
                    label="measured (shot runs, offset right)")
        ax.axhline(rows[0]["exact"], color="black", linestyle=":", linewidth=1, label="exact")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("shots per sample K")
        ax.set_ylabel("macro-F1")
        ax.set_title(f"{dataset}: shot planner vs measured", fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def mitigation_main(args) -> None:
    if args.from_json:
        payload = json.loads(args.mitigation_json.read_text())
    else:
        started = time.perf_counter()
        machine = describe_machine(["qiskit", "qiskit-aer", "qiskit-ibm-runtime", "qiskit-mitigation", "mthree"])
        payload = {"settings": {k: str(v) for k, v in vars(args).items()} | {"eval_seeds": args.eval_seeds}, "test_size": args.test_size, **mitigation_part(args)}
        payload = {"machine": close_machine(machine, started), **payload}
        write_report(args.mitigation_json, payload)
    print(mitigation_markdown(payload))
    mitigation_plot(payload, args.mitigation_figure)


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
    parser.add_argument("--part", choices=["devices", "mitigation"], default="devices",
                        help="devices: the device/mapping tables above; mitigation: mitigation, shot planner and noise-aware training (issue 19).")
    parser.add_argument("--aware-devices", nargs="*", default=["fake_manila", "fake_kyiv", "fake_fez"], help="Devices to train a noise-aware head for.")
    parser.add_argument("--aware-mitigation", default="all", help="Mitigation scored beside none in the noise-aware comparison.")
    parser.add_argument("--planner-repeats", type=int, default=400)
    parser.add_argument("--mitigation-json", type=Path, default=MITIGATION_PART_JSON)
    parser.add_argument("--mitigation-figure", type=Path, default=MITIGATION_PART_FIGURE)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/qubert-noise-benchmark"))
    parser.add_argument("--json", type=Path, default=REPO / "docs" / "benchmarks" / "devices.json")
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "figures" / "devices.png")
    args = parser.parse_args()
    if args.part == "mitigation":
        mitigation_main(args)
        return
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
