"""qubert.sklearn.QubertClassifier with scikit-learn's own tools, on a tiny random BERT and 32 texts."""

from __future__ import annotations

import inspect
import json
import random

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402

from qubert import embeddings  # noqa: E402
from qubert.sklearn import ESTIMATOR_FILE, QubertClassifier  # noqa: E402
from qubert.training import TrainingConfig, TrainingConfigError  # noqa: E402

POSITIVE = ["good", "great", "excellent", "lovely", "superb", "fine"]
NEGATIVE = ["bad", "awful", "terrible", "dreadful", "poor", "boring"]


def _texts(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = random.Random(seed)
    labels = np.array([i % 2 for i in range(n)]) * 5 + 1  # class values 1 and 6: not 0..K-1
    texts = [f"the film was {' and '.join(rng.sample(POSITIVE if v == 6 else NEGATIVE, 3))}" for v in labels]
    return texts, labels


@pytest.fixture(scope="module")
def encoder(tmp_path_factory, save_tiny_bert):
    return save_tiny_bert(tmp_path_factory.mktemp("sklearn") / "encoder")


@pytest.fixture
def make(encoder, tmp_path):
    def build(**overrides):
        base = dict(model=encoder, max_length=16, head="linear", num_epochs=1, batch_size=8, cache_dir=str(tmp_path / "cache"), early_stopping_patience=None, validation_fraction=0.25)
        return QubertClassifier(**{**base, **overrides})

    return build


@pytest.fixture
def encode_calls(monkeypatch):
    """Counts the encoder passes over texts (every pooled feature comes from embeddings.encode_texts)."""
    calls = []
    real = embeddings.encode_texts

    def counting(model, tokenizer, texts, **kwargs):
        calls.append(len(texts))
        return real(model, tokenizer, texts, **kwargs)

    monkeypatch.setattr(embeddings, "encode_texts", counting)
    return calls


def test_parameters_are_training_config_fields():
    names = [p for p in inspect.signature(QubertClassifier).parameters]
    assert set(names) - set(TrainingConfig.field_names()) == {"validation_fraction"}
    defaults = {f: getattr(TrainingConfig(train_file="x.csv"), f) for f in names if f not in ("validation_fraction", "hidden_sizes", "progress")}
    assert {k: v for k, v in QubertClassifier().get_params().items() if k in defaults} == defaults
    assert QubertClassifier().get_params()["hidden_sizes"] == (256,)


def test_clone_and_set_params_keep_the_parameters():
    clf = QubertClassifier(head="quantum", qubits=5, layers=3, learning_rate=0.05, hidden_sizes=(16, 8))
    copy = clone(clf)
    assert copy is not clf and copy.get_params() == clf.get_params()
    assert clone(clf.set_params(qubits=6)).qubits == 6
    assert not hasattr(copy, "model_")


def test_fit_predict_score_save_load(make, tmp_path):
    texts, labels = _texts(32)
    clf = make().fit(texts, labels)
    assert clf.classes_.tolist() == [1, 6]
    probabilities = clf.predict_proba(texts[:5])
    assert probabilities.shape == (5, 2) and np.allclose(probabilities.sum(axis=1), 1)
    predicted = clf.predict(texts[:5])
    assert set(predicted.tolist()) <= {1, 6}
    assert predicted.tolist() == clf.classes_[probabilities.argmax(1)].tolist()
    assert 0 <= clf.score(texts, labels) <= 1
    assert {"eval_macro_f1", "best_epoch", "stopped_by"} <= set(clf.training_metrics_)

    folder = clf.save(tmp_path / "saved")
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file() and (folder / ESTIMATOR_FILE).is_file()
    assert not [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pkl", ".pth")]
    assert json.loads((folder / "config.json").read_text())["id2label"] == {"0": "1", "1": "6"}
    loaded = QubertClassifier.load(folder)
    assert loaded.get_params() == clf.get_params()
    assert loaded.classes_.tolist() == [1, 6] and loaded.classes_.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(loaded.predict_proba(texts), clf.predict_proba(texts))
    assert loaded.predict(texts).tolist() == clf.predict(texts).tolist()


def test_string_labels_come_back_as_given(make):
    texts, labels = _texts(16)
    names = np.where(labels == 6, "positive", "negative")
    clf = make(head="mlp", hidden_sizes=(8,), mode="frozen").fit(texts, names)
    assert clf.classes_.tolist() == ["negative", "positive"]
    assert set(clf.predict(texts).tolist()) <= {"negative", "positive"}


def test_grid_search_over_heads_encodes_each_fold_once(make, encode_calls, tmp_path):
    texts, labels = _texts(32)
    grid = {"head": ["linear", "quantum"], "learning_rate": [1e-2, 1e-1]}
    search = GridSearchCV(make(qubits=2, layers=1), grid, cv=StratifiedKFold(2), refit=False).fit(texts, labels)
    assert len(search.cv_results_["params"]) == 4
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    files = list((tmp_path / "cache" / "embeddings").glob("*.safetensors"))
    # Per fold: train, validation, the run's test (= validation) and the scored fold, whatever the
    # number of candidates (4 candidates x 2 folds = 8 fits); each was encoded exactly once.
    assert len(encode_calls) == len(files) == 2 * 4
    before = len(encode_calls)
    GridSearchCV(make(qubits=2, layers=1), {"head": ["mlp"], "hidden_sizes": [(4,)]}, cv=StratifiedKFold(2), refit=False).fit(texts, labels)
    assert len(encode_calls) == before  # another grid over head settings: nothing re-encoded


def test_cross_val_score_and_pipeline(make):
    texts, labels = _texts(32)
    scores = cross_val_score(make(), texts, labels, cv=StratifiedKFold(2))
    assert scores.shape == (2,) and np.all((0 <= scores) & (scores <= 1))
    upper = FunctionTransformer(lambda xs: [x.upper() for x in xs])
    pipe = Pipeline([("upper", upper), ("clf", make())]).fit(texts, labels)
    assert pipe.predict(texts[:3]).shape == (3,)
    assert pipe.named_steps["clf"].classes_.tolist() == [1, 6]
    assert pipe.get_params()["clf__head"] == "linear"


def test_fine_tuned_encoder_predicts_without_the_cache(make, encode_calls, tmp_path):
    texts, labels = _texts(16)
    clf = make(mode="full", encoder_learning_rate=1e-4).fit(texts, labels)
    assert not clf.model_.encoder_frozen
    before = len(encode_calls)
    probabilities = clf.predict_proba(texts[:4])
    assert probabilities.shape == (4, 2) and len(encode_calls) == before + 1
    assert not list((tmp_path / "cache").glob("embeddings/predict-*"))  # a trained encoder's features are not cached


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        ("one text", [1], "not a single string"),
        ([1, 2, 3, 4], [0, 1, 0, 1], "item 0 is a int"),
        (["a", "b", "c", "d"], [0, 0, 0, 0], "at least 2 classes"),
        (["a", "b", "c", "d"], [0, 0, 0, 1], "single row"),
        (["a", "b"], [0, 1, 0], "one label per text"),
    ],
)
def test_bad_input_is_a_value_error(make, X, y, message):
    with pytest.raises(ValueError, match=message):
        make().fit(X, y)


