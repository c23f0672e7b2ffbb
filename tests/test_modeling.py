"""QubertForSequenceClassification: config, save/load, Auto classes, pipeline, pooling, trainability."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
from safetensors import safe_open  # noqa: E402
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from qubert.modeling import (  # noqa: E402
    ModelConfigError,
    QubertConfig,
    QubertForSequenceClassification,
    encoder_identity,
    parse_mode,
)

QUANTUM = {"type": "quantum", "circuit": {"n_qubits": 3, "n_layers": 2}}
LABELS = {0: "neg", 1: "pos"}


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory, save_tiny_bert):
    """A randomly initialised 2-layer BERT (hidden 32) with the MiniLM tokenizer, saved to disk."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder):
    return AutoTokenizer.from_pretrained(tiny_encoder)


def _batch(tokenizer, texts=("a fine film", "the worst thing I have seen in years, truly")):
    return tokenizer(list(texts), padding=True, return_tensors="pt")


def _model(path, **kwargs):
    kwargs.setdefault("head", QUANTUM)
    kwargs.setdefault("id2label", LABELS)
    return QubertForSequenceClassification.from_encoder(path, seed=0, **kwargs)


def test_parse_mode_and_bad_options(tiny_encoder):
    assert parse_mode("frozen") == 0 and parse_mode("full") is None and parse_mode("top3") == 3
    for bad in ("top0", "half", "top", ""):
        with pytest.raises(ModelConfigError, match="unknown mode"):
            parse_mode(bad)
    with pytest.raises(ModelConfigError, match="unknown pooling"):
        _model(tiny_encoder, pooling="max")
    with pytest.raises(ModelConfigError, match="cannot load encoder"):
        _model("/nonexistent/encoder")


def test_config_holds_encoder_head_and_labels(tiny_encoder):
    model = _model(tiny_encoder, pooling="cls", max_length=48, mode="top1")
    cfg = model.config
    assert cfg.model_type == "qubert" and cfg.pooling == "cls" and cfg.max_length == 48 and cfg.mode == "top1"
    assert cfg.encoder.hidden_size == 32 and cfg.encoder.model_type == "bert"
    assert cfg.head_config == model.head.config() and cfg.head_config["in_features"] == 32
    assert cfg.id2label == LABELS and cfg.label2id == {"neg": 0, "pos": 1} and cfg.num_labels == 2
    assert isinstance(AutoConfig.for_model("qubert"), QubertConfig)


def test_save_and_reload_round_trip_exactly(tiny_encoder, tokenizer, tmp_path):
    model = _model(tiny_encoder, pooling="mean", mode="full").eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "qubert" and config["head_config"]["type"] == "quantum"
    assert isinstance(config["encoder"], dict) and config["encoder"]["hidden_size"] == 32
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert {"head.q_weights", "head.pre_net.weight", "head.post_net.weight"} <= keys
    assert not any(k.startswith("encoder.pooler") for k in keys)  # mean pooling: no unused pooler

    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded) is QubertForSequenceClassification
    original, loaded = model.state_dict(), reloaded.state_dict()
    assert original.keys() == loaded.keys()
    assert all(torch.equal(original[k], loaded[k]) for k in original)
    batch = _batch(tokenizer)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, reloaded(**batch).logits)


def test_pipeline_on_a_saved_model(tiny_encoder, tokenizer, tmp_path):
    model = _model(tiny_encoder).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    pipe = transformers.pipeline("text-classification", model=str(tmp_path), device="cpu")
    texts = ["a fine film", "dreadful"]
    results = pipe(texts)
    with torch.no_grad():
        probs = torch.softmax(model(**_batch(tokenizer, texts)).logits, -1)
    for result, p in zip(results, probs):
        assert result["label"] == LABELS[int(p.argmax())]
        assert result["score"] == pytest.approx(float(p.max()), abs=1e-5)


def test_mean_pooling_ignores_padding(tiny_encoder, tokenizer):
    model = _model(tiny_encoder, pooling="mean").eval()
    short = tokenizer(["a fine film"], return_tensors="pt")
    padded = tokenizer(["a fine film"], padding="max_length", max_length=20, return_tensors="pt")
    with torch.no_grad():
        a = model.encode(short["input_ids"], short["attention_mask"])
        b = model.encode(padded["input_ids"], padded["attention_mask"])
        hidden = model.encoder(**short).last_hidden_state
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a, hidden.mean(dim=1), atol=1e-6, rtol=1e-6)


