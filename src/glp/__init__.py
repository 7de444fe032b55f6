"""glp: greedy layer pruning for Hugging Face transformers.

The public API mirrors the CLI (`glp.api`): ``glp.prune``, ``glp.evaluate``, ``glp.export``, ``glp.profile``,
``glp.report``, ``glp.drop_layers``, ``glp.load_plan`` and ``glp.Plan``. Names are imported lazily, so
``import glp`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    # the commands (`glp.api`): the same settings as their flags
    "prune": "glp.api",
    "evaluate": "glp.api",
    "export": "glp.api",
    "profile": "glp.api",
    "report": "glp.api",
    "drop_layers": "glp.api",
    "Plan": "glp.api",
    "load_plan": "glp.api",
    "PruneConfig": "glp.api",
    "EvalConfig": "glp.api",
    # building blocks
    "find_layer_stack": "glp.layers",
    "num_layers": "glp.layers",
    "GLPError": "glp.errors",
    "HParams": "glp.trial.hparams",
    "TrialResult": "glp.trial.types",
    "finetune_and_score": "glp.trial.scoring",
    "get_task": "glp.tasks",
    "load_task_data": "glp.data",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'glp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
