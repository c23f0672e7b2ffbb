"""Tests for qubert.data: registry loads on the shared data, file loading, and every DataError."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

import qubert.data.hub
import qubert.data.splits
from qubert import data as qdata
from qubert.data import (
    DataError,
    DatasetBundle,
    TextDataset,
    available_datasets,
    load_dataset_bundle,
    resolve_data_dir,
)

_ENV_DATA_DIR = os.environ.get("QUBERT_DATA_DIR")
# In CI the repo is a fresh clone with shared/ beside it: <root>/main/tests/test_data.py.
_SHARED = Path(_ENV_DATA_DIR) if _ENV_DATA_DIR else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    """No Hub access and no ambient data directory unless a test asks for one."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(qdata.ENV_DATA_DIR, raising=False)


@pytest.fixture(scope="module")
def shared() -> Path:
    if not (_SHARED / "sms_spam" / "train.csv.gz").is_file():
        pytest.skip(f"shared benchmark data not found at {_SHARED} (set QUBERT_DATA_DIR)")
    return _SHARED


def write_table(path: Path, rows, header=("text", "label")) -> Path:
    """Write a CSV/TSV (optionally .gz) with a header row."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t" if ".tsv" in path.name else ",", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    raw = buf.getvalue().encode("utf-8")
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def balanced(n: int, names=("neg", "pos")):
    return [(f"text number {i}", names[i % len(names)]) for i in range(n)]


# ------------------------------------------------------------------------------------------
# Bad input: every message is asserted
# ------------------------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match=r"data file .*nope\.csv not found"):
        load_dataset_bundle(train_file=missing)
    with pytest.raises(DataError, match=r"data file .*nope\.csv not found"):
        load_dataset_bundle(str(missing))


def test_missing_text_column_lists_columns(tmp_path):
    path = write_table(tmp_path / "d.csv", balanced(10), header=("sentence", "label"))
    expected = r"no text column 'text'; columns found: 'sentence', 'label' \(set text_column"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle(str(path))
    bundle = load_dataset_bundle(str(path), text_column="sentence")
    assert bundle.label_names == ["neg", "pos"]


def test_misnamed_label_column(tmp_path):
    path = write_table(tmp_path / "d.csv", balanced(10))
    expected = r"no label column 'target'; columns found: 'text', 'label'"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle(str(path), label_column="target")


def test_empty_texts_report_rows_and_can_be_dropped(tmp_path):
    rows = balanced(20)
    rows[1] = ("", "pos")
    rows[3] = ("   \t ", "pos")
    path = write_table(tmp_path / "d.csv", rows)
    expected = r"2 empty or whitespace-only text\(s\) at rows 2, 4 \(1-based data rows.*drop_empty=True"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle(str(path))
    bundle = load_dataset_bundle(str(path), drop_empty=True)
    assert sum(map(len, (bundle.train, bundle.validation, bundle.test))) == 18


def test_many_empty_texts_are_truncated(tmp_path):
    rows = [("", "a")] * 15 + balanced(10)
    path = write_table(tmp_path / "d.csv", rows)
    expected = r"15 empty .* rows 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 5 more"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle(str(path))


def test_missing_label_reports_row(tmp_path):
    rows = balanced(10)
    rows[2] = ("no label here", "")
    path = write_table(tmp_path / "d.csv", rows)
    with pytest.raises(DataError, match=r"d\.csv: missing label at row 3 "):
        load_dataset_bundle(str(path))


def test_row_numbers_still_point_into_file_after_drop_empty(tmp_path):
    rows = balanced(10)
    rows[0] = (" ", "pos")
    rows[4] = ("unlabelled", "")
    path = write_table(tmp_path / "d.csv", rows)
    with pytest.raises(DataError, match=r"missing label at row 5 "):
        load_dataset_bundle(str(path), drop_empty=True)


def test_unparseable_integer_label(tmp_path):
    rows = [(f"t{i}", str(i % 2)) for i in range(10)]
    rows[6] = ("t6", "1.5")
    path = write_table(tmp_path / "d.csv", rows)
    expected = r"unparseable label '1\.5' at row 7 \(other labels are integers\)"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle(str(path))


def test_a_few_integer_labels_among_names_are_refused(tmp_path):
    rows = [(f"t{i}", "ham" if i % 2 else "spam") for i in range(10)]
    rows[3], rows[8] = ("t3", "0"), ("t8", "1")
    path = write_table(tmp_path / "d.csv", rows)
    expected = r"d\.csv: integer label '0' at rows 4, 9 among class names \(e\.g\. 'spam'\); use class names or integer ids"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle(str(path))


def test_unparseable_label_for_registry_set(tmp_path):
    folder = tmp_path / "sms_spam"
    folder.mkdir()
    write_table(folder / "train.csv.gz", [("hi", "0"), ("win", "maybe"), ("yo", "1"), ("x", "7")])
    expected = r"unparseable label 'maybe' at rows 2, 4 \(expected an id in 0\.\.1 or one of: ham, spam\)"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle("sms_spam", data_dir=tmp_path)


def test_single_class_in_train(tmp_path):
    train = write_table(tmp_path / "train.csv", [(f"t{i}", "pos") for i in range(5)])
    test = write_table(tmp_path / "test.csv", [("a", "pos")])
    expected = r"train split has a single class \(only label 'pos'\); a classifier needs at least 2"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle(train_file=train, test_file=test)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_non_utf8_reports_byte_offset_and_line(tmp_path, suffix):
    raw = b"text,label\nfine,0\ncaf\xe9 au lait,1\nok,0\n"
    path = tmp_path / f"latin1{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix.endswith(".gz") else raw)
    offset = raw.index(b"\xe9")
    name = re.escape(path.name)
    expected = rf"{name} is not valid UTF-8: byte 0xe9 at byte offset {offset} \(line 3, header"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle(str(path))


def test_label_unseen_in_train_is_named(tmp_path):
    train = write_table(tmp_path / "train.csv", balanced(10))
    test = write_table(tmp_path / "test.csv", [("a", "neg"), ("b", "neutral"), ("c", "pos")])
    expected = r"label 'neutral' in the test split \(row 2\) does not occur in train; train labels: neg, pos"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle(train_file=train, test_file=test)


def test_label_unseen_in_train_for_registry_set(tmp_path):
    (tmp_path / "twitter_airline_sentiment").mkdir()
    write_table(tmp_path / "twitter_airline_sentiment" / "train.csv.gz", [("a", 0), ("b", 2)] * 5)
    write_table(tmp_path / "twitter_airline_sentiment" / "test.csv.gz", [("c", 0), ("d", 1)])
    expected = r"label 'neutral' in the test split \(row 2\) does not occur in train; train labels: negative, positive"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle("twitter3", data_dir=tmp_path)


def test_unknown_name_suggests_close_match():
    expected = r"unknown data set 'sms_spma': did you mean 'sms_spam'\? known data sets: ag_news, amazon, .*yelp"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle("sms_spma")
    expected = r"unknown data set 'qwertyuiop': known data sets: .*Hub skipped \(HF_HUB_OFFLINE=1\)"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle("qwertyuiop")


@pytest.mark.parametrize("offline_var", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_registry_set_missing_everywhere_says_where_and_how(tmp_path, monkeypatch, offline_var):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv(offline_var, "1")
    with pytest.raises(
        DataError,
        match=r"data set 'imdb' not found: looked for .*imdb.*\{train,validation,test\}\.csv\.gz; "
        rf"Hub skipped \({offline_var}=1\)\. Provide the files with --data-dir DIR or QUBERT_DATA_DIR=DIR",
    ):
        load_dataset_bundle("imdb", data_dir=tmp_path)
    expected = r"'amazon' not found: .*amazon\.csv\.gz; no Hub copy known"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle("amazon", data_dir=tmp_path)


def test_hub_failures_fall_through_to_the_error(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(qubert.data.hub, "hub_reachable", lambda: False)
    with pytest.raises(DataError, match=r"'imdb' not found: .*; Hub unreachable\."):
        load_dataset_bundle("imdb", data_dir=tmp_path)

    def boom(*args):
        raise ConnectionError("no route\nto host")

    monkeypatch.setattr(qubert.data.hub, "hub_reachable", lambda: True)
    monkeypatch.setattr(qubert.data.hub, "load_hub", boom)
    expected = r"Hub load of 'stanfordnlp/imdb' failed: ConnectionError: no route to host"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle("imdb", data_dir=tmp_path)


def test_missing_data_dir(tmp_path, monkeypatch):
    expected = r"data directory .*nowhere does not exist \(from --data-dir\)"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle("imdb", data_dir=tmp_path / "nowhere")
    monkeypatch.setenv("QUBERT_DATA_DIR", str(tmp_path / "gone"))
    expected = r"data directory .*gone does not exist \(from QUBERT_DATA_DIR\)"
    with pytest.raises(DataError, match=expected):
        resolve_data_dir()


def test_malformed_files(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        load_dataset_bundle(str(tmp_path / "empty.csv"))
    (tmp_path / "fake.csv.gz").write_bytes(b"text,label\nhi,1\n")
    with pytest.raises(DataError, match=r"cannot parse .*fake\.csv\.gz as CSV: Not a gzipped file"):
        load_dataset_bundle(str(tmp_path / "fake.csv.gz"))
    (tmp_path / "wide.csv").write_bytes(b"text,label\nhi,1\nhi,1,3\n")
    expected = r"cannot parse .*wide\.csv as CSV: .*Expected 2 fields in line 3, saw 3"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle(str(tmp_path / "wide.csv"))
    (tmp_path / "notes.txt").write_text("hello")
    expected = r"notes\.txt: unsupported file type; use \.csv, \.tsv, \.jsonl"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle(str(tmp_path / "notes.txt"))


def test_bad_options(tmp_path):
    path = write_table(tmp_path / "d.csv", balanced(40, names=("a", "b", "c")))
    expected = r"max_train_samples=2 is fewer than the 3 classes in train"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle(str(path), max_train_samples=2)
    with pytest.raises(DataError, match=r"max_eval_samples must be a positive integer, got 0"):
        load_dataset_bundle(str(path), max_eval_samples=0)
    with pytest.raises(DataError, match=r"validation_fraction must be in"):
        load_dataset_bundle(str(path), validation_fraction=0.95)
    with pytest.raises(DataError, match=r"no data given"):
        load_dataset_bundle()


# ------------------------------------------------------------------------------------------
# Reading and label mapping
# ------------------------------------------------------------------------------------------


def test_string_labels_sorted_and_na_texts_kept(tmp_path):
    rows = [("NA", "pos"), ("null", "neg"), ("line one\nline two, with comma", "pos")] + balanced(27)
    path = write_table(tmp_path / "d.csv", rows)
    bundle = load_dataset_bundle(str(path), validation_fraction=0.1)
    assert bundle.label_names == ["neg", "pos"]
    assert bundle.id2label == {0: "neg", 1: "pos"} and bundle.label2id == {"neg": 0, "pos": 1}
    texts = bundle.train.texts + bundle.validation.texts + bundle.test.texts
    assert {"NA", "null", "line one\nline two, with comma"} <= set(texts)
    assert sorted(set(bundle.train.labels)) == [0, 1]


def test_integer_labels_are_remapped_to_0_k(tmp_path):
    path = write_table(tmp_path / "d.csv", [(f"t{i}", 1 + i % 2) for i in range(30)])
    bundle = load_dataset_bundle(str(path))
    assert bundle.label_names == ["1", "2"]
    assert set(bundle.train.labels) == {0, 1}


def test_tsv_and_jsonl_gz(tmp_path):
    tsv = write_table(tmp_path / "train.tsv", [("tab, separated", "a"), ("x", "b")] * 5)
    recs = [{"review": f"r{i}", "stars": i % 3} for i in range(30)]
    jsonl = tmp_path / "test.jsonl.gz"
    jsonl.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in recs).encode()))
    assert load_dataset_bundle(str(tsv)).label_names == ["a", "b"]
    bundle = load_dataset_bundle(str(jsonl), text_column="review", label_column="stars")
    assert bundle.label_names == ["0", "1", "2"] and bundle.name == "test"
    array = tmp_path / "records.json"
    array.write_text(json.dumps([{"text": f"t{i}", "label": "xy"[i % 2]} for i in range(20)]))
    assert load_dataset_bundle(str(array)).label_names == ["x", "y"]


def test_non_utf8_jsonl_reports_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "a", "label": 1}\n{"text": "\xff", "label": 0}\n')
    expected = r"d\.jsonl is not valid UTF-8: byte 0xff at byte offset 36 \(line 2\)"
    with pytest.raises(DataError, match=expected):
        load_dataset_bundle(str(path))


def test_folder_layout_and_registry_names_as_labels(tmp_path):
    folder = tmp_path / "sms_spam"
    folder.mkdir()
    write_table(folder / "train.csv.gz", balanced(40, names=("ham", "spam")))
    write_table(folder / "test.csv.gz", [("a", "spam"), ("b", "1"), ("c", "ham")])
    bundle = load_dataset_bundle("sms_spam", data_dir=tmp_path)
    assert bundle.label_names == ["ham", "spam"] and bundle.test.labels == [1, 1, 0]
    mine = tmp_path / "mine"
    mine.mkdir()
    write_table(mine / "train.csv", balanced(20))
    write_table(mine / "dev.csv", balanced(4))
    bundle = load_dataset_bundle("mine", data_dir=tmp_path)
    assert (len(bundle.train), len(bundle.validation), len(bundle.test)) == (18, 2, 4)
    assert load_dataset_bundle(str(mine)).source == str(mine)


def test_resolve_data_dir_env_and_autodetect(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    monkeypatch.chdir(repo)
    assert resolve_data_dir() == (tmp_path / "shared" / "data").resolve()
    monkeypatch.setenv("QUBERT_DATA_DIR", str(repo))
    assert resolve_data_dir() == repo.resolve()
    assert resolve_data_dir(tmp_path) == tmp_path.resolve()


def test_hub_path_with_classlabel_and_hidden_test_labels(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    text = datasets.Value("string")
    labelled = datasets.Features({"sentence": text, "label": datasets.ClassLabel(names=["bad", "good"])})
    hidden = datasets.Features({"sentence": text, "label": datasets.Value("int64")})
    train = {"sentence": [f"s{i}" for i in range(20)], "label": [i % 2 for i in range(20)]}
    dsd = datasets.DatasetDict(
        train=datasets.Dataset.from_dict(train, features=labelled),
        test=datasets.Dataset.from_dict({"sentence": ["x", "y"], "label": [-1, -1]}, features=hidden),
    )
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(qubert.data.hub, "hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: dsd)
    bundle = load_dataset_bundle("someone/films", data_dir=tmp_path, text_column="sentence")
    assert bundle.label_names == ["bad", "good"] and bundle.source == "hub:someone/films"
    # The unlabeled test split was ignored, so all three splits come from train (80/10/10).
    assert (len(bundle.train), len(bundle.validation), len(bundle.test)) == (16, 2, 2)


# ------------------------------------------------------------------------------------------
# Splitting, subsampling, fingerprints
# ------------------------------------------------------------------------------------------


def test_single_file_split_is_seeded_stratified_and_a_partition(tmp_path):
    rows = [(f"t{i}", "a" if i % 4 else "b") for i in range(200)]  # 150 a / 50 b
    path = write_table(tmp_path / "d.csv", rows)
    one, two = load_dataset_bundle(str(path)), load_dataset_bundle(str(path))
    assert (len(one.train), len(one.validation), len(one.test)) == (160, 20, 20)
    for split in ("train", "validation", "test"):
        assert one.split(split) == two.split(split)
        assert one.split(split).class_counts()[1] == {"train": 40, "validation": 5, "test": 5}[split]
    assert sorted(one.train.texts + one.validation.texts + one.test.texts) == sorted(t for t, _ in rows)
    other = load_dataset_bundle(str(path), seed=7)
    assert set(other.test.texts) != set(one.test.texts)
    assert one.notes and "80%/10%/10%" in one.notes[0]


def test_subsets_are_stratified_and_keep_every_class(tmp_path):
    rows = [(f"t{i}", "rare") for i in range(3)] + [(f"u{i}", "common") for i in range(297)]
    path = write_table(tmp_path / "d.csv", rows)
    bundle = load_dataset_bundle(str(path), max_train_samples=20, max_eval_samples=5)
    assert len(bundle.train) == 20 and bundle.train.class_counts() == {0: 19, 1: 1}
    assert len(bundle.validation) == 5 and len(bundle.test) == 5


def test_allocate_proportional_with_minimum_one():
    assert qubert.data.splits.allocate([90, 10], 10, [90, 10]) == [9, 1]
    assert qubert.data.splits.allocate([98, 1, 1], 3, [98, 1, 1]) == [1, 1, 1]
    assert qubert.data.splits.allocate([5, 5], 100, [5, 5]) == [5, 5]
    trec = [86, 1250, 1162, 1223, 835, 896]
    assert sum(qubert.data.splits.allocate(trec, 200, trec)) == 200


def test_fingerprint_is_stable_and_sensitive():
    ds = TextDataset(["a", "bc"], [0, 1])
    assert ds.fingerprint() == TextDataset(["a", "bc"], [0, 1]).fingerprint()
    assert len(ds.fingerprint()) == 16
    assert ds.fingerprint() != TextDataset(["ab", "c"], [0, 1]).fingerprint()
    assert ds.fingerprint() != TextDataset(["a", "bc"], [1, 1]).fingerprint()
    bundle = DatasetBundle("toy", ["x", "y"], ds, ds, TextDataset(["z"], [0]), source="memory")
    assert bundle.fingerprint("train") == ds.fingerprint() != bundle.fingerprint("test")
    with pytest.raises(KeyError):
        bundle.fingerprint("dev")


# ------------------------------------------------------------------------------------------
# Registry on the real shared data
# ------------------------------------------------------------------------------------------


def _share(labels, k):
    return labels.count(k) / len(labels)


def test_sms_spam_validation_carved_stratified(shared):
    bundle = load_dataset_bundle("sms_spam", data_dir=shared)
    assert bundle.label_names == ["ham", "spam"] and bundle.n_classes == 2
    assert (len(bundle.train), len(bundle.validation), len(bundle.test)) == (4014, 446, 1114)
    assert abs(_share(bundle.validation.labels, 1) - 598 / 4460) < 0.005
    assert abs(_share(bundle.train.labels, 1) - 598 / 4460) < 0.005
    assert any("validation carved from train" in n for n in bundle.notes)


def test_twitter_is_binary_without_neutral(shared):
    two = load_dataset_bundle("twitter", data_dir=shared)
    three = load_dataset_bundle("twitter3", data_dir=shared)
    assert two.label_names == ["negative", "positive"]
    assert three.label_names == ["negative", "neutral", "positive"]
    assert len(two.train) + len(two.validation) == 7342 + 1890 and len(two.test) == 1836 + 473
    expected = Counter(t for t, y in zip(three.test.texts, three.test.labels) if y != 1)
    assert Counter(two.test.texts) == expected
    assert two.test.class_counts() == {0: 1836, 1: 473}


def test_yelp_split_is_seeded_and_disjoint(shared):
    one, two = load_dataset_bundle("yelp", data_dir=shared), load_dataset_bundle("yelp", data_dir=shared)
    assert (len(one.train), len(one.validation), len(one.test)) == (800, 100, 100)
    assert all(one.fingerprint(s) == two.fingerprint(s) for s in ("train", "validation", "test"))
    everything = qdata.read_table(shared / "sentiment_sentences" / "yelp.csv.gz")[0]
    # A partition of the file's rows (the file has 4 exact duplicate sentences, so compare multisets).
    parts = Counter(one.train.texts) + Counter(one.validation.texts) + Counter(one.test.texts)
    assert parts == Counter(everything)
    assert one.test.class_counts() == {0: 50, 1: 50}


@pytest.mark.parametrize("name", ["sms_spam", "trec"])
def test_max_train_samples_keeps_proportions(shared, name):
    full = load_dataset_bundle(name, data_dir=shared)
    sub = load_dataset_bundle(name, data_dir=shared, max_train_samples=200)
    assert len(sub.train) == 200 and set(sub.train.labels) == set(full.train.labels)
    for k in range(full.n_classes):
        assert abs(_share(sub.train.labels, k) - _share(full.train.labels, k)) < 0.02
    assert sub.test == full.test  # eval splits untouched without max_eval_samples


def test_tweet_eval_train_carved_from_validation(shared):
    bundle = load_dataset_bundle("tweet_eval_sentiment", data_dir=shared, max_eval_samples=300)
    assert bundle.label_names == ["negative", "neutral", "positive"]
    assert (len(bundle.train), len(bundle.validation), len(bundle.test)) == (1800, 200, 300)
    assert not set(bundle.train.texts) & set(bundle.validation.texts)
    assert any("train carved from validation" in n for n in bundle.notes)


def test_sst2_uses_glue_dev_as_test(shared):
    bundle = load_dataset_bundle("sst2", data_dir=shared, max_train_samples=1000)
    assert len(bundle.test) == 872 and bundle.test.class_counts() == {0: 428, 1: 444}
    assert len(bundle.validation) == 111 and len(bundle.train) == 1000  # carved from train: capped in proportion


def test_available_datasets_lists_registry(shared):
    listing = {d["name"]: d for d in available_datasets(shared)}
    assert set(listing) == set(qdata.REGISTRY)
    assert listing["imdb"]["rows"] == {"train": 25000, "test": 25000}
    assert listing["twitter"]["rows"] == {"train": 7342 + 1890, "test": 1836 + 473}
    assert listing["yelp"]["available"].endswith("yelp.csv.gz") and listing["yelp"]["n_classes"] == 2


def test_available_datasets_without_data(tmp_path):
    listing = {d["name"]: d for d in available_datasets(tmp_path)}
    assert listing["imdb"]["available"] == "missing" and listing["imdb"]["rows"] is None
