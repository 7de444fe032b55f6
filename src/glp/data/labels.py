"""Tables → Examples: texts and labels read, checked and converted; ``_build`` makes a source's tables a TaskDataset.

Nothing is dropped silently. A row that cannot be read (a TSV/CSV row with the wrong number of
fields, a JSON Lines line that is not an object) is skipped, counted in ``TaskDataset.skipped`` and
``TaskDataset.notes`` and reported with a :class:`DataWarning`. Everything else that is wrong (a
missing file or column, an empty split, a missing value, a label the task does not know, a
regression target that is not a number) raises :class:`~glp.errors.DataError` naming the file, row
and column.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from decimal import Decimal

import numpy as np

from glp.data.examples import DataWarning, Examples, TaskDataset
from glp.data.tables import _Table
from glp.errors import DataError
from glp.tasks import Task, check_metric


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


_INT_RE = re.compile(r"^[+-]?\d+$")


def _label_key(v) -> str:
    """Label values as text: 1, 1.0, "1" and " 1 " all become "1"."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def _sorted_labels(keys) -> tuple[str, ...]:
    keys = set(keys)
    if all(_INT_RE.match(k) for k in keys):
        return tuple(sorted(keys, key=Decimal))  # (as numbers; int() refuses more than 4300 digits)
    return tuple(sorted(keys))


def _missing_error(table: _Table, column: str, missing: list[int]) -> DataError:
    where = "; ".join(table.where(i) for i in missing[:5])
    more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
    return DataError(f"{table.path}: {len(missing)} rows have no value in column {column!r}: {where}{more}")


def _texts(table: _Table, column: str) -> list[str]:
    values = table.column(column, "text")
    missing = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and math.isnan(v))]
    if missing:
        raise _missing_error(table, column, missing)
    return [v if isinstance(v, str) else str(v) for v in values]


def _raw_labels(table: _Table, column: str) -> list:
    values = table.column(column, "label")
    missing = [i for i, v in enumerate(values) if _is_missing(v)]
    if missing:
        raise _missing_error(table, column, missing)
    if table.label_names is not None:  # hub ClassLabel ids → names
        names = table.label_names
        values = [names[v] if isinstance(v, (int, np.integer)) and 0 <= v < len(names) else v for v in values]
    return values


def _regression_targets(table: _Table, column: str, values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float32)
    for i, v in enumerate(values):
        try:
            if isinstance(v, (bool, np.bool_)):
                raise ValueError
            x = float(v.strip() if isinstance(v, str) else v)
        except (TypeError, ValueError, OverflowError):  # (an integer too large for a float: not finite either)
            x = None
        if x is None or not math.isfinite(x):
            raise DataError(
                f"{table.where(i)}: regression target {v!r} in column {column!r} is not a finite number"
            )
        out[i] = x
    return out


def _class_ids(table: _Table, column: str, values: list, task: Task, from_train: bool) -> np.ndarray:
    names = task.label_names
    assert names is not None
    index = {n: i for i, n in enumerate(names)}
    ids = np.empty(len(values), dtype=np.int64)
    unknown: dict[str, int] = {}
    for i, v in enumerate(values):
        k = _label_key(v)
        j = index.get(k)
        if j is None and task.is_glue and _INT_RE.match(k) and len(k) < 10 and 0 <= int(k) < len(names):
            j = int(k)  # hub-style class id in a file of a GLUE task
        if j is None:
            unknown.setdefault(k, i)
            continue
        ids[i] = j
    if unknown:
        k, i = next(iter(unknown.items()))
        hint = " (a hub test split has label -1: it has no labels)" if k == "-1" else ""
        what = "never seen in train; the train labels are" if from_train else "unknown; the task's labels are"
        raise DataError(
            f"{table.where(i)}: label {k!r} in column {column!r} is {what} "
            f"{', '.join(repr(n) for n in names)}{hint}. Unknown label values ({len(unknown)}): "
            f"{', '.join(repr(u) for u in list(unknown)[:10])}"
        )
    return ids


def _resolve_labels(task: Task, table: _Table, label_column: str) -> Task:
    """Fill in the label set of a custom classification task: the sorted unique train labels."""
    names = table.label_names
    if names is None:
        values = _raw_labels(table, label_column)
        names = _sorted_labels(_label_key(v) for v in values)
    if len(names) < 2:
        raise DataError(
            f"{table.path}: column {label_column!r} has a single label value {list(names)}; "
            "a classification task needs at least two (for a regression use metric spearman or pearson)"
        )
    check_metric(task.name, task.metric, False, len(names), where=table.path)
    return dataclasses.replace(task, label_names=tuple(names), num_labels=len(names))


def _examples(
    table: _Table, task: Task, split: str, text_columns: tuple[str, ...], label_column: str, from_train: bool
) -> Examples:
    if len(table) == 0:
        extra = f" ({table.skipped} unreadable rows skipped)" if table.skipped else ""
        raise DataError(f"{table.path}: the {split} split is empty{extra}")
    text_a = _texts(table, text_columns[0])
    text_b = _texts(table, text_columns[1]) if len(text_columns) == 2 else None
    values = _raw_labels(table, label_column)
    if task.is_regression:
        labels = _regression_targets(table, label_column, values)
    else:
        labels = _class_ids(table, label_column, values, task, from_train)
    return Examples(text_a=text_a, text_b=text_b, labels=labels, row_ids=table.row_ids)


def _build(
    task: Task,
    tables: dict[str, _Table],
    source: str,
    text_columns: tuple[str, ...] | None = None,
    label_column: str | None = None,
) -> TaskDataset:
    """Tables → TaskDataset. ``text_columns`` / ``label_column`` override the task's column names
    (the GLUE TSV files name their columns differently from the hub)."""
    text_columns = tuple(text_columns or task.text_columns)
    label_column = label_column or task.label_column
    for t in tables.values():  # every missing column is named before any row is read
        for c in text_columns:
            t.column(c, "text")
        t.column(label_column, "label")
    skipped, notes = {}, []
    for split, t in tables.items():
        skipped[split] = t.skipped
        if t.skipped:
            where = "; ".join(t.skipped_where[:5]) + (" ..." if t.skipped > 5 else "")
            note = f"{t.path}: skipped {t.skipped} unreadable rows: {where}"
            notes.append(note)
            warnings.warn(note, DataWarning, stacklevel=3)
    from_train = not task.is_regression and task.label_names is None
    if from_train:
        train = tables["train"]
        if len(train) == 0:
            extra = f" ({train.skipped} unreadable rows skipped)" if train.skipped else ""
            raise DataError(f"{train.path}: the train split is empty{extra}")
        task = _resolve_labels(task, train, label_column)
    examples = {
        split: _examples(t, task, split, text_columns, label_column, from_train and split != "train")
        for split, t in tables.items()
    }
    train_ex, dev_ex = examples.pop("train"), examples.pop("dev")
    return TaskDataset(
        task=task, train=train_ex, dev=dev_ex, source=source, extra_dev=examples, skipped=skipped, notes=notes
    )
