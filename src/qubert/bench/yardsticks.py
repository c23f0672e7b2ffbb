"""Classical yardsticks that need no training loop: scikit-learn logistic regression on the same
frozen-encoder features the heads see (read from, or written to, the embedding cache).

A yardstick run writes a run directory like :func:`qubert.training.run_training` does
(``metrics.json`` with the same flat keys, ``config.yaml``), so the bench collects, compares and
reports it like any head. In every mode it uses the *frozen* encoder's features: it says what a
five-line baseline gets from the encoder as shipped, next to heads that fine-tune it.

Example:
    >>> from qubert.bench.yardsticks import run_logistic_regression
    >>> metrics = run_logistic_regression(TrainingConfig(dataset="sms_spam", head="linear"), C=1.0)  # doctest: +SKIP
    >>> metrics["test_macro_f1"]  # doctest: +SKIP
    0.97
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

__all__ = ["run_logistic_regression"]


def run_logistic_regression(config: Any, *, C: float = 1.0) -> dict[str, Any]:
    """Fit ``sklearn.linear_model.LogisticRegression(C=C)`` on frozen pooled features; score validation and test.

    Args:
        config: a :class:`qubert.training.TrainingConfig`: data, encoder, pooling, max_length,
            precision, seed and output_dir are used; the head and optimiser options are not.
        C: inverse regularisation strength.

    Returns:
        Flat metrics as in ``metrics.json``: ``eval_macro_f1``, ``test_macro_f1``, ``test_accuracy``, ...,
        ``train_runtime``, ``encode_runtime``, ``trainable_params`` and split sizes.
    """
    import dataclasses

    import numpy as np
    import yaml
    from sklearn.linear_model import LogisticRegression

    from qubert.embeddings import EmbeddingCache, cached_features
    from qubert.modeling import QubertForSequenceClassification, encoder_identity, load_tokenizer
    from qubert.files import write_json, write_text
    from qubert.training import classification_metrics
    from qubert.training.datasets import load_bundle

    frozen = dataclasses.replace(config, mode="frozen", head="linear")
    bundle = load_bundle(frozen)
    model = QubertForSequenceClassification.from_encoder(
        frozen.model, head={"type": "linear"}, id2label=bundle.id2label, pooling=frozen.pooling, mode="frozen",
        max_length=frozen.max_length, seed=frozen.seed, precision=frozen.resolved_precision,
    )
    tokenizer = load_tokenizer(frozen.model)
    cache, encoder_id = EmbeddingCache(frozen.cache_dir), encoder_identity(model.encoder)
    start = time.perf_counter()
    features = {}
    for split in ("train", "validation", "test"):
        features[split], _ = cached_features(model, tokenizer, bundle.split(split).texts, fingerprint=bundle.fingerprint(split),
                                             split=split, cache=cache, encoder_id=encoder_id, progress=frozen.progress)
    encode_runtime = time.perf_counter() - start
    start = time.perf_counter()
    classifier = LogisticRegression(C=C, max_iter=5000, random_state=frozen.seed)
    classifier.fit(features["train"].numpy(), np.asarray(bundle.train.labels))
    train_runtime = time.perf_counter() - start
    metrics: dict[str, Any] = {"train_runtime": round(train_runtime, 4), "encode_runtime": round(encode_runtime, 4)}
    for split, prefix in (("validation", "eval"), ("test", "test")):
        predicted = classifier.predict(features[split].numpy())
        metrics.update({f"{prefix}_{k}": v for k, v in classification_metrics(bundle.split(split).labels, predicted).items()})
    metrics.update({
        "trainable_params": int(classifier.coef_.size + classifier.intercept_.size), "encoder_trainable_params": 0,
        "train_samples": len(bundle.train), "eval_samples": len(bundle.validation), "test_samples": len(bundle.test),
        "stopped_by": "converged" if int(np.max(classifier.n_iter_)) < 5000 else "epoch_cap",
    })
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", yaml.safe_dump({**config.to_dict(), "yardstick": "logreg", "C": float(C)}, sort_keys=False))
    write_json(run_dir / "metrics.json", metrics)
    return metrics
