"""Task data: load it, split it for the search, tokenize it once.

Sources, in the order ``load_task_data`` tries them:

* your files (``train_file`` / ``dev_file``: CSV, TSV, JSON, JSON Lines or parquet),
* a Hugging Face hub dataset by name (``hub_name``, through ``datasets.load_dataset``),
* a local GLUE directory in the standard layout (``<dir>/RTE/train.tsv``, ``dev.tsv``, MNLI
  ``dev_matched.tsv``), given as ``data_dir`` or by the environment variable ``GLP_GLUE_DIR``,
* for GLUE tasks without any of these: the hub dataset ``nyu-mll/glue``.

Nothing is dropped silently. A row that cannot be read (a TSV/CSV row with the wrong number of
fields, a JSON Lines line that is not an object) is skipped, counted in ``TaskDataset.skipped`` and
``TaskDataset.notes`` and reported with a :class:`DataWarning`. Everything else that is wrong (a
missing file or column, an empty split, a missing value, a label the task does not know, a
regression target that is not a number) raises :class:`~glp.errors.DataError` naming the file, row
and column.

The search split (:func:`search_split`) is a seeded, stratified split of the training data into the
part candidates are fine-tuned on and the part they are scored on; its ``fingerprint`` identifies it.
:func:`encode` tokenizes once and caches the result in memory (and optionally on disk as ``.npz``).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glp.atomic import write_atomic
from glp.errors import DataError
from glp.tasks import Task, check_metric, get_task, is_glue_task, resolve_task

GLUE_DIR_ENV = "GLP_GLUE_DIR"
GLUE_HUB_NAME = "nyu-mll/glue"
SUPPORTED_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet", ".pq")


class DataWarning(UserWarning):
    """Rows that were skipped because they could not be read."""


# ------------------------------------------------------------------------------------------- examples


@dataclass
class Examples:
    """One split of a task: texts, labels, source row ids.

    ``labels`` has one entry per row: an array whose first axis is the rows (int64 class ids or float32 targets of
    sequence classification; a kind may give each row a vector, as multi-label classification does), or a list of
    one array per row for labels of different lengths (a tag per word). ``text_a`` holds what the kind tokenizes
    (a text, or a list of words).
    """

    text_a: list
    text_b: list | None
    labels: np.ndarray | list[np.ndarray]
    row_ids: np.ndarray
    groups: np.ndarray | None = None  # rows that belong together (a document's sentences): split together

    def __post_init__(self) -> None:
        self.text_a = list(self.text_a)
        if self.text_b is not None:
            self.text_b = list(self.text_b)
        if isinstance(self.labels, list) and any(np.ndim(x) > 0 for x in self.labels):
            self.labels = [np.asarray(x) for x in self.labels]
        else:
            labels = np.asarray(self.labels)
            self.labels = labels.astype(np.float32 if labels.dtype.kind == "f" else np.int64, copy=False)
        self.row_ids = np.asarray(self.row_ids, dtype=np.int64)
        if self.groups is not None:
            self.groups = np.asarray(self.groups, dtype=np.int64)
        n = len(self.text_a)
        sizes = {len(self.labels), len(self.row_ids)} | (
            {len(self.text_b)} if self.text_b is not None else set()
        )
        if (isinstance(self.labels, np.ndarray) and self.labels.ndim == 0) or sizes != {n}:
            raise DataError(
                f"Examples: text_a has {n} rows but text_b/labels/row_ids have "
                f"{None if self.text_b is None else len(self.text_b)}/{len(self.labels)}/{len(self.row_ids)}"
            )

    def __len__(self) -> int:
        return len(self.text_a)

    def __repr__(self) -> str:
        kind = "pairs" if self.text_b is not None else "texts"
        dtype = self.labels[0].dtype if isinstance(self.labels, list) and self.labels else np.asarray(self.labels).dtype
        return f"Examples({len(self)} {kind}, labels {dtype})"

    @property
    def is_regression(self) -> bool:
        return isinstance(self.labels, np.ndarray) and self.labels.dtype.kind == "f"

    def subset(self, indices) -> Examples:
        """The rows at ``indices`` (positions, not row ids), in that order; a boolean mask works too."""
        idx = _as_indices(indices, len(self))
        return Examples(
            text_a=[self.text_a[i] for i in idx],
            text_b=None if self.text_b is None else [self.text_b[i] for i in idx],
            labels=self.labels[idx] if isinstance(self.labels, np.ndarray) else [self.labels[i] for i in idx],
            row_ids=self.row_ids[idx],
            groups=None if self.groups is None else self.groups[idx],
        )

    def content_hash(self) -> str:
        """sha256 of the texts, labels and row ids: equal hashes mean equal examples."""
        h = hashlib.sha256(_texts_digest(self.text_a, self.text_b).encode())
        if isinstance(self.labels, list):  # one array per row
            h.update(b"rows:" + np.array([len(x) for x in self.labels], dtype="<i8").tobytes())
            for part in self.labels:
                h.update(part.dtype.str.encode() + np.ascontiguousarray(part).tobytes())
        else:
            h.update(self.labels.dtype.str.encode())
            if self.labels.ndim != 1:  # 1-D labels hash as they always did: evaluation journal keys hold this hash
                h.update(str(self.labels.shape).encode())
            h.update(np.ascontiguousarray(self.labels).tobytes())
        h.update(self.row_ids.tobytes())
        return h.hexdigest()


def _as_indices(indices, n: int) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise DataError(f"boolean mask of shape {idx.shape} for {n} rows")
        return np.flatnonzero(idx)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.dtype.kind not in "iu":
        raise DataError(f"indices must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64).ravel()
    if idx.min() < -n or idx.max() >= n:
        raise DataError(f"index out of range for {n} rows")
    return idx


@dataclass
class TaskDataset:
    """A task with its train and dev examples.

    ``extra_dev`` holds further evaluation splits (MNLI: ``"dev_mismatched"``). ``skipped`` counts the
    unreadable rows per split, ``notes`` says what was skipped and where (for display).
    """

    task: Task
    train: Examples
    dev: Examples
    source: str
    extra_dev: dict[str, Examples] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def skipped_rows(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        parts = [f"{self.task.name}: train {len(self.train)}, dev {len(self.dev)}"]
        parts += [f"{k} {len(v)}" for k, v in self.extra_dev.items()]
        if self.skipped_rows:
            parts.append(f"skipped {self.skipped_rows} unreadable rows")
        return ", ".join(parts) + f" ({self.source})"


# ---------------------------------------------------------------------------------------- raw tables


@dataclass
class _Table:
    """Columns of one file or hub split, before they become Examples."""

    path: str
    columns: list[str]
    data: dict[str, list]
    row_ids: np.ndarray
    lines: np.ndarray | None = None  # line numbers (1-based) where the file has lines
    skipped: int = 0
    skipped_where: list[str] = field(default_factory=list)
    label_names: tuple[str, ...] | None = None  # from a hub ClassLabel feature

    def __len__(self) -> int:
        return len(self.row_ids)

    def where(self, i: int) -> str:
        s = f"{self.path}, row {int(self.row_ids[i])}"
        if self.lines is not None:
            s += f" (line {int(self.lines[i])})"
        return s

    def column(self, name: str, role: str) -> list:
        if name not in self.data:
            raise DataError(
                f"{self.path}: {role} column {name!r} not found; available columns: "
                f"{', '.join(repr(c) for c in self.columns) or '(none)'}"
            )
        return self.data[name]


def _check_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} file not found: {path}")
    if not path.is_file():
        raise DataError(f"{what} path is not a file: {path}")
    return path


def _read_delimited(
    path: Path, delimiter: str, quoting: int, header: bool = True, names: Sequence[str] | None = None
) -> _Table:
    """Read a CSV/TSV file; rows whose field count differs from the header's are skipped and counted."""
    rows: list[list[str]] = []
    row_ids: list[int] = []
    lines: list[int] = []
    skipped_where: list[str] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter=delimiter, quoting=quoting)
            if header:
                columns = next(reader, None)
                if columns is None:
                    raise DataError(f"{path}: the file is empty (no header row)")
                columns = [c.strip() for c in columns]
            else:
                columns = list(names or [])
            ncols = len(columns)
            row = 0
            for fields in reader:
                if not fields:  # blank line: not a row
                    continue
                if not ncols:
                    ncols = len(fields)
                    columns = [str(i) for i in range(ncols)]
                if len(fields) != ncols:
                    skipped_where.append(
                        f"row {row} (line {reader.line_num}: {len(fields)} fields, expected {ncols})"
                    )
                else:
                    rows.append(fields)
                    row_ids.append(row)
                    lines.append(reader.line_num)
                row += 1
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 text ({e})") from e
    except csv.Error as e:
        raise DataError(f"{path}: cannot parse as {'TSV' if delimiter == chr(9) else 'CSV'}: {e}") from e
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise DataError(f"{path}: duplicate column names {dup}; columns: {columns}")
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    data = {c: list(v) for c, v in zip(columns, cols, strict=True)}
    return _Table(
        path=str(path),
        columns=list(columns),
        data=data,
        row_ids=np.asarray(row_ids, dtype=np.int64),
        lines=np.asarray(lines, dtype=np.int64),
        skipped=len(skipped_where),
        skipped_where=skipped_where,
    )