def test_cls_and_pooler_pooling(tiny_encoder, tokenizer):
    batch = _batch(tokenizer)
    cls_model = _model(tiny_encoder, pooling="cls").eval()
    pooler_model = _model(tiny_encoder, pooling="pooler").eval()
    with torch.no_grad():
        out = cls_model.encoder(**batch)
        torch.testing.assert_close(cls_model.encode(batch["input_ids"], batch["attention_mask"]), out.last_hidden_state[:, 0])
        full = pooler_model.encoder(**batch)
        torch.testing.assert_close(pooler_model.encode(batch["input_ids"], batch["attention_mask"]), full.pooler_output)


def test_pooler_pooling_needs_pooler_weights(tmp_path, save_tiny_bert):
    save_tiny_bert(tmp_path, num_hidden_layers=1, add_pooling_layer=False)
    with pytest.raises(ModelConfigError, match="no pooler weights"):
        _model(str(tmp_path), pooling="pooler")
    _model(str(tmp_path), pooling="mean")  # the other poolings do not need them


def test_features_path_equals_token_path(tiny_encoder, tokenizer):
    model = _model(tiny_encoder).eval()
    batch = _batch(tokenizer)
    with torch.no_grad():
        features = model.encode(batch["input_ids"], batch["attention_mask"])
        torch.testing.assert_close(model(features=features).logits, model(**batch).logits)
    out = model(features=features, labels=torch.tensor([0, 1]))
    assert out.loss.ndim == 0 and out.loss > 0
    with pytest.raises(ValueError, match="input_ids"):
        model()


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_frozen_mode_keeps_encoder_fixed_and_in_eval(tiny_encoder, tokenizer):
    model = _model(tiny_encoder, mode="frozen")
    assert all(n.startswith("head.") for n in _trainable(model))
    model.train()
    assert model.head.training and not model.encoder.training  # no dropout in a frozen encoder
    out = model(**_batch(tokenizer), labels=torch.tensor([0, 1]))
    out.loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.head.pre_net.weight.grad is not None


def test_top_k_mode_trains_only_the_last_layers_and_pooler(tiny_encoder):
    model = _model(tiny_encoder, mode="top1", pooling="pooler")
    encoder_trainable = {n for n in _trainable(model) if n.startswith("encoder.")}
    assert encoder_trainable and all(n.startswith(("encoder.encoder.layer.1.", "encoder.pooler.")) for n in encoder_trainable)
    assert any(n.startswith("encoder.pooler.") for n in encoder_trainable)
    assert not any(".layer.0." in n or "embeddings" in n for n in encoder_trainable)
    model.train()
    assert model.encoder.training  # dropout on, as in ordinary fine-tuning
    full = _model(tiny_encoder, mode="full")
    assert {n for n, _ in full.named_parameters()} == _trainable(full)
    with pytest.raises(ModelConfigError, match="has 2"):
        _model(tiny_encoder, mode="top3")


def test_parameter_groups_separate_learning_rates(tiny_encoder):
    model = _model(tiny_encoder, mode="top1")
    groups = model.parameter_groups(learning_rate=1e-2, encoder_learning_rate=3e-5, weight_decay=0.1)
    by_id = {id(p): g for g in groups for p in g["params"]}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(by_id) == len(trainable) == sum(len(g["params"]) for g in groups)
    for name, param in trainable:
        group = by_id[id(param)]
        assert group["lr"] == (1e-2 if name.startswith("head.") else 3e-5), name
        no_decay = param.ndim < 2 or "LayerNorm" in name or name.endswith("q_weights")
        assert group["weight_decay"] == (0.0 if no_decay else 0.1), name
    optimizer = torch.optim.AdamW(groups)
    assert sorted({g["lr"] for g in optimizer.param_groups}) == [3e-5, 1e-2]


def test_encoder_identity_tracks_weights(tiny_encoder):
    a = _model(tiny_encoder)
    b = _model(tiny_encoder, pooling="cls")
    assert encoder_identity(a.encoder) == encoder_identity(b.encoder)
    with torch.no_grad():
        b.encoder.embeddings.word_embeddings.weight[0, 0] += 1.0
    assert encoder_identity(a.encoder) != encoder_identity(b.encoder)
