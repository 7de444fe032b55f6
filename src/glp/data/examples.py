"""Examples: one split of a task (texts, labels, source row ids) and a task's splits together (`TaskDataset`).

The bottom of ``glp.data``: every other module of it builds, splits or tokenizes these. `DataWarning` reports rows
that were skipped because they could not be read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from glp.errors import DataError
from glp.tasks import Task


class DataWarning(UserWarning):
    """Rows that were skipped because they could not be read."""


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
