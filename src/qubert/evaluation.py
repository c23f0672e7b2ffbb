"""Scoring a saved model: :func:`evaluate_model` on a data set split or a labelled file, exactly,
with finite shots, with a noise model, or as on an IBM device (``backend``).

Example:
    >>> from qubert.evaluation import evaluate_model
    >>> metrics = evaluate_model("runs/sms_spam-quantum-frozen-s42", shots=1024)  # doctest: +SKIP
    >>> metrics["execution"]  # doctest: +SKIP
    '1024 shots'
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from qubert.inference import head_probabilities, load_model
from qubert.runtimes import use_runtime
from qubert.training.config import TrainingConfig
from qubert.training.datasets import load_bundle
from qubert.training.errors import TrainingConfigError
from qubert.training.metrics import classification_metrics, confusion_matrix


def configure_execution(model, shots: int | None, noise: Any, seed: int | None) -> None:
    """Finite shots / a noise model for a quantum head (the head parses and checks ``noise``)."""
    if shots is None and not noise:
        return
    from qubert.heads import QuantumHead

    if not isinstance(model.head, QuantumHead):
        raise TrainingConfigError(f"--shots and --noise need a quantum head; this model has a {model.head.head_type} head")
    if shots is not None and shots < 1:
        raise TrainingConfigError(f"shots must be a positive integer, got {shots}")
    if not hasattr(model.head, "set_execution"):
        raise TrainingConfigError("this version of QuantumHead cannot simulate shots or noise (no set_execution)")
    model.head.set_execution(shots=shots, noise=noise, seed=seed)


def text_features(model, tokenizer, texts: Sequence[str], *, batch_size: int, progress: bool, cache_dir: str | None, fingerprint: str | None, split: str) -> torch.Tensor:
    """Pooled features of ``texts``: from the embedding cache for a frozen encoder, else encoded."""
    from qubert.embeddings import EmbeddingCache, cached_features, encode_texts

    if model.encoder_frozen and fingerprint is not None:
        feats, _ = cached_features(model, tokenizer, texts, fingerprint=fingerprint, split=split, cache=EmbeddingCache(cache_dir), batch_size=batch_size, progress=progress)
        return feats
    return encode_texts(model, tokenizer, texts, batch_size=batch_size, progress=progress, description=f"Encoding {split}")


def deprecated_backend_keyword(backend: Any, device: Any, where: str) -> Any:
    """``backend``, or the old ``device=`` keyword for quantum hardware with a DeprecationWarning."""
    if device is None:
        return backend
    import warnings

    if backend is not None:
        raise TypeError(f"{where}: give backend=, not both backend= and its deprecated name device=")
    warnings.warn(f"{where}(device=...) is deprecated: the quantum backend is now backend=... (device means the torch device)", DeprecationWarning, stacklevel=3)
    return device


# Long: the signature and docstring are most of it (every way of scoring a run); the steps are helpers.
def evaluate_model(
    model_dir: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    test_file: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    max_eval_samples: int | None = None,
    batch_size: int = 64,
    shots: int | None = None,
    noise: Any = None,
    seed: int = 42,
    cache_dir: str | None = None,
    progress: bool = True,
    backend: Any = None,
    optimization_level: int = 1,
    device: Any = None,
    mitigation: str | None = None,
    zne_factors: str | None = None,
    max_qpu_seconds: float | None = None,
    dry_run: bool = False,
    runtime: str = "torch",
) -> dict[str, Any]:
    """Metrics of a saved model on a data set split or a labelled file.

    Args:
        model_dir: a run directory or its ``model/`` folder.
        dataset, data_dir, split: a data set (as for training) and the split to score.
        test_file, text_column, label_column: a labelled file instead (labels: the model's class
            names or integer ids).
        max_eval_samples: score a stratified subset.
        shots, noise, seed: quantum head only: finite-shot sampling and a noise model such as
            ``"depolarizing:0.01,readout:0.02"``.
        cache_dir: embedding cache (frozen-mode models reuse their training features).
        backend, optimization_level: quantum head only: run the circuit as on an IBM quantum
            backend (``"fake_manila"``, ``"ibm_kyiv"``; needs ``qubert[devices]``), transpiled at
            this level, on Aer with the device's noise model (``shots`` per sample, default 1024).
        device: deprecated name of ``backend`` (``device`` means the torch device elsewhere).
        mitigation, zne_factors, max_qpu_seconds, dry_run: with ``backend`` only (see
            :mod:`qubert.quantum.mitigation` and :mod:`qubert.quantum.qpu_budget`): error mitigation
            (``none``, ``readout``, ``zne``, ``twirling``, ``all``) and ZNE noise factors (``"1,3,5"``);
            refuse a job whose estimated QPU seconds exceed the budget; or only return the job plan
            (``dry_run``, ``dry_run_text``) without running anything.
        runtime: the encoder's runtime (``torch``, ``onnx``, ``openvino``, ``name:precision``; see
            :mod:`qubert.runtimes`); its features are cached apart from torch's. A quantized one
            (``onnx:int8``) is never used silently: the split is scored in PyTorch too and
            ``reference_macro_f1`` / ``runtime_macro_f1_change`` say what quantization cost.

    Returns:
        Flat metrics prefixed by the split (``test_macro_f1``, ...), ``<split>_runtime``,
        ``<split>_samples`` and ``confusion_matrix`` (a nested list). With ``backend`` the split's
        metrics are the device's, and ``exact_macro_f1``, ``shots_macro_f1``, ``device`` (the
        transpilation facts) and ``device_seconds_per_1000`` are added; with ``shots`` or
        ``noise``, ``exact_macro_f1`` (the same features through the exact simulation).
    """
    backend = deprecated_backend_keyword(backend, device, "evaluate_model")
    backend_run = backend_run_options(backend, mitigation, zne_factors, max_qpu_seconds, dry_run, shots)
    model, tokenizer = load_model(model_dir)
    use_runtime(model, runtime, cache_dir=cache_dir, progress=progress)
    transpiled = check_backend(model, backend, noise, optimization_level) if backend is not None else None
    configure_execution(model, shots, noise, seed)
    n_classes = model.config.num_labels
    texts, labels, fingerprint, split, evaluated_on = scored_rows(
        model, model_dir, dataset=dataset, data_dir=data_dir, split=split, test_file=test_file, text_column=text_column,
        label_column=label_column, max_eval_samples=max_eval_samples, seed=seed,
    )
    if transpiled is not None:  # the job's plan and budget before any text is encoded
        plan = backend_run.plan(transpiled, len(texts), seed=seed)
        if dry_run:
            return {"dry_run": plan.to_dict(), "dry_run_text": backend_run.format(plan), "evaluated_on": evaluated_on}
    start = time.perf_counter()
    features = text_features(model, tokenizer, texts, batch_size=batch_size, progress=progress, cache_dir=cache_dir, fingerprint=fingerprint, split=split)
    if transpiled is not None:
        return evaluate_on_backend(
            model, features, labels, transpiled, backend, shots=shots, seed=seed, split=split, evaluated_on=evaluated_on, progress=progress,
            mitigation=backend_run.mitigation,
        )
    predicted = head_probabilities(model, features).argmax(-1).tolist()
    elapsed = time.perf_counter() - start
    metrics: dict[str, Any] = {f"{split}_{k}": v for k, v in classification_metrics(labels, predicted).items()}
    metrics.update({f"{split}_runtime": round(elapsed, 4), f"{split}_samples": len(texts), "confusion_matrix": confusion_matrix(labels, predicted, n_classes)})
    metrics["evaluated_on"] = evaluated_on
    if model.head.head_type == "quantum":
        metrics["execution"] = execution_summary(shots, noise)
    if shots is not None or noise:  # the exact score beside the sampled / noisy one, as with a backend
        model.head.set_execution(shots=None, noise=None, seed=seed)
        exact = head_probabilities(model, features).argmax(-1).tolist()
        metrics["exact_macro_f1"] = classification_metrics(labels, exact)["macro_f1"]
    runtime_in_use = getattr(model, "inference_runtime", None)
    if runtime_in_use is not None and runtime_in_use.precision == "int8":  # quantized features: say what they cost
        model.inference_runtime = None
        reference_features = text_features(model, tokenizer, texts, batch_size=batch_size, progress=progress, cache_dir=cache_dir, fingerprint=fingerprint, split=split)
        reference = classification_metrics(labels, head_probabilities(model, reference_features).argmax(-1).tolist())["macro_f1"]
        model.inference_runtime = runtime_in_use
        metrics["reference_macro_f1"] = reference
        metrics["runtime_macro_f1_change"] = metrics[f"{split}_macro_f1"] - reference
        metrics["runtime"] = runtime_in_use.tag
    return metrics


def scored_rows(
    model: Any, model_dir: str | os.PathLike[str], *, dataset: str | None, data_dir: str | None, split: str, test_file: str | None,
    text_column: str, label_column: str, max_eval_samples: int | None, seed: int,
) -> tuple[list[str], list[int], str, str, str]:
    """The rows :func:`evaluate_model` scores: ``(texts, labels, fingerprint, split, evaluated_on)``
    from a labelled file, a data set split, or the run's own data (its ``config.yaml``)."""
    from qubert.data import DataError, TextDataset, load_dataset_bundle, read_table

    label2id = {str(k): int(v) for k, v in (model.config.label2id or {}).items()}
    n_classes = model.config.num_labels
    if split not in ("train", "validation", "test"):
        raise DataError(f"unknown split {split!r}; expected train, validation or test")
    if test_file is not None:
        texts, raw = read_table(test_file, text_column=text_column, label_column=label_column)
        labels = [label_id(v, label2id, n_classes, test_file, row) for row, v in enumerate(raw, start=2)]
        split = "test"
        fingerprint = TextDataset(texts, labels).fingerprint()  # frozen models reuse the features
        evaluated_on = str(test_file)
    else:
        if dataset is not None:
            bundle = load_dataset_bundle(dataset, data_dir=data_dir, max_eval_samples=max_eval_samples, seed=seed, text_column=text_column, label_column=label_column)
        else:
            bundle = run_bundle(model_dir, max_eval_samples=max_eval_samples)
        model_labels = [model.config.id2label[i] for i in range(n_classes)]
        if bundle.label_names != model_labels:
            raise DataError(f"data set {bundle.name!r} has labels {bundle.label_names}, the model predicts {model_labels}")
        data = bundle.split(split)
        texts, labels, fingerprint = data.texts, data.labels, bundle.fingerprint(split)
        evaluated_on = f"{bundle.name} ({split} split)" + ("" if dataset is not None else ", the run's own data")
    return texts, labels, fingerprint, split, evaluated_on


