"""Ray: `RayExecutor` (``--executor ray``) runs one Ray actor per slot with declared resources (``num_gpus`` 1 or
1/k, ``num_cpus``), on a running cluster (``--ray-address auto|HOST:PORT``) or a local Ray instance.

Ray is optional (``pip install 'glp[ray]'``): it is imported when a `RayExecutor` is built, never at import.

A warm-started search (``--init parent``) keeps its parents on the driver's disk; an actor may run on a node
without it, so the parents travel through the object store: the driver sends each candidate's parent with its
trial (put once per parent), and the actor sends back the trained model a trial keeps, which the driver writes
(`glp.trial.parents.ParentsInTransit`).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path
from typing import Any

from glp.errors import ConfigError, GLPError
from glp.run.executors.base import EXECUTORS, ExecutionSettings, TrialId
from glp.run.executors.devices import _available_cores, group_size, parse_devices
from glp.run.executors.pool import _make_host, _Pool
from glp.trial.parents import ParentsInTransit
from glp.trial.scoring import TrialSpec
from glp.trial.types import TrialRequest


def _import_ray():
    try:
        import ray  # here, not at the top: Ray is an optional dependency, and a heavy import
    except ImportError as exc:
        raise ConfigError(
            "--executor ray needs Ray, which is not installed: pip install 'glp[ray]' (or pip install ray)"
        ) from exc
    return ray


def _probe_ray_address(address: str) -> None:
    """Fail fast on a HOST:PORT nobody listens on (ray.init would retry for minutes)."""
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
    """A Ray actor holding the tokenized data, the pre-trained weights and its live trials (and, for a warm start,
    the parents it was sent, in a folder of its own)."""

    def __init__(self, spec: TrialSpec, device: str, threads: int | None):
        self.parents = ParentsInTransit(spec.parents) if spec.parents is not None else None
        if self.parents is not None:
            spec = dataclasses.replace(spec, parents=self.parents.local)
        self.host = _make_host(spec, device, threads)

    def pid(self) -> int:
        return os.getpid()

    def run(
        self, removed: tuple[int, ...], seed: int, budget: float, parent: list[Any] | None = None
    ) -> tuple[dict[str, Any], bool, bool, bytes | None]:
        """(the trial's result, continued?, kept?, the trained model it keeps as a parent, as bytes, or None).

        ``parent``: ``[ref]``, the object-store copy of the candidate's parent, inside a list so that Ray does not
        fetch it with every call: the actor fetches it only when its folder does not hold it yet."""
        if self.parents is None:
            return (*self.host.run_one(removed, seed, budget), None)
        if parent and not self.parents.holds(removed, seed):
            import ray  # an actor runs inside Ray

            self.parents.receive(removed, seed, ray.get(parent[0]))
        result, continued, kept = self.host.run_one(removed, seed, budget)
        return result, continued, kept, self.parents.send(removed, seed)

    def clean_up(self) -> None:
        """Delete the parents this actor holds (before it is stopped)."""
        if self.parents is not None:
            self.parents.clean_up()

    def drop(self, keys: list[TrialId]) -> None:
        self.host.drop(keys)


@EXECUTORS.register("ray", help="one Ray actor per slot on a running cluster (--ray-address) or a local instance")
class RayExecutor(_Pool):
    """One Ray actor per slot, each with declared resources; a local Ray instance when no address is given.

    Slots: ``devices`` as for the local pools (``cpu`` → 1 CPU per actor; a GPU → ``num_gpus`` 1 or
    1/``workers_per_device``, a group ``0+1`` → 2; with Ray the ids only count GPUs, Ray picks the cards). Without
    ``devices``: one actor per GPU of the cluster times ``workers_per_device``, or one per CPU on a cluster
    without GPUs.
    """

    name = "ray"

    @classmethod
    def from_settings(cls, config: ExecutionSettings, spec: TrialSpec) -> RayExecutor:
        """``--executor ray``: actors for ``--devices`` (default: the cluster's GPUs, else its CPUs)."""
        return cls(spec, config.devices, config.workers_per_device, config.ray_address, config.max_retries)

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
        self.slot_gpus = [group_size(d) for d in slots]  # a device group 0+1: an actor with 2 GPUs
        slots = ["cuda" if d.startswith("cuda") else d for d in slots]
        if "cuda" in slots and not gpus:
            raise ConfigError(f"--devices {devices!r} asks for GPUs but the Ray cluster has none")
        super().__init__(slots, max_retries)
        self.workers_per_device = workers_per_device
        self.spec_ref = ray.put(spec)  # shipped once to the object store; each actor reads it when it starts
        self.parents = spec.parents  # --init parent: kept here, on the driver's disk; sent to the actors
        # a parent's file -> (the length of its removal set, its bytes in the object store)
        self._parent_refs: dict[Path, tuple[int, Any]] = {}
        self._asked: dict[Any, tuple[tuple[int, ...], int, float]] = {}  # a trial's ref -> (removed, seed, budget)
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
            opts = {"num_gpus": self.slot_gpus[slot] / self.workers_per_device, "num_cpus": 1}
        else:
            opts = {"num_cpus": 1}
        actor = self.actor_class.options(max_restarts=0, max_task_retries=0, **opts).remote(
            self.spec_ref, self.slots[slot], 1
        )
        self._pids[slot] = actor.pid.remote()
        return actor

    def _submit(self, slot: int, req: TrialRequest) -> None:
        removed, seed = tuple(int(i) for i in req.removed), int(req.seed)
        parent = self._parent_ref(removed, seed) if self.parents is not None and removed else None
        ref = self.workers[slot].run.remote(removed, seed, float(req.budget), None if parent is None else [parent])
        self._refs[ref] = slot
        self._asked[ref] = (removed, seed, float(req.budget))

    def _parent_ref(self, removed: tuple[int, ...], seed: int) -> Any:
        """The object-store copy of candidate ``removed``'s parent, put once; the copies of earlier steps' parents
        (shorter removal sets) are let go."""
        path = self.parents.parent_of(removed, seed)  # type: ignore[union-attr]
        if path not in self._parent_refs:
            depth = len(removed) - 1
            self._parent_refs = {p: (d, r) for p, (d, r) in self._parent_refs.items() if d >= depth}
            self._parent_refs[path] = (depth, self.ray.put(path.read_bytes()))
        return self._parent_refs[path][1]

    def _keep_parent(self, ref: Any, result: dict[str, Any], blob: bytes | None) -> None:
        """Write the trained model an actor sent back to the driver's parents folder; a trial that reached its full
        budget must have sent one (else the next step would find its parent missing)."""
        asked = self._asked.pop(ref, None)
        if self.parents is None or asked is None:
            return
        removed, seed, budget = asked
        if blob is None:
            if result.get("status") == "ok" and budget >= 1.0:
                raise GLPError(
                    f"the Ray actor that trained removal set {list(removed)} (seed {seed}) sent back no trained "
                    "model to keep as a parent"
                )
            return
        path = self.parents.write(removed, seed, blob)
        self._parent_refs.pop(path, None)  # a rewrite (the same trial again) is put afresh

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
                self._asked.pop(ref, None)
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
                result, continued, kept, blob = value
                self._keep_parent(ref, result, blob)
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
        if self.parents is not None:  # the actors' own parents folders go with them: asked at once, waited once
            busy = set(self._inflight)  # an actor still training would answer after its trial: it is killed as is
            done = [w.clean_up.remote() for s, w in enumerate(self.workers) if w is not None and s not in busy]
            if done:
                self.ray.wait(done, num_returns=len(done), timeout=10)
        super().close()
        self._refs.clear()
        self._asked.clear()
        self._parent_refs.clear()
        if self._owns_ray and self.ray.is_initialized():
            self.ray.shutdown()
