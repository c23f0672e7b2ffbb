"""The encoder's non-training pass in every inference runtime, side by side in one process.

Each encoder (``--encoders``: ``minilm``, the default all-MiniLM-L6-v2, 6 layers x 384; ``base12``,
a 12-layer x 768 BERT-base shape with random weights, for speed only: no 12-layer checkpoint ships
offline) encodes the same texts, pre-tokenised into the same length-sorted batches, in PyTorch
fp32, PyTorch bf16 autocast (qubert's ``--precision auto`` on a CPU with AVX512-BF16), ONNX
Runtime fp32 / int8 (dynamic quantization) and OpenVINO fp32 / bf16; the runtimes take turns
(round-robin, ``--rounds`` rounds), so load on a shared machine hits them alike. For each maximum
length (``--lengths``; SST-2 sentences at 64 tokens, IMDb reviews at 256) it reports texts/s
(median over rounds), the median per-round ratio to torch fp32 and to torch bf16, and the cosine
of the pooled features to torch fp32 (the smallest over the texts).

Then, per data set (``--datasets``; MiniLM), two ways a runtime can change a trained head's
macro-F1 on ``--test`` test rows: *swap*, a logistic-regression head fitted on torch-fp32 features
of ``--train`` rows scores features from every runtime (what serving a trained model in another
runtime does), and *retrain*, the head is fitted and scored on the runtime's own features (what
``qubert train --mode frozen --runtime ...`` does); with the test predictions that changed.

Then the two caches training builds, as it builds them (``--cache-texts`` SST-2 training sentences,
``qubert train``'s 128 tokens, every runtime but int8 - a training input is never quantized
silently - each round into a fresh cache folder, rounds interleaved): the frozen feature pass
(batch 64) and the ``top2`` bottom layers (``--mode top2``: embeddings and the bottom 4 of MiniLM's
6 layers, :mod:`qubert.layer_cache`). Last, the exported graphs' sizes and each runtime's load
(compile) time.

Usage:
    python benchmarks/inference.py [--texts 256] [--rounds 3] [--lengths 64,256] [--threads 2]
        [--encoders minilm,base12] [--base-texts 64]
        [--datasets sms_spam,sst2,twitter_airline_sentiment] [--train 1000] [--test 2000] [--cache-texts 4096]

Prints Markdown tables and writes ``docs/benchmarks/inference.json``.
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
OUTPUT = REPO / "docs" / "benchmarks" / "inference.json"
RUNTIMES = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-bf16")
SOURCES = {64: "sst2", 256: "imdb"}  # short sentences at 64 tokens, long reviews at 256


def build_encoders(model, names: list[str], cache_dir: str, threads: int) -> tuple[dict, dict]:
    """``{name: encode(input_ids, attention_mask) -> features}`` and the runtimes' load facts."""
    import torch

    from qubert.runtimes import EncoderRuntime, cached_encoder_graph

    def torch_encoder(precision: str):
        def encode(ids, mask):
            model.config.precision = precision
            with torch.inference_mode():
                return model.encode(ids, mask).float()

        return encode

    encoders, facts = {}, {}
    for name in names:
        runtime, precision = name.split("-")
        if runtime == "torch":
            encoders[name] = torch_encoder(precision)
            continue
        path = cached_encoder_graph(model, "int8" if precision == "int8" else "fp32", cache_dir=cache_dir)
        runtime = EncoderRuntime(path, runtime, precision, threads=threads)
        encoders[name] = runtime
        facts[name] = {"graph": path.name, "graph_mib": round(path.stat().st_size / 2**20, 1), "load_seconds": round(runtime.load_seconds, 2)}
    return encoders, facts


def batches(tokenizer, texts: list[str], max_length: int, batch_size: int):
    from qubert.embeddings import length_sorted_batches

    return [(idx, b["input_ids"], b["attention_mask"]) for idx, b in length_sorted_batches(tokenizer, texts, max_length=max_length, batch_size=batch_size)]


def encode_all(encode, prepared, n: int, hidden: int):
    import torch

    out = torch.empty(n, hidden)
    for idx, ids, mask in prepared:
        out[torch.tensor(idx)] = encode(ids, mask)
    return out


def throughput(encoders: dict, prepared, n: int, hidden: int, rounds: int) -> tuple[dict, dict]:
    """Seconds per round per runtime (round-robin) and the features of the last round."""
    seconds = {name: [] for name in encoders}
    features = {}
    for name, encode in encoders.items():  # warm-up: first calls compile / allocate
        encode(prepared[-1][1], prepared[-1][2])
    for r in range(rounds):
        for name, encode in encoders.items():
            start = time.perf_counter()
            features[name] = encode_all(encode, prepared, n, hidden)
            seconds[name].append(time.perf_counter() - start)
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {n / v[-1]:.0f}/s" for k, v in seconds.items()), file=sys.stderr, flush=True)
    return seconds, features


