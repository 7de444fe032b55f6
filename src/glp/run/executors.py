"""Executors run trials and hand back results as they finish.

The search engine and the store do not depend on the executor: the driver asks an executor to run a list of
`TrialRequest`s and journals each result as it arrives (the driver is the only writer to the store). The whole
interface is ``run(requests)``, which yields ``(index into requests, TrialResult dict)`` in completion order,
and ``close()``.

- `LocalExecutor`: in-process, one trial after another, on the CPU or one GPU (the default).
- `ProcessExecutor` (``--executor local --devices 0,1,2,3`` or ``--devices cpu,cpu``): one worker process per
  slot (multiprocessing, spawn), a GPU worker pinned to its card with ``CUDA_VISIBLE_DEVICES``;
  ``--workers-per-device k`` puts k workers on each device.
- `RayExecutor` (``--executor ray``): one Ray actor per slot with declared resources (``num_gpus`` 1 or
  1/k, ``num_cpus``), on a running cluster (``--ray-address auto|HOST:PORT``) or a local Ray instance.

Every worker gets the tokenized `TrialData` once when it starts (over its pipe, or through Ray's object store)
and keeps it, with the pre-trained weights, for all its trials. Nothing is written to disk.

An executor keeps the trainer state of trials that stopped before the full budget (successive halving) so a
survivor continues where it stopped: the pools route a continuing trial to the worker that holds its state.
When a request for a trial arrives without that state (a resumed run, a trial the executor let go, a worker
that died, or a holder busy with another trial while a worker is idle), the trial is trained from the start to
the requested budget, which gives the same result (train.py guarantees that continuing equals training
straight through).

A worker that dies (killed, out of host memory, node lost) is replaced by a fresh one, and its trial is
retried on the next free worker, up to ``max_retries`` times; after that the trial is a failed result whose
reason says what happened, and the run goes on. An exception raised inside a trial (a GLPError the user can
fix, a bug) is raised in the driver.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from glp.errors import ConfigError, GLPError
from glp.registry import Registry
from glp.search.strategies import TrialRequest

if TYPE_CHECKING:  # pragma: no cover - torch is imported by the trials, not by choosing an executor
    from glp.trial.scoring import TrialSpec

__all__ = [
    "Executor",
    "InFlight",
    "LocalExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "TrialHost",
    "EXECUTORS",
    "make_executor",
    "parse_devices",
]


class RunningTrial(Protocol):
    budget: float  # the budget trained so far

    def advance(self, budget: float) -> Any: ...  # returns a TrialResult (with .to_dict())


TrialFactory = Callable[[tuple[int, ...], int], RunningTrial]
TrialId = tuple[frozenset[int], int]


class Executor(Protocol):
    def run(self, requests: Sequence[TrialRequest]) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield (index into requests, TrialResult dict) as trials finish, in any order."""
        ...

    def close(self) -> None: ...


def _trial_id(req: TrialRequest) -> TrialId:
    return frozenset(req.removed), req.seed


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


class LocalExecutor:
    """Runs trials one after another in this process."""

    name = "local"

    def __init__(self, factory: TrialFactory, batch: Callable[[Sequence[TrialRequest]], list[dict]] | None = None):
        self.host = TrialHost(factory)
        self.factory = factory
        self.batch = batch  # scores a whole batch at once (glp.trial.prefix.score_unhealed for --heal none)

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


# ------------------------------------------------------------------------------------------ settings

#: ``--executor`` choices: name → ``build(settings, spec) -> Executor`` (filled in at the end of this module).
EXECUTORS: Registry[Callable[..., Any]] = Registry("executor", flag="--executor")


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

    def __post_init__(self) -> None:
        EXECUTORS.get(self.executor)  # ConfigError on an unknown --executor, listing the known ones
        parse_devices(self.devices, self.workers_per_device)  # raises ConfigError on a bad --devices
        if self.max_retries < 0:
            raise ConfigError(f"--max-retries must be 0 or more, got {self.max_retries}")
        if self.ray_address and self.executor != "ray":
            raise ConfigError("--ray-address needs --executor ray")

    @staticmethod
    def normalize_devices(d: dict) -> None:
        """YAML ``devices: [0, 1]`` or ``devices: 0`` → the flag's string form, in place."""
        if isinstance(d.get("devices"), list | tuple):
            d["devices"] = ",".join(map(str, d["devices"]))
        elif isinstance(d.get("devices"), int):
            d["devices"] = str(d["devices"])


