"""The executor plug-in: the `Executor` base class, the ``--executor`` registry (`EXECUTORS`), the settings that
choose and configure an executor (`ExecutionSettings`), and `TrialHost`, the live trials of one worker.

`ExecutionSettings` lives here, with the base class, because each checks the other: the settings check
``--executor`` against `EXECUTORS`, and `Executor.from_settings` takes the settings.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from glp.errors import ConfigError
from glp.models.placement import Placement, parse_max_memory
from glp.registry import Registry
from glp.run.executors.devices import parse_devices
from glp.trial.scoring import TrialSpec
from glp.trial.types import TrialRequest


class RunningTrial(Protocol):
    budget: float  # the budget trained so far

    def advance(self, budget: float) -> Any: ...  # returns a TrialResult (with .to_dict())


TrialFactory = Callable[[tuple[int, ...], int], RunningTrial]
TrialId = tuple[frozenset[int], int]


def _trial_id(req: TrialRequest) -> TrialId:
    return frozenset(req.removed), req.seed


class Executor(abc.ABC):
    """Runs trials and hands back their results as they finish.

    An executor registered in `EXECUTORS` is a subclass whose `from_settings` builds it from ``--executor``,
    ``--devices`` and the other `ExecutionSettings`; `glp.run.executors.make_executor` calls it.

    **Thread safety**

    An executor is driven by one thread, the driver (the only writer to the store): calls to `run` and `close`,
    and the iteration of the generator `run` returns, must not overlap, and a `run` ends (its generator is
    exhausted or closed) before the next begins. An executor may start threads and processes of its own;
    `close` stops them. Worker pools also answer `in_flight()` and ``stats`` from any thread (progress,
    tests).
    """

    name: str  # the --executor name it stands for, in messages

    @classmethod
    def from_settings(cls, config: ExecutionSettings, spec: TrialSpec) -> Executor:
        """The executor that ``config`` asks for: what ``--executor NAME`` builds for the class registered as NAME.

        Not abstract: only the classes in `EXECUTORS` are built from settings; the others (a worker pool that
        one of them chooses, a test's fake) are built with their constructor.

        Args:
            config: where trials run (``--devices``, ``--workers-per-device``, ``--ray-address``, ...).
            spec: what a trial is; every worker builds its trials with ``spec.trial``.

        Returns:
            A ready executor; the caller closes it.

        Raises:
            ConfigError: the settings ask for what is not there (a GPU this machine lacks, Ray not installed,
                no Ray cluster at the address).
            NotImplementedError: ``cls`` is not built from settings.
        """
        raise NotImplementedError(f"{cls.__qualname__} is not built from settings; register one that is")

    @abc.abstractmethod
    def run(self, requests: Sequence[TrialRequest]) -> Iterator[tuple[int, dict[str, Any]]]:
        """Run ``requests``, yielding each result as its trial finishes, in any order.

        The trials of requests absent from ``requests`` (candidates rejected, steps finished) are let go: a
        later request for one is trained from the start. A request for a trial the executor still holds
        (stopped before the full budget) continues it, which gives the same result.

        Args:
            requests: the trials to run (removed layers, seed, budget).

        Returns:
            An iterator of ``(index into requests, TrialResult dict)``, one per request. A trial whose worker
            kept dying is a ``failed`` result with ``"infrastructure": True`` (the driver does not journal it).

        Raises:
            GLPError: a worker pool that is closed, or none of whose workers could start.
            Exception: whatever a trial raised (a GLPError the user can fix, a bug), raised again here.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the workers and let go of every trial held; closing twice does nothing more.

        Raises:
            Nothing: stopping a worker is best effort.
        """


#: ``--executor`` choices: name → the `Executor` subclass whose `Executor.from_settings` builds it.
EXECUTORS: Registry[type[Executor]] = Registry("executor", flag="--executor", base_cls=Executor)


@dataclass(frozen=True, kw_only=True)
class ExecutionSettings:
    """Where trials run (`make_executor` reads these). `glp.commands.prune.PruneConfig` and
    `glp.commands.evaluate.EvalConfig` are ExecutionSettings, so ``glp prune`` and ``glp evaluate`` take the same flags
    and check them the same way.
    """

    executor: str = field(default="local", metadata={"help": "Where trials run."})
    device: str | None = field(
        default=None, metadata={"help": "In-process trials: cpu, cuda, cuda:1 ... (default: cuda if available)."}
    )
    devices: str | None = field(
        default=None,
        metadata={
            "help": "One worker per entry, trials in parallel: GPU ids 0,1,2,3 (each worker pinned to its card) or "
            "cpu,cpu (default: one in-process worker on --device)."
        },
    )
    workers_per_device: int = field(
        default=1,
        metadata={
            "help": "Workers sharing each device (small models on a large GPU; --devices cpu --workers-per-device 4 "
            "for 4 CPU workers)."
        },
    )
    ray_address: str | None = field(
        default=None,
        metadata={
            "help": "With --executor ray: auto | HOST:PORT of a running cluster (ray start --head); default: start "
            "a local Ray instance."
        },
    )
    max_retries: int = field(
        default=2, metadata={"help": "Retry a trial whose worker died this many times, then record it as failed."}
    )
    device_map: str | None = field(
        default=None,
        metadata={
            "help": "auto: each candidate's blocks placed over the worker's GPUs (then CPU, then disk) by accelerate, "
            "recomputed per candidate; with --devices 0+1,2+3 each worker has a group of GPUs (default: one device)."
        },
    )
    max_memory: str | None = field(
        default=None,
        metadata={
            "help": "With --device-map auto: memory each device may hold of a candidate's weights, e.g. "
            "0=70GiB,1=70GiB,cpu=200GiB; leave room for activations (default: accelerate's balanced share)."
        },
    )

    def __post_init__(self) -> None:
        EXECUTORS.get(self.executor)  # ConfigError on an unknown --executor, listing the known ones
        parse_devices(self.devices, self.workers_per_device)  # raises ConfigError on a bad --devices
        if self.max_retries < 0:
            raise ConfigError(f"--max-retries must be 0 or more, got {self.max_retries}")
        if self.ray_address and self.executor != "ray":
            raise ConfigError("--ray-address needs --executor ray")
        self.placement  # noqa: B018 - raises ConfigError on a bad --device-map / --max-memory
        if self.device_map is None and any("+" in d for d in parse_devices(self.devices)):
            raise ConfigError(
                f"--devices {self.devices}: a group of GPUs runs one candidate over them: add --device-map auto"
            )

    @property
    def placement(self) -> Placement | None:
        """Where a candidate's blocks go (`glp.models.placement.Placement`); None: one device."""
        if self.device_map is None:
            if self.max_memory is not None:
                raise ConfigError("--max-memory needs --device-map auto")
            return None
        return Placement(self.device_map, parse_max_memory(self.max_memory))

    @staticmethod
    def normalize_devices(d: dict) -> None:
        """YAML ``devices: [0, 1]`` or ``devices: 0`` → the flag's string form, in place."""
        if isinstance(d.get("devices"), list | tuple):
            d["devices"] = ",".join(map(str, d["devices"]))
        elif isinstance(d.get("devices"), int):
            d["devices"] = str(d["devices"])


class TrialHost:
    """The live trials of one worker: continues a trial it holds, starts the others fresh."""

    def __init__(self, factory: TrialFactory):
        self.factory = factory
        self.live: dict[TrialId, RunningTrial] = {}

    def run_one(self, removed: Sequence[int], seed: int, budget: float) -> tuple[dict[str, Any], bool, bool]:
        """(TrialResult dict, continued a held trial?, kept its state for a later budget?)."""
        key = (frozenset(removed), int(seed))
        trial = self.live.pop(key, None)
        continued = trial is not None and trial.budget <= budget
        if not continued:
            trial = self.factory(tuple(removed), int(seed))
        result = trial.advance(budget).to_dict()
        kept = budget < 1.0 and result.get("status") == "ok"
        if kept:
            self.live[key] = trial
        return result, continued, kept

    def keep_only(self, wanted: set[TrialId]) -> None:
        for k in [k for k in self.live if k not in wanted]:
            del self.live[k]

    def drop(self, keys: Sequence[TrialId]) -> None:
        for k in keys:
            self.live.pop(k, None)
