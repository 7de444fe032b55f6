import math
import warnings

import numpy as np
import pytest

from glp.errors import GLPError, TaskError
from glp.tasks import (
    GLUE_TASKS,
    METRICS,
    Task,
    compute_metrics,
    custom_task,
    get_task,
    glue_score,
    normalize_metric,
    task_title,
)


def onehot(ids, k=2):
    """Logits whose argmax is ``ids``."""
    out = np.zeros((len(ids), k), dtype=np.float32)
    out[np.arange(len(ids)), ids] = 1.0
    return out


# ---------------------------------------------------------------------------------------------- tasks


@pytest.mark.parametrize(
    "alias, name",
    [("sst2", "sst2"), ("SST-2", "sst2"), ("sst-2", "sst2"), ("stsb", "stsb"), ("STS-B", "stsb"),
     ("sts-b", "stsb"), ("CoLA", "cola"), ("MNLI", "mnli"), ("Rte", "rte"), (" qqp ", "qqp")],
)  # fmt: skip
def test_task_aliases(alias, name):
    assert get_task(alias).name == name


@pytest.mark.parametrize(
    "name, title",
    [("sst2", "SST-2"), ("SST-2", "SST-2"), ("stsb", "STS-B"), ("cola", "CoLA"), ("mrpc", "MRPC"),
     ("conll2003", "CoNLL-2003"), ("wikitext2", "WikiText-2"), ("imdb", "imdb"), ("my_reviews", "my_reviews")],
)  # fmt: skip
def test_tables_write_a_task_as_its_paper_does_and_an_unknown_one_as_given(name, title):
    assert task_title(name) == title


def test_a_glue_tasks_title_is_the_name_of_its_folder_in_the_glue_distribution():
    from glp.data.glue import GLUE_LAYOUT

    assert {name: task_title(name) for name in GLUE_TASKS} == {name: GLUE_LAYOUT[name].dirname for name in GLUE_TASKS}


def test_unknown_task_lists_known_tasks():
    with pytest.raises(TaskError) as e:
        get_task("imdb")
    msg = str(e.value)
    assert "'imdb'" in msg
    for name in GLUE_TASKS:
        assert name in msg
    assert isinstance(e.value, GLPError)


def test_glue_task_definitions():
    expected = {
        "cola": ("mcc", 2, False),
        "sst2": ("accuracy", 2, False),
        "mrpc": ("f1", 2, False),
        "stsb": ("spearman", 1, True),
        "qqp": ("f1", 2, False),
        "mnli": ("accuracy", 3, False),
        "qnli": ("accuracy", 2, False),
        "rte": ("accuracy", 2, False),
        "wnli": ("accuracy", 2, False),
    }
    assert set(GLUE_TASKS) == set(expected)
    for name, (metric, n, regression) in expected.items():
        t = get_task(name)
        assert (t.metric, t.num_labels, t.is_regression) == (metric, n, regression)
        assert t.metrics[0] == metric
        assert t.in_glue_average == (name != "wnli")
    assert "accuracy" in get_task("mrpc").metrics and "accuracy" in get_task("qqp").metrics
    assert get_task("stsb").metrics == ("spearman", "pearson")
    assert get_task("stsb").label_names is None
    assert get_task("rte").label_names == ("entailment", "not_entailment")
    assert get_task("qnli").label_names == ("entailment", "not_entailment")
    assert get_task("mnli").label_names == ("entailment", "neutral", "contradiction")
    assert get_task("cola").label_names == ("0", "1") == get_task("sst2").label_names
    assert get_task("sst2").text_columns == ("sentence",)
    assert get_task("mrpc").is_pair and not get_task("cola").is_pair


def test_task_is_frozen_and_roundtrips():
    t = get_task("mnli")
    with pytest.raises(AttributeError):
        t.name = "x"
    assert Task.from_dict(t.to_dict()) == t
    c = custom_task("mine", ["a", "b"], "y", "macro-f1")
    assert Task.from_dict(c.to_dict()) == c