def test_bad_parameter_fails_in_fit_not_init(make):
    clf = make(head="svm")  # scikit-learn convention: __init__ only stores
    texts, labels = _texts(8)
    with pytest.raises(TrainingConfigError, match="unknown head 'svm'"):
        clf.fit(texts, labels)


def test_load_refuses_a_folder_without_the_estimator_file(tmp_path):
    with pytest.raises(ValueError, match="not written by QubertClassifier.save"):
        QubertClassifier.load(tmp_path)


# scikit-learn's own estimator checks. check_estimator() skips a text estimator as a whole (its
# tags say input_tags.string and not two_d_array); these are the checks that apply to a text
# classifier, run one by one. The others do not apply: they fit or predict on numeric or sparse
# 2-D arrays (check_classifiers_*, check_fit*, check_n_features_in*, check_estimators_dtypes,
# check_dtype_object, check_estimators_nan_inf, check_pipeline_consistency, check_methods_*,
# check_supervised_y_*, check_dict_unchanged, check_dont_overwrite_parameters, ...), test
# capabilities the estimator does not have (sample_weight, partial_fit, sparse input, the array
# API, set_output, get_feature_names_out) or concern transformers, regressors and outlier
# detectors.
APPLICABLE_SKLEARN_CHECKS = [
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_get_params_invariance",
    "check_set_params",
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_mixin_order",
    "check_estimators_unfitted",
]


@pytest.mark.parametrize("check", APPLICABLE_SKLEARN_CHECKS)
def test_sklearn_estimator_checks_that_apply_to_a_text_classifier(check):
    from sklearn.utils import estimator_checks

    function = getattr(estimator_checks, check)
    function("QubertClassifier", QubertClassifier(num_epochs=1))


def test_tags_declare_text_input():
    tags = QubertClassifier().__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array and tags.estimator_type == "classifier"


def test_predict_before_fit_is_not_fitted_error():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        QubertClassifier().predict(["a text"])
    with pytest.raises(NotFittedError):
        QubertClassifier().predict_proba(["a text"])
