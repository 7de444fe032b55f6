"""The search context: how a strategy's candidate removal sets become ranked, recorded steps.

Every strategy talks to the outside through a `SearchContext`: it hands over candidate removal sets and gets
`glp.plan.Candidate` records back (scores of every seed, mean, spread). How the trials are run (store lookup,
executor, early rejection by successive halving) is the context's business, so each strategy stays a short loop.

Selection rule: the best mean over seeds wins (the highest, or the lowest for a lower-is-better metric such as
perplexity: the task kind says which); failed candidates rank last. Exact ties are broken by the
lower mean search-eval loss (cross-entropy, or MSE for regression): the loss still tells candidates apart when
the metric cannot, as when every candidate predicts the majority class after the few steps of a successive-
halving rung (seen on CoLA, where all candidates score Matthews correlation 0 at 1/9 and 1/3 of the budget).
Remaining ties (no loss recorded, or equal losses) go towards removing layers nearer the top: compare the
removal sets sorted in descending order, lexicographically, and keep the larger (for greedy: the candidate
whose newly removed layer has the highest index). No rounding is applied (the paper's code rounded to 3
decimals and then preferred the highest index, silently). A step where a halving rung cut through a tie of
the metric says so in its note.

Separation: with several search seeds, the winner is "separated" from the runner-up when the gap between
their means exceeds the larger of their seeds' standard deviations (ddof=1). Steps where it is not are
flagged in the plan and in the CLI's summary.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from glp.errors import ConfigError, GLPError, LayerIndexError
from glp.plan import Candidate, Step
from glp.search.schedule import FULL, Halving
from glp.trial.types import Removal, TrialRequest


class SearchStopped(Exception):
    """A stop rule ended the search after step ``n`` (``glp prune --stop-drop``); the plan keeps the steps so far."""

    def __init__(self, n: int, reason: str):
        super().__init__(reason)
        self.n, self.reason = n, reason


class TrialRunner(Protocol):
    """Runs (or looks up) trials; returns TrialResult dicts in the order of the requests."""

    def __call__(self, requests: Sequence[TrialRequest]) -> list[dict[str, Any]]: ...


class ProxyScorer(Protocol):
    """Training-free score of each layer in ``layers`` once it is removed on top of ``removed``.
    Lower means more removable."""

    def __call__(self, removed: Removal, layers: Sequence[int]) -> dict[int, float]: ...


# -------------------------------------------------------------------------------------------------
# ranking


def tie_key(removed: Sequence[int]) -> tuple[int, ...]:
    """Larger wins among equal means: prefer removing layers nearer the top."""
    return tuple(sorted(removed, reverse=True))


def rank(cands: Sequence[Candidate], higher_is_better: bool = True) -> list[Candidate]:
    """Best first: the candidates scored at the full budget by best mean (highest, or lowest when
    ``higher_is_better`` is False), then those stopped early by successive halving (furthest budget first, then
    mean: a score after a few steps never outranks one after the whole fine-tune), then failed ones; equal means by
    lower ``eval_loss``, then by `tie_key`."""
    sign = 1.0 if higher_is_better else -1.0

    def key(c: Candidate) -> tuple[int, float, float, float, tuple[int, ...]]:
        scored = c.mean is not None and math.isfinite(c.mean)
        tier = 0 if not scored or c.status == "failed" else 1 if c.status == "rejected" else 2
        loss = -c.eval_loss if c.eval_loss is not None and math.isfinite(c.eval_loss) else -math.inf
        mean = sign * c.mean if scored else -math.inf
        return (tier, c.budget if tier == 1 else 0.0, mean, loss, tie_key(c.removed))

    return sorted(cands, key=key, reverse=True)


def _summarise(removed: Removal, added: int | None, results: list[dict[str, Any]], budget: float) -> Candidate:
    scores = [r.get("score") if r.get("status") == "ok" else None for r in results]
    failed = [r for r in results if r.get("status") != "ok" or r.get("score") is None]
    good = [float(s) for s in scores if s is not None and math.isfinite(s)]
    if failed:
        reasons = "; ".join(sorted({str(r.get("reason") or "no score") for r in failed}))
        return Candidate(list(removed), added, scores, None, None, budget, "failed", reasons)
    mean = statistics.fmean(good)
    std = statistics.stdev(good) if len(good) > 1 else None
    losses = [r.get("eval_loss") for r in results]
    loss = statistics.fmean(losses) if all(x is not None and math.isfinite(x) for x in losses) else None
    return Candidate(list(removed), added, scores, mean, std, budget, "ok", eval_loss=loss)


def separation(best: Candidate, runner: Candidate | None, higher_is_better: bool = True) -> bool | None:
    """Is the winner's lead larger than the seeds' spread? None when it cannot be told."""
    if runner is None or runner.mean is None or best.mean is None:
        return None
    if best.std is None or runner.std is None:
        return None
    lead = best.mean - runner.mean if higher_is_better else runner.mean - best.mean
    return lead > max(best.std, runner.std)


# -------------------------------------------------------------------------------------------------
# context


@dataclass
class SearchContext:
    num_layers: int
    max_remove: int
    run_trials: TrialRunner
    seeds: Sequence[int] = (42,)
    keep: frozenset[int] = frozenset()
    schedule: Halving = FULL
    proxy: ProxyScorer | None = None
    prefilter_top: int | None = None
    on_event: Callable[..., None] | None = None
    higher_is_better: bool = True  # the task's direction (glp.kinds): perplexity is lower-is-better
    stop_rule: Callable[[Step], str | None] | None = None  # a reason to end the search after this step, or None
    block_distance: Callable[[int, Sequence[int]], dict[int, float]] | None = None  # for block-angular
    steps: list[Step] = field(default_factory=list)
    rung_notes: dict[int, list[str]] = field(default_factory=dict)  # step n -> halving cuts made inside a tie
    _prefetched: dict[TrialRequest, dict[str, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.num_layers < 2:
            raise ConfigError(f"the model has {self.num_layers} layer(s); nothing can be removed")
        bad = sorted(k for k in self.keep if not 0 <= k < self.num_layers)
        if bad:
            raise LayerIndexError(f"--keep {bad}: layers are numbered 0..{self.num_layers - 1}")
        removable = self.num_layers - len(self.keep)
        limit = min(removable, self.num_layers - 1)
        if not 1 <= self.max_remove <= limit:
            raise LayerIndexError(
                f"--max-remove {self.max_remove}: the model has {self.num_layers} layers"
                f"{f' ({len(self.keep)} protected)' if self.keep else ''}, so 1..{limit} can be removed"
            )
        if not self.seeds:
            raise ConfigError("at least one search seed is needed")

    @property
    def removable(self) -> list[int]:
        return [i for i in range(self.num_layers) if i not in self.keep]

    def emit(self, event: str, **info: Any) -> None:
        if self.on_event is not None:
            self.on_event(event, **info)

    def evaluate(
        self, n: int, sets: Sequence[Removal], added: Sequence[int | None], *, halving: bool = True
    ) -> list[Candidate]:
        """Score removal sets (all seeds), with successive halving when the schedule says so.

        Returns the candidates ranked best first; candidates stopped early have status ``rejected``
        and carry the score of the last rung they reached."""
        schedule = self.schedule if halving else FULL
        budgets = schedule.budgets()
        alive = list(range(len(sets)))
        final: dict[int, Candidate] = {}
        self.emit(
            "step_start",
            n=n,
            total=self.max_remove,
            candidates=len(sets),
            budgets=budgets,
            higher_is_better=self.higher_is_better,
        )
        for r, budget in enumerate(budgets):
            requests = [TrialRequest(tuple(sets[i]), s, budget) for i in alive for s in self.seeds]
            results = self._run(requests)
            per = len(self.seeds)
            cands = {
                i: _summarise(tuple(sets[i]), added[i], results[j * per : (j + 1) * per], budget)
                for j, i in enumerate(alive)
            }
            ranked = rank(list(cands.values()), self.higher_is_better)
            if r == len(budgets) - 1:
                final.update(cands)
                break
            keep = schedule.keep(len(alive))
            survivors = {tuple(c.removed) for c in ranked[:keep] if c.status == "ok"} or {
                tuple(ranked[0].removed)
            }
            self._note_tied_cut(n, r, budget, ranked, keep)
            for i, c in cands.items():
                if tuple(c.removed) not in survivors:
                    if c.status == "ok":
                        c.status = "rejected"
                        c.reason = f"stopped by successive halving at budget {budget:g}"
                    final[i] = c
            alive = [i for i in alive if tuple(sets[i]) in survivors]
            self.emit("rung_done", n=n, rung=r + 1, budget=budget, kept=len(alive))
        return rank([final[i] for i in range(len(sets))], self.higher_is_better)

    def prefetch(self, sets: Sequence[Removal]) -> None:
        """Fine-tune removal sets known in advance (a fixed order's sets for n = 1..N) in one batch, every seed
        at the full budget, so parallel workers take them all at once; `evaluate` then uses these results."""
        if len(sets) < 2:
            return
        requests = [TrialRequest(tuple(s), seed, 1.0) for s in sets for seed in self.seeds]
        label = f"n = 1..{len(sets)}"
        self.emit("batch_start", label=label, candidates=len(sets), higher_is_better=self.higher_is_better)
        self._prefetched.update(zip(requests, self.run_trials(requests), strict=True))

    def _run(self, requests: list[TrialRequest]) -> list[dict[str, Any]]:
        todo = [r for r in requests if r not in self._prefetched]
        fresh = dict(zip(todo, self.run_trials(todo), strict=True)) if todo else {}
        return [self._prefetched[r] if r in self._prefetched else fresh[r] for r in requests]

    def _note_tied_cut(self, n: int, r: int, budget: float, ranked: list[Candidate], keep: int) -> None:
        """Note a halving cut that fell inside a tie of the metric: the loss (or the tie rule) decided it."""
        if keep >= len(ranked) or ranked[keep].status != "ok" or ranked[keep - 1].mean != ranked[keep].mean:
            return
        tied = [c for c in ranked if c.status == "ok" and c.mean == ranked[keep].mean]
        by = "lower search-eval loss" if all(c.eval_loss is not None for c in tied) else "the tie rule"
        kept = sum(1 for c in ranked[:keep] if c in tied)
        self.rung_notes.setdefault(n, []).append(
            f"rung {r + 1} (budget {budget:g}): {len(tied)} candidates tied at {ranked[keep].mean:.4f}; "
            f"{kept} of them went on, chosen by {by}"
        )

    def record(self, n: int, ranked: list[Candidate], note: str | None = None) -> Step:
        """Turn ranked candidates into a plan step; raise when nothing in it could be scored."""
        best = ranked[0]
        if best.status == "failed":
            raise GLPError(
                f"every candidate of step {n} failed (first reason: {best.reason}); "
                "check the learning rate, batch size and data"
            )
        runner = ranked[1] if len(ranked) > 1 and ranked[1].status == "ok" else None
        if runner is None:
            rejected = [c for c in ranked[1:] if c.status == "rejected"]
            runner = rejected[0] if rejected else None
        same_budget = runner is not None and runner.budget == best.budget
        sep = separation(best, runner, self.higher_is_better) if same_budget else None
        if runner is not None and runner.budget != best.budget and note is None:
            note = f"runner-up stopped early at budget {runner.budget:g}; separation not measured"
        note = "; ".join([x for x in [note] if x] + self.rung_notes.pop(n, [])) or None
        step = Step(
            n=n,
            candidates=ranked,
            chosen=list(best.removed),
            chosen_mean=best.mean,
            runner_up=list(runner.removed) if runner else None,
            runner_up_mean=runner.mean if runner else None,
            separated=sep,
            note=note,
        )
        self.steps.append(step)
        self.emit("step_done", step=step, total=self.max_remove)
        reason = self.stop_rule(step) if self.stop_rule is not None and n < self.max_remove else None
        if reason:
            raise SearchStopped(n, reason)
        return step


@dataclass
class SearchResult:
    removals: dict[int, list[int]]
    steps: list[Step]
    order: list[int] | None