# ------------------------------------------------------------------------------------------ devices


def parse_devices(devices: str | Sequence[Any] | None, workers_per_device: int = 1) -> list[str]:
    """Worker slots from ``--devices``: ``0,1`` / ``cuda:0,cuda:1`` → GPUs, ``cpu,cpu`` → CPU workers.

    Each device appears ``workers_per_device`` times, interleaved (``0,1`` with 2 → cuda:0, cuda:1, cuda:0,
    cuda:1) so that a step with fewer candidates than slots still spreads over the devices. ``None`` → [].
    """
    if workers_per_device < 1:
        raise ConfigError(f"--workers-per-device must be at least 1, got {workers_per_device}")
    if devices is None:
        return []
    items = devices.split(",") if isinstance(devices, str) else list(devices)
    out: list[str] = []
    for raw in items:
        d = str(raw).strip().lower()
        if not d:
            continue
        if d == "cpu" or d == "cuda":
            out.append(d)
        elif d.isdigit():
            out.append(f"cuda:{int(d)}")
        elif d.startswith("cuda:") and d[5:].isdigit():
            out.append(f"cuda:{int(d[5:])}")
        else:
            raise ConfigError(f"--devices {devices!r}: each entry is a GPU id (0, cuda:1), cuda or cpu; got {raw!r}")
    if not out:
        raise ConfigError(f"--devices {devices!r} names no device")
    return [d for _ in range(workers_per_device) for d in out]


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------------------ workers


def _make_host(spec: TrialSpec, device: str, threads: int | None) -> TrialHost:
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    try:  # boot now, while the driver starts the other workers: the pre-trained weights, what trials import
        import glp.layers  # noqa: F401

        spec.warm_up()
    except Exception:  # noqa: BLE001 - the first trial raises it again, in the driver
        pass
    return TrialHost(lambda removed, seed: spec.trial(removed, seed, device, threads=threads))


def _worker_device(slot: str) -> tuple[str, dict[str, str]]:
    """(device inside the worker, environment it starts with) for a slot."""
    if slot.startswith("cuda:"):
        return "cuda:0", {"CUDA_VISIBLE_DEVICES": slot[5:]}
    return slot, {}


def _portable_error(exc: BaseException) -> BaseException:
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the driver dies (kill -9 included), so no orphan keeps training."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the driver died before prctl took effect
            os._exit(1)
    except Exception:  # noqa: BLE001 - other systems: the worker exits when its pipe closes
        pass


