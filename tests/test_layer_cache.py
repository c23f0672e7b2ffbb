"""Cached partial fine-tuning (qubert.layer_cache), mixed precision and length grouping.

Tiny random encoders (hidden 32, 3 layers) and texts of varied length, so padding matters.
"""

from __future__ import annotations

import csv
import json
import random

import pytest
import torch

pytest.importorskip("transformers")

from qubert.embeddings import EmbeddingCache, cached_features  # noqa: E402
from qubert.layer_cache import HiddenStateDataset, cached_hidden_states, collate_hidden_states, hidden_state_key  # noqa: E402
from qubert.modeling import ModelConfigError, QubertForSequenceClassification, load_tokenizer  # noqa: E402
from qubert.precision import PrecisionError, resolve_precision  # noqa: E402
from qubert.training import TrainingConfig, run_training  # noqa: E402

WORDS = {0: ["bad", "awful", "dreadful", "poor", "dull"], 1: ["good", "great", "superb", "fine", "lovely"]}
TEXTS = ["good", "a truly dreadful and boring film that went on and on", "fine film", "awful", "superb acting, lovely score, great story"]


def _texts(n: int, seed: int) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = [rng.choice(WORDS[label]) for _ in range(rng.randint(1, 12))]  # 1 to 12 words: ragged rows
        texts.append("the film was " + " and ".join(words))
        labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def env(tmp_path_factory, save_tiny_bert):
    root = tmp_path_factory.mktemp("layer_cache")
    save_tiny_bert(root / "encoder", num_hidden_layers=3)
    for name, n, seed in (("train", 48, 1), ("validation", 16, 2), ("test", 16, 3)):
        texts, labels = _texts(n, seed)
        with open(root / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows([t, "pos" if y else "neg"] for t, y in zip(texts, labels))
    return root


def _model(encoder: str, mode: str = "top1", pooling: str = "mean", **kwargs) -> QubertForSequenceClassification:
    return QubertForSequenceClassification.from_encoder(
        encoder, head={"type": "quantum", "circuit": {"n_qubits": 3, "n_layers": 1}}, id2label={0: "neg", 1: "pos"},
        pooling=pooling, mode=mode, max_length=24, seed=0, **kwargs,
    )


def _tiny_roberta(path, tokenizer) -> str:
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(1)
    config = RobertaConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37,
                           vocab_size=tokenizer.vocab_size, max_position_embeddings=40, pad_token_id=tokenizer.pad_token_id)
    RobertaModel(config, add_pooling_layer=False).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


# ----------------------------------------------------------------------------------- the split


@pytest.mark.parametrize("family", ["bert", "roberta"])
@pytest.mark.parametrize("mode,pooling", [("top1", "mean"), ("top2", "cls")])
def test_bottom_then_top_equals_the_whole_encoder(env, tmp_path, family, mode, pooling):
    encoder = str(env / "encoder") if family == "bert" else _tiny_roberta(tmp_path / "roberta", load_tokenizer(str(env / "encoder")))
    model = _model(encoder, mode=mode, pooling=pooling).eval()
    tokenizer = load_tokenizer(encoder)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        whole = model.encode(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        hidden = model.encode_bottom(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        split = model.encode_top(hidden, batch["attention_mask"])
    torch.testing.assert_close(split, whole, atol=1e-5, rtol=1e-5)


def test_fixed_layers_never_drop_out_in_train_mode(env):
    model = _model(str(env / "encoder"), mode="top1").train()
    layers = list(model.encoder.encoder.layer)
    assert not model.encoder.embeddings.training and not layers[0].training and not layers[1].training
    assert layers[2].training and model.head.training


def test_top_k_must_leave_a_fixed_layer(env):
    with pytest.raises(ModelConfigError, match=r"encoder has 3.*top1\.\.top2, or full"):
        _model(str(env / "encoder"), mode="top3")


def test_an_unsplittable_encoder_family_is_named(env, tmp_path):
    from transformers import DistilBertConfig, DistilBertModel

    tokenizer = load_tokenizer(str(env / "encoder"))
    DistilBertModel(DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=37, vocab_size=tokenizer.vocab_size)).save_pretrained(tmp_path / "distil")
    model = _model(str(tmp_path / "distil"), mode="top1")
    with pytest.raises(ModelConfigError, match=r"'distilbert'.*bert, roberta"):
        model.encode_bottom(torch.ones(1, 3, dtype=torch.long))


# ----------------------------------------------------------------------------------- the cache


def test_hidden_states_are_stored_packed_and_reused(env, tmp_path):
    model = _model(str(env / "encoder"), mode="top1")
    tokenizer = load_tokenizer(str(env / "encoder"))
    texts, _ = _texts(10, 5)
    states, hit = cached_hidden_states(model, tokenizer, texts, fingerprint="fp", split="train", cache_dir=str(tmp_path), progress=False, batch_size=4)
    token_counts = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=24)["input_ids"]]
    assert not hit and states.lengths.tolist() == token_counts
    assert states.hidden.shape == (sum(token_counts), 32)  # no padding stored
    again, hit = cached_hidden_states(model, tokenizer, texts, fingerprint="fp", split="train", cache_dir=str(tmp_path), progress=False)
    assert hit and torch.equal(again.hidden, states.hidden)
    # each row equals the bottom layers run on that text alone
    one = tokenizer([texts[3]], return_tensors="pt")
    with torch.no_grad():
        alone = model.eval().encode_bottom(one["input_ids"], one["attention_mask"], one.get("token_type_ids"))[0]
    torch.testing.assert_close(states.row(3), alone, atol=1e-5, rtol=1e-5)