def load_encoder(name: str, folder: str):
    """``(model, tokenizer, label)`` for ``minilm`` (the default encoder) or ``base12`` (random weights)."""
    from transformers import BertConfig, BertModel

    from qubert.modeling import QubertForSequenceClassification, load_tokenizer

    if name == "minilm":
        source, label = "default", "all-MiniLM-L6-v2 (6 x 384)"
    elif name == "base12":  # the BERT-base shape; speed does not depend on the weights' values
        import torch

        torch.manual_seed(0)
        source, label = str(Path(folder) / "base12"), "BERT-base shape, random weights (12 x 768)"
        BertModel(BertConfig(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072)).save_pretrained(source)
        load_tokenizer("default").save_pretrained(source)  # same vocabulary size (30522) as BERT-base
    else:
        raise SystemExit(f"unknown encoder {name!r}; expected minilm or base12")
    model = QubertForSequenceClassification.from_encoder(source, head={"type": "linear"}, id2label={0: "a", 1: "b"}, pooling="mean", precision="fp32").eval()
    return model, load_tokenizer(source), label


def throughput_rows(encoder: str, model, tokenizer, encoders: dict, args) -> list[dict]:
    """Texts/s, ratios and cosines of every runtime on one encoder, per maximum length."""
    import torch

    from qubert.data import load_dataset_bundle

    names = list(encoders)
    hidden = model.config.encoder.hidden_size
    n_texts = args.texts if encoder == "minilm" else args.base_texts
    rows = []
    for length in [int(x) for x in args.lengths.split(",")]:
        bundle = load_dataset_bundle(SOURCES.get(length, "imdb"), data_dir=args.data_dir, max_eval_samples=n_texts, seed=0)
        texts = bundle.split("test").texts[:n_texts]
        prepared = batches(tokenizer, texts, length, args.batch_size)
        tokens = sum(int(m.sum()) for _, _, m in prepared)
        print(f"{encoder}: {len(texts)} {bundle.name} texts at {length} tokens ({tokens / len(texts):.0f} tokens per text)", file=sys.stderr, flush=True)
        seconds, features = throughput(encoders, prepared, len(texts), hidden, args.rounds)
        reference = features["torch-fp32"]
        for name in names:
            ratio = [a / b for a, b in zip(seconds["torch-fp32"], seconds[name])]
            ratio_bf16 = [a / b for a, b in zip(seconds["torch-bf16"], seconds[name])] if "torch-bf16" in seconds else None
            cosine = torch.nn.functional.cosine_similarity(features[name], reference, dim=-1)
            rows.append({
                "part": "throughput", "encoder": encoder, "max_length": length, "source": bundle.name, "texts": len(texts),
                "mean_tokens": round(tokens / len(texts), 1), "runtime": name, "texts_per_s": round(len(texts) / statistics.median(seconds[name]), 1),
                "vs_torch_fp32": round(statistics.median(ratio), 2), "vs_torch_bf16": round(statistics.median(ratio_bf16), 2) if ratio_bf16 else None,
                "cosine_min": round(float(cosine.min()), 6), "cosine_mean": round(float(cosine.mean()), 6), "seconds": [round(s, 3) for s in seconds[name]],
            })
    return rows