def _process_worker(conn: Any, device: str, threads: int | None, physical: str | None) -> None:
    """A worker process: receives ("init", spec) once, then ("run", removed, seed, budget) / ("drop", keys)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's business; it stops the workers
    _die_with_parent()
    try:
        msg = conn.recv()
    except (EOFError, OSError):
        return
    host = _make_host(msg[1], device, threads)
    try:
        conn.send(("ready",))
    except (BrokenPipeError, OSError):
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if msg[0] == "stop":
            conn.close()
            os._exit(0)  # nothing to save; skip the interpreter's slow teardown of torch
        if msg[0] == "drop":
            host.drop(msg[1])
            continue
        _, removed, seed, budget = msg
        try:
            result, continued, kept = host.run_one(removed, seed, budget)
            if physical and isinstance(result.get("device"), str):
                result["device"] = result["device"].replace("cuda:0", physical, 1)
            reply: tuple = ("result", result, continued, kept)
        except BaseException as exc:  # noqa: BLE001 - raised again in the driver
            reply = ("error", _portable_error(exc), traceback.format_exc())
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


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
    from glp.trial.hparams import TrialResult

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


class _Pool:
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


# ------------------------------------------------------------------------------------ process pool


class _ProcWorker:
    def __init__(self, process: Any, conn: Any):
        self.process = process
        self.conn = conn


_ENV_LOCK = threading.Lock()


def _stop_processes(workers: list[Any]) -> None:
    for w in workers:
        if w is None:
            continue
        try:
            w.conn.send(("stop",))
        except Exception:
            pass
    deadline = time.monotonic() + 1  # a ready worker exits at once; one still booting or training is killed
    for w in workers:
        if w is None:
            continue
        w.process.join(max(0.0, deadline - time.monotonic()))
        if w.process.is_alive():
            w.process.kill()
            w.process.join(5)
        w.conn.close()


def _send_quietly(conn: Any, msg: Any) -> None:
    try:
        conn.send(msg)
    except (BrokenPipeError, OSError):
        pass  # the worker is gone; its sentinel reports it


class ProcessExecutor(_Pool):
    """One worker process per slot on this machine (multiprocessing spawn); results in completion order."""

    name = "local"

    def __init__(
        self,
        spec: TrialSpec,
        slots: Sequence[str],
        max_retries: int = 2,
        threads: int | None = None,
    ):
        super().__init__(slots, max_retries)
        import multiprocessing as mp

        self.spec = spec
        self.ctx = mp.get_context("spawn")
        # CPU threads per worker: the cores this process may use, shared out among the workers
        self.threads = threads or max(1, _available_cores() // len(self.slots))
        self._finalizer = weakref.finalize(self, _stop_processes, self.workers)

    def _launch(self, slot: int) -> _ProcWorker:
        device, env = _worker_device(self.slots[slot])
        env = {**env, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        parent, child = self.ctx.Pipe(duplex=True)
        physical = self.slots[slot] if self.slots[slot].startswith("cuda:") else None
        p = self.ctx.Process(
            target=_process_worker,
            args=(child, device, self.threads, physical),
            name=f"glp-worker-{slot}",
            daemon=True,
        )
        with _ENV_LOCK:  # the child inherits the environment at start: pin its GPU before CUDA can initialise
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                p.start()
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        child.close()
        return _ProcWorker(p, parent)

    def _init(self, slot: int) -> None:
        # The data goes once, pickled in memory over the pipe; the worker keeps it. A thread, so the driver does
        # not wait for the worker to read it; nothing else is sent to a worker before it says it is ready.
        w = self.workers[slot]
        threading.Thread(target=_send_quietly, args=(w.conn, ("init", self.spec)), daemon=True).start()

    def _submit(self, slot: int, req: TrialRequest) -> None:
        _send_quietly(self.workers[slot].conn, ("run", tuple(req.removed), int(req.seed), float(req.budget)))

    def _drop(self, slot: int, keys: list[TrialId]) -> None:
        _send_quietly(self.workers[slot].conn, ("drop", keys))

    def _pid(self, slot: int) -> int | None:
        w = self.workers[slot]
        return None if w is None else w.process.pid

    def _wait(self) -> list[tuple]:
        from multiprocessing.connection import wait

        live = {s: w for s, w in enumerate(self.workers) if w is not None}
        conns = {w.conn: s for s, w in live.items()}
        sentinels = {w.process.sentinel: s for s, w in live.items()}
        ready = wait(list(conns) + list(sentinels))
        events: list[tuple] = []
        gone: set[int] = set()
        for obj in ready:  # replies first: a result sent just before the worker died still counts
            if obj not in conns:
                continue
            s = conns[obj]
            try:
                msg = obj.recv()
            except (EOFError, OSError):
                gone.add(s)
                continue
            if msg[0] == "ready":
                events.append(("ready", s))
            elif msg[0] == "result":
                events.append(("result", s, msg[1], msg[2], msg[3]))
            elif msg[0] == "error":
                exc, tb = msg[1], msg[2]
                if hasattr(exc, "add_note"):
                    exc.add_note(f"raised in glp worker process {live[s].process.pid} ({self.slots[s]}):\n{tb}")
                raise exc
        gone |= {sentinels[obj] for obj in ready if obj in sentinels}
        for s in sorted(gone):
            p = live[s].process
            p.join(5)
            events.append(("lost", s, f"worker process {p.pid} on {self.slots[s]} {_exit_reason(p.exitcode)}"))
            live[s].conn.close()
        return events

    def _stop(self, slot: int) -> None:
        _stop_processes([self.workers[slot]])

    def close(self) -> None:
        _stop_processes(self.workers)  # all at once: each gets the stop message before any join
        super().close()


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed from outside, or by the kernel's out-of-memory killer)" if name == "SIGKILL" else ""
        return f"died of {name}{hint}"
    return f"exited with code {code}"


# ---------------------------------------------------------------------------------------------- ray


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "--executor ray needs Ray, which is not installed: pip install 'glp[ray]' (or pip install ray)"
        ) from exc
    return ray


def _probe_ray_address(address: str) -> None:
    """Fail fast on a HOST:PORT nobody listens on (ray.init would retry for minutes)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=10).close()
    except OSError as exc:
        raise ConfigError(
            f"no Ray cluster answers at --ray-address {address} ({exc}); start one with `ray start --head` "
            "or check the address (`ray status` on the head node prints it)"
        ) from exc


