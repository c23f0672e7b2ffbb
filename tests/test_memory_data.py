"""Data in memory: qubert.data.bundle_from_memory and run_training(config, data=...) on a tiny BERT."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("transformers")

from qubert.data import DataError, DatasetBundle, MemorySource, bundle_from_memory, load_dataset_bundle  # noqa: E402
from qubert.data.memory import MEMORY_SOURCES, register_memory_source  # noqa: E402
from qubert.data.tables import RawSplit  # noqa: E402
from qubert.training import TrainingConfig, run_training  # noqa: E402

POSITIVE = ["good", "great", "excellent", "lovely", "superb", "fine"]
NEGATIVE = ["bad", "awful", "terrible", "dreadful", "poor", "boring"]


def _rows(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        texts.append("the film was " + " and ".join(rng.sample(POSITIVE if i % 2 else NEGATIVE, 3)))
        labels.append("pos" if i % 2 else "neg")
    return texts, labels


def test_a_dataframe_a_pair_and_a_hf_dataset_give_the_same_bundle():
    pd = pytest.importorskip("pandas")
    datasets = pytest.importorskip("datasets")
    texts, labels = _rows(40, 0)
    from_pair = bundle_from_memory((texts, labels), name="toy")
    from_frame = bundle_from_memory(pd.DataFrame({"text": texts, "label": labels}), name="toy")
    from_hf = bundle_from_memory(datasets.Dataset.from_dict({"text": texts, "label": labels}), name="toy")
    for bundle in (from_frame, from_hf):
        assert bundle.label_names == from_pair.label_names == ["neg", "pos"]
        for split in ("train", "validation", "test"):
            assert bundle.split(split) == from_pair.split(split)
    assert len(from_pair.train) + len(from_pair.validation) + len(from_pair.test) == 40


def test_memory_data_is_split_as_the_same_rows_in_a_file(tmp_path):
    texts, labels = _rows(40, 1)
    path = tmp_path / "train.csv"
    import pandas as pd

    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    from_file = load_dataset_bundle(None, train_file=str(path), seed=3)
    from_memory = bundle_from_memory((texts, labels), seed=3)
    for split in ("train", "validation", "test"):
        assert from_memory.split(split) == from_file.split(split)


def test_class_label_names_and_given_splits_are_kept():
    datasets = pytest.importorskip("datasets")
    texts, labels = _rows(30, 2)
    ids = [1 if label == "pos" else 0 for label in labels]
    ds = datasets.Dataset.from_dict({"sentence": texts, "y": ids}).cast_column("y", datasets.ClassLabel(names=["negative", "positive"]))
    bundle = bundle_from_memory(datasets.DatasetDict(train=ds, test=ds.select(range(10))), text_column="sentence", label_column="y")
    assert bundle.label_names == ["negative", "positive"]
    assert len(bundle.test) == 10


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ((["a", "b"], [0]), "2 texts but 1 labels"),
        ({"training": (["a"], [0])}, "unknown split 'training'"),
        (42, "cannot read a int"),
        ((["fine", " "], ["pos", "neg"]), "empty or whitespace-only text"),
    ],
)
def test_bad_memory_data_is_one_line(data, message):
    with pytest.raises(DataError, match=message) as err:
        bundle_from_memory(data)
    assert "\n" not in str(err.value)


def test_a_new_memory_source_is_one_registration(monkeypatch):
    monkeypatch.setattr("qubert.data.memory.MEMORY_SOURCES", list(MEMORY_SOURCES))
    rows = [("good film", "pos"), ("bad film", "neg")] * 10
    register_memory_source(MemorySource(
        "list of (text, label) rows",
        accepts=lambda obj: isinstance(obj, list) and all(isinstance(r, tuple) and len(r) == 2 for r in obj),
        read=lambda obj, text_column, label_column, origin: (RawSplit([t for t, _ in obj], [y for _, y in obj], origin), None),
    ))
    bundle = bundle_from_memory(rows)
    assert bundle.label_names == ["neg", "pos"]
    assert isinstance(bundle_from_memory(bundle), DatasetBundle)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory, save_tiny_bert):
    path = tmp_path_factory.mktemp("memory") / "encoder"
    save_tiny_bert(path)
    return path


def test_run_training_trains_on_a_dataframe_without_files(encoder, tmp_path):
    pd = pytest.importorskip("pandas")
    texts, labels = _rows(60, 4)
    config = TrainingConfig(
        dataset="reviews", model=str(encoder), max_length=16, head="linear", num_epochs=2, batch_size=16,
        output_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), progress=False,
    )
    metrics = run_training(config, data=pd.DataFrame({"text": texts, "label": labels}))
    assert metrics["train_samples"] + metrics["eval_samples"] + metrics["test_samples"] == 60
    assert (metrics.run_dir / "metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "run"]  # no data files written anywhere
    saved = (metrics.run_dir / "predictions.csv").read_text(encoding="utf-8")
    assert saved.count("\n") == metrics["test_samples"] + 1