def check_backend(model, backend: Any, noise: Any, optimization_level: int):
    """The head transpiled for ``backend``, before any text is encoded (so bad requests fail fast)."""
    from qubert.heads import QuantumHead
    from qubert.quantum import devices

    if not isinstance(model.head, QuantumHead):
        raise TrainingConfigError(f"--device needs a quantum head; this model has a '{model.head.head_type}' head")
    if noise:
        raise TrainingConfigError("give either --noise or --device (the device's calibration is the noise model), not both")
    return devices.transpile_head(model.head.circuit, backend, optimization_level=optimization_level)


def backend_run_options(backend: Any, mitigation: str | None, zne_factors: str | None, max_qpu_seconds: float | None, dry_run: bool, shots: int | None):
    """Mitigation, QPU budget and dry run (:class:`qubert.quantum.qpu_budget.DeviceRunOptions`), checked before the model loads."""
    from qubert.quantum.qpu_budget import DeviceRunOptions

    return DeviceRunOptions.from_cli(backend, mitigation=mitigation, zne_factors=zne_factors, max_qpu_seconds=max_qpu_seconds, dry_run=dry_run, shots=shots)


def evaluate_on_backend(
    model, features: torch.Tensor, labels, transpiled, backend: Any, *, shots: int | None, seed: int, split: str, evaluated_on: str, progress: bool,
    mitigation: Any = None,
) -> dict[str, Any]:
    """Device metrics next to the exact and shot-only ones, from the same features and the same shots.

    With ``mitigation`` (a :class:`~qubert.quantum.mitigation.Mitigation`), or on IBM hardware, the
    whole split is one parameter sweep per circuit (:func:`qubert.quantum.mitigation.mitigated_logits`).
    """
    from qubert.embeddings import encoding_pass
    from qubert.quantum import devices

    head = model.head
    shots = shots or devices.DEFAULT_DEVICE_SHOTS
    scores: dict[str, list[int]] = {}
    head.set_execution(shots=None, noise=None, backend=None)
    scores["exact"] = head_probabilities(model, features).argmax(-1).tolist()
    head.set_execution(shots=shots, seed=seed)
    scores["shots"] = head_probabilities(model, features).argmax(-1).tolist()
    head.set_execution(backend=backend, optimization_level=transpiled.optimization_level, seed=seed)
    start, predicted = time.perf_counter(), []
    if mitigation is not None or transpiled.runtime:
        from qubert.quantum.mitigation import Mitigation, mitigated_logits

        mitigation = mitigation or Mitigation()
        head.set_execution(backend=None)
        logits, _ = mitigated_logits(head, features.to(next(model.parameters()).device), transpiled, mitigation, shots=shots, seed=seed)
        predicted = logits.argmax(-1).tolist()
    else:
        batch = 256  # one Aer call per batch: a progress bar that moves, and bounded memory for the counts
        with encoding_pass(model, len(features), progress=progress, description=f"On {transpiled.device}") as advance:
            for offset in range(0, len(features), batch):
                logits = model(features=features[offset : offset + batch].to(next(model.parameters()).device)).logits
                predicted += logits.argmax(-1).tolist()
                advance(min(batch, len(features) - offset))
    runtime = time.perf_counter() - start
    n_classes = model.config.num_labels
    metrics: dict[str, Any] = {f"{split}_{k}": v for k, v in classification_metrics(labels, predicted).items()}
    metrics["exact_macro_f1"] = classification_metrics(labels, scores["exact"])["macro_f1"]
    metrics["shots_macro_f1"] = classification_metrics(labels, scores["shots"])["macro_f1"]
    metrics.update({
        f"{split}_runtime": round(runtime, 4), f"{split}_samples": len(labels),
        "device_seconds_per_1000": round(1000 * runtime / max(len(labels), 1), 3),
        "confusion_matrix": confusion_matrix(labels, predicted, n_classes), "evaluated_on": evaluated_on,
        "device": transpiled.summary(),
        "execution": f"{transpiled.device}, {shots} shots, " + ("through qiskit-ibm-runtime" if transpiled.runtime else "on Aer with its calibrated noise model"),
    })
    if mitigation is not None:
        metrics["mitigation"] = mitigation.describe()
    return metrics


