"""Why does the 8-qubit head trail an equally narrow MLP? Training diagnostics on frozen features.

On the shared multiclass sets (trec 6 classes, ag_news 4, twitter_airline_sentiment 3,
tweet_eval_sentiment 3) with qubert's defaults (frozen all-MiniLM-L6-v2, mean pooling, 128 tokens,
2,000 stratified training rows, AdamW lr 1e-2, batch 64, early stopping on validation macro-F1 with
patience 5), this trains

- ``quantum``: the default 8-qubit, 2-layer dressed circuit (``tanh_pi_2`` scaling),
- ``mlp_8``: an MLP with one 8-unit hidden layer (ReLU), the quantum head's width, and ``linear``,
- variants of the quantum head: another input scaling (``tanh_pi``, ``pi``), a learning-rate
  multiplier on the circuit weights only (x10, x0.1), the whole head at a tenth of the learning
  rate, and the circuit frozen at its initial weights,

and records every epoch (and at initialisation): the gradient norm of each parameter group
(dressing-in linear, circuit weights, output linear; the MLP's first and last layer), the spread of
what the output layer reads (the standard deviation over the training rows of each <Z_i>, or of each
hidden unit, averaged over the 8), its mean absolute value, the share of input pre-activations with
|tanh(z)| > 0.95 (saturated angles), and validation macro-F1. It prints Markdown tables and writes
``docs/benchmarks/quantum_vs_narrow_mlp.json`` and ``docs/figures/quantum_vs_narrow_mlp.png``.

The training loop is a plain PyTorch loop on the cached features (the diagnostics need every
step's gradients), with the frozen Trainer path's settings: AdamW without weight decay, the learning
rate decaying linearly to 0 over the epoch cap, one shuffled pass per epoch, the best validation
epoch restored for test. It is the same loop for every head.

Usage::

    PYTHONPATH=src QUBERT_DATA_DIR=../shared/data nice -n 10 python benchmarks/quantum_vs_narrow_mlp.py --seeds 0 1 2
    python benchmarks/quantum_vs_narrow_mlp.py --datasets trec --variants mlp_8 quantum --max-epochs 5  # a quick look
    # one process per data set, then one report:
    python benchmarks/quantum_vs_narrow_mlp.py --datasets trec --seeds 0 1 2 --part trec.json   # (and the others)
    python benchmarks/quantum_vs_narrow_mlp.py --merge trec.json ag_news.json ...
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import close_machine, describe_machine, write_report  # noqa: E402

DATASETS = ("trec", "ag_news", "twitter_airline_sentiment", "tweet_eval_sentiment")
ROOT = Path(__file__).resolve().parents[1]


def load_features(name: str, *, train_rows: int = 2000, eval_rows: int = 1000, seed: int = 0) -> dict:
    """Frozen MiniLM features of one data set's train/validation/test, through qubert's loader and cache."""
    from qubert.data import load_dataset_bundle
    from qubert.embeddings import EmbeddingCache, cached_features
    from qubert.modeling import QubertForSequenceClassification, encoder_identity, load_tokenizer

    bundle = load_dataset_bundle(name, max_train_samples=train_rows, max_eval_samples=eval_rows, seed=seed)
    model = QubertForSequenceClassification.from_encoder("default", head={"type": "linear"}, id2label=bundle.id2label,
                                                         pooling="mean", mode="frozen", max_length=128, seed=seed)
    tokenizer = load_tokenizer("default")
    encoder_id = encoder_identity(model.encoder)
    out = {"name": name, "n_classes": len(bundle.id2label), "labels": [bundle.id2label[i] for i in range(len(bundle.id2label))]}
    for split in ("train", "validation", "test"):
        data = bundle.split(split)
        feats, _ = cached_features(model, tokenizer, data.texts, fingerprint=bundle.fingerprint(split), split=split,
                                   cache=EmbeddingCache(), encoder_id=encoder_id, progress=False)
        out[split] = (feats.float(), torch.as_tensor(list(data.labels), dtype=torch.long))
    return out


# ----------------------------------------------------------------------------------- the heads

# name -> (head config, learning-rate multiplier of the circuit weights)
VARIANTS = {
    "linear": ({"type": "linear"}, 1.0),
    "mlp_8": ({"type": "mlp", "hidden_sizes": [8]}, 1.0),
    "quantum": ({"type": "quantum", "scaling": "tanh_pi_2"}, 1.0),
    "quantum_tanh_pi": ({"type": "quantum", "scaling": "tanh_pi"}, 1.0),
    "quantum_pi": ({"type": "quantum", "scaling": "pi"}, 1.0),
    "quantum_circuit_lr_x10": ({"type": "quantum", "scaling": "tanh_pi_2"}, 10.0),
    "quantum_circuit_lr_x0.1": ({"type": "quantum", "scaling": "tanh_pi_2"}, 0.1),
    "quantum_frozen_circuit": ({"type": "quantum", "scaling": "tanh_pi_2", "freeze_circuit": True}, 1.0),
}
# Variants that change the head's whole learning rate (not only the circuit's): name -> multiplier.
HEAD_LR = {"quantum_lr_x0.1": 0.1}
VARIANTS["quantum_lr_x0.1"] = ({"type": "quantum", "scaling": "tanh_pi_2"}, 1.0)


def build(variant: str, in_features: int, n_classes: int, seed: int, qubits: int, layers: int):
    from qubert.heads import build_head
    from qubert.quantum import Circuit

    config, circuit_lr = VARIANTS[variant]
    config = {**config, "in_features": in_features, "n_classes": n_classes}
    if config["type"] == "quantum":
        config["circuit"] = Circuit(n_qubits=qubits, n_layers=layers).to_dict()
    torch.manual_seed(seed)  # the dressing layers draw from torch's global generator, as in training
    return build_head(config, seed=seed), circuit_lr


def parameter_groups(head) -> dict[str, list[torch.nn.Parameter]]:
    """The groups whose gradients are tracked: dressing-in / circuit / dressing-out, or first / last layer."""
    if hasattr(head, "q_weights"):
        return {"in": list(head.pre_net.parameters()), "circuit": [head.q_weights], "out": list(head.post_net.parameters())}
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    groups = {"in": list(linears[0].parameters()), "out": list(linears[-1].parameters())}
    return groups if len(linears) > 1 else {"out": groups["out"]}


@torch.no_grad()
def readout(head, X: torch.Tensor) -> dict:
    """What the output layer sees: the circuit's <Z> (or the MLP's hidden units) and the input saturation."""
    if hasattr(head, "q_weights"):
        z = head.pre_net(X)
        values = head.measure(X)
        saturated = float((torch.tanh(z).abs() > 0.95).float().mean())
        angles = head.angles(X)
        return {"spread": float(values.std(0).mean()), "mean_abs": float(values.abs().mean()), "saturated": saturated,
                "angle_std": float(angles.std(0).mean())}
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    if len(linears) < 2:
        return {}
    hidden = torch.relu(linears[0](X))
    return {"spread": float(hidden.std(0).mean()), "mean_abs": float(hidden.abs().mean()),
            "dead_units": float((hidden.max(0).values <= 0).float().mean())}


def macro_f1(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> tuple[float, list[float]]:
    from sklearn.metrics import f1_score

    per_class = f1_score(y.numpy(), logits.argmax(1).numpy(), labels=list(range(n_classes)), average=None, zero_division=0)
    return float(per_class.mean()), [float(v) for v in per_class]


def train(variant: str, data: dict, *, seed: int, lr: float, batch_size: int, max_epochs: int, patience: int,
          qubits: int, layers: int) -> dict:
    """One head trained like the frozen Trainer path (AdamW, linear decay over the epoch cap, early
    stopping on validation macro-F1, best epoch restored), with diagnostics every epoch."""
    X, y = data["train"]
    Xv, yv = data["validation"]
    Xt, yt = data["test"]
    C = data["n_classes"]
    head, circuit_lr = build(variant, X.shape[1], C, seed, qubits, layers)
    lr = lr * HEAD_LR.get(variant, 1.0)
    groups = parameter_groups(head)
    circuit = [p for p in groups.get("circuit", []) if p.requires_grad]
    others = [p for p in head.parameters() if p.requires_grad and all(p is not q for q in circuit)]
    optimizer = torch.optim.AdamW([{"params": others, "lr": lr}] + ([{"params": circuit, "lr": lr * circuit_lr}] if circuit else []),
                                  weight_decay=0.0)
    steps_per_epoch = math.ceil(len(y) / batch_size)
    total = steps_per_epoch * max_epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))
    generator = torch.Generator().manual_seed(seed)
    history, best, best_state, bad = [], -1.0, None, 0
    start = time.perf_counter()
    head.eval()
    with torch.no_grad():
        history.append({"epoch": 0, "val_macro_f1": macro_f1(head(Xv), yv, C)[0], **readout(head, X)})  # at initialisation
    for epoch in range(1, max_epochs + 1):
        head.train()
        norms = {name: [] for name in groups}
        losses = []
        for idx in torch.randperm(len(y), generator=generator).split(batch_size):
            loss = torch.nn.functional.cross_entropy(head(X[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            for name, params in groups.items():
                grads = [p.grad for p in params if p.grad is not None]
                norms[name].append(float(torch.sqrt(sum((g ** 2).sum() for g in grads))) if grads else 0.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        head.eval()
        with torch.no_grad():
            val_f1, _ = macro_f1(head(Xv), yv, C)
        row = {"epoch": epoch, "loss": float(np.mean(losses)), "val_macro_f1": val_f1,
               **{f"grad_{name}": float(np.mean(v)) for name, v in norms.items()}, **readout(head, X)}
        history.append(row)
        if val_f1 > best:
            best, bad = val_f1, 0
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    head.load_state_dict(best_state)
    head.eval()
    with torch.no_grad():
        test_f1, per_class = macro_f1(head(Xt), yt, C)
    best_epoch = max(history[1:], key=lambda r: (r["val_macro_f1"], -r["epoch"]))["epoch"]
    return {"dataset": data["name"], "variant": variant, "seed": seed, "test_macro_f1": test_f1, "val_macro_f1": best,
            "min_class_f1": min(per_class), "per_class_f1": per_class, "best_epoch": best_epoch, "epochs": len(history) - 1,
            "stopped_by": "patience" if len(history) - 1 < max_epochs else "epoch_cap", "seconds": time.perf_counter() - start,
            "trainable_params": sum(p.numel() for p in head.parameters() if p.requires_grad), "history": history}


# ----------------------------------------------------------------------------------- main


def run(args) -> list[dict]:
    # One thread: the heads are small, and on a loaded machine extra threads only spin and wait.
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.datasets:
        data = load_features(name, train_rows=args.train_rows)
        for seed in args.seeds:
            for variant in args.variants:
                row = train(variant, data, seed=seed, lr=args.learning_rate, batch_size=args.batch_size,
                            max_epochs=args.max_epochs, patience=args.patience, qubits=args.qubits, layers=args.layers)
                rows.append(row)
                print(f"{name} {variant} seed {seed}: test macro-F1 {row['test_macro_f1']:.3f} (min class {row['min_class_f1']:.3f}), "
                      f"best epoch {row['best_epoch']} of {row['epochs']} ({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
                if args.part:  # partial results, so parallel processes can be merged with --merge
                    Path(args.part).write_text(json.dumps(rows))
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), help="shared data sets (default: the four multiclass sets)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), help="heads to train")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="initialisation / batch-order seeds")
    parser.add_argument("--train-rows", type=int, default=2000, help="stratified training rows (qubert's max_train_samples)")
    parser.add_argument("--learning-rate", type=float, default=1e-2, help="head learning rate (qubert's frozen default)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-epochs", type=int, default=100, help="epoch cap (the learning rate decays linearly over it)")
    parser.add_argument("--patience", type=int, default=5, help="early-stopping patience on validation macro-F1")
    parser.add_argument("--qubits", type=int, default=8)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the heads are small)")
    parser.add_argument("--part", help="train only, writing the rows to this JSON file (to run data sets in parallel)")
    parser.add_argument("--merge", nargs="+", help="report on the rows of these --part files instead of training")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "benchmarks" / "quantum_vs_narrow_mlp.json")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "quantum_vs_narrow_mlp.png")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------- report


def _at(row: dict, epoch: int) -> dict:
    return next((h for h in row["history"] if h["epoch"] == epoch), {})


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def tables(rows: list[dict]) -> str:
    """The Markdown tables: outcomes, diagnostics of the default quantum head vs the 8-unit MLP, variants."""
    seeds = sorted({r["seed"] for r in rows})
    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in rows)]
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]

    def mean(dataset, variant, key, epoch=None):
        values = [(_at(r, r["best_epoch"] if epoch == "best" else epoch).get(key) if epoch is not None else r[key])
                  for r in rows if r["dataset"] == dataset and r["variant"] == variant]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    out = [f"Seeds: {', '.join(map(str, seeds))} (means over seeds).", "",
           "### Test macro-F1 (min class F1)", "",
           "| variant | " + " | ".join(datasets) + " | mean |", "|---|" + "---:|" * (len(datasets) + 1)]
    for v in variants:
        cells = [f"{_fmt(mean(d, v, 'test_macro_f1'))} ({_fmt(mean(d, v, 'min_class_f1'), 2)})" for d in datasets]
        overall = [mean(d, v, "test_macro_f1") for d in datasets]
        out.append(f"| {v} | " + " | ".join(cells) + f" | {_fmt(float(np.mean([x for x in overall if x is not None])))} |")
    out += ["", "### Best epoch / epochs trained", "", "| variant | " + " | ".join(datasets) + " |", "|---|" + "---:|" * len(datasets)]
    for v in variants:
        out.append(f"| {v} | " + " | ".join(f"{_fmt(mean(d, v, 'best_epoch'), 0)} / {_fmt(mean(d, v, 'epochs'), 0)}" for d in datasets) + " |")
    out += ["", "### Diagnostics: default quantum head vs 8-unit MLP (at initialisation, after epoch 1, at the best epoch)", "",
            "Gradient norms are per step, averaged over the epoch; 'spread' is the standard deviation over the training rows "
            "of what the output layer reads (⟨Z_i⟩ for the circuit, the hidden ReLU units for the MLP), averaged over the 8 "
            "units; 'saturated' is the share of (row, qubit) pre-activations with |tanh(z)| > 0.95.", "",
            "| data set | head | epoch | grad in | grad circuit | grad out | spread | mean abs | saturated |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for d in datasets:
        for v in ("quantum", "mlp_8"):
            if v not in variants:
                continue
            for label, epoch in (("init", 0), ("1", 1), ("best", "best")):
                cells = [_fmt(mean(d, v, key, epoch)) for key in ("grad_in", "grad_circuit", "grad_out", "spread", "mean_abs", "saturated")]
                if epoch == 0:
                    cells[:3] = ["–"] * 3
                out.append(f"| {d} | {v} | {label} | " + " | ".join(cells) + " |")
    out += ["", "### Quantum variants: test macro-F1 minus the default quantum head's, and the readout at the best epoch", "",
            "| variant | " + " | ".join(f"Δ {d}" for d in datasets) + " | mean Δ | saturated | spread | mean abs ⟨Z⟩ |",
            "|---|" + "---:|" * (len(datasets) + 4)]
    for v in variants:
        if v in ("linear",):
            continue
        deltas = [None if mean(d, v, "test_macro_f1") is None or mean(d, "quantum", "test_macro_f1") is None
                  else mean(d, v, "test_macro_f1") - mean(d, "quantum", "test_macro_f1") for d in datasets]
        present = [x for x in deltas if x is not None]
        readouts = [[mean(d, v, key, "best") for d in datasets] for key in ("saturated", "spread", "mean_abs")]
        cells = [_fmt(float(np.mean([x for x in r if x is not None]))) if any(x is not None for x in r) else "–" for r in readouts]
        out.append(f"| {v} | " + " | ".join(f"{x:+.3f}" if x is not None else "–" for x in deltas)
                   + f" | {np.mean(present):+.3f} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def figure(rows: list[dict], path: Path) -> None:
    """Four panels: validation F1 per epoch, gradient norms per group, saturation per epoch, test F1 per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in rows)]
    colours = dict(zip(datasets, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    first = {}
    for r in rows:
        first.setdefault((r["dataset"], r["variant"]), r)  # the first seed's curves
    ax = axes[0, 0]
    for d in datasets:
        for v, style in (("quantum", "-"), ("mlp_8", "--")):
            r = first.get((d, v))
            if r:
                h = r["history"][1:]
                ax.plot([x["epoch"] for x in h], [x["val_macro_f1"] for x in h], style, color=colours[d], label=f"{d} {v}")
    ax.set(title="Validation macro-F1 per epoch (solid: quantum, dashed: 8-unit MLP)", xlabel="epoch", ylabel="macro-F1")
    ax.legend(fontsize=7, ncol=2)
    ax = axes[0, 1]
    for d in datasets:
        r = first.get((d, "quantum"))
        if r:
            h = r["history"][1:]
            for key, style in (("grad_in", "-"), ("grad_circuit", ":"), ("grad_out", "--")):
                ax.plot([x["epoch"] for x in h], [x[key] for x in h], style, color=colours[d],
                        label=f"{key[5:]}" if d == datasets[0] else None)
    ax.set(title="Quantum head: gradient norm per step by group\n(solid: dressing in, dotted: circuit, dashed: dressing out)",
           xlabel="epoch", ylabel="L2 norm (mean over the epoch's steps)", yscale="log")
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    for v, style in (("quantum", "-"), ("quantum_tanh_pi", "--"), ("quantum_lr_x0.1", ":")):
        for d in datasets:
            r = first.get((d, v))
            if r:
                h = r["history"]
                ax.plot([x["epoch"] for x in h], [x["saturated"] for x in h], style, color=colours[d],
                        label=v if d == datasets[0] else None)
    ax.set(title="Share of input pre-activations with |tanh(z)| > 0.95\n(colour: data set; style: variant)", xlabel="epoch",
           ylabel="share saturated", ylim=(0, 1))
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    for i, d in enumerate(datasets):
        means = [np.mean([r["test_macro_f1"] for r in rows if r["dataset"] == d and r["variant"] == v] or [np.nan]) for v in variants]
        ax.plot(means, range(len(variants)), "o", color=colours[d], label=d)
    ax.set_yticks(range(len(variants)), variants, fontsize=8)
    ax.invert_yaxis()
    ax.set(title="Test macro-F1 by head (mean over seeds)", xlabel="macro-F1")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.4, -0.12), ncol=4)
    seed = min(r["seed"] for r in rows)
    fig.suptitle(f"Frozen MiniLM, 2,000 training rows, defaults; curves: seed {seed}, dots: mean over seeds", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    args = parse_args(argv)
    machine = describe_machine(["scikit-learn"])
    started = time.perf_counter()
    if args.merge:
        rows = [row for part in args.merge for row in json.loads(Path(part).read_text())]
    else:
        rows = run(args)
        if args.part:
            return
    print(tables(rows))
    settings = {k: v for k, v in vars(args).items() if k not in ("part", "merge", "json", "figure")}
    if args.merge:  # the parts' own runs: give them the same training options as this call
        settings = {**{k: v for k, v in settings.items() if k not in ("datasets", "variants", "seeds")},
                    "merged_from": [Path(p).name for p in args.merge], "datasets": sorted({r["dataset"] for r in rows}),
                    "variants": sorted({r["variant"] for r in rows}), "seeds": sorted({r["seed"] for r in rows})}
    write_report(args.json, {"machine": close_machine(machine, started), "settings": settings, "rows": rows})
    figure(rows, args.figure)
    print(f"wrote {args.figure}", file=sys.stderr)


if __name__ == "__main__":
    main()