def macro_f1_rows(model, tokenizer, encoders: dict, args) -> list[dict]:
    """Per data set: macro-F1 of a logistic-regression head when the runtime is swapped under it
    (fitted on torch fp32) and when it is fitted on the runtime's own features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    from qubert.data import load_dataset_bundle

    names = list(encoders)
    hidden = model.config.encoder.hidden_size
    rows = []
    for dataset in [d for d in args.datasets.split(",") if d]:
        bundle = load_dataset_bundle(dataset, data_dir=args.data_dir, max_train_samples=args.train, max_eval_samples=args.test, seed=0)
        train, test = bundle.split("train"), bundle.split("test")
        print(f"macro-F1 on {dataset}: {len(train.texts)} train / {len(test.texts)} test rows", file=sys.stderr, flush=True)
        train_batches = batches(tokenizer, train.texts, args.f1_length, args.batch_size)
        test_batches = batches(tokenizer, test.texts, args.f1_length, args.batch_size)
        fitted, predicted = {}, {}
        for name in names:
            train_features = encode_all(encoders[name], train_batches, len(train.texts), hidden).numpy()
            test_features = encode_all(encoders[name], test_batches, len(test.texts), hidden).numpy()
            fitted[name] = LogisticRegression(max_iter=5000).fit(train_features, train.labels)
            predicted[name] = {"swap": None, "retrain": fitted[name].predict(test_features), "features": test_features}
        for name in names:
            predicted[name]["swap"] = fitted["torch-fp32"].predict(predicted[name]["features"])
        reference = predicted["torch-fp32"]["retrain"]
        base = f1_score(test.labels, reference, average="macro")
        for name in names:
            row = {"part": "macro_f1", "dataset": dataset, "train": len(train.texts), "test": len(test.texts), "runtime": name}
            for way in ("swap", "retrain"):
                score = f1_score(test.labels, predicted[name][way], average="macro")
                row[way] = {"macro_f1": round(score, 4), "change": round(score - base, 4), "predictions_changed": int((predicted[name][way] != reference).sum())}
            rows.append(row)
    return rows


def cache_build_rows(args, cache_dir: str) -> list[dict]:
    """Seconds to build each on-disk cache of one split per runtime, as training builds it (rounds
    interleaved, a fresh cache folder each time): the frozen feature pass
    (:func:`qubert.embeddings.cached_features`, batch 64, max 128 tokens: ``qubert train``'s
    defaults) and the ``top2`` bottom layers (:func:`qubert.layer_cache.cached_hidden_states`)."""
    import torch

    from qubert.data import load_dataset_bundle
    from qubert.embeddings import EmbeddingCache, cached_features
    from qubert.layer_cache import cached_hidden_states
    from qubert.modeling import QubertForSequenceClassification, encoder_identity, load_tokenizer
    from qubert.runtimes import use_bottom_runtime, use_runtime

    tokenizer = load_tokenizer("default")
    texts = load_dataset_bundle("sst2", data_dir=args.data_dir, max_train_samples=args.cache_texts, seed=0).split("train").texts
    names = [n for n in args.runtimes.split(",") if n and not n.endswith("int8")]  # a training input is never quantized silently
    rows = []
    for part, mode in (("frozen features", "frozen"), ("top2 bottom layers", "top2")):
        model = QubertForSequenceClassification.from_encoder("default", head={"type": "linear"}, id2label={0: "a", 1: "b"}, mode=mode,
                                                             max_length=128, precision="fp32").eval()
        encoder_id = encoder_identity(model.encoder)

        def build(name: str) -> tuple[float, torch.Tensor]:
            runtime, precision = name.split("-")
            model.config.precision = precision if runtime == "torch" else "fp32"
            spec = "torch" if runtime == "torch" else f"{runtime}:{precision}"
            attach = use_runtime if mode == "frozen" else use_bottom_runtime
            attach(model, spec, cache_dir=cache_dir, encoder_id=encoder_id, threads=args.threads, progress=False)
            folder = tempfile.mkdtemp(prefix="build-", dir=cache_dir)
            start = time.perf_counter()
            if mode == "frozen":
                out, hit = cached_features(model, tokenizer, texts, fingerprint="bench", split="train", cache=EmbeddingCache(folder),
                                           encoder_id=encoder_id, progress=False)
            else:
                states, hit = cached_hidden_states(model, tokenizer, texts, fingerprint="bench", split="train", cache_dir=folder,
                                                   encoder_id=encoder_id, progress=False)
                out = states.hidden
            assert not hit
            return time.perf_counter() - start, out.float()

        for name in names:  # warm-up: exports the graph once, compiles
            build(name)
        seconds, outputs = {n: [] for n in names}, {}
        for r in range(args.rounds):
            for name in names:
                elapsed, outputs[name] = build(name)
                seconds[name].append(elapsed)
            print(f"  {part} round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in seconds.items()), file=sys.stderr, flush=True)
        for name in names:
            cosine = torch.nn.functional.cosine_similarity(outputs[name], outputs["torch-fp32"], dim=-1)
            rows.append({
                "part": "cache_build", "cache": part, "runtime": name, "texts": len(texts), "seconds": round(statistics.median(seconds[name]), 3),
                "vs_torch_fp32": round(statistics.median(a / b for a, b in zip(seconds["torch-fp32"], seconds[name])), 2),
                "vs_torch_bf16": round(statistics.median(a / b for a, b in zip(seconds["torch-bf16"], seconds[name])), 2) if "torch-bf16" in seconds else None,
                "cosine_min": round(float(cosine.min()), 6),
            })
    return rows


def print_tables(rows: list[dict], load_facts: dict, machine: dict, args) -> None:
    print(f"\nMachine: {machine['cpu']}, {machine['cores']} cores, {args.threads} threads; load average {machine['load_average_at_start']} at start, "
          f"{machine['load_average_at_end']} at end (measured under that load: ratios of interleaved rounds are the least distorted numbers).\n")
    print("| encoder | max tokens | texts | runtime | texts/s | vs torch fp32 | vs torch bf16 | cosine to torch fp32 (min) |\n|---|---:|---|---|---:|---:|---:|---:|")
    for r in (r for r in rows if r["part"] == "throughput"):
        print(f"| {r['encoder']} | {r['max_length']} | {r['texts']} {r['source']} | {r['runtime']} | {r['texts_per_s']:.1f} | {r['vs_torch_fp32']:.2f} | "
              f"{r['vs_torch_bf16'] if r['vs_torch_bf16'] is not None else '-'} | {r['cosine_min']:.5f} |")
    f1_rows = [r for r in rows if r["part"] == "macro_f1"]
    if f1_rows:
        datasets = list(dict.fromkeys(r["dataset"] for r in f1_rows))
        tests = {r["dataset"]: r["test"] for r in f1_rows}
        print("\nmacro-F1 change against torch fp32 (predictions changed of the test rows): swap = head fitted on torch fp32, retrain = fitted on the runtime's features\n")
        print("| runtime | " + " | ".join(f"{d} ({tests[d]} rows): swap | retrain" for d in datasets) + " |\n|---|" + "---:|---:|" * len(datasets))
        for name in dict.fromkeys(r["runtime"] for r in f1_rows):
            cells = [next(r for r in f1_rows if r["dataset"] == d and r["runtime"] == name) for d in datasets]
            print(f"| {name} | " + " | ".join(f"{c['swap']['change']:+.4f} ({c['swap']['predictions_changed']}) | {c['retrain']['change']:+.4f} ({c['retrain']['predictions_changed']})" for c in cells) + " |")
    cache_rows = [r for r in rows if r["part"] == "cache_build"]
    if cache_rows:
        print(f"\nCache builds, {cache_rows[0]['texts']} SST-2 training sentences, max 128 tokens (seconds, median of rounds)\n")
        print("| cache | runtime | seconds | vs torch fp32 | vs torch bf16 | cosine to torch fp32 (min) |\n|---|---|---:|---:|---:|---:|")
        for r in cache_rows:
            print(f"| {r['cache']} | {r['runtime']} | {r['seconds']:.2f} | {r['vs_torch_fp32']:.2f} | {r['vs_torch_bf16'] if r['vs_torch_bf16'] is not None else '-'} | {r['cosine_min']:.5f} |")
    if load_facts:
        print("\n| encoder, runtime | exported graph | size (MiB) | load + compile (s) |\n|---|---|---:|---:|")
        for name, facts in load_facts.items():
            print(f"| {name} | {facts['graph']} | {facts['graph_mib']} | {facts['load_seconds']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=256, help="texts per length (MiniLM)")
    parser.add_argument("--base-texts", type=int, default=64, help="texts per length for the 12-layer encoder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lengths", default="64,256")
    parser.add_argument("--encoders", default="minilm,base12")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--datasets", default="sms_spam,sst2,twitter_airline_sentiment")
    parser.add_argument("--train", type=int, default=1000, help="rows the macro-F1 head is fitted on")
    parser.add_argument("--test", type=int, default=2000, help="rows it is scored on, per runtime (at most the test split)")
    parser.add_argument("--cache-texts", type=int, default=4096, help="training sentences of the cache-build part (0: skip it)")
    parser.add_argument("--f1-length", type=int, default=64, help="max tokens in the macro-F1 part")
    parser.add_argument("--data-dir", default=os.environ.get("QUBERT_DATA_DIR"))
    parser.add_argument("--cache-dir", default=None, help="where the exported graphs go (default: a temporary folder)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()

    import torch

    from qubert.precision import bf16_supported

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    machine = describe_machine(["onnxruntime", "openvino", "onnx", "transformers"])
    names = [b for b in args.runtimes.split(",") if b]
    if not bf16_supported("cpu"):
        names = [b for b in names if not b.endswith("bf16")]
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="qubert-inference-")
    rows, load_facts = [], {}
    for encoder in [e for e in args.encoders.split(",") if e]:
        model, tokenizer, label = load_encoder(encoder, cache_dir)
        encoders, facts = build_encoders(model, names, cache_dir, args.threads)
        load_facts.update({f"{encoder} {k}": v for k, v in facts.items()})
        rows += [{**r, "encoder_label": label} for r in throughput_rows(encoder, model, tokenizer, encoders, args)]
        if encoder == "minilm":
            rows += macro_f1_rows(model, tokenizer, encoders, args)
    if args.cache_texts:
        rows += cache_build_rows(args, cache_dir)
    machine = close_machine(machine, started)
    print_tables(rows, load_facts, machine, args)
    write_report(args.output, {"machine": machine, "settings": {k: str(v) for k, v in vars(args).items()}, "load": load_facts, "rows": rows})


if __name__ == "__main__":
    main()
