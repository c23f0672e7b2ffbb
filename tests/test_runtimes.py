"""Inference runtimes (qubert.runtimes): ONNX Runtime and OpenVINO against PyTorch on a tiny encoder,
the embedding cache keyed per runtime, the CLI / server / estimator paths, and one-line refusals."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from typer.testing import CliRunner

from qubert.runtimes import (
    MissingRuntimeError,
    RuntimeOptionError,
    parse_runtime,
    require_runtime,
    resolve_runtime,
    runtime_tag,
    use_bottom_runtime,
    use_runtime,
)
from qubert.embeddings import EmbeddingCache, cached_features, encode_texts
from qubert.modeling import QubertForSequenceClassification
from qubert.precision import bf16_supported

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

runner = CliRunner()
TEXTS = ["short", "a somewhat longer sentence about films and music", "mid length text here", "x",
         "the longest text of them all, by quite a margin, really, with many words " * 2, "good great", "awful dreadful"]
MAX_LENGTH = 24


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, save_tiny_bert):
    return save_tiny_bert(tmp_path_factory.mktemp("runtimes") / "encoder")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("runtime-cache"))


def _model(encoder_dir, pooling="mean", head=None):
    from transformers import AutoTokenizer

    model = QubertForSequenceClassification.from_encoder(
        encoder_dir, head=head or {"type": "linear"}, id2label={0: "neg", 1: "pos"}, pooling=pooling, max_length=MAX_LENGTH, seed=0, precision="fp32",
    )
    return model.eval(), AutoTokenizer.from_pretrained(encoder_dir)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).min())


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("runtime", ["onnx", "openvino:fp32"])
def test_fp32_runtimes_match_torch(encoder_dir, cache_dir, runtime, pooling):
    pytest.importorskip(parse_runtime(runtime)[0].replace("onnx", "onnxruntime"))
    model, tokenizer = _model(encoder_dir, pooling)
    expected = encode_texts(model, tokenizer, TEXTS, progress=False, batch_size=3)
    assert use_runtime(model, runtime, cache_dir=cache_dir, progress=False) == f"{parse_runtime(runtime)[0]}-fp32"
    got = encode_texts(model, tokenizer, TEXTS, progress=False, batch_size=3)  # batches of different lengths: dynamic axes
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    use_runtime(model, "torch")
    assert torch.equal(encode_texts(model, tokenizer, TEXTS, progress=False, batch_size=3), expected)  # detached again


def test_reduced_precision_runtimes_stay_close_and_are_tagged(encoder_dir, cache_dir):
    model, tokenizer = _model(encoder_dir)
    expected = encode_texts(model, tokenizer, TEXTS, progress=False)
    specs = ["onnx:int8"] + (["openvino:bf16"] if bf16_supported("cpu") else [])
    pytest.importorskip("openvino") if len(specs) > 1 else None
    for spec in specs:
        assert use_runtime(model, spec, cache_dir=cache_dir, progress=False) == spec.replace(":", "-")
        got = encode_texts(model, tokenizer, TEXTS, progress=False)
        assert not torch.equal(got, expected)  # really another computation
        assert _cosine(got, expected) > 0.99, spec


def test_a_training_encoder_runs_in_torch_and_the_export_is_reused(encoder_dir, cache_dir, monkeypatch):
    import qubert.runtimes as runtimes

    model, tokenizer = _model(encoder_dir)
    use_runtime(model, "onnx", cache_dir=cache_dir, progress=False)  # exported by an earlier test or now
    exports = []
    monkeypatch.setattr(runtimes, "export_encoder", lambda *a, **k: exports.append(a))
    other, _ = _model(encoder_dir)
    use_runtime(other, "onnx", cache_dir=cache_dir, progress=False)
    assert exports == []  # same weights and pooling: the cached graph
    batch = tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    model.set_mode("full")
    model.train()
    features = model.encode(batch["input_ids"], batch["attention_mask"])
    assert features.requires_grad  # PyTorch, with gradients: a runtime never runs a training pass


def test_the_cache_never_mixes_runtimes(encoder_dir, cache_dir, tmp_path):
    model, tokenizer = _model(encoder_dir)
    cache = EmbeddingCache(tmp_path)
    torch_features, hit = cached_features(model, tokenizer, TEXTS, fingerprint="f", split="test", cache=cache, progress=False)
    assert not hit
    use_runtime(model, "onnx:int8", cache_dir=cache_dir, progress=False)
    int8_features, hit = cached_features(model, tokenizer, TEXTS, fingerprint="f", split="test", cache=cache, progress=False)
    assert not hit and not torch.equal(int8_features, torch_features)  # computed anew, not torch's file
    again, hit = cached_features(model, tokenizer, TEXTS, fingerprint="f", split="test", cache=cache, progress=False)
    assert hit and torch.equal(again, int8_features)
    use_runtime(model, "torch")
    back, hit = cached_features(model, tokenizer, TEXTS, fingerprint="f", split="test", cache=cache, progress=False)
    assert hit and torch.equal(back, torch_features)
    files = sorted(cache.directory.glob("*.safetensors"))
    assert len(files) == 2
    from safetensors import safe_open

    tags = set()
    for path in files:
        with safe_open(str(path), "pt") as fh:
            tags.add(fh.metadata()["precision"])
    assert tags == {"fp32", "onnx-int8"}


def test_runtime_names_and_precisions_are_checked_in_one_line():
    assert resolve_runtime("openvino", "bf16")[1] == ("bf16" if bf16_supported("cpu") else "fp32")
    assert resolve_runtime("onnx", "bf16") == ("onnx", "fp32")  # ONNX Runtime: no fast bf16 CPU kernels
    with pytest.raises(RuntimeOptionError, match="unknown runtime 'tensorrt'"):
        parse_runtime("tensorrt")
    with pytest.raises(RuntimeOptionError, match="runtime openvino has no precision 'int8'"):
        parse_runtime("openvino:int8")
    from qubert.training import TrainingConfig, TrainingConfigError

    with pytest.raises(TrainingConfigError, match="needs --mode frozen or top<k>") as info:
        TrainingConfig(dataset="sst2", mode="full", runtime="onnx")
    assert "\n" not in str(info.value)
    with pytest.raises(TrainingConfigError, match=r"--mode top2 needs the cached bottom layers \(drop --no-cache-bottom\)") as info:
        TrainingConfig(dataset="sst2", mode="top2", cache_bottom=False, runtime="openvino")
    assert "\n" not in str(info.value)
    for mode in ("frozen", "top2"):  # the passes that do not train: the features, the cached bottom layers
        assert TrainingConfig(dataset="sst2", mode=mode, runtime="openvino:fp32").runtime == "openvino:fp32"
    assert TrainingConfig(dataset="sst2", mode="full", runtime="torch").runtime == "torch"


# ----------------------------------------------------------------------------------- top<k>: the bottom layers


def _top1(encoder_dir, precision="fp32"):
    from transformers import AutoTokenizer

    model = QubertForSequenceClassification.from_encoder(
        encoder_dir, head={"type": "linear"}, id2label={0: "neg", 1: "pos"}, pooling="mean", mode="top1", max_length=MAX_LENGTH, seed=0, precision=precision,
    )
    return model.train(), AutoTokenizer.from_pretrained(encoder_dir)  # as in training: the top layer trains


@pytest.mark.parametrize("runtime", ["onnx", "openvino:fp32"])
def test_the_bottom_graph_computes_what_encode_bottom_computes(encoder_dir, cache_dir, runtime):
    name = parse_runtime(runtime)[0]
    pytest.importorskip(name.replace("onnx", "onnxruntime"))
    model, tokenizer = _top1(encoder_dir)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    assert use_bottom_runtime(model, runtime, cache_dir=cache_dir, progress=False) == f"{name}-fp32"
    assert model.bottom_runtime.path.name == "bottom-top1.onnx" and model.bottom_runtime.top_k == 1
    assert getattr(model, "inference_runtime", None) is None  # never the whole encoder: its top layer trains
    for texts in (TEXTS[:3], TEXTS):  # 3 and 7 rows of other lengths than the export's 2 x 5: dynamic axes
        batch = tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        ids, mask = batch["input_ids"], batch["attention_mask"]
        got = model.encode_bottom(ids, mask, batch["token_type_ids"])
        with torch.no_grad():
            expected = model.bottom_layers(ids, mask)
            assert got.shape == expected.shape == (len(texts), ids.shape[1], 32) and got.dtype == torch.float32
            assert (got - expected).abs().max() < 1e-5
            model.eval()
            torch.testing.assert_close(model.encode_top(got, mask), model.encode(ids, mask), atol=1e-5, rtol=1e-5)
            model.train()
    assert model.encode(ids, mask).requires_grad  # the training pass stays in PyTorch
    assert model.state_dict().keys() == weights.keys() and all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert use_bottom_runtime(model, "torch") == "fp32" and model.bottom_runtime is None


def test_a_bottom_runtime_needs_a_top_k_model_and_follows_its_precision(encoder_dir, cache_dir):
    frozen, _ = _model(encoder_dir)
    with pytest.raises(RuntimeOptionError, match="only a top<k> model has fixed bottom layers"):
        use_bottom_runtime(frozen, "onnx", cache_dir=cache_dir, progress=False)
    model, _ = _top1(encoder_dir)
    with pytest.raises(RuntimeOptionError, match=r"model's precision \(fp32\) under torch; set it with --precision"):
        use_bottom_runtime(model, "torch:bf16")
    assert use_bottom_runtime(model, "onnx:int8", cache_dir=cache_dir, progress=False) == "onnx-int8"
    assert model.bottom_runtime.path.name == "bottom-top1-int8.onnx"  # quantized from bottom-top1.onnx, beside it
    assert (model.bottom_runtime.path.parent / "bottom-top1.onnx").is_file()
    if bf16_supported("cpu"):
        pytest.importorskip("openvino")
        bf16, _ = _top1(encoder_dir, precision="bf16")
        assert use_bottom_runtime(bf16, "openvino", cache_dir=cache_dir, progress=False) == "openvino-bf16"


def _stored(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        return fh.metadata(), fh.get_tensor("hidden").dtype


def test_the_hidden_state_cache_never_mixes_runtimes(encoder_dir, cache_dir, tmp_path):
    from qubert.layer_cache import cached_hidden_states

    model, tokenizer = _top1(encoder_dir)

    def states():
        return cached_hidden_states(model, tokenizer, TEXTS, fingerprint="f", split="test", cache_dir=str(tmp_path), progress=False, batch_size=3)

    by_torch, hit = states()
    assert not hit
    (torch_file,) = (tmp_path / "hidden_states").glob("*.safetensors")
    assert torch_file.name.startswith(f"test-top1-{MAX_LENGTH}-fp32-")  # torch's keys as before: existing caches stay valid
    use_bottom_runtime(model, "onnx", cache_dir=cache_dir, progress=False)
    by_onnx, hit = states()
    assert not hit  # not torch's file
    torch.testing.assert_close(by_onnx.hidden, by_torch.hidden, atol=1e-5, rtol=0)
    assert states()[1]  # its own file, read back
    specs = ["openvino:fp32"] + (["openvino:bf16"] if bf16_supported("cpu") else [])
    for spec in specs:
        use_bottom_runtime(model, spec, cache_dir=cache_dir, progress=False)
        assert not states()[1]
    use_bottom_runtime(model, "torch")
    again, hit = states()
    assert hit and torch.equal(again.hidden, by_torch.hidden)  # a runtime's file is never read by torch
    files = {_stored(p)[0]["precision"]: (p, *_stored(p)) for p in (tmp_path / "hidden_states").glob("*.safetensors")}
    assert set(files) == {"fp32", "onnx-fp32", *(s.replace(":", "-") for s in specs)}
    for tag, (path, metadata, dtype) in files.items():
        assert path.name.startswith(f"test-top1-{MAX_LENGTH}-{tag}-")
        assert metadata["runtime"] == ("torch" if tag == "fp32" else tag.split("-")[0])
        assert dtype == (torch.bfloat16 if tag == "openvino-bf16" else torch.float32)


@pytest.mark.parametrize(("runtime", "module", "extra"), [("onnx", "onnxruntime", "onnx"), ("openvino", "openvino", "openvino"), ("export", "onnxscript", "onnx")])
def test_a_missing_runtime_is_one_line_naming_the_extra(monkeypatch, runtime, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MissingRuntimeError) as info:
        require_runtime(runtime)
    message = str(info.value)
    assert "\n" not in message and f'pip install "qubert[{extra}]"' in message


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, encoder_dir):
    root = tmp_path_factory.mktemp("runtime-run")
    model, tokenizer = _model(encoder_dir, head={"type": "quantum", "n_qubits": 2, "n_layers": 1})
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root


def _predict(run_dir, *args):
    from qubert.cli import app

    result = runner.invoke(app, ["predict", str(run_dir), "--format", "jsonl", *args], input="".join(t + "\n" for t in TEXTS))
    return result


def test_predict_serve_and_estimator_use_the_runtime(run_dir, cache_dir, monkeypatch):
    monkeypatch.setenv("QUBERT_CACHE_DIR", cache_dir)
    by_torch = _predict(run_dir)
    by_onnx = _predict(run_dir, "--runtime", "onnx")
    assert by_torch.exit_code == 0 and by_onnx.exit_code == 0, by_onnx.output
    rows_torch = [json.loads(line) for line in by_torch.stdout.splitlines()]
    rows_onnx = [json.loads(line) for line in by_onnx.stdout.splitlines()]
    for a, b in zip(rows_torch, rows_onnx, strict=True):
        assert a["label"] == b["label"]
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) < 1e-4

    pytest.importorskip("openvino")
    from qubert.serving import TextClassifier

    expected = TextClassifier.load(run_dir).classify(TEXTS).probabilities
    served = TextClassifier.load(run_dir, runtime="openvino:fp32", cache_dir=cache_dir)
    assert served.describe()["runtime"] == "openvino-fp32"
    assert torch.allclose(served.classify(TEXTS).probabilities, expected, atol=1e-4)


def test_bad_runtime_on_the_command_line_is_one_line(run_dir, monkeypatch):
    result = _predict(run_dir, "--runtime", "tensorrt")
    assert result.exit_code == 2 and "unknown runtime 'tensorrt'" in " ".join(result.output.split())
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = _predict(run_dir, "--runtime", "onnx")
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and 'qubert[onnx]' in lines[0], result.output


def test_estimator_fits_and_predicts_through_the_runtime(encoder_dir, cache_dir):
    from qubert.sklearn import QubertClassifier

    texts = ["good great", "awful dreadful", "superb fine", "poor bad"] * 4
    labels = ["pos", "neg", "pos", "neg"] * 4
    common = dict(model=encoder_dir, max_length=16, head="linear", num_epochs=1, batch_size=8, cache_dir=cache_dir, early_stopping_patience=None, validation_fraction=0.25, precision="fp32")
    onnx = QubertClassifier(runtime="onnx", **common).fit(texts, labels)
    assert runtime_tag(onnx.model_) == "fp32"  # a loaded model; the runtime is attached at predict
    probabilities = onnx.predict_proba(texts)
    assert runtime_tag(onnx.model_) == "onnx-fp32"
    onnx.set_params(runtime="torch")
    by_torch = onnx.predict_proba(texts)
    assert runtime_tag(onnx.model_) == "fp32"
    assert abs(probabilities - by_torch).max() < 1e-4


def test_eval_scores_alike_in_torch_and_onnx(run_dir, cache_dir, tmp_path):
    from qubert.evaluation import evaluate_model

    scored = tmp_path / "scored.csv"
    scored.write_text("text,label\n" + "".join(f'"{t}",{"pos" if i % 2 else "neg"}\n' for i, t in enumerate(TEXTS)))
    by_torch = evaluate_model(run_dir, test_file=str(scored), cache_dir=cache_dir, progress=False)
    by_onnx = evaluate_model(run_dir, test_file=str(scored), cache_dir=cache_dir, progress=False, runtime="onnx")
    assert by_onnx["test_samples"] == len(TEXTS)
    assert by_onnx["confusion_matrix"] == by_torch["confusion_matrix"] and by_onnx["test_macro_f1"] == by_torch["test_macro_f1"]
    assert "runtime_macro_f1_change" not in by_onnx  # an fp32 runtime computes what torch computes


def test_int8_is_never_silent_eval_scores_it_against_torch(run_dir, cache_dir, tmp_path):
    from qubert.cli import app
    from qubert.evaluation import evaluate_model

    scored = tmp_path / "scored.csv"
    scored.write_text("text,label\n" + "".join(f'"{t}",{"pos" if i % 2 else "neg"}\n' for i, t in enumerate(TEXTS)))
    by_torch = evaluate_model(run_dir, test_file=str(scored), cache_dir=cache_dir, progress=False)
    by_int8 = evaluate_model(run_dir, test_file=str(scored), cache_dir=cache_dir, progress=False, runtime="onnx:int8")
    assert by_int8["runtime"] == "onnx-int8"
    assert by_int8["reference_macro_f1"] == by_torch["test_macro_f1"]
    assert by_int8["runtime_macro_f1_change"] == pytest.approx(by_int8["test_macro_f1"] - by_torch["test_macro_f1"])
    result = runner.invoke(app, ["eval", str(run_dir), "--test-file", str(scored), "--cache-dir", cache_dir, "--runtime", "onnx:int8", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Runtime onnx-int8 (quantized encoder): macro-F1" in " ".join(result.output.split())


def test_predict_with_int8_says_so_on_stderr(run_dir, cache_dir):
    quantized = _predict(run_dir, "--runtime", "onnx:int8", "--cache-dir", cache_dir)
    assert quantized.exit_code == 0, quantized.output
    assert "quantizes the encoder to int8" in " ".join(quantized.stderr.split())
    assert len(quantized.stdout.splitlines()) == len(TEXTS)  # predictions stay clean on stdout
    assert "int8" not in _predict(run_dir, "--runtime", "onnx", "--cache-dir", cache_dir).stderr


def test_auto_picks_openvino_where_installed_else_torch(run_dir, cache_dir, monkeypatch):
    from qubert.runtimes import concrete_runtime
    from qubert.serving import TextClassifier

    pytest.importorskip("openvino")
    assert concrete_runtime("auto") == "openvino" and concrete_runtime("auto", device="cuda") == "torch"
    assert concrete_runtime("onnx:int8") == "onnx:int8"
    with pytest.raises(RuntimeOptionError, match="runtime auto takes no precision"):
        parse_runtime("auto:bf16")
    expected = TextClassifier.load(run_dir).classify(TEXTS).probabilities
    served = TextClassifier.load(run_dir, runtime="auto", cache_dir=cache_dir)  # what qubert serve runs by default
    assert served.describe()["runtime"] == "openvino-fp32"  # the model's precision (fp32), not bf16
    assert torch.allclose(served.classify(TEXTS).probabilities, expected, atol=1e-5)
    monkeypatch.setitem(sys.modules, "openvino", None)  # the extra is not installed: PyTorch, no error
    assert concrete_runtime("auto") == "torch"
    assert TextClassifier.load(run_dir, runtime="auto", cache_dir=cache_dir).describe()["runtime"] == "fp32"


def test_serve_runs_auto_by_default():
    import inspect

    from qubert.cli.serve import serve

    assert inspect.signature(serve).parameters["runtime"].default.default == "auto"


def test_training_with_int8_says_so_and_scores_the_quantized_model(encoder_dir, cache_dir, tmp_path, write_word_splits):
    from qubert.cli import app

    data = write_word_splits(tmp_path, {"train": 24, "validation": 8, "test": 8})
    result = runner.invoke(app, [
        "train", "--train-file", str(data / "train.csv"), "--validation-file", str(data / "validation.csv"), "--test-file", str(data / "test.csv"),
        "--model", str(encoder_dir), "--max-length", "12", "--head", "linear", "--num-epochs", "1", "--precision", "fp32",
        "--runtime", "onnx:int8", "--cache-dir", cache_dir, "--output-dir", str(tmp_path / "run"), "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    assert "the head trains and is scored on int8 features" in " ".join(result.stderr.split())
    assert (tmp_path / "run" / "metrics.json").is_file()
