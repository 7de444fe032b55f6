"""The worker pool: scheduling shared by the executors that run trials on workers of their own (`ProcessExecutor`,
`RayExecutor`): routing a continuing trial to the worker that holds it, retries when a worker dies, results in
completion order; and `_make_host`, how a worker boots.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from glp.errors import ConfigError, GLPError
from glp.run.executors.base import Executor, TrialHost, TrialId, _trial_id
from glp.trial.scoring import TrialSpec
from glp.trial.types import TrialRequest, TrialResult


def _make_host(spec: TrialSpec, device: str, threads: int | None) -> TrialHost:
    """The live trials of a worker (a process or a Ray actor) that runs ``spec``'s trials on ``device``."""
    if threads:
        torch.set_num_threads(int(threads))
    try:  # boot now, while the driver starts the other workers: the pre-trained weights, what trials import
        import glp.layers  # noqa: F401 - what the trials import, loaded while the other workers start

        spec.warm_up()
    except Exception:  # noqa: BLE001 - the first trial raises it again, in the driver
        pass
    return TrialHost(lambda removed, seed: spec.trial(removed, seed, device, threads=threads))


@dataclass(frozen=True)
class InFlight:
    """A trial running now: on which slot and worker process, since when (time.monotonic())."""

    slot: int
    device: str
    pid: int | None
    request: TrialRequest
    since: float


def _failed(req: TrialRequest, reason: str, device: str) -> dict[str, Any]:
    """A trial whose worker kept dying. Marked ``infrastructure``: the driver does not journal it, so a
    resumed run tries it again instead of reusing the failure."""
    return {
        **TrialResult(
            removed=tuple(req.removed),
            seed=int(req.seed),
            budget=float(req.budget),
            status="failed",
            score=None,
            reason=reason,
            device=device,
        ).to_dict(),
        "infrastructure": True,
    }


