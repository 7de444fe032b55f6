"""How many candidates and training steps a search will run, counted before it runs (``glp prune --dry-run``).

Per step n (removal sets of n layers) over R removable layers: greedy tries R - n + 1 sets (at most
``--prefilter-top``), beam at most width × (R - n + 1) (duplicates merged as they come, so an upper bound), optimal
C(R, n); the strategies that score one known set per n (fixed patterns, proxies, ShortGPT, block-angular) one, at the
full budget (they never halve). Every set is fine-tuned once per search seed, the unpruned baseline once per seed.
Successive halving trains all of a step's candidates to the first rung's budget and only the best ``1/eta`` further
(`glp.search.schedule.Halving`), survivors continuing where they stopped, as `SearchContext.evaluate` runs them.

A strategy of another package can say what it will try with a method ``count_candidates(removable, n) -> int | None``;
without one its count is unknown (None).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from glp.search.base import Strategy
from glp.search.patterns import Fixed
from glp.search.schedule import FULL, Halving
from glp.search.strategies import Beam, BlockAngularStrategy, Greedy, Optimal, ProxyStrategy, ShortGPT
from glp.trial.loop import budget_steps

#: the strategies that fine-tune one known removal set per n, at the full budget (`glp.search.base.score_sets`)
ONE_SET_PER_N = (Fixed, ProxyStrategy, ShortGPT, BlockAngularStrategy)


@dataclass(frozen=True)
class StepCount:
    n: int
    candidates: int | None  # removal sets fine-tuned at step n; None: the strategy cannot say in advance
    exact: bool  # False: an upper bound
    train_steps: int | None  # optimizer steps of the step's candidates, one seed
    evaluations: int | None  # scorings of the search-eval set (one per candidate and rung), one seed


@dataclass(frozen=True)
class SearchCount:
    """What a search will run: per step, and in all (every seed, the baseline included)."""

    strategy: str
    steps: list[StepCount]
    seeds: int
    baseline_trials: int
    steps_per_trial: int  # optimizer steps of one full fine-tune (0 with --heal none)
    budgets: list[float]  # successive halving's rungs (fractions of a fine-tune); [1.0] without it

    @property
    def known(self) -> bool:
        return all(s.candidates is not None for s in self.steps)

    @property
    def exact(self) -> bool:
        return self.known and all(s.exact for s in self.steps)

    @property
    def candidates(self) -> int | None:
        return sum(s.candidates for s in self.steps) if self.known else None  # type: ignore[misc]

    @property
    def trials(self) -> int | None:
        """Fine-tunes started: every candidate once per seed, and the baseline's."""
        c = self.candidates
        return None if c is None else c * self.seeds + self.baseline_trials

    @property
    def train_steps(self) -> int | None:
        if not self.known:
            return None
        return sum(s.train_steps for s in self.steps) * self.seeds + self.baseline_trials * self.steps_per_trial  # type: ignore[misc]

    @property
    def evaluations(self) -> int | None:
        if not self.known:
            return None
        return sum(s.evaluations for s in self.steps) * self.seeds + self.baseline_trials  # type: ignore[misc]


def halving_cost(candidates: int, schedule: Halving, total_steps: int) -> tuple[int, int]:
    """(optimizer steps, evaluations) of ``candidates`` trained through the rungs of ``schedule``: all of them to the
    first budget, the best ``keep(n)`` of each rung on from where they stopped to the next."""
    steps = evaluations = done = 0
    alive = candidates
    for r, budget in enumerate(schedule.budgets()):
        target = budget_steps(budget, total_steps) if total_steps else 0
        steps += alive * (target - done)
        evaluations += alive
        done = target
        if r < len(schedule.budgets()) - 1:
            alive = schedule.keep(alive)
    return steps, evaluations


def step_candidates(strategy: Strategy, removable: int, n: int, prefilter_top: int | None) -> tuple[int | None, bool]:
    """(removal sets strategy tries at step n with ``removable`` layers to choose from, exact?)."""
    left = removable - (n - 1)
    top = min(left, prefilter_top) if prefilter_top else left
    own = getattr(strategy, "count_candidates", None)
    if callable(own):
        return own(removable, n), True
    if isinstance(strategy, Optimal):
        return math.comb(removable, n), True
    if isinstance(strategy, ONE_SET_PER_N):
        return 1, True
    if isinstance(strategy, Beam):
        width = 1 if isinstance(strategy, Greedy) else int(strategy.width)
        if n == 1 or width == 1:
            return top, True
        beams = min(width, step_candidates(strategy, removable, n - 1, prefilter_top)[0] or width)
        return beams * top, False
    return None, False


def count_search(
    strategy: Strategy,
    removable: int,
    max_remove: int,
    *,
    seeds: int = 1,
    baseline: bool = True,
    prefilter_top: int | None = None,
    schedule: Halving = FULL,
    steps_per_trial: int = 0,
) -> SearchCount:
    """Candidates, fine-tunes and optimizer steps of a search over ``removable`` layers for n = 1..``max_remove``."""
    halves = not isinstance(strategy, ONE_SET_PER_N)
    steps: list[StepCount] = []
    for n in range(1, max_remove + 1):
        c, exact = step_candidates(strategy, removable, n, prefilter_top)
        if c is None:
            steps.append(StepCount(n, None, False, None, None))
            continue
        train, evals = halving_cost(c, schedule if halves else FULL, steps_per_trial)
        steps.append(StepCount(n, c, exact, train, evals))
    budgets = schedule.budgets() if halves else [1.0]
    return SearchCount(strategy.name, steps, seeds, seeds if baseline else 0, steps_per_trial, budgets)


def step_summary(steps: Sequence[StepCount]) -> str:
    """``30, 29, 28`` (``≤`` marks an upper bound, ``?`` an unknown count)."""
    return ", ".join("?" if s.candidates is None else f"{'' if s.exact else '≤'}{s.candidates}" for s in steps)