def _records_to_table(path: Path, records: list, row_ids: list[int], lines: list[int] | None) -> _Table:
    columns: dict[str, None] = {}
    for r in records:
        for k in r:
            columns.setdefault(str(k), None)
    data = {c: [r.get(c) for r in records] for c in columns}
    return _Table(
        path=str(path),
        columns=list(columns),
        data=data,
        row_ids=np.asarray(row_ids, dtype=np.int64),
        lines=None if lines is None else np.asarray(lines, dtype=np.int64),
    )


def _read_json(path: Path) -> _Table:
    """JSON (a list of records, ``{"data": [records]}`` or ``{column: [values]}``) or JSON Lines."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 text ({e})") from e
    obj = None
    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None  # maybe JSON Lines with a .json name
    if isinstance(obj, dict):
        values = list(obj.values())
        if values and all(isinstance(v, list) for v in values):
            if len(obj) == 1 and all(isinstance(r, dict) for r in values[0]):
                obj = values[0]  # {"data": [records]}
            else:
                lengths = {len(v) for v in values}
                if len(lengths) != 1:
                    raise DataError(f"{path}: columns have different lengths {sorted(lengths)}")
                n = lengths.pop()
                return _Table(
                    path=str(path),
                    columns=[str(k) for k in obj],
                    data={str(k): list(v) for k, v in obj.items()},
                    row_ids=np.arange(n, dtype=np.int64),
                )
        else:
            obj = [obj]
    if isinstance(obj, list):
        records, ids, skipped = [], [], []
        for i, r in enumerate(obj):
            if isinstance(r, dict):
                records.append(r)
                ids.append(i)
            else:
                skipped.append(f"row {i} (not a JSON object: {type(r).__name__})")
        table = _records_to_table(path, records, ids, None)
        table.skipped, table.skipped_where = len(skipped), skipped
        return table
    # JSON Lines
    records, ids, lines, skipped = [], [], [], []
    row = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            skipped.append(f"row {row} (line {lineno}: invalid JSON: {e.msg})")
        else:
            if isinstance(r, dict):
                records.append(r)
                ids.append(row)
                lines.append(lineno)
            else:
                skipped.append(f"row {row} (line {lineno}: not a JSON object)")
        row += 1
    table = _records_to_table(path, records, ids, lines)
    table.skipped, table.skipped_where = len(skipped), skipped
    return table


def _read_parquet(path: Path) -> _Table:
    import pyarrow.parquet as pq

    try:
        data = pq.read_table(path).to_pydict()
    except Exception as e:  # pyarrow raises several types for broken files
        raise DataError(f"{path}: cannot read as parquet: {e}") from e
    n = len(next(iter(data.values()))) if data else 0
    return _Table(path=str(path), columns=list(data), data=data, row_ids=np.arange(n, dtype=np.int64))


def read_table(path: str | os.PathLike, what: str = "data") -> _Table:
    """Read a CSV / TSV / JSON / JSONL / parquet file by its suffix (TSV is read GLUE-style, unquoted)."""
    path = _check_file(Path(path), what)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_delimited(path, ",", csv.QUOTE_MINIMAL)
    if suffix == ".tsv":
        return _read_delimited(path, "\t", csv.QUOTE_NONE)
    if suffix in (".json", ".jsonl", ".ndjson"):
        return _read_json(path)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path)
    raise DataError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}")


# ----------------------------------------------------------------------------- table → Examples


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
        return tuple(sorted(keys, key=int))
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
        except (TypeError, ValueError):
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
        if j is None and task.is_glue and _INT_RE.match(k) and 0 <= int(k) < len(names):
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


# ------------------------------------------------------------------------------------ GLUE layout


@dataclass(frozen=True)
class GlueLayout:
    """Where a GLUE task lives in the standard ``glue_data`` directory and which TSV columns it reads."""

    dirname: str
    text_columns: tuple[str, ...]
    label_column: str
    header: bool = True
    names: tuple[str, ...] | None = None
    dev_files: tuple[tuple[str, str], ...] = (("dev", "dev.tsv"),)
    hub_dev_splits: tuple[tuple[str, str], ...] = (("dev", "validation"),)


GLUE_LAYOUT: dict[str, GlueLayout] = {
    "cola": GlueLayout("CoLA", ("sentence",), "label", header=False,
                       names=("source", "label", "original_label", "sentence")),
    "sst2": GlueLayout("SST-2", ("sentence",), "label"),
    "mrpc": GlueLayout("MRPC", ("#1 String", "#2 String"), "Quality"),
    "stsb": GlueLayout("STS-B", ("sentence1", "sentence2"), "score"),
    "qqp": GlueLayout("QQP", ("question1", "question2"), "is_duplicate"),
    "mnli": GlueLayout(
        "MNLI", ("sentence1", "sentence2"), "gold_label",
        dev_files=(("dev", "dev_matched.tsv"), ("dev_mismatched", "dev_mismatched.tsv")),
        hub_dev_splits=(("dev", "validation_matched"), ("dev_mismatched", "validation_mismatched")),
    ),
    "qnli": GlueLayout("QNLI", ("question", "sentence"), "label"),
    "rte": GlueLayout("RTE", ("sentence1", "sentence2"), "label"),
    "wnli": GlueLayout("WNLI", ("sentence1", "sentence2"), "label"),
}  # fmt: skip


def default_glue_dir() -> Path | None:
    """The GLUE directory named by the environment variable ``GLP_GLUE_DIR``, if set."""
    value = os.environ.get(GLUE_DIR_ENV)
    return Path(value).expanduser() if value else None


def _glue_task_dir(data_dir: Path, task: Task) -> Path:
    layout = GLUE_LAYOUT[task.name]
    if not data_dir.is_dir():
        raise DataError(f"GLUE directory not found: {data_dir}")
    exact = data_dir / layout.dirname
    if exact.is_dir():
        return exact
    entries = sorted(p.name for p in data_dir.iterdir() if p.is_dir())
    for name in entries:  # "sst2", "sst-2", "SST2" ... all work
        if is_glue_task(name) and get_task(name).name == task.name:
            return data_dir / name
    raise DataError(
        f"no {layout.dirname} directory in {data_dir} (expected {exact / 'train.tsv'}); "
        f"found: {', '.join(entries) or '(nothing)'}"
    )


def load_glue_dir(task: str | Task, data_dir: str | os.PathLike) -> TaskDataset:
    """A GLUE task from a local directory in the standard layout (TSV files read with ``QUOTE_NONE``)."""
    task = get_task(task)
    layout = GLUE_LAYOUT[task.name]
    task_dir = _glue_task_dir(Path(data_dir).expanduser(), task)

    def read(split: str, filename: str) -> _Table:
        path = _check_file(task_dir / filename, f"{task.name} {split}")
        return _read_delimited(path, "\t", csv.QUOTE_NONE, header=layout.header, names=layout.names)

    tables = {"train": read("train", "train.tsv")}
    for split, filename in layout.dev_files:
        tables[split] = read(split, filename)
    return _build(task, tables, f"glue-dir:{task_dir}", layout.text_columns, layout.label_column)


# ------------------------------------------------------------------------------------------- hub


def _hub_table(ds, name: str, split: str, columns: Sequence[str], label_column: str) -> _Table:
    if split not in ds:
        raise DataError(f"hub dataset {name!r} has no split {split!r}; splits: {', '.join(ds)}")
    d = ds[split]
    path = f"{name}[{split}]"
    available = list(d.column_names)
    data = {c: list(d[c]) for c in dict.fromkeys(columns) if c in available}
    table = _Table(path=path, columns=available, data=data, row_ids=np.arange(len(d), dtype=np.int64))
    feature = d.features.get(label_column) if getattr(d, "features", None) is not None else None
    names = getattr(feature, "names", None)  # a ClassLabel column: ids with names
    if names is not None:
        table.label_names = tuple(str(x) for x in names)
    return table


def load_hub_dataset(name: str, config: str | None = None, offline_hint: str = "") -> Any:
    """``datasets.load_dataset(name, config)`` with its named splits; a `DataError` saying what to do without the
    hub when it fails."""
    import datasets

    try:
        ds = datasets.load_dataset(name, config)
    except Exception as e:  # offline, unknown name or config, ...
        hint = offline_hint or "give a local directory (--data-dir) or --train-file/--dev-file"
        raise DataError(
            f"cannot load hub dataset {name!r}" + (f" (config {config!r})" if config else "")
            + f": {type(e).__name__}: {e}. Without the hub, {hint}"
        ) from e
    if not hasattr(ds, "keys"):
        raise DataError(f"hub dataset {name!r} did not return named splits")
    return ds


def load_hub(
    task: Task,
    hub_name: str,
    hub_config: str | None = None,
    train_split: str = "train",
    dev_split: str | None = None,
) -> TaskDataset:
    """A task from a Hugging Face hub dataset (``datasets.load_dataset(hub_name, hub_config)``).

    GLUE tasks use the ``nyu-mll/glue`` columns and splits (MNLI: ``validation_matched`` and
    ``validation_mismatched``). Other datasets use ``task.text_columns`` / ``task.label_column`` and the
    ``dev_split`` given, else the first of validation / dev / valid that exists.
    """
    ds = load_hub_dataset(hub_name, hub_config, f"use a local GLUE directory ({GLUE_DIR_ENV}) or train/dev files")
    columns = (*task.text_columns, task.label_column)
    if dev_split is not None:
        dev_splits: tuple[tuple[str, str], ...] = (("dev", dev_split),)
    elif task.is_glue:
        dev_splits = GLUE_LAYOUT[task.name].hub_dev_splits
    else:
        found = next((s for s in ("validation", "dev", "valid") if s in ds), None)
        if found is None:
            raise DataError(
                f"hub dataset {hub_name!r} has no validation split (splits: {', '.join(ds)}); "
                "name one with dev_split"
            )
        dev_splits = (("dev", found),)
    tables = {"train": _hub_table(ds, hub_name, train_split, columns, task.label_column)}
    for split, hub_split in dev_splits:
        tables[split] = _hub_table(ds, hub_name, hub_split, columns, task.label_column)
    if task.is_glue:  # GLUE hub labels are class ids in our label order already
        for t in tables.values():
            t.label_names = None
    source = f"hub:{hub_name}" + (f"/{hub_config}" if hub_config else "")
    return _build(task, tables, source)


# ----------------------------------------------------------------------------------------- files


def load_files(
    task: Task, train_file: str | os.PathLike, dev_file: str | os.PathLike, **extra_dev_files
) -> TaskDataset:
    """A task from your own train and dev files (CSV, TSV, JSON, JSON Lines or parquet)."""
    tables = {"train": read_table(train_file, "train"), "dev": read_table(dev_file, "dev")}
    for split, path in extra_dev_files.items():
        tables[split] = read_table(path, split)
    return _build(task, tables, f"files:train={train_file},dev={dev_file}")


# ------------------------------------------------------------------------------------------ build


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


def load_task_data(
    task: str | Task,
    data_dir: str | os.PathLike | None = None,
    train_file: str | os.PathLike | None = None,
    dev_file: str | os.PathLike | None = None,
    hub_name: str | None = None,
    *,
    hub_config: str | None = None,
    text_columns: str | Sequence[str] | None = None,
    label_column: str | None = None,
    metric: str | None = None,
    label_names: Sequence | None = None,
    train_split: str = "train",
    dev_split: str | None = None,
) -> TaskDataset:
    """Load a task's train and dev examples.

    ``task`` is a GLUE task name, a :class:`~glp.tasks.Task`, or any other name together with
    ``text_columns`` and ``label_column`` (a custom task scored with ``metric``, default accuracy).
    Sources: ``train_file`` + ``dev_file``; else ``hub_name`` (+ ``hub_config``); else, for GLUE
    tasks, ``data_dir`` or ``$GLP_GLUE_DIR`` (standard GLUE layout); else the hub's ``nyu-mll/glue``.
    The returned ``TaskDataset.task`` has its label set filled in (custom classification: the sorted
    unique train labels).
    """
    task = resolve_task(task, text_columns, label_column, metric, label_names)
    if train_file is not None or dev_file is not None:
        if train_file is None or dev_file is None:
            raise DataError(
                f"give both train_file and dev_file (got train_file={train_file}, dev_file={dev_file})"
            )
        return load_files(task, train_file, dev_file)
    if hub_name is not None:
        if task.is_glue and hub_config is None and hub_name in (GLUE_HUB_NAME, "glue"):
            hub_config = task.name
        return load_hub(task, hub_name, hub_config, train_split=train_split, dev_split=dev_split)
    if not task.is_glue:
        raise DataError(f"task {task.name!r}: give train_file and dev_file, or hub_name, to load its data")
    glue_dir = Path(data_dir) if data_dir is not None else default_glue_dir()
    if glue_dir is not None:
        return load_glue_dir(task, glue_dir)
    return load_hub(task, GLUE_HUB_NAME, task.name)


def column_tuple(v: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``a,b`` or ``["a", "b"]`` → ``("a", "b")`` (YAML, flags and journaled settings all read this way)."""
    if v is None:
        return None
    if isinstance(v, str):
        return tuple(x.strip() for x in v.split(",") if x.strip())
    return tuple(v)


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """Where a task's data comes from. `glp.commands.prune.PruneConfig` is a DataSpec (these are its data settings);
    ``glp evaluate`` and ``glp export`` read one back from a run's journaled settings."""

    task: str = field(metadata={"help": "GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli) or a name "
                                        "for your own data."})
    kind: str | None = field(default=None, metadata={"help": "What the task is (default: implied by the data "
                                                              "settings; sequence-classification)."})
    data_dir: str | None = field(default=None, metadata={"help": "Local GLUE directory (<dir>/<TASK>/train.tsv, "
                                                                  "dev.tsv); default $GLP_GLUE_DIR, else the hub."})
    train_file: str | None = field(default=None, metadata={"help": "Your own train data (csv/tsv/json/jsonl/parquet)."})
    dev_file: str | None = field(default=None, metadata={"help": "Your own dev data."})
    hub_dataset: str | None = field(default=None, metadata={"help": "A hub dataset name, for datasets.load_dataset."})
    text_columns: tuple[str, ...] | None = field(default=None, metadata={"help": "One or two text columns, e.g. a,b."})
    label_column: str | None = field(default=None, metadata={"help": "The label column."})
    metric: str | None = field(default=None, metadata={"help": "For your own data: accuracy | f1 | macro-f1 | mcc | "
                                                                "spearman | pearson."})
    test_file: str | None = field(default=None, metadata={"help": "Your own test data (token classification: "
                                                                   "scored by glp evaluate next to dev)."})
    token_column: str | None = field(default=None, metadata={"help": "Token classification: the words' column (0-based "
                                                                      "number in a column file; a list column's name "
                                                                      "in JSON/parquet, default tokens)."})
    tag_column: str | None = field(default=None, metadata={"help": "Token classification: the tags' column (number, "
                                                                    "default the last; or name, default ner_tags)."})
    label_names: tuple[str, ...] | None = field(default=None, metadata={"help": "Names of integer tags, in id order, "
                                                                                 "e.g. O,B-PER,I-PER."})
    label_all_tokens: bool = field(default=False, metadata={"help": "Token classification: tag every sub-token, not "
                                                                     "only a word's first (run_ner.py's flag)."})
    tag_scheme: str | None = field(default=None, metadata={"help": "IOB1 | IOB2 | IOBES | none (token accuracy); "
                                                                    "default: detected from train."})
    text_column: str | None = field(default=None, metadata={"help": "Causal LM: the text column of a JSON/JSONL/"
                                                                     "parquet/CSV corpus (default text)."})
    prompt_column: str | None = field(default=None, metadata={"help": "Causal LM: prompt/response pairs, the "
                                                                       "prompts' column (loss on responses only)."})
    response_column: str | None = field(default=None, metadata={"help": "Causal LM: the responses' column."})
    chat_template: bool = field(default=False, metadata={"help": "Causal LM pairs: wrap each prompt in the "
                                                                  "tokenizer's chat template."})
    block_size: int | None = field(default=None, metadata={"help": "Causal LM: tokens per block the text is packed "
                                                                    "into (run_clm's flag; default --max-seq-length)."})

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        """The data fields of a settings dict (a journaled `PruneConfig`; other keys are ignored)."""
        kw = {f.name: d.get(f.name) for f in dataclasses.fields(DataSpec)}
        kw["text_columns"] = column_tuple(kw["text_columns"])
        kw["label_names"] = column_tuple(kw["label_names"])
        kw["label_all_tokens"] = bool(kw["label_all_tokens"])
        kw["chat_template"] = bool(kw["chat_template"])
        kw["block_size"] = None if kw["block_size"] is None else int(kw["block_size"])
        for k in ("token_column", "tag_column"):
            kw[k] = None if kw[k] is None else str(kw[k])
        return DataSpec(**kw)

    def data_spec(self) -> DataSpec:
        """Only the data settings (of a `PruneConfig`, say)."""
        return DataSpec(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DataSpec)})

    def override(self, **kw) -> DataSpec:
        """These data settings with the given ones (None = keep); a train or dev file replaces ``data_dir``."""
        kw = {k: v for k, v in kw.items() if v is not None}
        if kw.get("train_file") or kw.get("dev_file"):
            kw.setdefault("data_dir", None)
            kw.setdefault("test_file", None)
        spec = self.data_spec()
        return dataclasses.replace(spec, **kw) if kw else spec


