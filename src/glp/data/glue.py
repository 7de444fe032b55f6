"""GLUE: a task from a local directory in the standard ``glue_data`` layout (``<dir>/RTE/train.tsv``, ``dev.tsv``,
MNLI ``dev_matched.tsv``), given as ``data_dir`` or by the environment variable ``GLP_GLUE_DIR``; `GLUE_LAYOUT` also
names the hub splits of ``nyu-mll/glue``."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from glp.data.examples import TaskDataset
from glp.data.labels import _build
from glp.data.tables import _check_file, _read_delimited, _Table
from glp.errors import DataError
from glp.tasks import Task, get_task, is_glue_task

GLUE_DIR_ENV = "GLP_GLUE_DIR"
GLUE_HUB_NAME = "nyu-mll/glue"


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
