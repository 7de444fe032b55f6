"""Worker processes: `ProcessExecutor` (``--executor local --devices 0,1,2,3`` or ``--devices cpu,cpu``) runs one
worker process per slot on this machine (multiprocessing, spawn), a GPU worker pinned to its card with
``CUDA_VISIBLE_DEVICES``; `_process_worker` is the loop each worker runs.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import threading
import time
import traceback
import weakref
from collections.abc import Sequence
from multiprocessing.connection import wait
from typing import Any

from glp.run.executors.base import TrialId
from glp.run.executors.devices import _available_cores
from glp.run.executors.pool import _make_host, _Pool
from glp.trial.scoring import TrialSpec
from glp.trial.types import TrialRequest

# ------------------------------------------------------------------------------------------ the worker


def _worker_device(slot: str) -> tuple[str, dict[str, str]]:
    """(device inside the worker, environment it starts with) for a slot."""
    if slot.startswith("cuda:"):  # (a group cuda:0+1 sees both GPUs, as cuda:0 and cuda:1)
        return "cuda:0", {"CUDA_VISIBLE_DEVICES": slot[5:].replace("+", ",")}
    return slot, {}


def _portable_error(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the driver dies (kill -9 included), so no orphan keeps training."""
    try:
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


# ------------------------------------------------------------------------------------------ the pool


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
