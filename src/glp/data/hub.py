"""The Hugging Face hub: a task from a hub dataset by name, through ``datasets.load_dataset``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from glp.data.examples import TaskDataset
from glp.data.glue import GLUE_DIR_ENV, GLUE_LAYOUT
from glp.data.labels import _build
from glp.data.tables import _Table
from glp.errors import DataError
from glp.tasks import Task


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
    import datasets  # heavy (pyarrow, fsspec ...): imported only when a hub dataset is loaded

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
