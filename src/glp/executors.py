"""Executors run trials and hand back results as they finish.

The search engine and the store do not depend on the executor: the driver asks an executor to run a list of
`TrialRequest`s and journals each result as it arrives (the driver is the only writer to the store).

- `LocalExecutor`: in-process, one trial after another, on the CPU or one GPU (the default).

An executor keeps the trainer state of trials that stopped before the full budget (successive halving) so a
survivor continues where it stopped; when a request for a trial arrives without that state (a resumed run,
or a trial the executor already let go), the trial is trained from the start to the requested budget, which
gives the same result (train.py guarantees that continuing equals training straight through).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from glp.search import TrialRequest


class RunningTrial(Protocol):
    budget: float  # the budget trained so far

    def advance(self, budget: float) -> Any: ...  # returns a TrialResult (with .to_dict())


TrialFactory = Callable[[tuple[int, ...], int], RunningTrial]


class Executor(Protocol):
    def run(self, requests: Sequence[TrialRequest]) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield (index into requests, TrialResult dict) as trials finish, in any order."""
        ...

    def close(self) -> None: ...


def _trial_id(req: TrialRequest) -> tuple[frozenset[int], int]:
    return frozenset(req.removed), req.seed


class LocalExecutor:
    """Runs trials one after another in this process."""

    name = "local"

    def __init__(self, factory: TrialFactory):
        self.factory = factory
        self.live: dict[tuple[frozenset[int], int], RunningTrial] = {}

    def run(self, requests: Sequence[TrialRequest]) -> Iterator[tuple[int, dict[str, Any]]]:
        wanted = {_trial_id(r) for r in requests}
        for k in [k for k in self.live if k not in wanted]:  # candidates rejected or steps finished
            del self.live[k]
        for i, req in enumerate(requests):
            yield i, self.run_one(req)

    def run_one(self, req: TrialRequest) -> dict[str, Any]:
        key = _trial_id(req)
        trial = self.live.pop(key, None)
        if trial is None or trial.budget > req.budget:
            trial = self.factory(tuple(req.removed), req.seed)
        result = trial.advance(req.budget).to_dict()
        if req.budget < 1.0 and result.get("status") == "ok":
            self.live[key] = trial
        return result

    def close(self) -> None:
        self.live.clear()