def test_a_damaged_hidden_state_file_is_recomputed(env, tmp_path):
    model = _model(str(env / "encoder"), mode="top1")
    tokenizer = load_tokenizer(str(env / "encoder"))
    texts, _ = _texts(6, 6)
    cached_hidden_states(model, tokenizer, texts, fingerprint="fp", split="test", cache_dir=str(tmp_path), progress=False)
    (path,) = (tmp_path / "hidden_states").glob("*.safetensors")
    path.write_bytes(path.read_bytes()[:100])
    states, hit = cached_hidden_states(model, tokenizer, texts, fingerprint="fp", split="test", cache_dir=str(tmp_path), progress=False)
    assert not hit and len(states) == 6


def test_hidden_state_key_depends_on_every_ingredient():
    base = dict(encoder_id="e", top_k=2, max_length=64, fingerprint="f", split="train", precision="fp32")
    others = dict(encoder_id="e2", top_k=1, max_length=128, fingerprint="g", split="test", precision="bf16")
    keys = {hidden_state_key(**base)} | {hidden_state_key(**{**base, k: v}) for k, v in others.items()}
    assert len(keys) == 1 + len(others)


def test_hidden_state_key_changes_with_the_encoder_weights(env, tmp_path):
    tokenizer = load_tokenizer(str(env / "encoder"))
    model = _model(str(env / "encoder"), mode="top1")
    cached_hidden_states(model, tokenizer, TEXTS, fingerprint="fp", split="train", cache_dir=str(tmp_path), progress=False)
    with torch.no_grad():
        model.encoder.encoder.layer[0].output.dense.weight.add_(0.01)
    _, hit = cached_hidden_states(model, tokenizer, TEXTS, fingerprint="fp", split="train", cache_dir=str(tmp_path), progress=False)
    assert not hit and len(list((tmp_path / "hidden_states").glob("*.safetensors"))) == 2


def test_collated_batches_are_padded_to_their_longest_row_only():
    states = [{"hidden_states": torch.ones(n, 4), "labels": torch.tensor(n % 2)} for n in (2, 5, 3)]
    batch = collate_hidden_states(states)
    assert batch["hidden_states"].shape == (3, 5, 4)
    assert batch["attention_mask"].sum(1).tolist() == [2, 5, 3]
    assert batch["hidden_states"][0, 2:].abs().sum() == 0


def test_dataset_exposes_lengths_for_grouped_sampling(env, tmp_path):
    model = _model(str(env / "encoder"), mode="top1")
    texts, labels = _texts(5, 7)
    states, _ = cached_hidden_states(model, load_tokenizer(str(env / "encoder")), texts, fingerprint="x", split="train", cache_dir=str(tmp_path), progress=False)
    dataset = HiddenStateDataset(states, labels)
    assert dataset.lengths == states.lengths.tolist() and dataset[2]["hidden_states"].shape[0] == dataset.lengths[2]


# ----------------------------------------------------------------------------------- training


def _config(env, tmp_path, name, **overrides):
    base = dict(
        train_file=str(env / "train.csv"), validation_file=str(env / "validation.csv"), test_file=str(env / "test.csv"),
        model=str(env / "encoder"), max_length=24, head="quantum", qubits=3, layers=1, mode="top1", num_epochs=2,
        batch_size=8, learning_rate=1e-2, encoder_learning_rate=1e-3, output_dir=str(tmp_path / name),
        cache_dir=str(tmp_path / "cache"), progress=False, early_stopping_patience=None, precision="fp32",
    )
    return TrainingConfig(**{**base, **overrides})


def _probabilities(run_dir):
    import pandas as pd

    frame = pd.read_csv(run_dir / "predictions.csv")
    return torch.tensor(frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy())


def _train_losses(run_dir):
    return [row["train_loss"] for row in json.loads((run_dir / "history.json").read_text()) if "train_loss" in row]


