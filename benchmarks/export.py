"""``qubert export`` on the real encoder: each head type's whole-model graph, its size, load time and parity.

For each head (linear, MLP, quantum with 2 / 4 / 8 qubits and ``z`` readout, 4 and 8 qubits
with ``probs``), a classifier on the default MiniLM encoder (3 classes, max 128 tokens, fp32; the head's
weights spread by a seeded random shift, so classes differ and a wrong circuit shows) is saved as a
run and exported with :func:`qubert.export.export_run`. Then, in one process: the export's wall
time, ``model.onnx``'s size, the time onnxruntime takes to load it (median of ``--loads``), and
the largest difference between its class probabilities and the PyTorch model's (``predict_texts``)
on ``--texts`` SST-2 and IMDb test texts of mixed length, batches of 32 of different sizes and
lengths. Target (issue 20): within 1e-4 in fp32.

Usage:
    python benchmarks/export.py [--texts 200] [--loads 3] [--threads 2]

Prints a Markdown table and writes ``docs/benchmarks/export.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import close_machine, describe_machine, write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "docs" / "benchmarks" / "export.json"
HEADS = {
    "linear": {"type": "linear"},
    "mlp (256)": {"type": "mlp", "hidden_sizes": [256]},
    "quantum 2 qubits, z": {"type": "quantum", "n_qubits": 2, "n_layers": 2},
    "quantum 4 qubits, z": {"type": "quantum", "n_qubits": 4, "n_layers": 2},
    "quantum 8 qubits, z": {"type": "quantum", "n_qubits": 8, "n_layers": 2},
    "quantum 4 qubits, probs": {"type": "quantum", "circuit": {"n_qubits": 4, "n_layers": 2, "measurement": "probs"}},
    "quantum 8 qubits, probs": {"type": "quantum", "circuit": {"n_qubits": 8, "n_layers": 2, "measurement": "probs"}},
}
MAX_LENGTH = 128


def make_run(folder: Path, head: dict) -> Path:
    import torch

    from qubert.modeling import QubertForSequenceClassification, load_tokenizer

    model = QubertForSequenceClassification.from_encoder("default", head=head, id2label={0: "neg", 1: "neutral", 2: "pos"},
                                                         max_length=MAX_LENGTH, seed=0, precision="fp32")
    with torch.no_grad():
        for param in model.head.parameters():
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(1)) * 0.5)
    model.save_pretrained(folder / "model")
    load_tokenizer("default").save_pretrained(folder / "model")
    return folder


def onnx_probabilities(path: Path, tokenizer, texts: list[str], threads: int):
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out = []
    for start in range(0, len(texts), 32):
        batch = tokenizer(texts[start : start + 32], truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="np")
        out.append(session.run(["probabilities"], {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})[0])
    return np.concatenate(out)


def load_seconds(path: Path, threads: int, loads: int) -> float:
    import onnxruntime as ort

    times = []
    for _ in range(loads):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        start = time.perf_counter()
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=os.environ.get("QUBERT_DATA_DIR"))
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()

    import numpy as np
    import torch

    from qubert.data import load_dataset_bundle
    from qubert.export import export_run
    from qubert.modeling import load_tokenizer
    from qubert.training import predict_texts

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    machine = describe_machine(["onnxruntime", "onnx", "onnxscript", "transformers"])
    half = args.texts // 2
    texts = (load_dataset_bundle("sst2", data_dir=args.data_dir, max_eval_samples=half, seed=0).split("test").texts[:half]
             + load_dataset_bundle("imdb", data_dir=args.data_dir, max_eval_samples=args.texts - half, seed=0).split("test").texts[: args.texts - half])
    tokenizer = load_tokenizer("default")
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]]
    rows = []
    with tempfile.TemporaryDirectory(prefix="qubert-export-bench-") as tmp:
        for i, (name, head) in enumerate(HEADS.items()):
            run = make_run(Path(tmp) / f"run{i}", head)
            start = time.perf_counter()
            folder = export_run(run, format="onnx", progress=False)
            export_s = time.perf_counter() - start
            expected = predict_texts(run, texts, batch_size=32, progress=False)[2].numpy()
            got = onnx_probabilities(folder / "model.onnx", tokenizer, texts, args.threads)
            rows.append({
                "head": name, "export_seconds": round(export_s, 1), "model_mib": round((folder / "model.onnx").stat().st_size / 2**20, 1),
                "load_seconds": round(load_seconds(folder / "model.onnx", args.threads, args.loads), 2),
                "max_probability_difference": float(np.abs(got - expected).max()), "labels_changed": int((got.argmax(1) != expected.argmax(1)).sum()),
            })
            print(f"{name}: {rows[-1]}", file=sys.stderr, flush=True)
    machine = close_machine(machine, started)
    print(f"\nMachine: {machine['cpu']}, {machine['cores']} cores, {args.threads} threads; load average {machine['load_average_at_start']} at start, "
          f"{machine['load_average_at_end']} at end. {len(texts)} texts, {min(lengths)}-{max(lengths)} tokens (max {MAX_LENGTH}).\n")
    print("| head | export (s) | model.onnx (MiB) | onnxruntime load (s) | largest probability difference | labels changed |\n|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['head']} | {r['export_seconds']} | {r['model_mib']} | {r['load_seconds']} | {r['max_probability_difference']:.1e} | {r['labels_changed']} |")
    write_report(args.output, {"machine": machine, "settings": {k: str(v) for k, v in vars(args).items()}, "texts": len(texts),
                               "token_lengths": [min(lengths), max(lengths)], "rows": rows})


if __name__ == "__main__":
    main()
