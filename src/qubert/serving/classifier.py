"""A saved qubert model behind one call: raw texts in, class probabilities (and truncation flags) out.

:class:`TextClassifier` is what the server's worker thread owns. It tokenises exactly as training
and ``qubert predict`` do (truncation at the model's ``max_length``), sorts the texts by token
length and cuts them into chunks of at most ``max_batch_tokens`` padded tokens
(:func:`token_budget_chunks`), each padded to its own longest text, runs the encoder in inference
mode under the model's precision, then the head in float32.

Why a token budget and not a fixed number of texts: on a CPU the encoder is compute bound, so a
big chunk saves no per-token work, pays for padding up to its longest text, and its activations
fall out of the cache. Measured by ``benchmarks/serve_chunks.py`` on a 2-core EPYC (table in
docs/serving.md): 204 texts gathered 64 at a time ran 1.43x faster than one call per request in
chunks of 256 tokens (fp32, 1 thread), 1.19x as one chunk per call.

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

__all__ = ["ClassifiedTexts", "TextClassifier", "default_threads", "token_budget_chunks"]

DEFAULT_MAX_BATCH_TOKENS = 256


@dataclass
class ClassifiedTexts:
    """Class probabilities ``(N, n_classes)`` in input order, and which texts were truncated."""

    probabilities: torch.Tensor
    truncated: list[bool]


def token_budget_chunks(lengths: Sequence[int], *, max_tokens: int, max_rows: int = 64) -> list[list[int]]:
    """Indices of ``lengths`` (token counts), longest first, cut into chunks whose padded size
    (rows x the chunk's longest) stays within ``max_tokens`` and rows within ``max_rows``. A text
    longer than the budget gets a chunk of its own.

    Example:
        >>> token_budget_chunks([5, 30, 8, 31, 7, 6], max_tokens=64)
        [[3, 1], [2, 4, 5, 0]]
    """
    if max_tokens < 1 or max_rows < 1:
        raise ValueError(f"max_tokens and max_rows must be at least 1, got {max_tokens} and {max_rows}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    chunks: list[list[int]] = []
    for i in order:
        if chunks and len(chunks[-1]) < max_rows and (len(chunks[-1]) + 1) * lengths[chunks[-1][0]] <= max_tokens:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


def default_threads() -> int:
    """Torch threads for a server: every CPU this process may use but one, which is left to the
    event loop (HTTP, JSON) and the tokenizer; at least 1.

    Why not torch's default (all cores): its threads wait for each other at every operation, so
    when the event loop or another process takes one of the cores the whole call stalls. Measured
    by ``benchmarks/serve_chunks.py`` on a shared 2-core EPYC: 48 requests took 34.7 s with 2
    threads and 5.5 s with 1.

    Example:
        >>> default_threads() >= 1
        True
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


class TextClassifier:
    """A loaded model + tokenizer that classifies raw texts (see the module docstring).

    Args:
        model, tokenizer: from :func:`qubert.inference.load_model`.
        source: the run or model folder it came from (shown by ``GET /v1/model``).
        max_batch_tokens: most padded tokens (texts x longest) in one encoder chunk of a call.
        batch_size: most texts in one encoder chunk.
    """

    def __init__(self, model, tokenizer, *, source: str = "", max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS, batch_size: int = 64) -> None:
        if max_batch_tokens < 1:
            raise ValueError(f"max-batch-tokens must be at least 1, got {max_batch_tokens}")
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        self.max_batch_tokens = int(max_batch_tokens)
        self.batch_size = int(batch_size)
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self.max_length = int(model.config.max_length)
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str], *, precision: str | None = None, device: str | None = None, max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS, batch_size: int = 64, threads: int | None = None) -> "TextClassifier":
        """Load a run directory (or its ``model/`` folder).

        ``precision`` (``auto``, ``fp32``, ``bf16``, ``fp16``) replaces the precision the encoder was
        trained in; ``None`` keeps the trained one (so answers agree with ``qubert predict``).
        Either way it is checked against the hardware. ``threads`` sets torch's intra-op threads
        for the whole process (``torch.set_num_threads``; see :func:`default_threads`); ``None``
        leaves them as they are.

        Raises:
            ModelConfigError: not a loadable qubert model.
            PrecisionError: a precision this machine cannot run.
        """
        from qubert.precision import resolve_precision
        from qubert.inference import load_model

        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        model, tokenizer = load_model(model_dir, device=device)
        device_of_model = next(model.parameters()).device
        model.config.precision = resolve_precision(precision or getattr(model.config, "precision", "fp32"), device_of_model)
        if threads is not None:
            torch.set_num_threads(threads)
        return cls(model, tokenizer, source=str(model_dir), max_batch_tokens=max_batch_tokens, batch_size=batch_size)

    def classify(self, texts: Sequence[str]) -> ClassifiedTexts:
        """Probabilities for ``texts``: tokenise once, length-sorted chunks within the token budget
        (:func:`token_budget_chunks`), encoder, head."""
        from qubert.embeddings import encoding_pass
        from qubert.inference import head_probabilities

        texts = list(texts)
        if not texts:
            return ClassifiedTexts(torch.zeros(0, len(self.labels)), [])
        encodings, truncated = self._tokenize(texts)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encodings]
        lengths = [len(row) for row in encodings["input_ids"]]
        probabilities = torch.empty(len(texts), len(self.labels))
        with encoding_pass(self.model, len(texts), progress=False, description="Classifying"):
            for idx in token_budget_chunks(lengths, max_tokens=self.max_batch_tokens, max_rows=self.batch_size):
                batch = self.tokenizer.pad({k: [encodings[k][i] for i in idx] for k in keys}, return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                features = self.model.encode(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))
                probabilities[torch.tensor(idx)] = head_probabilities(self.model, features)
        return ClassifiedTexts(probabilities, truncated)

    def _tokenize(self, texts: list[str]):
        """Token ids cut at ``max_length`` as in training, and which texts were cut, in one
        tokenizer call for the usual case: with one token of room, a text that fits is tokenised
        exactly as at ``max_length``; only the ones that do not are tokenised again at the limit."""
        encodings = self.tokenizer(texts, truncation=True, max_length=self.max_length + 1)
        truncated = [len(row) > self.max_length for row in encodings["input_ids"]]
        cut = [i for i, flag in enumerate(truncated) if flag]
        if cut:
            again = self.tokenizer([texts[i] for i in cut], truncation=True, max_length=self.max_length)
            for key in again.keys():
                for j, i in enumerate(cut):
                    encodings[key][i] = again[key][j]
        return encodings, truncated

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
            "threads": torch.get_num_threads(),
            "max_batch_tokens": self.max_batch_tokens,
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