class _RayWorker:
    """A Ray actor holding the tokenized data, the pre-trained weights and its live trials."""

    def __init__(self, spec: TrialSpec, device: str, threads: int | None):
        self.host = _make_host(spec, device, threads)

    def pid(self) -> int:
        return os.getpid()

    def run(self, removed: tuple[int, ...], seed: int, budget: float) -> tuple[dict[str, Any], bool, bool]:
        return self.host.run_one(removed, seed, budget)

    def drop(self, keys: list[TrialId]) -> None:
        self.host.drop(keys)


class RayExecutor(_Pool):
    """One Ray actor per slot, each with declared resources; a local Ray instance when no address is given.

    Slots: ``devices`` as for the local pools (``cpu`` → 1 CPU per actor; a GPU → ``num_gpus`` 1 or
    1/``workers_per_device``; with Ray the ids only count GPUs, Ray picks the cards). Without ``devices``: one
    actor per GPU of the cluster times ``workers_per_device``, or one per CPU on a cluster without GPUs.
    """

    name = "ray"

    def __init__(
        self,
        spec: TrialSpec,
        devices: str | None = None,
        workers_per_device: int = 1,
        address: str | None = None,
        max_retries: int = 2,
        num_cpus: int | None = None,
    ):
        ray = _import_ray()
        self.ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            if address:
                _probe_ray_address(address)
                try:
                    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise ConfigError(
                        f"cannot connect to the Ray cluster at --ray-address {address}: {exc}. Start one with "
                        "`ray start --head` (or leave --ray-address out for a local instance); a cluster with token "
                        "authentication (Ray >= 2.59) also needs RAY_AUTH_MODE=token and its token "
                        "(RAY_AUTH_TOKEN, from `ray get-auth-token` on the head node) where glp runs."
                    ) from exc
            else:
                wanted = parse_devices(devices, workers_per_device)
                cpus = num_cpus or (len(wanted) if wanted and all(d == "cpu" for d in wanted) else None)
                ray.init(
                    num_cpus=cpus or _available_cores(),
                    include_dashboard=False,
                    logging_level="WARNING",
                    log_to_driver=False,
                )
            self._owns_ray = True
        res = ray.cluster_resources()
        gpus, cpus = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
        slots = parse_devices(devices, workers_per_device)
        if not slots:
            slots = ["cuda"] * (gpus * workers_per_device) if gpus else ["cpu"] * cpus
        slots = ["cuda" if d.startswith("cuda") else d for d in slots]
        if "cuda" in slots and not gpus:
            raise ConfigError(f"--devices {devices!r} asks for GPUs but the Ray cluster has none")
        super().__init__(slots, max_retries)
        self.workers_per_device = workers_per_device
        self.spec_ref = ray.put(spec)  # shipped once to the object store; each actor reads it when it starts
        self.actor_class = ray.remote(_RayWorker)
        self._pids: dict[int, Any] = {}
        self._refs: dict[Any, int] = {}  # pending run() → slot
        ex = ray.exceptions
        self._lost_errors = tuple(
            getattr(ex, n)
            for n in ("RayActorError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError")
            if hasattr(ex, n)
        )

    def _launch(self, slot: int) -> Any:
        if self.slots[slot] == "cuda":
            opts = {"num_gpus": 1.0 / self.workers_per_device, "num_cpus": 1}
        else:
            opts = {"num_cpus": 1}
        actor = self.actor_class.options(max_restarts=0, max_task_retries=0, **opts).remote(
            self.spec_ref, self.slots[slot], 1
        )
        self._pids[slot] = actor.pid.remote()
        return actor

    def _submit(self, slot: int, req: TrialRequest) -> None:
        ref = self.workers[slot].run.remote(tuple(req.removed), int(req.seed), float(req.budget))
        self._refs[ref] = slot

    def _drop(self, slot: int, keys: list[TrialId]) -> None:
        self.workers[slot].drop.remote(keys)

    def _pid(self, slot: int) -> int | None:
        ref = self._pids.get(slot)
        if ref is None or self.workers[slot] is None:
            return None
        try:
            return int(self.ray.get(ref, timeout=60))
        except Exception:
            return None

    def _wait(self) -> list[tuple]:
        ray = self.ray
        booting = {self._pids[s]: s for s, w in enumerate(self.workers) if w is not None and s not in self.ready}
        watch = list(self._refs) + list(booting)
        done, rest = ray.wait(watch, num_returns=1)
        if rest:
            done += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        events: list[tuple] = []
        for ref in done:
            s = self._refs.pop(ref, None)
            s = booting[ref] if s is None else s
            try:
                value = ray.get(ref)
            except self._lost_errors as exc:
                pid = self._pid_or_none(s)
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                events.append(
                    (
                        "lost",
                        s,
                        f"Ray worker{f' (pid {pid})' if pid else ''} on {self.slots[s]} "
                        f"was lost: {type(exc).__name__}: {msg[:300]}",
                    )
                )
                self._pids.pop(s, None)
                continue
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                raise (cause if isinstance(cause, BaseException) else exc) from None
            if ref in booting:
                events.append(("ready", s))
            else:
                result, continued, kept = value
                events.append(("result", s, result, continued, kept))
        return events

    def _pid_or_none(self, slot: int) -> int | None:
        ref = self._pids.get(slot)
        try:
            return int(self.ray.get(ref, timeout=0)) if ref is not None else None
        except Exception:
            return None

    def _stop(self, slot: int) -> None:
        self.ray.kill(self.workers[slot])
        self._pids.pop(slot, None)

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        self._refs.clear()
        if self._owns_ray and self.ray.is_initialized():
            self.ray.shutdown()


