"""Task kinds: one extension point for what a candidate learns and is scored on (see `glp.kinds.base`).

``KINDS`` is the registry; ``kind_of(task)`` is the bound kind of a task; ``kind_for(spec)`` the kind that data
settings name (``spec.kind``, else the first kind that claims them, else sequence classification).
"""

from __future__ import annotations

from typing import Any

from glp.kinds.base import TaskKind
from glp.registry import Registry

KINDS: Registry[type[TaskKind]] = Registry("task kind", flag="--kind")
DEFAULT_KIND = "sequence-classification"


def register_kind(cls: type[TaskKind]) -> type[TaskKind]:
    """Class decorator: add a `TaskKind` subclass to ``KINDS`` under its ``name``."""
    KINDS.add(cls.name, cls, cls.description)
    return cls


def kind_of(task: Any) -> TaskKind:
    """The kind of ``task`` (a `glp.tasks.Task` or its dict), bound to it."""
    from glp.tasks import Task

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


def load_plugins() -> None:
    """Import the kinds other packages declare as entry points of the group ``glp.kinds`` (pyproject.toml:
    ``[project.entry-points."glp.kinds"] my-kind = "my_package.my_kind"``), so ``--kind my-kind`` finds them, in
    worker processes too. A plug-in that fails to import is a warning, not the end of glp."""
    import warnings
    from importlib.metadata import entry_points

    for ep in entry_points(group="glp.kinds"):
        if ep.name in KINDS:
            continue
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001 - someone else's package
            warnings.warn(f"glp task kind plug-in {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=2)


# the built-in kinds register themselves on import
from glp.kinds import causal_lm as _causal_lm  # noqa: E402,F401
from glp.kinds import sequence as _sequence  # noqa: E402,F401
from glp.kinds import token as _token  # noqa: E402,F401

load_plugins()

__all__ = ["DEFAULT_KIND", "KINDS", "TaskKind", "kind_for", "kind_of", "load_plugins", "register_kind"]
