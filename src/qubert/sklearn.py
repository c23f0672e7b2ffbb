"""A scikit-learn classifier over raw texts: :class:`QubertClassifier`.

``fit(texts, y)`` trains a qubert model with :func:`qubert.training.run_training` (the same
Trainer, early stopping on validation macro-F1 and embedding cache as ``qubert train``) and keeps
the best model in memory; ``predict`` / ``predict_proba`` / ``score`` take raw texts. The
constructor arguments are the :class:`~qubert.training.TrainingConfig` options that make sense for
an estimator, so ``clone``, ``GridSearchCV``, ``cross_val_score`` and ``Pipeline`` work as with any
scikit-learn classifier.

In ``frozen`` mode the pooled features of every text list (training folds, validation and the
texts passed to ``predict``) are cached on disk under ``cache_dir``: a grid search over head
settings encodes each fold once, whatever the size of the grid.

Importing this module imports scikit-learn (``import qubert`` does not).

Example:
    >>> from qubert.sklearn import QubertClassifier
    >>> QubertClassifier(head="mlp", hidden_sizes=(32,)).get_params()["hidden_sizes"]
    (32,)
    >>> from sklearn.model_selection import GridSearchCV  # doctest: +SKIP
    >>> search = GridSearchCV(QubertClassifier(mode="frozen"), {"head": ["linear", "quantum"], "qubits": [4, 8]}, cv=3)  # doctest: +SKIP
    >>> search.fit(texts, labels).best_params_  # doctest: +SKIP
    {'head': 'quantum', 'qubits': 8}
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

__all__ = ["QubertClassifier"]

ESTIMATOR_FILE = "qubert_sklearn.json"  # beside config.json: the estimator's parameters and classes_
_DATA_SALT = 7  # seeds the validation carve apart from qubert.data's own salts


class QubertClassifier(ClassifierMixin, BaseEstimator):
    """A qubert text classifier (encoder + linear, MLP or quantum head) as a scikit-learn estimator.

    ``X`` is a sequence of raw texts (a list, a 1-D array or a pandas Series of ``str``; a single
    column of a 2-D array also works); ``y`` any class labels scikit-learn accepts (``classes_``
    holds them sorted, and ``predict`` returns them). ``fit`` holds out a stratified
    ``validation_fraction`` of its rows for early stopping and for choosing the best epoch.

    Every parameter but ``validation_fraction`` has the meaning of the
    :class:`~qubert.training.TrainingConfig` field of the same name (and of the ``qubert train``
    option); the defaults are the same. They are checked in ``fit`` (scikit-learn convention), so a
    bad value raises :class:`~qubert.training.TrainingConfigError` (a ``ValueError``) there.

    Fitted attributes:
        classes_: the class labels, sorted (``numpy.unique(y)``).
        model_: the trained :class:`~qubert.modeling.QubertForSequenceClassification` (eval mode).
        tokenizer_: its tokenizer.
        training_metrics_: validation metrics and training statistics of the fit
            (``eval_macro_f1``, ``best_epoch``, ``stopped_by``, ``train_runtime``, ...).

    Not covered by ``sklearn.utils.estimator_checks.check_estimator``: those checks feed numeric
    2-D arrays, and this estimator's input is text (``input_tags.string``; no ``n_features_in_``).
    The tests check ``clone``, ``get_params`` / ``set_params``, ``GridSearchCV``,
    ``cross_val_score`` and ``Pipeline`` directly.

    ``save(folder)`` writes the Hugging Face model format (``config.json``, ``model.safetensors``,
    the tokenizer, no pickle) plus ``qubert_sklearn.json``; :meth:`load` reads it back, and the
    folder also loads with ``qubert predict`` and ``transformers.pipeline``.

    Example:
        >>> clf = QubertClassifier(head="quantum", qubits=4, layers=2)
        >>> clf.set_params(qubits=6).qubits
        6
        >>> clf.fit(["great film", "awful film", ...], ["pos", "neg", ...]).predict(["what a film"])  # doctest: +SKIP
        array(['pos'], dtype='<U3')
    """

    def __init__(
        self,
        *,
        model: str = "default",
        mode: str = "frozen",
        head: str = "quantum",
        pooling: str = "mean",
        max_length: int = 128,
        precision: str = "auto",
        qubits: int = 8,
        layers: int = 2,
        encoding: str = "h_ry",
        ansatz: str = "brickwork",
        entanglement: str = "default",
        rotation: str = "ry",
        measurement: str = "z",
        init: str = "normal",
        reupload: bool = False,
        scaling: str = "tanh_pi_2",
        freeze_circuit: bool = False,
        strategy: str = "auto",
        hidden_sizes: Sequence[int] | int = (256,),
        dropout: float = 0.0,
        learning_rate: float | None = None,
        encoder_learning_rate: float = 2e-5,
        num_epochs: float | None = None,
        batch_size: int | None = None,
        weight_decay: float = 0.0,
        lr_scheduler_type: str = "linear",
        early_stopping_patience: int | None = 5,
        max_steps: int = -1,
        cache_bottom: bool = True,
        group_by_length: bool = True,
        validation_fraction: float = 0.1,
        seed: int = 42,
        data_seed: int | None = None,
        cache_dir: str | None = None,
        progress: bool = False,
    ) -> None:
        self.model = model
        self.mode = mode
        self.head = head
        self.pooling = pooling
        self.max_length = max_length
        self.precision = precision
        self.qubits = qubits
        self.layers = layers
        self.encoding = encoding
        self.ansatz = ansatz
        self.entanglement = entanglement
        self.rotation = rotation
        self.measurement = measurement
        self.init = init
        self.reupload = reupload
        self.scaling = scaling
        self.freeze_circuit = freeze_circuit
        self.strategy = strategy
        self.hidden_sizes = hidden_sizes
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.encoder_learning_rate = encoder_learning_rate
        self.num_epochs = num_epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.lr_scheduler_type = lr_scheduler_type
        self.early_stopping_patience = early_stopping_patience
        self.max_steps = max_steps
        self.cache_bottom = cache_bottom
        self.group_by_length = group_by_length
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.data_seed = data_seed
        self.cache_dir = cache_dir
        self.progress = progress

    # ------------------------------------------------------------------ scikit-learn protocol
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    def fit(self, X: Any, y: Any) -> "QubertClassifier":
        """Train on texts ``X`` with labels ``y``; returns ``self``.

        Raises:
            ValueError: bad texts or labels (fewer than 2 classes, a class with a single row),
                or a bad parameter (:class:`~qubert.training.TrainingConfigError`).
        """
        from qubert.data import stratified_holdout
        from qubert.training import load_model, run_training

        texts = _as_texts(X)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(texts):
            raise ValueError(f"y must be 1-D with one label per text: {len(texts)} texts, y of shape {y.shape}")
        check_classification_targets(y)
        classes, ids = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"fit needs at least 2 classes, got only {classes.tolist()}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        counts = np.bincount(ids)
        if counts.min() < 2:
            raise ValueError(f"class {classes[counts.argmin()]!r} has a single row; every class needs 2 (one may go to the validation split)")
        ids = ids.tolist()
        data_seed = self.seed if self.data_seed is None else self.data_seed
        kept, held = stratified_holdout(ids, self.validation_fraction, data_seed, _DATA_SALT)

        train = ([texts[i] for i in kept], [ids[i] for i in kept])
        validation = ([texts[i] for i in held], [ids[i] for i in held])
        work = Path(tempfile.mkdtemp(prefix="qubert-sklearn-"))  # the run directory only: the data stays in memory
        try:
            # The splits go through the same checks and label encoding as `qubert train` data.
            config = self._training_config(work)
            metrics = run_training(config, data={"train": train, "validation": validation, "test": validation})
            model, tokenizer = load_model(metrics.run_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        # The run's test split is the validation split again: only its validation numbers count.
        self.training_metrics_ = {k: v for k, v in metrics.items() if not k.startswith("test_")}
        model.config.id2label = {i: str(c) for i, c in enumerate(classes)}
        model.config.label2id = {str(c): i for i, c in enumerate(classes)}
        self.model_, self.tokenizer_, self.classes_ = model, tokenizer, classes
        self._encoder_id = None
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n_texts, n_classes)``, columns in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        from qubert.inference import head_probabilities

        texts = _as_texts(X)
        features = self._features(texts)
        return head_probabilities(self.model_, features).numpy().astype(np.float64)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each text (values from ``classes_``)."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    # ------------------------------------------------------------------ save / load
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the fitted model to ``directory`` (replaced as a whole, atomically); returns it.

        The folder is a saved qubert model (``config.json``, ``model.safetensors``, tokenizer
        files; no pickle) plus ``qubert_sklearn.json`` (parameters and ``classes_``).
        """
        check_is_fitted(self, "model_")
        from qubert.modeling import quiet_transformers
        from qubert.files import replace_dir

        target = Path(directory).expanduser().resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self.get_params().items()}
        record = {"params": params, "classes": self.classes_.tolist(), "classes_dtype": self.classes_.dtype.str if self.classes_.dtype != object else "object", "training_metrics": self.training_metrics_}

        def build(folder: Path) -> None:
            self.model_.save_pretrained(folder)
            self.tokenizer_.save_pretrained(folder)
            (folder / ESTIMATOR_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")

        with quiet_transformers():
            replace_dir(build, target)
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> "QubertClassifier":
        """A fitted classifier from a folder written by :meth:`save` (safetensors only; a folder
        holding pickle files is refused)."""
        from qubert.modeling import ModelConfigError
        from qubert.training import load_model

        path = Path(directory).expanduser()
        record_file = path / ESTIMATOR_FILE
        if not record_file.is_file():
            raise ModelConfigError(f"{directory} was not written by QubertClassifier.save (no {ESTIMATOR_FILE})")
        record = json.loads(record_file.read_text(encoding="utf-8"))
        params = dict(record["params"])
        if isinstance(params.get("hidden_sizes"), list):
            params["hidden_sizes"] = tuple(params["hidden_sizes"])
        estimator = cls(**params)
        estimator.model_, estimator.tokenizer_ = load_model(path)
        estimator.classes_ = np.asarray(record["classes"], dtype=record["classes_dtype"])
        estimator.training_metrics_ = record.get("training_metrics", {})
        estimator._encoder_id = None
        return estimator

    # ------------------------------------------------------------------ helpers
    def _training_config(self, work: Path):
        from qubert.training import TrainingConfig

        params = self.get_params()
        params.pop("validation_fraction")
        hidden = params["hidden_sizes"]
        params["hidden_sizes"] = [hidden] if isinstance(hidden, int) else list(hidden)
        return TrainingConfig(dataset="sklearn", output_dir=str(work / "run"), **params)

    def _features(self, texts: list[str]):
        """Pooled features of ``texts``: from the embedding cache with a frozen encoder, else encoded."""
        from qubert import embeddings
        from qubert.data import TextDataset
        from qubert.modeling import encoder_identity

        model, batch = self.model_, self.batch_size or 64
        if not model.encoder_frozen:
            return embeddings.encode_texts(model, self.tokenizer_, texts, batch_size=batch, progress=self.progress)
        if getattr(self, "_encoder_id", None) is None:
            self._encoder_id = encoder_identity(model.encoder)  # hashing the weights: once per fitted model
        fingerprint = TextDataset(texts, [0] * len(texts)).fingerprint()
        features, _ = embeddings.cached_features(
            model, self.tokenizer_, texts, fingerprint=fingerprint, split="predict",
            cache=embeddings.EmbeddingCache(self.cache_dir), encoder_id=self._encoder_id, batch_size=batch, progress=self.progress,
        )
        return features


def _as_texts(X: Any) -> list[str]:
    """``X`` as a list of ``str``: a sequence, 1-D array or Series of texts, or one column of a 2-D array."""
    if isinstance(X, str):
        raise ValueError("X must be a sequence of texts, not a single string (wrap it in a list)")
    array = np.asarray(X, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"X must be a 1-D sequence of texts, got an array of shape {array.shape}")
    if len(array) == 0:
        raise ValueError("X holds no texts")
    bad = next((i for i, t in enumerate(array) if not isinstance(t, str)), None)
    if bad is not None:
        raise ValueError(f"X must hold texts (str); item {bad} is a {type(array[bad]).__name__}")
    return [str(t) for t in array]