def test_custom_task():
    t = custom_task("reviews", "text", "stars", "macro_f1")
    assert t.text_columns == ("text",) and t.label_column == "stars"
    assert t.metric == "macro-f1" and not t.is_regression
    assert t.num_labels == 0 and t.label_names is None  # filled in from the train data
    r = custom_task("sim", ("a", "b"), "y", "spearmanr")
    assert r.is_regression and r.num_labels == 1 and r.metrics == ("spearman", "pearson")
    n = custom_task("nli", ("a", "b"), "y", "acc", label_names=["yes", "no", "maybe"])
    assert n.num_labels == 3 and n.label_names == ("yes", "no", "maybe")
    assert custom_task("m", "a", "y", "MCC").metrics == ("mcc", "accuracy")


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(metric="bleu"), "known metrics"),
        (dict(text_columns=("a", "b", "c")), "one or two text columns"),
        (dict(text_columns=("a", "a")), "must all differ"),
        (dict(text_columns=("y",)), "must all differ"),
        (dict(metric="f1", label_names=["a", "b", "c"]), "macro-f1"),
        (dict(metric="accuracy", is_regression=True), "does not fit a regression"),
        (dict(metric="pearson", is_regression=False), "does not fit a classification"),
        (dict(metric="spearman", label_names=["a", "b"]), "no label names"),
        (dict(label_names=["a", "a"]), "duplicate"),
    ],
)
def test_custom_task_errors(kwargs, fragment):
    args = dict(name="t", text_columns=("a",), label_column="y", metric="accuracy")
    args.update(kwargs)
    with pytest.raises(TaskError, match=fragment):
        custom_task(**args)


def test_metric_names():
    assert METRICS == ("accuracy", "f1", "macro-f1", "mcc", "spearman", "pearson")
    assert normalize_metric("Matthews_Correlation") == "mcc"
    assert normalize_metric("ACC") == "accuracy"
    with pytest.raises(TaskError, match="known metrics: accuracy, f1, macro-f1, mcc, spearman, pearson"):
        normalize_metric("auc")


# -------------------------------------------------------------------------------------------- metrics


def test_accuracy_from_logits():
    logits = np.array([[2.0, -1.0], [0.1, 0.3], [0.0, 5.0], [3.0, 2.0]])
    m = compute_metrics(get_task("rte"), logits, [0, 1, 0, 0])
    assert m == {"accuracy": 0.75}
    assert all(type(v) is float for v in m.values())


def test_binary_f1_hand_computed():
    # TP=2 FP=1 FN=1 → precision = recall = 2/3 → F1 = 2/3; 3 of 5 correct
    labels = [1, 1, 0, 0, 1]
    preds = [1, 0, 0, 1, 1]
    m = compute_metrics(get_task("mrpc"), onehot(preds), labels)
    assert list(m) == ["f1", "accuracy"]
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(3 / 5)
    # class ids work as predictions too; QQP uses the same metrics
    assert compute_metrics(get_task("qqp"), np.array(preds), labels) == m


def test_f1_positive_class_is_id_1():
    # labels all 0, predictions all 0: no positive class at all → F1 0 (no warning), accuracy 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compute_metrics(get_task("mrpc"), onehot([0, 0, 0]), [0, 0, 0])
    assert m == {"f1": 0.0, "accuracy": 1.0}


def test_mcc_hand_computed():
    # TP=1 TN=2 FP=0 FN=1 → (1*2 - 0*1) / sqrt((1+0)(1+1)(2+0)(2+1)) = 2 / sqrt(12)
    m = compute_metrics(get_task("cola"), onehot([1, 0, 0, 0]), [1, 1, 0, 0])
    assert m["mcc"] == pytest.approx(2 / math.sqrt(12))
    assert m["accuracy"] == pytest.approx(0.75)
    # constant predictions: MCC 0 (sklearn's convention)
    assert compute_metrics(get_task("cola"), onehot([1, 1, 1, 1]), [1, 0, 1, 0])["mcc"] == 0.0


def test_macro_f1_hand_computed():
    # per class F1: class 0 → 1, class 1 → 0, class 2 → P 2/3 R 1 → 0.8; mean 0.6
    t = custom_task("three", "a", "y", "macro-f1", label_names=["a", "b", "c"])
    m = compute_metrics(t, onehot([0, 2, 2, 2], 3), [0, 1, 2, 2])
    assert m["macro-f1"] == pytest.approx(0.6)
    assert m["accuracy"] == pytest.approx(0.75)