class _Pool(Executor):
    """Scheduling shared by the worker pools: routing, retries, results in completion order.

    Subclasses start workers (`_launch`), send them work (`_submit`, `_drop`), wait for events (`_wait`:
    ``("ready", slot)``, ``("result", slot, result, continued, kept)`` or ``("lost", slot, reason)``) and stop
    them (`_stop`). Work goes only to workers that are ready (booted: imports, data, weights), so no trial waits
    for a worker to boot while another worker is free; a replacement for a lost worker boots in the background.
    """

    name = "pool"

    def __init__(self, slots: Sequence[str], max_retries: int = 2):
        if not slots:
            raise ConfigError("an executor needs at least one worker slot")
        if max_retries < 0:
            raise ConfigError(f"--max-retries must be 0 or more, got {max_retries}")
        self.slots = list(slots)
        self.max_retries = int(max_retries)
        self.workers: list[Any] = [None] * len(self.slots)  # a live worker handle per slot, or None
        self.ready: set[int] = set()  # slots whose worker has booted
        self.holder: dict[TrialId, int] = {}  # trial → slot whose worker keeps its state
        self.stats = {"started": 0, "continued": 0, "retried": 0, "failed": 0, "workers_lost": 0}
        self._inflight: dict[int, tuple[int, TrialRequest, float]] = {}  # slot → (index, request, since)
        self._boot_failures = [0] * len(self.slots)  # deaths before ready, in a row
        self._disabled: dict[int, str] = {}  # slots given up on: their workers die before they are ready
        self._lock = threading.Lock()
        self._closed = False

    # -- backend hooks
    def _launch(self, slot: int) -> Any:
        raise NotImplementedError

    def _submit(self, slot: int, req: TrialRequest) -> None:
        raise NotImplementedError

    def _drop(self, slot: int, keys: list[TrialId]) -> None:
        raise NotImplementedError

    def _wait(self) -> list[tuple]:
        raise NotImplementedError

    def _stop(self, slot: int) -> None:
        raise NotImplementedError

    def _pid(self, slot: int) -> int | None:
        raise NotImplementedError

    # -- introspection (tests, progress)
    def pids(self) -> dict[int, int | None]:
        """Slot → pid of its live worker."""
        return {s: self._pid(s) for s, w in enumerate(self.workers) if w is not None}

    def in_flight(self) -> list[InFlight]:
        with self._lock:
            items = list(self._inflight.items())
        return [InFlight(s, self.slots[s], self._pid(s), req, since) for s, (_, req, since) in items]

    # -- the interface
    def run(self, requests: Sequence[TrialRequest]) -> Iterator[tuple[int, dict[str, Any]]]:
        if self._closed:
            raise GLPError("the executor is closed")
        wanted = {_trial_id(r) for r in requests}
        drops: dict[int, list[TrialId]] = {}
        for key, s in list(self.holder.items()):
            if key not in wanted:
                del self.holder[key]
                drops.setdefault(s, []).append(key)
        for s, keys in drops.items():
            if self.workers[s] is not None:
                self._drop(s, keys)
        pending: deque[int] = deque(range(len(requests)))
        attempts = [0] * len(requests)
        finished = False
        try:
            while pending or self._inflight:
                self._dispatch(requests, pending)
                if pending and not self._inflight and all(w is None for w in self.workers):
                    reasons = "; ".join(sorted(set(self._disabled.values())))
                    raise GLPError(
                        f"no {self.name} worker could start ({reasons}); check the installation of "
                        "glp and torch where the workers run"
                    )
                for event in self._wait():
                    kind, s = event[0], event[1]
                    if kind == "ready":
                        self.ready.add(s)
                        self._boot_failures[s] = 0
                        continue
                    with self._lock:
                        entry = self._inflight.pop(s, None)
                    if kind == "result":
                        _, _, result, continued, kept = event
                        if entry is None:  # pragma: no cover - a reply nobody asked for
                            continue
                        i, req, _ = entry
                        self.stats["continued" if continued else "started"] += 1
                        if kept:
                            self.holder[_trial_id(req)] = s
                        else:
                            self.holder.pop(_trial_id(req), None)
                        yield i, result
                        continue
                    # the worker of slot s is gone, with everything it held
                    reason = event[2]
                    self._lost(s, reason)
                    if entry is None:
                        continue
                    i, req, _ = entry
                    attempts[i] += 1
                    if attempts[i] > self.max_retries:
                        self.stats["failed"] += 1
                        tries = f"{attempts[i]} attempt{'s' if attempts[i] > 1 else ''}"
                        yield (
                            i,
                            _failed(
                                req,
                                f"{reason}; gave up after {tries} (--max-retries {self.max_retries})",
                                self.slots[s],
                            ),
                        )
                    else:
                        self.stats["retried"] += 1
                        pending.appendleft(i)
            finished = True
        finally:
            if not finished:  # the consumer stopped or something failed: workers in flight hold stale work
                self.close()

    def _lost(self, s: int, reason: str) -> None:
        was_ready = s in self.ready
        self.ready.discard(s)
        self.workers[s] = None
        self.stats["workers_lost"] += 1
        for key in [k for k, h in self.holder.items() if h == s]:
            del self.holder[key]
        if not was_ready:
            self._boot_failures[s] += 1
            if self._boot_failures[s] > self.max_retries:
                self._disabled[s] = reason

    def _dispatch(self, requests: Sequence[TrialRequest], pending: deque[int]) -> None:
        """Start missing workers while there is work; give work to idle ready workers: a trial it holds first,
        then one nobody holds, then one whose holder is busy (trained fresh; equal result)."""
        if not pending:
            return
        new = [s for s in range(len(self.slots)) if self.workers[s] is None and s not in self._disabled]
        for s in new:  # all first, then the data: they boot in parallel
            self.workers[s] = self._launch(s)
        for s in new:
            self._init(s)
        idle = sorted(s for s in self.ready if s not in self._inflight)

        def held(i: int) -> int | None:
            return self.holder.get(_trial_id(requests[i]))

        busy = set(self._inflight)
        for rule in ("own", "free", "steal"):
            for s in list(idle):
                if not pending:
                    return
                pick = None
                for i in pending:
                    h = held(i)
                    if (
                        (rule == "own" and h == s)
                        or (rule == "free" and h is None)
                        or (rule == "steal" and h is not None and h != s and h in busy)
                    ):
                        pick = i
                        break
                if pick is None:
                    continue
                pending.remove(pick)
                idle.remove(s)
                busy.add(s)
                h = held(pick)
                if h is not None and h != s:
                    key = _trial_id(requests[pick])
                    del self.holder[key]
                    if self.workers[h] is not None:
                        self._drop(h, [key])
                with self._lock:
                    self._inflight[s] = (pick, requests[pick], time.monotonic())
                self._submit(s, requests[pick])

    def _init(self, slot: int) -> None:
        """Hand a launched worker what it needs to boot (if the backend did not at launch)."""

    def close(self) -> None:
        self._closed = True
        for s, w in enumerate(self.workers):
            if w is not None:
                try:
                    self._stop(s)
                except Exception:  # pragma: no cover - best effort
                    pass
                self.workers[s] = None
        self.ready.clear()
        self.holder.clear()
        with self._lock:
            self._inflight.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