@pytest.mark.parametrize("group_by_length", [True, False])
def test_cached_top_k_trains_exactly_like_the_uncached_path(env, tmp_path, group_by_length):
    cached = run_training(_config(env, tmp_path, "cached", cache_bottom=True, group_by_length=group_by_length))
    uncached = run_training(_config(env, tmp_path, "uncached", cache_bottom=False, group_by_length=group_by_length))
    assert cached["eval_loss"] == pytest.approx(uncached["eval_loss"], abs=1e-5)
    torch.testing.assert_close(_probabilities(tmp_path / "cached"), _probabilities(tmp_path / "uncached"), atol=1e-5, rtol=0)
    assert _train_losses(tmp_path / "cached") == pytest.approx(_train_losses(tmp_path / "uncached"), abs=1e-5)
    assert list((tmp_path / "cache" / "hidden_states").glob("*.safetensors"))
    assert cached["encode_runtime"] >= 0 and "encode_runtime" not in uncached  # only the cached run computes ahead


@pytest.mark.parametrize("runtime", ["onnx", "openvino:fp32"])
def test_top_k_with_the_bottom_layers_in_a_runtime_trains_like_torch(env, tmp_path, runtime):
    pytest.importorskip({"onnx": "onnxruntime", "openvino:fp32": "openvino"}[runtime])
    pytest.importorskip("onnxscript")
    from safetensors.torch import load_file

    from qubert.runtimes import resolve_runtime

    by_torch = run_training(_config(env, tmp_path, "torch"))
    by_runtime = run_training(_config(env, tmp_path, "runtime", runtime=runtime))
    assert by_runtime["eval_loss"] == pytest.approx(by_torch["eval_loss"], abs=1e-4)
    torch.testing.assert_close(_probabilities(tmp_path / "runtime"), _probabilities(tmp_path / "torch"), atol=1e-4, rtol=0)
    assert _train_losses(tmp_path / "runtime") == pytest.approx(_train_losses(tmp_path / "torch"), abs=1e-4)
    tag = "-".join(resolve_runtime(runtime))  # onnx-fp32, openvino-fp32
    stored = sorted(p.name for p in (tmp_path / "cache" / "hidden_states").glob("*.safetensors"))
    assert len(stored) == 6 and sum(name.startswith(f"train-top1-24-{tag}-") for name in stored) == 1  # 3 splits per runtime
    assert list((tmp_path / "cache" / "onnx").glob("*/bottom-top1.onnx"))
    # the saved run: the same files and weights (up to the float noise of the states), no trace of the runtime
    saved = {name: sorted(p.name for p in (tmp_path / name / "model").iterdir()) for name in ("torch", "runtime")}
    assert saved["runtime"] == saved["torch"] and not any(name.endswith(".onnx") for name in saved["runtime"])
    weights = {name: load_file(str(tmp_path / name / "model" / "model.safetensors")) for name in ("torch", "runtime")}
    assert weights["runtime"].keys() == weights["torch"].keys()
    for key, value in weights["torch"].items():
        torch.testing.assert_close(weights["runtime"][key], value, atol=1e-4, rtol=0)
    assert "runtime" not in json.loads((tmp_path / "runtime" / "model" / "config.json").read_text())


def test_predictions_keep_the_input_order_under_length_sorted_evaluation(env, tmp_path):
    import pandas as pd

    run_training(_config(env, tmp_path, "sorted", num_epochs=1))
    frame = pd.read_csv(tmp_path / "sorted" / "predictions.csv")
    expected = pd.read_csv(env / "test.csv")
    assert frame["text"].tolist() == expected["text"].tolist() and frame["label"].tolist() == expected["label"].tolist()


# ----------------------------------------------------------------------------------- precision


def test_autocast_never_reaches_the_head(env):
    model = _model(str(env / "encoder"), mode="top1").eval()
    seen = []
    for module in model.head.modules():
        module.register_forward_hook(lambda m, args, out: seen.append(out.dtype) if torch.is_tensor(out) else None)
    engine_dtypes = []
    original = model.head.measure

    def measure(features):
        engine_dtypes.append(features.dtype)
        return original(features)

    model.head.measure = measure
    encoder_dtypes = []
    model.encoder.encoder.layer[-1].intermediate.dense.register_forward_hook(lambda m, args, out: encoder_dtypes.append(out.dtype))
    tokenizer = load_tokenizer(str(env / "encoder"))
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        hidden = model.encode_bottom(batch["input_ids"], batch["attention_mask"])
        logits = model(hidden_states=hidden, attention_mask=batch["attention_mask"]).logits
    assert encoder_dtypes == [torch.bfloat16]  # the trainable top layer did run under autocast
    assert logits.dtype == torch.float32 and seen and set(seen) <= {torch.float32, torch.float64}
    assert engine_dtypes and set(engine_dtypes) <= {torch.float32, torch.float64}


