"""Tasks: which text columns, how many labels (or regression), which metric decides.

The GLUE tasks carry the metrics of the paper (and of transformers' ``run_glue.py``): CoLA is scored
with Matthews correlation, STS-B with Spearman correlation, MRPC and QQP with F1, the rest with
accuracy. Every metric comes from scikit-learn or scipy.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from glp.errors import TaskError

#: the task kind (`glp.kinds`) of a task that names none
DEFAULT_KIND = "sequence-classification"

# --------------------------------------------------------------------------------------------- metrics

#: The metrics a task may be scored with. Keys of ``compute_metrics`` results use these names.
METRICS: tuple[str, ...] = ("accuracy", "f1", "macro-f1", "mcc", "spearman", "pearson")
REGRESSION_METRICS: frozenset[str] = frozenset({"spearman", "pearson"})

_METRIC_ALIASES = {
    "acc": "accuracy",
    "accuracy": "accuracy",
    "f1": "f1",
    "binary-f1": "f1",
    "macro-f1": "macro-f1",
    "macrof1": "macro-f1",
    "f1-macro": "macro-f1",
    "mcc": "mcc",
    "matthews": "mcc",
    "matthews-correlation": "mcc",
    "matthews-corrcoef": "mcc",
    "spearman": "spearman",
    "spearmanr": "spearman",
    "pearson": "pearson",
    "pearsonr": "pearson",
}


def normalize_metric(name: str) -> str:
    """Canonical metric name (``"acc"`` → ``"accuracy"``, ``"macro_f1"`` → ``"macro-f1"``, ...)."""
    key = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    if key not in _METRIC_ALIASES:
        raise TaskError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}")
    return _METRIC_ALIASES[key]


# ----------------------------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """What a task is: its columns, its labels and the metric that ranks candidates.

    ``text_columns`` and ``label_column`` are the column names of the Hugging Face hub version of the
    task (for GLUE: ``nyu-mll/glue``) or of the user's files. ``num_labels`` is 1 for regression; a
    custom classification task whose labels are not known yet has ``num_labels == 0`` and
    ``label_names is None`` until its data is loaded (``glp.data.load_task_data`` fills both in).
    ``label_names[i]`` is the label value (as text) that maps to class id ``i``. ``metric`` is the
    main metric; ``metrics`` lists every metric ``compute_metrics`` reports (main metric first).
    """

    name: str
    text_columns: tuple[str, ...]
    label_column: str
    num_labels: int
    is_regression: bool
    metric: str
    label_names: tuple[str, ...] | None = None
    metrics: tuple[str, ...] = ()
    is_glue: bool = False
    in_glue_average: bool = True
    kind: str = DEFAULT_KIND  # the registered glp.kinds name
    options: tuple[tuple[str, Any], ...] = ()  # settings of the kind that decide results (tag scheme, ...)

    def __post_init__(self) -> None:
        if not self.metrics:
            object.__setattr__(self, "metrics", (self.metric,))
        elif self.metrics[0] != self.metric:
            object.__setattr__(
                self, "metrics", (self.metric,) + tuple(m for m in self.metrics if m != self.metric)
            )

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    def to_dict(self) -> dict:
        """Plain data. ``kind`` is left out for sequence tasks, so journal keys (which hash this dict) of runs made
        before tasks had kinds stay valid."""
        d = dataclasses.asdict(self)
        for k in ("text_columns", "label_names", "metrics"):
            if d[k] is not None:
                d[k] = list(d[k])
        if d["kind"] == DEFAULT_KIND:
            del d["kind"]
        if d["options"]:
            d["options"] = dict(self.options)
        else:
            del d["options"]
        return d

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    @classmethod
    def from_dict(cls, d: Mapping) -> Task:
        d = dict(d)
        for k in ("text_columns", "metrics"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        if d.get("label_names") is not None:
            d["label_names"] = tuple(d["label_names"])
        if isinstance(d.get("options"), Mapping):
            d["options"] = tuple(sorted(d["options"].items()))
        return cls(**d)


def _glue(name, text_columns, num_labels, metric, label_names, metrics=(), **kw) -> Task:
    return Task(
        name=name,
        text_columns=tuple(text_columns),
        label_column="label",
        num_labels=num_labels,
        is_regression=num_labels == 1,
        metric=metric,
        label_names=label_names,
        metrics=(metric, *metrics),
        is_glue=True,
        **kw,
    )


_BIN = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

#: The GLUE tasks. Label names are the label values of the GLUE TSV files, in the class-id order of
#: the hub dataset ``nyu-mll/glue`` (so hub ids and file labels agree).
GLUE_TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        _glue("cola", ("sentence",), 2, "mcc", _BIN, ("accuracy",)),
        _glue("sst2", ("sentence",), 2, "accuracy", _BIN),
        _glue("mrpc", ("sentence1", "sentence2"), 2, "f1", _BIN, ("accuracy",)),
        _glue("stsb", ("sentence1", "sentence2"), 1, "spearman", None, ("pearson",)),
        _glue("qqp", ("question1", "question2"), 2, "f1", _BIN, ("accuracy",)),
        _glue("mnli", ("premise", "hypothesis"), 3, "accuracy", ("entailment", "neutral", "contradiction")),
        _glue("qnli", ("question", "sentence"), 2, "accuracy", _NLI2),
        _glue("rte", ("sentence1", "sentence2"), 2, "accuracy", _NLI2),
        _glue("wnli", ("sentence1", "sentence2"), 2, "accuracy", _BIN, in_glue_average=False),
    )
}

_TASK_ALIASES = {"sst": "sst2", "sts": "stsb", "mnlim": "mnli", "mnlimatched": "mnli"}

# how the tasks' papers write their names; glp's own names (the keys) are lowercase and without punctuation
_TITLES = {
    "cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP", "mnli": "MNLI", "qnli": "QNLI",
    "rte": "RTE", "wnli": "WNLI", "conll2003": "CoNLL-2003", "wikitext2": "WikiText-2",
}  # fmt: skip


def task_title(name: str) -> str:
    """A task's name as people write it, for tables and titles: ``"sst2"`` → ``"SST-2"``, ``"cola"`` → ``"CoLA"``;
    a task glp does not know by name (a hub dataset, your own data) keeps the name it was given."""
    return _TITLES.get(normalize_task_name(name), str(name))


def normalize_task_name(name: str) -> str:
    """``"SST-2"`` → ``"sst2"``, ``"sts_b"`` → ``"stsb"``: lowercased, without ``-``, ``_`` and spaces."""
    key = str(name).strip().lower()
    for ch in "-_ ":
        key = key.replace(ch, "")
    if key.startswith("glue/"):
        key = key[len("glue/") :]
    return _TASK_ALIASES.get(key, key)


def is_glue_task(name: str) -> bool:
    return normalize_task_name(name) in GLUE_TASKS


def get_task(name: str | Task) -> Task:
    """The GLUE task called ``name`` (case-insensitive, ``sst-2``/``sts-b`` accepted)."""
    if isinstance(name, Task):
        return name
    key = normalize_task_name(name)
    if key not in GLUE_TASKS:
        raise TaskError(
            f"unknown task {name!r}; known tasks: {', '.join(GLUE_TASKS)}. "
            "For your own data, define a custom task (text columns, label column, metric)."
        )
    return GLUE_TASKS[key]


def resolve_task(
    task: str | Task,
    text_columns: str | Sequence[str] | None = None,
    label_column: str | None = None,
    metric: str | None = None,
    label_names: Sequence | None = None,
) -> Task:
    """The task a command's settings name; the one place names, columns and a metric become a `Task`.

    A GLUE name (or a `Task`) with columns, a metric or label names is that task with them replaced (the metric
    must fit it: ``resolve_task("rte", metric="f1")`` is RTE scored by F1); any other name needs ``text_columns``
    and ``label_column`` and becomes a custom task scored with ``metric`` (default accuracy).
    """
    if isinstance(task, Task):
        base = task
    elif is_glue_task(task):
        base = get_task(task)
    elif text_columns and label_column:
        return custom_task(str(task), text_columns, label_column, metric or "accuracy", label_names=label_names)
    else:
        raise TaskError(
            f"unknown task {task!r}; known tasks: {', '.join(GLUE_TASKS)}. For your own data give "
            "--text-columns and --label-column (and --metric) with --train-file/--dev-file or --hub-dataset."
        )
    changes: dict = {}
    if text_columns:
        text_columns = (text_columns,) if isinstance(text_columns, str) else tuple(text_columns)
        if len(text_columns) != len(base.text_columns):
            raise TaskError(
                f"task {base.name!r} takes {len(base.text_columns)} text column(s), got {list(text_columns)}"
            )
        changes["text_columns"] = text_columns
    if label_column is not None:
        changes["label_column"] = str(label_column)
    if metric is not None and normalize_metric(metric) != base.metric:
        m = normalize_metric(metric)
        check_metric(base.name, m, base.is_regression, base.num_labels)
        changes["metric"], changes["metrics"] = m, (m, *base.metrics)
    if label_names is not None:
        if base.is_regression:
            raise TaskError(f"task {base.name!r} is a regression: it has no label names")
        changes["label_names"] = tuple(str(x) for x in label_names)
        changes["num_labels"] = len(changes["label_names"])
    return dataclasses.replace(base, **changes) if changes else base


def check_metric(task: str, metric: str, regression: bool, num_labels: int | None = None, where: str = "") -> None:
    """The one check that a metric fits a task: regression metrics for regressions, binary F1 for two labels."""
    if regression != (metric in REGRESSION_METRICS):
        kind = "a regression" if regression else "a classification"
        raise TaskError(
            f"task {task!r}: metric {metric!r} does not fit {kind} task; "
            "regression metrics: spearman, pearson; classification metrics: accuracy, f1, macro-f1, mcc"
        )
    if metric == "f1" and num_labels is not None and num_labels > 2:
        raise TaskError(
            f"task {task!r}: metric 'f1' is binary but {where or 'the task'} has {num_labels} labels; use 'macro-f1'"
        )


def custom_task(
    name: str,
    text_columns: str | Sequence[str],
    label_column: str,
    metric: str = "accuracy",
    *,
    is_regression: bool | None = None,
    num_labels: int | None = None,
    label_names: Sequence | None = None,
    extra_metrics: Sequence[str] = (),
) -> Task:
    """A task over your own data: one or two text columns, a label column and a metric.

    ``metric`` is one of accuracy, f1 (binary, class id 1 is positive), macro-f1, mcc, spearman,
    pearson. Spearman/Pearson make the task a regression (one output) unless ``is_regression`` says
    otherwise. For classification, ``label_names`` fixes the label set and its id order; without it
    the labels are the sorted unique train labels, filled in when the data is loaded.
    """
    if isinstance(text_columns, str):
        text_columns = (text_columns,)
    text_columns = tuple(str(c) for c in text_columns)
    if len(text_columns) not in (1, 2):
        raise TaskError(
            f"task {name!r}: give one or two text columns, got {len(text_columns)}: {text_columns}"
        )
    if len(set(text_columns)) != len(text_columns) or str(label_column) in text_columns:
        raise TaskError(
            f"task {name!r}: text columns {text_columns} and label column {label_column!r} must all differ"
        )
    metric = normalize_metric(metric)
    extras = tuple(normalize_metric(m) for m in extra_metrics)
    regression = metric in REGRESSION_METRICS if is_regression is None else bool(is_regression)
    for m in (metric, *extras):
        check_metric(str(name), m, regression)
    if regression:
        if label_names is not None:
            raise TaskError(f"task {name!r}: a regression task has no label names")
        n = 1
        names = None
        if not extras:
            extras = tuple(m for m in ("spearman", "pearson") if m != metric)
    else:
        names = None if label_names is None else tuple(str(x) for x in label_names)
        if names is not None and len(set(names)) != len(names):
            raise TaskError(f"task {name!r}: duplicate label names in {names}")
        n = len(names) if names is not None else int(num_labels or 0)
        if num_labels is not None and names is not None and num_labels != len(names):
            raise TaskError(f"task {name!r}: num_labels={num_labels} but {len(names)} label names given")
        if names is not None and n < 2:
            raise TaskError(f"task {name!r}: a classification task needs at least two labels, got {names}")
        check_metric(str(name), metric, False, n)
        if not extras and metric != "accuracy":
            extras = ("accuracy",)
    return Task(
        name=str(name),
        text_columns=text_columns,
        label_column=str(label_column),
        num_labels=n,
        is_regression=regression,
        metric=metric,
        label_names=names,
        metrics=(metric, *extras),
    )


# ------------------------------------------------------------------------------------ compute_metrics


def _correlation(fn, preds: np.ndarray, labels: np.ndarray) -> float:
    """scipy correlation; 0.0 where it is undefined (constant predictions or labels, fewer than 2 rows).

    A collapsed model that predicts one value has no correlation with the target; 0.0 (rather than
    NaN) keeps candidates comparable, the same choice scikit-learn makes for MCC.
    """
    if len(preds) < 2 or np.all(preds == preds[0]) or np.all(labels == labels[0]):
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(fn(preds, labels)[0])
    return 0.0 if math.isnan(value) else value


def _metric_value(metric: str, preds: np.ndarray, labels: np.ndarray) -> float:
    # deferred: scipy and scikit-learn are slow to import; only scoring needs them
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    if metric == "accuracy":
        return float(accuracy_score(labels, preds))
    if metric == "f1":
        return float(f1_score(labels, preds, average="binary", pos_label=1, zero_division=0.0))
    if metric == "macro-f1":
        return float(f1_score(labels, preds, average="macro", zero_division=0.0))
    if metric == "mcc":
        return float(matthews_corrcoef(labels, preds))
    if metric == "spearman":
        return _correlation(spearmanr, preds, labels)
    if metric == "pearson":
        return _correlation(pearsonr, preds, labels)
    raise TaskError(f"unknown metric {metric!r}; known metrics: {', '.join(METRICS)}")


def predictions_from_logits(task: Task, predictions) -> np.ndarray:
    """Class ids (argmax of logits) for classification, a flat float array for regression."""
    p = np.asarray(predictions)
    if task.is_regression:
        if p.ndim == 2 and p.shape[1] == 1:
            p = p[:, 0]
        if p.ndim != 1:
            raise TaskError(
                f"task {task.name!r} is a regression: predictions must be (N,) or (N, 1), got {p.shape}"
            )
        return p.astype(np.float64)
    if p.ndim == 2:
        if task.num_labels and p.shape[1] != task.num_labels:
            raise TaskError(
                f"task {task.name!r} has {task.num_labels} labels but the logits have {p.shape[1]} columns"
            )
        return p.argmax(axis=1).astype(np.int64)
    if p.ndim == 1 and np.issubdtype(p.dtype, np.integer):
        return p.astype(np.int64)
    raise TaskError(
        f"task {task.name!r}: predictions must be logits (N, num_labels) or integer class ids (N,), "
        f"got shape {p.shape} dtype {p.dtype}"
    )


def compute_metrics(task: Task, predictions, labels) -> dict[str, float]:
    """Every metric of ``task`` (its main metric ``task.metric`` first) as plain floats.

    ``predictions`` are logits (N, num_labels) or class ids (N,) for classification, (N,) or (N, 1)
    values for regression; ``labels`` are class ids or float targets.
    """
    preds = predictions_from_logits(task, predictions)
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(preds):
        raise TaskError(
            f"task {task.name!r}: {len(preds)} predictions but labels of shape {y.shape}; they must match"
        )
    if len(y) == 0:
        raise TaskError(f"task {task.name!r}: no examples to score")
    y = y.astype(np.float64) if task.is_regression else y.astype(np.int64)
    return {m: _metric_value(m, preds, y) for m in task.metrics}


def main_metric(task: Task, predictions, labels) -> float:
    return compute_metrics(task, predictions, labels)[task.metric]


def constant_score(task: Task, labels) -> float | None:
    """The best main-metric score of predicting one class for every example (``None`` for a regression).

    A fine-tuned model at this level has learned nothing a search could rank removal sets by: accuracy of the
    majority class, F1 of answering the positive class, Matthews correlation 0.
    """
    if task.is_regression:
        return None
    y = np.asarray(labels).astype(np.int64)
    if len(y) == 0:
        return None
    classes = range(max(int(task.num_labels or 0), int(y.max()) + 1, 2))
    return max(main_metric(task, np.full(len(y), c, dtype=np.int64), y) for c in classes)


def glue_score(main_metric_by_task: Mapping[str, float]) -> float:
    """Mean of the main metrics over the GLUE tasks given, WNLI excluded (as in the paper)."""
    values: dict[str, float] = {}
    for name, value in main_metric_by_task.items():
        task = get_task(name)
        if task.name in values:
            raise TaskError(f"task {task.name!r} is given twice in {sorted(main_metric_by_task)}")
        values[task.name] = float(value)
    values = {k: v for k, v in values.items() if GLUE_TASKS[k].in_glue_average}
    if not values:
        raise TaskError(
            f"no GLUE task to average in {sorted(main_metric_by_task)} (WNLI is not part of the GLUE score)"
        )
    return float(np.mean(list(values.values())))


def relative_performance(x: float | None, base: float | None, higher_is_better: bool = True) -> float | None:
    """Performance relative to the baseline in %: 100 is the baseline's level and more is better, in either
    direction (100 × value / baseline, or 100 × baseline / value for a lower-is-better metric)."""
    if x is None or base is None:
        return None
    if higher_is_better:
        return None if base == 0 else 100.0 * x / base
    return None if x == 0 else 100.0 * base / x
