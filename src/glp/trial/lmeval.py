"""Zero-shot accuracy through lm-evaluation-harness, as the LLM-pruning papers report it (``glp evaluate
--lm-eval-tasks``).

The harness is an optional extra (``pip install 'glp[llm]'``, or ``pip install lm-eval``). Task names are the
harness's (``arc_easy``, ``piqa`` …, read from the hub); ``--lm-eval-include-path DIR`` adds task YAMLs of your own,
such as ``benchmarks/lm_eval_tasks/`` (``arc_easy_local``, ``piqa_local``: the same tasks read from local files,
which is how the tests and the study run offline). ``--lm-eval-limit`` takes the first k examples of every task.

A healed model is scored as it is, in memory (LoRA adapters merged for the time of the evaluation), on the
trial's device, with the harness's ``HFLM`` wrapper; a row's metrics become ``TASK:METRIC`` (``arc_easy:acc``,
``arc_easy:acc_norm``) next to its perplexity.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from glp.errors import ConfigError
from glp.trial.heal import is_adapted


@dataclass(frozen=True)
class LMEvalSettings:
    tasks: tuple[str, ...] = field(metadata={"help": "lm-evaluation-harness task names, e.g. arc_easy,piqa."})
    include_path: str | None = field(default=None, metadata={"help": "A directory of extra task YAMLs."})
    limit: float | None = field(default=None, metadata={"help": "The first k examples of each task (a fraction <1)."})
    batch_size: int = field(default=16, metadata={"help": "The harness's batch size."})

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("--lm-eval-tasks: name at least one task, e.g. arc_easy,piqa")
        if self.limit is not None and not self.limit > 0:
            raise ConfigError(f"--lm-eval-limit must be > 0, got {self.limit}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tasks"] = list(self.tasks)
        return d

    @classmethod
    def parse(cls, tasks: str | None, include_path: str | None, limit: float | None) -> LMEvalSettings | None:
        if not tasks:
            if include_path or limit is not None:
                raise ConfigError("--lm-eval-include-path / --lm-eval-limit need --lm-eval-tasks")
            return None
        names = tuple(t.strip() for t in str(tasks).split(",") if t.strip())
        lim = None if limit is None else (int(limit) if float(limit) >= 1 else float(limit))
        return cls(names, include_path, lim)


def _harness():
    try:
        import lm_eval  # optional extra (glp[llm]), heavy: only --lm-eval-tasks needs it
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ConfigError(
            "--lm-eval-tasks needs lm-evaluation-harness: pip install 'glp[llm]' (or pip install lm-eval)"
        ) from None
    return lm_eval, HFLM, TaskManager


@functools.lru_cache(maxsize=4)
def _task_manager(include_path: str | None) -> Any:
    """The harness's index of tasks (built once per include path: it reads every task YAML it knows)."""
    _, _, TaskManager = _harness()
    with _quiet():
        return TaskManager(include_path=include_path)


def check(settings: LMEvalSettings) -> None:
    """Fail before any fine-tune when the harness is missing or a task name is unknown."""
    known = set(_task_manager(settings.include_path).all_tasks)
    unknown = [t for t in settings.tasks if t not in known]
    if unknown:
        hint = "" if settings.include_path else " (local task YAMLs: --lm-eval-include-path DIR)"
        raise ConfigError(f"unknown lm-eval task(s) {', '.join(unknown)}{hint}")


@contextlib.contextmanager
def _quiet():
    loggers = [logging.getLogger(n) for n in ("lm-eval", "lm_eval", "lm_eval.evaluator", "lm_eval.api.task")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def run(model: Any, tokenizer: Any, settings: LMEvalSettings, device: Any) -> dict[str, float]:
    """``TASK:METRIC`` → value for every task of ``settings`` (standard errors left out)."""

    lm_eval, HFLM, _ = _harness()
    adapted = is_adapted(model)
    if adapted:
        model.merge_adapter()
    base = model.get_base_model() if adapted else model
    was_training = base.training
    base.eval()
    try:
        with _quiet(), torch.random.fork_rng(devices=[]):
            lm = HFLM(pretrained=base, tokenizer=tokenizer, batch_size=settings.batch_size, device=str(device))
            out = lm_eval.simple_evaluate(
                model=lm,
                tasks=list(settings.tasks),
                limit=settings.limit,
                task_manager=_task_manager(settings.include_path),
                log_samples=False,
                bootstrap_iters=0,
                verbosity="ERROR",
            )
    finally:
        if adapted:
            model.unmerge_adapter()
        base.train(was_training)
    metrics: dict[str, float] = {}
    for task, values in (out or {}).get("results", {}).items():
        for key, value in values.items():
            name = key.split(",")[0]
            if "stderr" in name or name == "sample_len" or not isinstance(value, int | float):
                continue
            metrics[f"{task}:{name}"] = float(value)
    return metrics
