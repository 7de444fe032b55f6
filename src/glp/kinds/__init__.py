"""Task kinds: one extension point for what a candidate learns and is scored on (see `glp.kinds.base`).

``KINDS`` is the registry; ``kind_of(task)`` is the bound kind of a task; ``kind_for(spec)`` the kind that data
settings name (``spec.kind``, else the first kind that claims them, else sequence classification);
``load_data(spec)`` reads a task's data through its kind. A kind registers itself with ``@register_kind``
(`glp.kinds.registry`); the built-in kinds are imported here, plug-ins from the ``glp.kinds`` entry points.
"""

from __future__ import annotations

from glp.kinds import causal_lm as _causal_lm  # noqa: F401 - the built-in kinds register themselves on import
from glp.kinds import sequence as _sequence  # noqa: F401
from glp.kinds import token as _token  # noqa: F401
from glp.kinds.base import WORDS_SPACED, TaskKind
from glp.kinds.registry import DEFAULT_KIND, KINDS, kind_for, kind_of, load_data, load_plugins, register_kind

load_plugins()

__all__ = [
    "DEFAULT_KIND",
    "KINDS",
    "WORDS_SPACED",
    "TaskKind",
    "kind_for",
    "kind_of",
    "load_data",
    "load_plugins",
    "register_kind",
]
