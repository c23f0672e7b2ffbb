"""A saved qubert model behind one call: raw texts in, class probabilities (and truncation flags) out.

:class:`TextClassifier` is what the server's worker thread owns. It tokenises exactly as training
and ``qubert predict`` do (:func:`qubert.embeddings.length_sorted_batches`: truncation at the
model's ``max_length``, batches sorted by token length, each padded to its own longest text), runs
the encoder in inference mode under the model's precision, then the head in float32.

Example:
    >>> classifier = TextClassifier.load("runs/sms_spam-quantum-frozen-s42")  # doctest: +SKIP
    >>> batch = classifier.classify(["WIN a FREE prize now", "see you at 6"])  # doctest: +SKIP
    >>> classifier.labels, batch.probabilities.shape, batch.truncated  # doctest: +SKIP
    (['ham', 'spam'], torch.Size([2, 2]), [False, False])
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = ["ClassifiedTexts", "TextClassifier"]


@dataclass
class ClassifiedTexts:
    """Class probabilities ``(N, n_classes)`` in input order, and which texts were truncated."""

    probabilities: torch.Tensor
    truncated: list[bool]


class TextClassifier:
    """A loaded model + tokenizer that classifies raw texts (see the module docstring).

    Args:
        model, tokenizer: from :func:`qubert.training.load_model`.
        source: the run or model folder it came from (shown by ``GET /v1/model``).
        batch_size: encoder batch size inside one call (texts are length-sorted first).
    """

    def __init__(self, model, tokenizer, *, source: str = "", batch_size: int = 64) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        self.batch_size = int(batch_size)
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self.max_length = int(model.config.max_length)
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str], *, precision: str | None = None, device: str | None = None, batch_size: int = 64) -> "TextClassifier":
        """Load a run directory (or its ``model/`` folder).

        ``precision`` (``auto``, ``fp32``, ``bf16``, ``fp16``) replaces the precision the encoder was
        trained in; ``None`` keeps the trained one. Either way it is checked against the hardware.

        Raises:
            ModelConfigError: not a loadable qubert model.
            PrecisionError: a precision this machine cannot run.
        """
        from qubert.precision import resolve_precision
        from qubert.training import load_model

        model, tokenizer = load_model(model_dir, device=device)
        device_of_model = next(model.parameters()).device
        model.config.precision = resolve_precision(precision or getattr(model.config, "precision", "fp32"), device_of_model)
        return cls(model, tokenizer, source=str(model_dir), batch_size=batch_size)

    def classify(self, texts: Sequence[str]) -> ClassifiedTexts:
        """Probabilities for ``texts`` (one pass: tokenise, length-sorted encoder batches, head)."""
        from qubert.embeddings import encoding_pass, length_sorted_batches

        texts = list(texts)
        if not texts:
            return ClassifiedTexts(torch.zeros(0, len(self.labels)), [])
        probabilities = torch.empty(len(texts), len(self.labels))
        with encoding_pass(self.model, len(texts), progress=False, description="Classifying"):
            for idx, batch in length_sorted_batches(self.tokenizer, texts, max_length=self.max_length, batch_size=self.batch_size):
                batch = {k: v.to(self.device) for k, v in batch.items()}
                features = self.model.encode(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))
                logits = self.model(features=features).logits
                probabilities[torch.tensor(idx)] = torch.softmax(logits.float(), dim=-1).cpu()
        return ClassifiedTexts(probabilities, self.truncated(texts))

    def truncated(self, texts: Sequence[str]) -> list[bool]:
        """Which texts have more tokens than ``max_length`` (and so were cut, as in training).

        Tokenising with one token of room tells it without a length warning for long texts.
        """
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length + 1)["input_ids"]
        return [len(row) > self.max_length for row in ids]

    def describe(self) -> dict[str, Any]:
        """Labels, head, circuit (quantum heads), encoder, precision and the run's metrics if present."""
        config = self.model.config
        head = dict(config.head_config or {})
        info: dict[str, Any] = {
            "source": self.source,
            "labels": self.labels,
            "head": {k: v for k, v in head.items() if k != "circuit"},
            "encoder": {
                "name_or_path": config.encoder_name_or_path,
                "model_type": config.encoder.model_type,
                "hidden_size": config.encoder.hidden_size,
                "layers": getattr(config.encoder, "num_hidden_layers", None),
                "pooling": config.pooling,
                "mode": config.mode,
            },
            "max_length": self.max_length,
            "precision": config.precision,
            "device": str(self.device),
        }
        circuit = getattr(self.model.head, "circuit", None)
        if circuit is not None:
            info["circuit"] = {**circuit.to_dict(), "n_weights": circuit.n_weights, "n_outputs": circuit.n_outputs}
            if circuit.n_qubits <= 12:  # the text drawing grows with the register; past 12 wires it stops being readable
                info["circuit"]["diagram"] = circuit.draw()
        metrics = self._run_metrics()
        if metrics is not None:
            info["metrics"] = metrics
        return info

    def _run_metrics(self) -> dict[str, Any] | None:
        path = Path(self.source).expanduser()
        for folder in (path, path.parent):  # a run directory, or its model/ folder
            if (folder / "metrics.json").is_file():
                try:
                    return json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    return None
        return None
