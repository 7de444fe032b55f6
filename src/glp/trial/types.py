"""The plain-data types a trial is asked with and answers with (they cross process and Ray boundaries as dicts).

- `TrialRequest`: which removal set, seed and budget to train (a strategy asks, an executor runs it);
- `TrialData`: what a trial trains and scores on (the tokenized train and eval sets of a task);
- `TrialResult`: what it produced (JSON round-trips; the journal stores its dict).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Removal = tuple[int, ...]  # a removal set, in the order its layers were chosen


@dataclass(frozen=True)
class TrialRequest:
    removed: Removal
    seed: int
    budget: float


@dataclass(frozen=True)
class TrialData:
    """What a trial trains and scores on: ``train`` and ``eval`` are ``glp.data.Encoded``."""

    task: Any  # glp.tasks.Task
    train: Any  # glp.data.Encoded
    eval: Any  # glp.data.Encoded (search-eval, or dev for a final fine-tune)
    extra: dict[str, Any] = field(default_factory=dict)  # more sets scored at the full budget: {"test": Encoded}


@dataclass
class TrialResult:
    """What one trial (drop layers → fine-tune → evaluate) produced. Plain data: JSON round-trips.

    ``budget`` is the fraction of the full fine-tune trained; ``steps`` / ``examples_seen`` count from the
    start of the trial (a continued trial includes what it trained before); ``wall_time`` is the total time
    spent on the trial in seconds (model building, training and evaluation, over all continuations), on
    ``device``, training and scoring under bf16 autocast or not (``precision``: ``bf16`` or ``fp32``; the weights'
    dtype is the hyper-parameters' ``torch_dtype``, zero-shot accuracy runs without autocast; None: not recorded, in
    journals written before it was and for a trial that failed before it trained);
    ``loss_first`` / ``loss_last`` are the mean training loss of the first and of the last (up to) 10 steps;
    ``eval_loss`` is the mean loss on the evaluation set where ``metrics`` were measured (cross-entropy, or MSE
    for regression). The search breaks exact ties of the metric with it (`glp.search.context.rank`).
    """

    removed: tuple[int, ...]
    seed: int
    budget: float
    status: str  # "ok" | "failed"
    score: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    steps: int = 0
    examples_seen: int = 0
    loss_first: float | None = None
    loss_last: float | None = None
    eval_loss: float | None = None
    wall_time: float = 0.0
    device: str = "cpu"
    precision: str | None = None  # "bf16" under bf16 autocast, else "fp32"; None: not recorded

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["removed"] = list(self.removed)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialResult:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["removed"] = tuple(int(i) for i in kw.get("removed", ()))
        kw["metrics"] = {str(k): float(v) for k, v in (kw.get("metrics") or {}).items()}
        return cls(**kw)