# ------------------------------------------------------------------------------------ search split


@dataclass(frozen=True)
class SearchSplit:
    """The training data split into ``train`` (fine-tune candidates) and ``eval`` (score them)."""

    train: Examples
    eval: Examples
    fingerprint: str
    seed: int = 0
    eval_fraction: float = 0.15

    def to_dict(self) -> dict:
        """Plain metadata to record with a run (not the examples)."""
        return {
            "fingerprint": self.fingerprint,
            "seed": self.seed,
            "eval_fraction": self.eval_fraction,
            "train_size": len(self.train),
            "eval_size": len(self.eval),
        }


def split_fingerprint(eval_row_ids, train_row_ids, seed: int, eval_fraction: float) -> str:
    """sha256 of the chosen row ids, the seed and the fraction."""
    h = hashlib.sha256(f"glp-search-split/v1|seed={int(seed)}|fraction={float(eval_fraction)!r}|".encode())
    ev = np.sort(np.asarray(eval_row_ids, dtype=np.int64))
    tr = np.sort(np.asarray(train_row_ids, dtype=np.int64))
    h.update(f"eval={len(ev)}|".encode() + ev.astype("<i8").tobytes())
    h.update(f"|train={len(tr)}|".encode() + tr.astype("<i8").tobytes())
    return h.hexdigest()