def execution_summary(shots: int | None, noise: Any) -> str:
    """How the circuit ran, in words: ``exact simulation`` or ``1000 shots, noise depolarizing:0.01``."""
    parts = [f"{shots} shots" if shots is not None else "exact expectation values"]
    if noise:
        parts.append(f"noise {noise}")
    return ", ".join(parts) if shots is not None or noise else "exact simulation"


def run_bundle(model_dir: str | os.PathLike[str], *, max_eval_samples: int | None):
    """The data set a run was trained on, split as in training (from the run's ``config.yaml``)."""
    import yaml

    from qubert.data import DataError

    path = Path(model_dir).expanduser()
    config_file = next((d / "config.yaml" for d in (path, path.parent) if (d / "config.yaml").is_file()), None)
    if config_file is None:
        raise DataError(f"nothing to evaluate on: {model_dir} has no run config.yaml; pass --dataset or --test-file")
    try:
        saved = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        config = TrainingConfig.from_dict({k: v for k, v in saved.items() if k in TrainingConfig.field_names()})
    except (OSError, yaml.YAMLError, TypeError, ValueError) as err:
        raise DataError(f"cannot read the run's data set from {config_file}: {err}; pass --dataset or --test-file") from None
    if max_eval_samples is not None:
        config.max_eval_samples = max_eval_samples
    return load_bundle(config)


def label_id(value: Any, label2id: dict[str, int], n_classes: int, path: Any, row: int) -> int:
    """A labelled file's label (class name or id) as the model's class id; an error naming the row otherwise."""
    from qubert.data import DataError

    text = str(value).strip()
    if text in label2id:
        return label2id[text]
    try:
        as_int = int(float(text))
    except ValueError:
        as_int = None
    if as_int is not None and 0 <= as_int < n_classes and float(text) == as_int:
        return as_int
    raise DataError(f"{path}: row {row}: label {text!r} is not one of the model's classes ({', '.join(label2id)}) or ids 0..{n_classes - 1}")