def test_precision_names_and_hardware_checks(monkeypatch):
    import qubert.precision as precision

    assert resolve_precision("fp32") == "fp32"
    with pytest.raises(PrecisionError, match="needs a CUDA GPU"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(PrecisionError, match="unknown precision"):
        resolve_precision("fp8")
    monkeypatch.setattr(precision, "_cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(PrecisionError, match="not supported natively on this CPU"):
        resolve_precision("bf16", "cpu")
    monkeypatch.setattr(precision, "_cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"


def test_bf16_features_are_cached_under_their_own_key(env, tmp_path):
    tokenizer = load_tokenizer(str(env / "encoder"))
    cache = EmbeddingCache(tmp_path)
    fp32 = _model(str(env / "encoder"), mode="frozen", precision="fp32")
    bf16 = _model(str(env / "encoder"), mode="frozen", precision="bf16")
    a, _ = cached_features(fp32, tokenizer, TEXTS, fingerprint="f", split="train", cache=cache, progress=False)
    b, hit = cached_features(bf16, tokenizer, TEXTS, fingerprint="f", split="train", cache=cache, progress=False)
    assert not hit and len(list(cache.directory.glob("*.safetensors"))) == 2
    assert b.dtype == torch.float32 and not torch.equal(a, b)
    torch.testing.assert_close(a, b, atol=0.1, rtol=0.1)


def test_bf16_training_runs_and_records_its_precision(env, tmp_path):
    import yaml

    from qubert.precision import bf16_supported

    if not bf16_supported("cpu"):
        pytest.skip("this CPU has no native bf16")
    metrics = run_training(_config(env, tmp_path, "bf16", precision="bf16", num_epochs=1))
    assert 0 <= metrics["test_macro_f1"] <= 1
    assert yaml.safe_load((tmp_path / "bf16" / "config.yaml").read_text())["precision"] == "bf16"
    assert json.loads((tmp_path / "bf16" / "model" / "config.json").read_text())["precision"] == "bf16"


def test_an_interrupted_cache_build_keeps_only_complete_files(env, tmp_path, monkeypatch):
    import qubert.layer_cache as layer_cache
    from qubert.training import TrainingInterrupted

    real_save, computed = EmbeddingCache.save_tensors, []

    def save_then_interrupt(self, key, tensors, metadata=None):
        if len(computed) == 2:  # the validation split: Ctrl-C while it is being written
            raise KeyboardInterrupt
        return real_save(self, key, tensors, metadata)

    real_compute = layer_cache._compute
    monkeypatch.setattr(layer_cache, "_compute", lambda *a, **k: computed.append(1) or real_compute(*a, **k))
    monkeypatch.setattr(EmbeddingCache, "save_tensors", save_then_interrupt)
    with pytest.raises(TrainingInterrupted):
        run_training(_config(env, tmp_path, "killed", num_epochs=1))
    files = sorted(p.name for p in (tmp_path / "cache" / "hidden_states").iterdir())
    assert len(files) == 1 and files[0].startswith("train-top1-24-fp32-")  # nothing half-written
    monkeypatch.setattr(EmbeddingCache, "save_tensors", real_save)
    computed.clear()
    run_training(_config(env, tmp_path, "killed", num_epochs=1, resume=True))
    assert len(computed) == 2  # validation and test; the complete train file was reused


def test_a_quantum_head_called_alone_under_autocast_computes_in_float32():
    from qubert.heads import QuantumHead

    head = QuantumHead(in_features=8, n_classes=3, n_qubits=3, n_layers=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        angles_seen = []
        original = head.measure
        head.measure = lambda f: angles_seen.append(f.dtype) or original(f)
        logits = head(torch.randn(4, 8).bfloat16())
    assert angles_seen == [torch.float32] and logits.dtype == torch.float32


def test_a_full_disk_names_the_hidden_state_cache_and_leaves_no_partial_file(env, tmp_path, monkeypatch):
    import errno

    import safetensors.torch

    def full(tensors, filename, metadata=None):
        open(filename, "wb").write(b"partial")
        raise RuntimeError("Error while serializing: No space left on device (os error 28)")  # as safetensors reports it

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    model, tokenizer = _model(str(env / "encoder"), mode="top1"), load_tokenizer(str(env / "encoder"))
    with pytest.raises(OSError) as info:
        cached_hidden_states(model, tokenizer, TEXTS, fingerprint="f", split="train", cache_dir=str(tmp_path), progress=False)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "hidden_states")
    assert [p for p in (tmp_path / "hidden_states").iterdir() if not p.name.endswith(".lock")] == []
