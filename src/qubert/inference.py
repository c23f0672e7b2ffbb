"""Saved models: load one (:func:`load_model`), turn features into class probabilities
(:func:`head_probabilities`) and texts into predictions (:func:`predict_texts`).

This is the one prediction path: ``qubert predict`` (:func:`predict_texts`), the server
(:class:`qubert.serving.TextClassifier`) and the scikit-learn estimator
(:class:`qubert.sklearn.QubertClassifier`) all load with :func:`load_model` and score with
:func:`head_probabilities`; they differ only in how texts become pooled features (one encoder pass,
token-budget chunks, the embedding cache).

Example:
    >>> from qubert.inference import predict_texts
    >>> names, labels, probs = predict_texts("runs/sms_spam-quantum-frozen-s42", ["WIN a prize!"])  # doctest: +SKIP
    >>> labels  # doctest: +SKIP
    ['spam']
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch

from qubert.training.checks import check_no_pickles, first_line


def load_model(model_dir: str | os.PathLike[str], device: str | None = None):
    """A saved qubert model and its tokenizer: ``(model, tokenizer)``, model in eval mode.

    ``model_dir`` is a ``model/`` folder or a run directory holding one; ``device`` defaults to
    CUDA when available.
    """
    from transformers import AutoTokenizer

    from qubert.modeling import ModelConfigError, QubertForSequenceClassification, quiet_transformers

    path = Path(model_dir).expanduser()
    if (path / "model" / "config.json").is_file():
        path = path / "model"
    if not (path / "config.json").is_file():
        raise ModelConfigError(f"{model_dir} is not a saved qubert model (no config.json); pass a run directory or its model/ folder")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelConfigError(f"cannot read {path / 'config.json'}: {err}") from None
    if config.get("model_type") != "qubert":
        raise ModelConfigError(f"{path} holds a {config.get('model_type')!r} model, not a qubert model")
    check_no_pickles(path)
    try:
        check_weights(path)
        with quiet_transformers():
            model = QubertForSequenceClassification.from_pretrained(str(path))
            tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception as err:  # SafetensorError, size mismatches, bad config values, missing files, ...
        raise ModelConfigError(f"not a loadable qubert model: {path}: {first_line(err)}") from None
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.eval()
    return model, tokenizer


def check_weights(path: Path) -> None:
    """Compare the tensors in ``model.safetensors`` (or its shards) with the shapes ``config.json`` implies.

    A truncated file fails here at its header; a head changed in ``config.json`` (e.g. ``n_qubits``)
    is a shape mismatch; a missing tensor would otherwise be initialised at random without a word.
    """
    from safetensors import safe_open

    from qubert.modeling import QubertConfig, QubertForSequenceClassification, quiet_transformers

    index = path / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    elif (path / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError("no model.safetensors")
    found: dict[str, list[int]] = {}
    for name in files:
        with safe_open(str(path / name), framework="pt") as fh:
            found.update({key: list(fh.get_slice(key).get_shape()) for key in fh.keys()})  # noqa: SIM118
    with torch.device("meta"), quiet_transformers():  # shapes only: nothing is allocated
        expected = {k: list(v.shape) for k, v in QubertForSequenceClassification(QubertConfig.from_pretrained(str(path))).state_dict().items()}
    missing = [k for k in expected if k not in found]
    if missing:
        raise ValueError(f"model.safetensors lacks {len(missing)} tensor(s) the config needs, e.g. {missing[0]}")
    for key, shape in expected.items():
        if found[key] != shape:
            raise ValueError(f"{key} has shape {found[key]} in model.safetensors but config.json implies {shape}")


def head_probabilities(model, features: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Class probabilities ``(N, n_classes)`` (float32, on the CPU) of pooled ``features`` under
    the model's head, in batches of ``batch_size`` rows without autograd."""
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            logits = model(features=features[start : start + batch_size].to(device)).logits
            out.append(torch.softmax(logits.float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.num_labels)


def predict_texts(model_dir: str | os.PathLike[str], texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> tuple[list[str], list[str], torch.Tensor]:
    """Predicted label names and class probabilities for raw texts.

    Returns:
        ``(class_names, predicted_labels, probabilities (N, n_classes))``.

    Example:
        >>> names, labels, probs = predict_texts("runs/sms_spam-quantum-frozen-s42", ["WIN a prize!"])  # doctest: +SKIP
        >>> labels  # doctest: +SKIP
        ['spam']
    """
    from qubert.embeddings import encode_texts

    model, tokenizer = load_model(model_dir)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    features = encode_texts(model, tokenizer, texts, batch_size=batch_size, progress=progress, description="Encoding")
    probabilities = head_probabilities(model, features)
    return names, [names[i] for i in probabilities.argmax(-1).tolist()], probabilities