def regression_strata(targets, n_bins: int = 10) -> np.ndarray:
    """Quantile bin of every regression target (ties share a bin, so some bins may be empty)."""
    y = np.asarray(targets, dtype=np.float64)
    n_bins = max(1, min(int(n_bins), len(y) // 10))
    if n_bins == 1:
        return np.zeros(len(y), dtype=np.int64)
    edges = np.quantile(y, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
    return np.searchsorted(edges, y, side="right").astype(np.int64)


def stratified_eval_indices(strata, eval_fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a seeded eval subset with ``round(n * eval_fraction)`` rows, stratified.

    Every stratum of size ``n_c`` gets ``floor(q)`` or ``ceil(q)`` eval rows, ``q = n_c * n_eval / n``
    (largest remainders first, ties broken by the seeded generator), so each class is within one
    example of its share.
    """
    strata = np.asarray(strata)
    n = len(strata)
    if n < 2:
        raise DataError(f"cannot split {n} example(s) into search-train and search-eval; need at least 2")
    if not 0.0 < eval_fraction < 1.0:
        raise DataError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    rng = np.random.default_rng(seed)
    n_eval = min(max(int(round(n * eval_fraction)), 1), n - 1)
    classes, inverse = np.unique(strata, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(classes))
    quota = counts * (n_eval / n)
    take = np.floor(quota).astype(np.int64)
    remainder = n_eval - int(take.sum())
    if remainder > 0:
        order = np.lexsort((rng.permutation(len(classes)), -(quota - take)))
        take[order[:remainder]] += 1
    chosen = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        chosen.append(rng.permutation(members)[: take[c]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def search_split(
    train: Examples, eval_fraction: float = 0.15, seed: int = 42, regression: bool = False, strata=None
) -> SearchSplit:
    """Seeded split of ``train`` into search-train (85%) and search-eval (15%), stratified by label.

    Regression targets (``regression=True``, or float labels) are stratified by quantile bins; a kind whose labels
    are not one class per row gives its own ``strata`` (one integer per row: a document, the first label ...).
    The same examples, seed and fraction always give the same split; the ``fingerprint`` proves it.
    """
    if strata is None:
        regression = bool(regression) or train.labels.dtype.kind == "f"
        strata = regression_strata(train.labels) if regression else train.labels
    eval_idx = stratified_eval_indices(strata, float(eval_fraction), int(seed))
    mask = np.zeros(len(train), dtype=bool)
    mask[eval_idx] = True
    train_part, eval_part = train.subset(~mask), train.subset(mask)
    fp = split_fingerprint(eval_part.row_ids, train_part.row_ids, int(seed), float(eval_fraction))
    return SearchSplit(
        train=train_part, eval=eval_part, fingerprint=fp, seed=int(seed), eval_fraction=float(eval_fraction)
    )


def group_split(train: Examples, eval_fraction: float, seed: int) -> SearchSplit:
    """Whole groups (``train.groups``: a document's sentences, an article's paragraphs) to search-eval, in a seeded
    order, until it holds ``eval_fraction`` of the rows; a plain seeded split of the rows where there are fewer than 4
    groups."""
    docs = np.unique(train.groups) if train.groups is not None else np.zeros(1)
    if len(docs) < 4:
        return search_split(train, eval_fraction, seed, strata=np.zeros(len(train), dtype=np.int64))
    if not 0.0 < eval_fraction < 1.0:
        raise DataError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    rng = np.random.default_rng(seed)
    want = max(1, int(round(len(train) * eval_fraction)))
    mask = np.zeros(len(train), dtype=bool)
    for d in rng.permutation(docs):
        if mask.sum() >= want:
            break
        mask |= train.groups == d
    if mask.all():
        raise DataError("the search split left no training sentences; lower --eval-fraction")
    tr, ev = train.subset(~mask), train.subset(mask)
    fp = split_fingerprint(ev.row_ids, tr.row_ids, int(seed), float(eval_fraction))
    return SearchSplit(train=tr, eval=ev, fingerprint=fp, seed=int(seed), eval_fraction=float(eval_fraction))


# ------------------------------------------------------------------------------------------ encode


@dataclass
class Encoded:
    """Tokenized examples as the training loop reads them: unpadded int64 id arrays (each at most ``max_length``
    long), optional token type ids, and labels (one per row; a kind may give each row an array of labels)."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray] | None
    labels: np.ndarray | list[np.ndarray]
    _lengths: np.ndarray | None = field(default=None, repr=False, compare=False)
    extra: dict[str, list] = field(default_factory=dict)  # per-row data of a kind (word starts, word tags ...)

    def __len__(self) -> int:
        return len(self.input_ids)

    def __repr__(self) -> str:
        lengths = self.lengths
        longest = int(lengths.max()) if len(lengths) else 0
        has_types = self.token_type_ids is not None
        return f"Encoded({len(self)} rows, max length {longest}, token_type_ids={has_types})"

    @property
    def lengths(self) -> np.ndarray:
        if self._lengths is None or len(self._lengths) != len(self.input_ids):
            self._lengths = np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))
        return self._lengths

    def check(self) -> Encoded:
        """Raise `DataError` unless ids, token types and labels have one row each and no row is empty."""
        n = len(self.input_ids)
        if len(self.labels) != n or (self.token_type_ids is not None and len(self.token_type_ids) != n):
            raise DataError(
                f"encoded data: {n} input_ids, {len(self.labels)} labels"
                + (f", {len(self.token_type_ids)} token_type_ids" if self.token_type_ids is not None else "")
                + "; they must have the same length"
            )
        if n and self.lengths.min() < 1:
            raise DataError("encoded data contains an empty sequence")
        return self

    def subset(self, indices) -> Encoded:
        idx = _as_indices(indices, len(self))
        labels = self.labels[idx] if isinstance(self.labels, np.ndarray) else [self.labels[i] for i in idx]
        return Encoded(
            input_ids=[self.input_ids[i] for i in idx],
            token_type_ids=None if self.token_type_ids is None else [self.token_type_ids[i] for i in idx],
            labels=labels,
            _lengths=self.lengths[idx],
            extra={k: [v[i] for i in idx] for k, v in self.extra.items()},
        )

    def subsample(self, max_n: int | None, seed: int, stream: int) -> Encoded:
        """A seeded random subset of ``max_n`` rows (in their original order); self when it is not smaller.

        ``stream`` separates the subsets drawn with one seed (a trial's train rows: 1, its eval rows: 2)."""
        if max_n is None or max_n >= len(self):
            return self
        if max_n < 0:
            raise DataError(f"max_n must be >= 0, got {max_n}")
        rng = np.random.default_rng([seed, stream])
        return self.subset(np.sort(rng.choice(len(self), size=int(max_n), replace=False)))

    def fingerprint(self) -> str:
        """A hash of the rows (ids, token types, labels): a checkpoint refuses to continue on other data."""
        h = hashlib.sha256()
        h.update(self.lengths.tobytes())
        if isinstance(self.labels, np.ndarray):
            h.update(np.ascontiguousarray(self.labels).tobytes())
        else:
            for a in self.labels:
                h.update(np.ascontiguousarray(a).tobytes())
        if len(self):
            h.update(np.concatenate([np.asarray(a, dtype=np.int64) for a in self.input_ids]).tobytes())
            if self.token_type_ids is not None:
                h.update(np.concatenate([np.asarray(a, dtype=np.int64) for a in self.token_type_ids]).tobytes())
        return h.hexdigest()[:16]


def collate_inputs(table: Encoded, idx: np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
    """Pad the rows ``idx`` to their own longest length: ``input_ids``, ``attention_mask`` and, where the tokenizer
    made them, ``token_type_ids`` (numpy). The task's kind adds ``labels`` (`glp.kinds.TaskKind.collate`)."""
    lens = table.lengths[idx]
    width = int(lens.max())
    ids = np.full((len(idx), width), pad_id, dtype=np.int64)
    tt = np.zeros((len(idx), width), dtype=np.int64) if table.token_type_ids is not None else None
    for r, (j, n) in enumerate(zip(idx, lens, strict=True)):
        ids[r, :n] = table.input_ids[j][:n]
        if tt is not None:
            tt[r, :n] = table.token_type_ids[j][:n]
    out = {
        "input_ids": ids,
        "attention_mask": (np.arange(width)[None, :] < lens[:, None]).astype(np.int64),
    }
    if tt is not None:
        out["token_type_ids"] = tt
    return out


@dataclass(frozen=True)
class _Tokens:
    input_ids: np.ndarray  # flat, read-only
    offsets: np.ndarray  # len n + 1
    token_type_ids: np.ndarray | None  # flat, read-only


_CACHE_MAX_ENTRIES = 32
_cache: OrderedDict[str, _Tokens] = OrderedDict()
_cache_lock = threading.Lock()
_tokenizer_hashes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Counters of :func:`encode`: ``memory_hits``, ``disk_hits``, ``tokenized``.
ENCODE_STATS = {"memory_hits": 0, "disk_hits": 0, "tokenized": 0}


def clear_encode_cache() -> None:
    """Forget every in-memory tokenization (the on-disk cache stays)."""
    with _cache_lock:
        _cache.clear()
        for k in ENCODE_STATS:
            ENCODE_STATS[k] = 0


def _texts_digest(text_a: Sequence[str], text_b: Sequence[str] | None) -> str:
    h = hashlib.sha256()
    for texts in (text_a, text_b):
        if texts is None:
            h.update(b"|none")
            continue
        if texts and not isinstance(texts[0], str):  # rows of words (token classification)
            h.update(b"|words")
            texts = ["\x1f".join(t) for t in texts]
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        h.update(b"|" + lengths.astype("<i8").tobytes())
        h.update("".join(texts).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """Identity of a tokenizer: name_or_path, class, vocabulary size and a hash of its full definition.

    The definition (vocabulary, normalizer, templates; not the transient truncation/padding state) is
    hashed once per tokenizer object, so two tokenizers trained on the fly never share cache entries.
    """
    size = len(tokenizer)
    try:
        memo = _tokenizer_hashes.get(tokenizer)
    except TypeError:
        memo = None
    if memo is not None and memo[0] == size:
        digest = memo[1]
    else:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            spec = json.loads(backend.to_str())
            spec.pop("truncation", None)
            spec.pop("padding", None)
            blob = json.dumps(spec, sort_keys=True, ensure_ascii=False)
        else:
            blob = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
        digest = hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()
        try:
            _tokenizer_hashes[tokenizer] = (size, digest)
        except TypeError:
            pass
    name = getattr(tokenizer, "name_or_path", "") or ""
    return f"{type(tokenizer).__name__}|{name}|{size}|{digest}"


def _encode_key(examples: Examples, tokenizer, max_length: int) -> str:
    h = hashlib.sha256(b"glp-encode/v1|")
    h.update(tokenizer_fingerprint(tokenizer).encode("utf-8", "surrogatepass"))
    h.update(f"|max_length={int(max_length)}|".encode())
    h.update(_texts_digest(examples.text_a, examples.text_b).encode())
    return h.hexdigest()


def _tokenize(examples: Examples, tokenizer, max_length: int, batch_size: int = 4096) -> _Tokens:
    ids: list[list[int]] = []
    types: list[list[int]] | None = []
    n = len(examples)
    for start in range(0, n, batch_size):
        a = examples.text_a[start : start + batch_size]
        b = None if examples.text_b is None else examples.text_b[start : start + batch_size]
        out = tokenizer(
            a, b, truncation=True, max_length=int(max_length), padding=False, return_attention_mask=False
        )
        ids.extend(out["input_ids"])
        if types is not None:
            tt = out.get("token_type_ids")
            types = None if tt is None else types + list(tt)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(offsets[-1]))
    flat_tt = None
    if types is not None and len(types) == n:
        flat_tt = np.fromiter(itertools.chain.from_iterable(types), dtype=np.int64, count=int(offsets[-1]))
    return _frozen_tokens(flat, offsets, flat_tt)


def _frozen_tokens(flat, offsets, flat_tt) -> _Tokens:
    for a in (flat, offsets, flat_tt):
        if a is not None:
            a.setflags(write=False)
    return _Tokens(flat, offsets, flat_tt)


def _disk_path(cache_dir, key: str) -> Path:
    return Path(cache_dir) / f"glp-encoded-{key[:40]}.npz"


def _load_disk(path: Path, key: str) -> _Tokens | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            flat, offsets = z["input_ids"], z["offsets"]
            flat_tt = z["token_type_ids"] if "token_type_ids" in z.files else None
    except FileNotFoundError:
        return None
    except Exception as e:  # corrupted or partial file: tokenize again and overwrite it
        warnings.warn(f"ignoring unreadable tokenization cache {path}: {e}", DataWarning, stacklevel=3)
        return None
    return _frozen_tokens(
        np.array(flat, dtype=np.int64),
        np.array(offsets, dtype=np.int64),
        None if flat_tt is None else np.array(flat_tt, dtype=np.int64),
    )


def _save_disk(path: Path, key: str, tokens: _Tokens) -> None:
    arrays = {"key": np.array(key), "input_ids": tokens.input_ids, "offsets": tokens.offsets}
    if tokens.token_type_ids is not None:
        arrays["token_type_ids"] = tokens.token_type_ids
    write_atomic(path, lambda tmp: np.savez(tmp, **arrays))


def encode(
    examples: Examples, tokenizer, max_length: int, cache_dir: str | os.PathLike | None = None
) -> Encoded:
    """Tokenize ``examples`` (batched, truncated to ``max_length``, unpadded) once and reuse it.

    The result is cached in memory keyed by the tokenizer (name_or_path, vocabulary size, definition
    hash), the texts' hash and ``max_length``; with ``cache_dir`` also on disk as ``.npz``. The
    returned arrays are read-only views shared between calls. ``token_type_ids`` are kept when the
    tokenizer returns them. Labels come from ``examples`` (they are not part of the cache key).
    """
    if int(max_length) < 1:
        raise DataError(f"max_length must be positive, got {max_length}")
    key = _encode_key(examples, tokenizer, max_length)
    with _cache_lock:
        tokens = _cache.get(key)
        if tokens is not None:
            _cache.move_to_end(key)
            ENCODE_STATS["memory_hits"] += 1
    if tokens is None:
        path = _disk_path(cache_dir, key) if cache_dir is not None else None
        tokens = _load_disk(path, key) if path is not None and path.exists() else None
        if tokens is not None:
            ENCODE_STATS["disk_hits"] += 1
        else:
            tokens = _tokenize(examples, tokenizer, max_length)
            ENCODE_STATS["tokenized"] += 1
            if path is not None:
                _save_disk(path, key, tokens)
        with _cache_lock:
            _cache[key] = tokens
            while len(_cache) > _CACHE_MAX_ENTRIES:
                _cache.popitem(last=False)
    split_at = tokens.offsets[1:-1]
    input_ids = np.split(tokens.input_ids, split_at) if len(examples) else []
    token_type_ids = None
    if tokens.token_type_ids is not None:
        token_type_ids = np.split(tokens.token_type_ids, split_at) if len(examples) else []
    labels = examples.labels.copy() if isinstance(examples.labels, np.ndarray) else list(examples.labels)
    return Encoded(input_ids=input_ids, token_type_ids=token_type_ids, labels=labels)
