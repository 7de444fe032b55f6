"""This machine: `LocalExecutor` runs trials in this process, one after another, on the CPU or one GPU (the
default); with ``--devices`` (or ``--workers-per-device`` over 1) ``--executor local`` runs worker processes
(`glp.run.executors.process.ProcessExecutor`) instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from glp.run.executors.base import (
    EXECUTORS,
    ExecutionSettings,
    Executor,
    RunningTrial,
    TrialFactory,
    TrialHost,
    TrialId,
    _trial_id,
)
from glp.run.executors.devices import _check_gpus, _default_device, parse_devices
from glp.run.executors.process import ProcessExecutor
from glp.trial.prefix import score_unhealed
from glp.trial.scoring import TrialSpec
from glp.trial.types import TrialRequest


@EXECUTORS.register("local", help="this machine: in-process, or one worker process per --devices entry")
class LocalExecutor(Executor):
    """Runs trials one after another in this process."""

    name = "local"

    def __init__(self, factory: TrialFactory, batch: Callable[[Sequence[TrialRequest]], list[dict]] | None = None):
        self.host = TrialHost(factory)
        self.factory = factory
        self.batch = batch  # scores a whole batch at once (glp.trial.prefix.score_unhealed for --heal none)

    @classmethod
    def from_settings(cls, config: ExecutionSettings, spec: TrialSpec) -> Executor:
        """``--executor local``: in-process on ``--device``, or a `ProcessExecutor` with one worker process per
        slot when ``--devices`` names slots or ``--workers-per-device`` is over 1 (slots on ``--device``)."""
        per = config.workers_per_device
        slots = parse_devices(config.devices, per)
        if not slots and per > 1:
            slots = parse_devices(config.device or _default_device(), per)
        if not slots:
            batch = None
            unhealed = spec is not None and spec.hparams.heal == "none" and spec.distill is None
            if unhealed and spec.placement is None:  # unhealed on one device: shared prefixes
                # here, not at the top: glp.trial.prefix imports torch, which choosing an executor does not need

                def batch(requests):
                    return score_unhealed(spec, requests, config.device)

            return cls(lambda removed, seed: spec.trial(removed, seed, config.device), batch)
        _check_gpus(slots)
        return ProcessExecutor(spec, slots, config.max_retries)

    @property
    def live(self) -> dict[TrialId, RunningTrial]:
        return self.host.live

    def run(self, requests: Sequence[TrialRequest]) -> Iterator[tuple[int, dict[str, Any]]]:
        self.host.keep_only({_trial_id(r) for r in requests})  # candidates rejected or steps finished
        if self.batch is not None and len(requests) > 1:
            yield from enumerate(self.batch(requests))
            return
        for i, req in enumerate(requests):
            yield i, self.run_one(req)

    def run_one(self, req: TrialRequest) -> dict[str, Any]:
        return self.host.run_one(req.removed, req.seed, req.budget)[0]

    def close(self) -> None:
        self.live.clear()