def test_spearman_and_pearson():
    t = get_task("stsb")
    # rank differences d = (0, 1, 1, 0) → rho = 1 - 6 * 2 / (4 * (16 - 1)) = 0.8
    m = compute_metrics(t, np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    assert list(m) == ["spearman", "pearson"]
    assert m["spearman"] == pytest.approx(0.8)
    assert m["pearson"] == pytest.approx(0.8)
    preds = np.array([[0.5], [1.0], [2.0], [9.0]])  # (N, 1) like a one-output regression head
    labels = np.array([1.0, 2.0, 3.0, 4.0])
    m = compute_metrics(t, preds, labels)
    assert m["spearman"] == pytest.approx(1.0)
    assert m["pearson"] == pytest.approx(np.corrcoef(preds[:, 0], labels)[0, 1])


def test_constant_regression_predictions_score_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compute_metrics(get_task("stsb"), np.full(5, 2.5), np.arange(5.0))
    assert m == {"spearman": 0.0, "pearson": 0.0}


def test_every_glue_task_reports_its_main_metric():
    rng = np.random.default_rng(0)
    for t in GLUE_TASKS.values():
        if t.is_regression:
            preds, labels = rng.normal(size=20), rng.uniform(0, 5, size=20)
        else:
            preds, labels = rng.normal(size=(20, t.num_labels)), rng.integers(0, t.num_labels, size=20)
        m = compute_metrics(t, preds, labels)
        assert t.metric in m and set(m) == set(t.metrics)
        assert all(np.isfinite(v) for v in m.values())


@pytest.mark.parametrize(
    "task, preds, labels, fragment",
    [
        ("rte", np.zeros((3, 2)), [0, 1], "must match"),
        ("rte", np.zeros((2, 3)), [0, 1], "3 columns"),
        ("rte", np.zeros(2), [0, 1], "logits"),
        ("stsb", np.zeros((2, 2)), [0.0, 1.0], "regression"),
        ("rte", np.zeros((0, 2)), [], "no examples"),
    ],
)
def test_metric_input_errors(task, preds, labels, fragment):
    with pytest.raises(TaskError, match=fragment):
        compute_metrics(get_task(task), preds, labels)


def test_glue_score_excludes_wnli():
    assert glue_score({"rte": 0.6, "sst2": 0.9, "wnli": 0.1}) == pytest.approx(0.75)
    assert glue_score({"SST-2": 0.9, "sts-b": 0.8, "cola": 0.4}) == pytest.approx(0.7)
    with pytest.raises(TaskError, match="no GLUE task"):
        glue_score({"wnli": 0.5})
    with pytest.raises(TaskError, match="unknown task"):
        glue_score({"imdb": 0.5})
    with pytest.raises(TaskError, match="twice"):
        glue_score({"sst2": 0.5, "SST-2": 0.6})


def test_resolve_task_glue_or_custom():
    from glp.tasks import resolve_task

    assert resolve_task("SST-2").name == "sst2"
    custom = resolve_task("toy", ("text",), "label", "macro-f1")
    assert custom.metric == "macro-f1" and custom.text_columns == ("text",)
    with pytest.raises(TaskError, match="unknown task 'toy'.*give --text-columns and --label-column"):
        resolve_task("toy")
    # one resolver for commands and data loading: a GLUE task scored by another metric that fits it
    rte_f1 = resolve_task("rte", metric="f1")
    assert rte_f1.name == "rte" and rte_f1.metric == "f1" and rte_f1.label_names == get_task("rte").label_names
    with pytest.raises(TaskError, match="does not fit a classification task"):
        resolve_task("rte", metric="spearman")
    with pytest.raises(TaskError, match="'f1' is binary but the task has 3 labels"):
        resolve_task("mnli", metric="f1")


def test_constant_score_is_the_best_single_class_prediction():
    """The level at which a fine-tuned model has learned nothing: majority accuracy, positive-class F1, MCC 0."""
    from glp.tasks import constant_score

    assert constant_score(get_task("rte"), [0, 0, 0, 1]) == pytest.approx(0.75)
    assert constant_score(get_task("mrpc"), [1, 1, 1, 0]) == pytest.approx(2 * 0.75 / 1.75)  # all "paraphrase"
    assert constant_score(get_task("mrpc"), [0, 0, 0, 1]) == pytest.approx(2 * 0.25 / 1.25)
    assert constant_score(get_task("cola"), [0, 1, 1, 1]) == 0.0
    assert constant_score(get_task("stsb"), [0.1, 2.0]) is None
    assert constant_score(get_task("rte"), []) is None
