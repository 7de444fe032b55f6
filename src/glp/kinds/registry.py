"""The registry of task kinds (`KINDS`) and the look-ups on it (`glp.kinds` re-exports them)."""

from __future__ import annotations

from typing import Any

from glp.data import DataSpec, TaskDataset
from glp.kinds.base import TaskKind
from glp.registry import Registry
from glp.tasks import DEFAULT_KIND, Task

KINDS: Registry[type[TaskKind]] = Registry("task kind", flag="--kind", base_cls=TaskKind)


def register_kind(cls: type[TaskKind]) -> type[TaskKind]:
    """Class decorator: add a `TaskKind` subclass to ``KINDS`` under its ``name``."""
    KINDS.add(cls.name, cls, cls.description)
    return cls


def kind_of(task: Any) -> TaskKind:
    """The kind of ``task`` (a `glp.tasks.Task` or its dict), bound to it."""
    if not isinstance(task, Task):
        task = Task.from_dict(task)
    return KINDS.get(task.kind)(task)


def kind_for(spec: Any) -> type[TaskKind]:
    """The kind data settings name: ``spec.kind``, else the first registered kind that claims them, else the
    default (sequence classification)."""
    name = getattr(spec, "kind", None)
    if name:
        return KINDS.get(name)
    for cls in (e.value for e in KINDS.entries()):
        if cls.claims(spec):
            return cls
    return KINDS.get(DEFAULT_KIND)


def load_data(spec: DataSpec) -> TaskDataset:
    """The task's train and dev examples that data settings name, read by their kind (`kind_for`);
    ``.task`` is the resolved task."""
    return kind_for(spec).load(spec)


def load_plugins() -> None:
    """Import the kinds other packages declare as entry points of the group ``glp.kinds`` (pyproject.toml:
    ``[project.entry-points."glp.kinds"] my-kind = "my_package.my_kind"``), so ``--kind my-kind`` finds them, in
    worker processes too."""
    KINDS.load_entry_points("glp.kinds")