# ------------------------------------------------------------------------------------------ choice


def make_executor(config: ExecutionSettings, spec: TrialSpec) -> Executor:
    """The executor ``config`` asks for (``EXECUTORS``); every worker builds its trials with ``spec.trial``."""
    return EXECUTORS.get(config.executor)(config, spec)


@EXECUTORS.register("local", help="this machine: in-process, or one worker process per --devices entry")
def _local(config: ExecutionSettings, spec: TrialSpec) -> Executor:
    per = config.workers_per_device
    slots = parse_devices(config.devices, per)
    if not slots and per > 1:
        slots = parse_devices(config.device or _default_device(), per)
    if not slots:
        batch = None
        if spec is not None and spec.hparams.heal == "none" and spec.distill is None:  # unhealed: shared prefixes
            from glp.trial.prefix import score_unhealed

            def batch(requests):
                return score_unhealed(spec, requests, config.device)

        return LocalExecutor(lambda removed, seed: spec.trial(removed, seed, config.device), batch)
    _check_gpus(slots)
    return ProcessExecutor(spec, slots, config.max_retries)


@EXECUTORS.register("ray", help="one Ray actor per slot on a running cluster (--ray-address) or a local instance")
def _ray(config: ExecutionSettings, spec: TrialSpec) -> Executor:
    return RayExecutor(spec, config.devices, config.workers_per_device, config.ray_address, config.max_retries)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_gpus(slots: Sequence[str]) -> None:
    ids = sorted({int(d[5:]) for d in slots if d.startswith("cuda:")})
    if not ids and "cuda" not in slots:
        return
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        raise ConfigError("--devices asks for GPUs but none is visible (torch.cuda.device_count() is 0)")
    bad = [i for i in ids if i >= count]
    if bad:
        raise ConfigError(f"--devices: GPU {bad[0]} does not exist; this machine has GPUs 0..{count - 1}")
