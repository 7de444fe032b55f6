"""glp: greedy layer pruning for Hugging Face transformers.

The public API mirrors the CLI. Names are imported lazily, so ``import glp`` (and ``glp --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "drop_layers": "glp.layers",
    "find_layer_stack": "glp.layers",
    "num_layers": "glp.layers",
    "GLPError": "glp.errors",
    "Plan": "glp.plan",
    "prune": "glp.commands.prune",
    "PruneConfig": "glp.commands.prune",
    "HParams": "glp.trial.hparams",
    "TrialResult": "glp.trial.hparams",
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
