"""The on-disk embedding cache and length-sorted encoding."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")
from transformers import AutoTokenizer  # noqa: E402

from qubert.embeddings import EmbeddingCache, cache_key, cached_features, default_cache_dir, encode_texts  # noqa: E402
from qubert.modeling import QubertForSequenceClassification  # noqa: E402

TEXTS = ["short", "a somewhat longer sentence about films", "mid length text here", "x", "the longest text of them all, by quite a margin, really"]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, save_tiny_bert):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def model_and_tokenizer(encoder_dir):
    model = QubertForSequenceClassification.from_encoder(encoder_dir, head={"type": "linear"}, id2label={0: "a", 1: "b"}, max_length=16)
    return model, AutoTokenizer.from_pretrained(encoder_dir)


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("QUBERT_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("QUBERT_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == (".cache", "qubert")


def test_cache_key_depends_on_every_ingredient():
    base = dict(encoder_id="e1", pooling="mean", max_length=64, fingerprint="f1", split="train")
    keys = {cache_key(**base)}
    for field, other in (("encoder_id", "e2"), ("pooling", "cls"), ("max_length", 128), ("fingerprint", "f2"), ("split", "test")):
        keys.add(cache_key(**{**base, field: other}))
    assert len(keys) == 6
    assert cache_key(**base) == cache_key(**base)


def test_cache_save_load_and_damaged_files(tmp_path):
    cache = EmbeddingCache(tmp_path)
    features = torch.randn(4, 3)
    path = cache.save("k", features, {"split": "train"})
    assert path.parent == tmp_path / "embeddings"
    assert torch.equal(cache.load("k", n_rows=4), features)
    assert cache.load("k", n_rows=5) is None  # wrong row count: never trusted
    assert cache.load("missing") is None
    path.write_bytes(b"not a safetensors file")
    assert cache.load("k") is None
    assert [p.name for p in (tmp_path / "embeddings").iterdir()] == ["k.safetensors"]  # no temp files left


def test_encode_texts_sorted_batches_match_one_by_one(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    model.train()
    batched = encode_texts(model, tokenizer, TEXTS, batch_size=2, progress=False)
    assert model.training  # state restored
    model.eval()
    one_by_one = torch.cat([encode_texts(model, tokenizer, [t], batch_size=1, progress=False) for t in TEXTS])
    assert batched.shape == (len(TEXTS), 32)
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=1e-5)
    assert encode_texts(model, tokenizer, [], progress=False).shape == (0, 32)
    # Usable by autograd (not an inference-mode tensor).
    model.head(batched).sum().backward()


def test_cached_features_hit_after_miss(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    cache = EmbeddingCache(tmp_path)
    first, hit1 = cached_features(model, tokenizer, TEXTS, fingerprint="fp", split="train", cache=cache, progress=False)
    second, hit2 = cached_features(model, tokenizer, TEXTS, fingerprint="fp", split="train", cache=cache, progress=False)
    assert (hit1, hit2) == (False, True)
    assert torch.equal(first, second)
    _, hit3 = cached_features(model, tokenizer, TEXTS, fingerprint="other", split="train", cache=cache, progress=False)
    assert hit3 is False
    assert len(list((tmp_path / "embeddings").glob("*.safetensors"))) == 2


def test_other_encoder_weights_never_reuse_the_cache(encoder_dir, model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    cache = EmbeddingCache(tmp_path)
    original, _ = cached_features(model, tokenizer, TEXTS, fingerprint="fp", split="test", cache=cache, progress=False)
    changed = QubertForSequenceClassification.from_encoder(encoder_dir, head={"type": "linear"}, id2label={0: "a", 1: "b"}, max_length=16)
    with torch.no_grad():
        changed.encoder.embeddings.word_embeddings.weight.mul_(1.5)
    feats, hit = cached_features(changed, tokenizer, TEXTS, fingerprint="fp", split="test", cache=cache, progress=False)
    assert hit is False
    assert not torch.allclose(feats, original)
    assert len(list(cache.directory.glob("*.safetensors"))) == 2
