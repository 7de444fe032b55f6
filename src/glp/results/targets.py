"""Choosing the model by what you need: the plan's n that meets accuracy, speed and size targets.

The paper's selling point is that one search gives the whole accuracy/speed curve; `choose` reads the curve:

* ``max_drop`` (``--max-drop 1%``: within 1% of the unpruned model's search-eval score, relative;
  ``--max-drop 0.01``: within 0.01, absolute), in the metric's direction (a lower-is-better metric may rise by it);
* ``min_speedup`` (``--min-speedup 1.5``): from a latency profile (``glp profile``) when one is given, else
  estimated as layers / kept layers (the choice says which);
* ``max_params`` (``--max-params 15M``): parameters of the pruned model with its task head.

Several targets together take the largest n (the smallest model) that meets them all. When no n does,
`NoTargetMet` (a `GLPError`: one line, exit 2) names the closest n and its score. The same drop syntax stops a
search early (``glp prune --stop-drop``, `drop_exceeded`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from glp import models
from glp.errors import ConfigError, GLPError
from glp.results.profile import speedups_by_n
from glp.tasks import Task


class NoTargetMet(GLPError):
    """No number of removed layers in the plan meets the targets."""


@dataclass(frozen=True)
class Drop:
    """How far below the baseline a score may fall: ``value`` absolute, or relative when ``relative``."""

    value: float
    relative: bool

    @classmethod
    def parse(cls, text: str | float | Drop, flag: str = "--max-drop") -> Drop:
        if isinstance(text, Drop):
            return text
        s = str(text).strip()
        relative = s.endswith("%")
        try:
            value = float(s[:-1] if relative else s)
        except ValueError:
            raise ConfigError(f"{flag} {text!r}: a number (absolute, e.g. 0.01) or a percentage (e.g. 1%)") from None
        if value < 0:
            raise ConfigError(f"{flag} {text!r} must not be negative")
        return cls(value / 100.0 if relative else value, relative)

    def __str__(self) -> str:
        return f"{100 * self.value:g}%" if self.relative else f"{self.value:g}"

    def of(self, score: float, baseline: float, higher_is_better: bool = True) -> float:
        """The drop of ``score`` from ``baseline`` in this drop's unit (a rise counts negative)."""
        drop = baseline - score if higher_is_better else score - baseline
        return drop / abs(baseline) if self.relative and baseline else drop

    def exceeded(self, score: float | None, baseline: float | None, higher_is_better: bool = True) -> bool:
        if score is None or baseline is None:
            return False
        return self.of(score, baseline, higher_is_better) > self.value + 1e-12


def parse_count(text: str | int | None, flag: str = "--max-params") -> int | None:
    """``15M`` → 15,000,000; ``800K``, ``1.5B``, plain integers."""
    if text is None or isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMbBgG]?)\s*", str(text))
    if not m:
        raise ConfigError(f"{flag} {text!r}: a count such as 15M, 800K or 1.5B")
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}[m.group(2).lower()]
    return int(round(float(m.group(1)) * scale))


@dataclass(frozen=True)
class Targets:
    max_drop: Drop | None = None
    min_speedup: float | None = None
    max_params: int | None = None

    @classmethod
    def parse(cls, max_drop: Any = None, min_speedup: Any = None, max_params: Any = None) -> Targets:
        if min_speedup is not None and float(min_speedup) <= 0:
            raise ConfigError(f"--min-speedup {min_speedup} must be positive")
        return cls(
            Drop.parse(max_drop) if max_drop is not None else None,
            float(min_speedup) if min_speedup is not None else None,
            parse_count(max_params),
        )

    def __bool__(self) -> bool:
        return any(x is not None for x in (self.max_drop, self.min_speedup, self.max_params))

    def describe(self) -> str:
        parts = []
        if self.max_drop is not None:
            parts.append(f"--max-drop {self.max_drop}")
        if self.min_speedup is not None:
            parts.append(f"--min-speedup {self.min_speedup:g}")
        if self.max_params is not None:
            parts.append(f"--max-params {self.max_params:,}")
        return ", ".join(parts)


