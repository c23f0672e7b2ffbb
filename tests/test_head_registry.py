"""One registry of head types: a toy head registered in this file trains through `qubert train`,
is saved and loads again, with nothing else in qubert changed (docs/architecture.md, "How to add a head")."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

import qubert.heads as heads  # noqa: E402
from qubert.cli import app  # noqa: E402
from qubert.heads import HEAD_REGISTRY, Head, HeadType, build_head, register_head  # noqa: E402
from qubert.inference import load_model  # noqa: E402
from qubert.training import TrainingConfig, TrainingConfigError, head_config_from  # noqa: E402

runner = CliRunner()


class ScaledLinearHead(Head):
    """A toy head: dropout, then one linear layer whose logits are scaled by a learned temperature."""

    head_type = "scaled"

    def __init__(self, in_features: int, n_classes: int, dropout: float = 0.0) -> None:
        super().__init__(in_features, n_classes)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, n_classes)
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(features)) * self.log_temperature.exp()

    def config(self) -> dict:
        return {**super().config(), "dropout": self.dropout.p}


@pytest.fixture
def scaled_head(monkeypatch):
    """Register the toy head for one test, and forget it afterwards."""
    monkeypatch.setitem(HEAD_REGISTRY, "scaled", HeadType("scaled", ScaledLinearHead, options=("dropout",), help="a toy head"))


def test_builtin_heads_are_registered_once_with_their_options():
    assert list(HEAD_REGISTRY) == ["linear", "mlp", "quantum"]
    assert [name for name, head in HEAD_REGISTRY.items() if head.quantum] == ["quantum"]
    assert head_config_from(TrainingConfig(dataset="x", head="mlp", hidden_sizes=[8], dropout=0.1)) == {"type": "mlp", "hidden_sizes": [8], "dropout": 0.1}


def test_an_unregistered_head_is_refused_naming_the_registered_ones():
    with pytest.raises(TrainingConfigError, match="unknown head 'scaled'; expected one of linear, mlp, quantum"):
        TrainingConfig(dataset="x", head="scaled")


def test_a_registered_head_is_built_from_the_config(scaled_head):
    config = TrainingConfig(dataset="x", head="scaled", dropout=0.2)
    head = build_head({**head_config_from(config), "in_features": 6, "n_classes": 3})
    assert isinstance(head, ScaledLinearHead) and head.dropout.p == 0.2
    assert head(torch.randn(4, 6)).shape == (4, 3)


def test_register_head_updates_the_names(monkeypatch):
    monkeypatch.setattr(heads, "HEAD_TYPES", heads.HEAD_TYPES)
    register_head(HeadType("scaled", ScaledLinearHead, options=("dropout",)))
    try:
        assert heads.HEAD_TYPES == ("linear", "mlp", "quantum", "scaled")
    finally:
        HEAD_REGISTRY.pop("scaled")


def test_a_toy_head_trains_through_qubert_train(scaled_head, tmp_path, save_tiny_bert, write_word_splits):
    root = write_word_splits(tmp_path, {"train": 40, "validation": 12, "test": 12})
    save_tiny_bert(tmp_path / "encoder", num_hidden_layers=1)
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "--train-file", str(root / "train.csv"), "--validation-file", str(root / "validation.csv"),
        "--test-file", str(root / "test.csv"), "--model", str(tmp_path / "encoder"), "--max-length", "12",
        "--num-epochs", "2", "--batch-size", "8", "--head", "scaled", "--dropout", "0.1", "--no-progress",
        "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(out),
    ])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trainable_params"] == 2 * 32 + 2 + 1  # tiny BERT: hidden size 32, two classes, one temperature
    model, _ = load_model(out, device="cpu")
    assert isinstance(model.head, ScaledLinearHead) and model.head.dropout.p == 0.1


def test_the_estimator_takes_every_option_of_the_builtin_heads():
    pytest.importorskip("sklearn")
    from qubert.sklearn import QubertClassifier

    params = QubertClassifier().get_params()
    assert [option for head in HEAD_REGISTRY.values() for option in head.options if option not in params] == []
