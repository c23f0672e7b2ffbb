"""The data of a run: its :class:`~qubert.data.DatasetBundle` (:func:`load_bundle`) and the
Trainer's datasets per training mode (:func:`prepare_datasets`).

- ``frozen``: :class:`FeatureDataset`, pooled features from the :mod:`qubert.embeddings` cache
  (the encoder never runs during training);
- ``top<k>`` with ``cache_bottom``: :class:`qubert.layer_cache.HiddenStateDataset`, the fixed
  bottom layers' outputs computed once per split (in ``config.runtime``: only the bottom graph is
  exported, :func:`qubert.runtimes.use_bottom_runtime`, never the training top layers);
- ``full`` / ``top<k>``: :class:`TokenDataset`, tokenised texts padded per batch.

Validation and test are read longest row first (:class:`LengthSorted`) outside frozen mode.

Example:
    >>> import torch
    >>> data = FeatureDataset(torch.zeros(3, 4), [0, 1, 0])
    >>> len(data), data[1]["labels"].item()
    (3, 1)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from qubert.training.config import TrainingConfig


class FeatureDataset(torch.utils.data.Dataset):
    """Cached pooled features + labels (frozen mode)."""

    def __init__(self, features: torch.Tensor, labels: Sequence[int]) -> None:
        self.features = features
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"features": self.features[i], "labels": self.labels[i]}


class TokenDataset(torch.utils.data.Dataset):
    """Tokenised texts + labels (full / top<k> modes); padded per batch by the collator.

    ``lengths`` (tokens per row) feed length-grouped training batches.
    """

    def __init__(self, tokenizer, texts: Sequence[str], labels: Sequence[int], max_length: int) -> None:
        self.encodings = tokenizer(list(texts), truncation=True, max_length=max_length)
        self.keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in self.encodings]
        self.labels = list(labels)
        self.lengths = [len(ids) for ids in self.encodings["input_ids"]]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**{k: self.encodings[k][i] for k in self.keys}, "labels": self.labels[i]}


class LengthSorted(torch.utils.data.Dataset):
    """An evaluation dataset read longest row first (batches padded to similar lengths);
    :meth:`in_input_order` puts predictions back in the dataset's own order."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset
        self.order = sorted(range(len(dataset)), key=lambda i: dataset.lengths[i], reverse=True)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.dataset[self.order[i]]

    def in_input_order(self, rows: Any) -> Any:
        restored = rows.copy() if hasattr(rows, "copy") else rows.clone()
        restored[self.order] = rows
        return restored


def load_bundle(config: TrainingConfig, data: Any = None):
    """The run's :class:`~qubert.data.DatasetBundle`: from ``data`` in memory when given (see
    :func:`qubert.data.bundle_from_memory`; ``config.dataset`` then names it), else from the
    config's data set or files."""
    from qubert.data import bundle_from_memory, load_dataset_bundle

    seed = config.seed if config.data_seed is None else config.data_seed
    if data is not None:
        return bundle_from_memory(
            data, name=str(config.dataset) if config.dataset is not None else "memory",
            text_column=config.text_column, label_column=config.label_column, seed=seed,
            drop_empty=config.drop_empty, max_train_samples=config.max_train_samples, max_eval_samples=config.max_eval_samples,
        )
    return load_dataset_bundle(
        config.dataset, data_dir=config.data_dir, train_file=config.train_file, validation_file=config.validation_file,
        test_file=config.test_file, text_column=config.text_column, label_column=config.label_column,
        max_train_samples=config.max_train_samples, max_eval_samples=config.max_eval_samples,
        seed=seed, drop_empty=config.drop_empty,
    )


@dataclass
class TrainerData:
    """What the Trainer trains and scores on: ``datasets`` per split, the batch ``collator``
    (None: default) and ``encode_runtime`` (seconds spent computing cached features or bottom-layer
    states; None when nothing is computed ahead)."""

    datasets: dict[str, Any]
    collator: Callable[..., Any] | None
    encode_runtime: float | None


def prepare_datasets(config: TrainingConfig, bundle: Any, model: Any, tokenizer: Any, encoder_id: str | None = None) -> TrainerData:
    """The Trainer's datasets for ``config.mode`` (see the module docstring).

    Features and bottom-layer states are computed ahead once per split (or read from the cache),
    with the model moved to the GPU when there is one.
    """
    from qubert.modeling import encoder_identity

    start = time.perf_counter()
    cached_bottom = bool(config.cache_bottom and model.trainable_layers)
    if config.frozen or cached_bottom:
        model.to("cuda" if torch.cuda.is_available() else "cpu")
        encoder_id = encoder_id or encoder_identity(model.encoder)
    if config.frozen and config.runtime != "torch":  # the feature pass in ONNX Runtime / OpenVINO (qubert.runtimes)
        from qubert.runtimes import use_runtime

        use_runtime(model, config.runtime, cache_dir=config.cache_dir, encoder_id=encoder_id, progress=config.progress)
    bottom_runtime = cached_bottom and config.runtime != "torch"
    if bottom_runtime:  # the bottom layers in ONNX Runtime / OpenVINO; the top layers train in PyTorch
        from qubert.runtimes import use_bottom_runtime

        use_bottom_runtime(model, config.runtime, cache_dir=config.cache_dir, encoder_id=encoder_id, progress=config.progress)
    try:
        datasets, collator = _split_datasets(config, bundle, model, tokenizer, encoder_id, cached_bottom)
    finally:
        if bottom_runtime:
            model.bottom_runtime = None  # every state is computed: free the compiled graph for training
    encode_runtime = time.perf_counter() - start
    if not config.frozen:
        for split in ("validation", "test"):
            datasets[split] = LengthSorted(datasets[split])
    return TrainerData(datasets, collator, round(encode_runtime, 4) if config.frozen or cached_bottom else None)


def _split_datasets(config: TrainingConfig, bundle: Any, model: Any, tokenizer: Any, encoder_id: str | None, cached_bottom: bool):
    """``(datasets per split, collator)`` for :func:`prepare_datasets`."""
    datasets: dict[str, Any] = {}
    collator = None
    for split in ("train", "validation", "test"):
        data = bundle.split(split)
        if config.frozen:
            from qubert.embeddings import EmbeddingCache, cached_features

            feats, _ = cached_features(
                model, tokenizer, data.texts, fingerprint=bundle.fingerprint(split), split=split,
                cache=EmbeddingCache(config.cache_dir), encoder_id=encoder_id, progress=config.progress,
            )
            datasets[split] = FeatureDataset(feats, data.labels)
        elif cached_bottom:
            from qubert.layer_cache import HiddenStateDataset, cached_hidden_states, collate_hidden_states

            states, _ = cached_hidden_states(
                model, tokenizer, data.texts, fingerprint=bundle.fingerprint(split), split=split, cache_dir=config.cache_dir,
                encoder_id=encoder_id, progress=config.progress,
            )
            datasets[split], collator = HiddenStateDataset(states, data.labels), collate_hidden_states
        else:
            from transformers import DataCollatorWithPadding

            datasets[split], collator = TokenDataset(tokenizer, data.texts, data.labels, config.max_length), DataCollatorWithPadding(tokenizer)
    return datasets, collator