@dataclass
class Choice:
    """The chosen n, and per n what was measured (score, drop, speed-up, parameters) and whether it qualified."""

    n: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    speedup_source: str | None = None  # "profile (cpu)" or "estimated from the kept layers"

    def summary(self, targets: Targets) -> str:
        r = next(x for x in self.rows if x["n"] == self.n)
        bits = [f"n = {self.n} (remove {','.join(map(str, r['removed'])) or '-'})"]
        if r.get("score") is not None:
            bits.append(f"search-eval {r['score']:.4f}")
        if targets.min_speedup is not None and r.get("speedup") is not None:
            bits.append(f"speed-up {r['speedup']:.2f}x ({self.speedup_source})")
        if targets.max_params is not None and r.get("params") is not None:
            bits.append(f"{r['params']:,} parameters")
        return f"{targets.describe()}: " + ", ".join(bits)


def layer_params(plan: Any) -> dict[int, int] | None:
    """Parameters of the plan's model with its task head for every n of the plan (`glp.models.count_parameters`)."""
    ns = [0, *sorted(plan.removals)]
    counts = models.count_parameters(
        models.from_record(plan.model), Task.from_dict(plan.task), [plan.layers_to_remove(n) for n in ns]
    )
    return None if counts is None else dict(zip(ns, counts, strict=True))


def choose(
    plan: Any,
    targets: Targets,
    profile: dict[str, Any] | None = None,
    params: dict[int, int] | None = None,
    speedup_kind: str = "auto",
) -> Choice:
    """The largest n of ``plan`` that meets every target; `NoTargetMet` naming the closest n when none does."""
    if not targets:
        raise ConfigError("give a target: --max-drop, --min-speedup or --max-params")
    higher = plan.higher_is_better
    base = plan.baseline.get("mean") if plan.baseline else None
    if targets.max_drop is not None and base is None:
        raise ConfigError(
            "--max-drop needs the unpruned model's score: the plan has no baseline (glp prune --baseline)"
        )
    by_n = {s.n: s for s in plan.steps}
    speed: dict[int, float] = {}
    source = None
    if targets.min_speedup is not None:
        if profile is not None:
            kind = speedup_kind if speedup_kind != "auto" else ("gpu" if profile.get("gpu") else "cpu")
            speed = speedups_by_n(profile, kind)
            source = f"profile ({kind})"
        else:
            speed = {n: plan.num_layers / (plan.num_layers - n) for n in plan.removals}
            source = "estimated from the kept layers' share (no --profile)"
    if targets.max_params is not None and params is None:
        params = layer_params(plan)
        if params is None:
            raise ConfigError("cannot count the parameters of the plan's model here; give --profile (glp profile)")
    rows = []
    for n in sorted(plan.removals):
        s = by_n.get(n)
        score = s.chosen_mean if s else None
        row: dict[str, Any] = {"n": n, "removed": plan.layers_to_remove(n), "score": score, "fails": []}
        if targets.max_drop is not None:
            row["drop"] = None if score is None else targets.max_drop.of(score, base, higher)
            if score is None or targets.max_drop.exceeded(score, base, higher):
                row["fails"].append("max-drop")
        if targets.min_speedup is not None:
            row["speedup"] = speed.get(n)
            if row["speedup"] is None or row["speedup"] < targets.min_speedup:
                row["fails"].append("min-speedup")
        if targets.max_params is not None:
            row["params"] = params.get(n) if params else None
            if row["params"] is None or row["params"] > targets.max_params:
                row["fails"].append("max-params")
        rows.append(row)
    ok = [r["n"] for r in rows if not r["fails"]]
    if ok:
        return Choice(max(ok), rows, source)
    if not rows:
        raise NoTargetMet("the plan has no removal sets yet")
    closest = min(rows, key=lambda r: (len(r["fails"]), r.get("drop") or 0.0, -r["n"]))
    what = [f"{plan.task.get('metric', 'score')} {closest['score']:.4f}" if closest["score"] is not None else ""]
    if closest.get("drop") is not None:
        what.append(f"drop {Drop(closest['drop'], targets.max_drop.relative)}")
    if closest.get("speedup") is not None:
        what.append(f"speed-up {closest['speedup']:.2f}x")
    if closest.get("params") is not None:
        what.append(f"{closest['params']:,} parameters")
    raise NoTargetMet(
        f"no n in {sorted(plan.removals)} meets {targets.describe()}; the closest is n = {closest['n']} "
        f"({', '.join(w for w in what if w)}), which misses {', '.join('--' + f for f in closest['fails'])}"
    )
