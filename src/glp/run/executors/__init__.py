"""Executors run trials and hand back results as they finish.

The search engine and the store do not depend on the executor: the driver asks an executor to run a list of
`TrialRequest`s and journals each result as it arrives (the driver is the only writer to the store). The whole
interface is ``run(requests)``, which yields ``(index into requests, TrialResult dict)`` in completion order,
and ``close()`` (`Executor`, in base.py; ``--executor NAME`` builds the class registered as NAME in `EXECUTORS`).

- `LocalExecutor` (local.py): in-process, one trial after another, on the CPU or one GPU (the default).
- `ProcessExecutor` (process.py; ``--executor local --devices 0,1,2,3`` or ``--devices cpu,cpu``): one worker
  process per slot (multiprocessing, spawn), a GPU worker pinned to its card with ``CUDA_VISIBLE_DEVICES``;
  ``--workers-per-device k`` puts k workers on each device.
- `RayExecutor` (ray.py; ``--executor ray``): one Ray actor per slot with declared resources (``num_gpus`` 1 or
  1/k, ``num_cpus``), on a running cluster (``--ray-address auto|HOST:PORT``) or a local Ray instance.

Every worker gets the tokenized `TrialData` once when it starts (over its pipe, or through Ray's object store)
and keeps it, with the pre-trained weights, for all its trials. Nothing is written to disk.

An executor keeps the trainer state of trials that stopped before the full budget (successive halving) so a
survivor continues where it stopped: the pools (pool.py) route a continuing trial to the worker that holds its
state. When a request for a trial arrives without that state (a resumed run, a trial the executor let go, a worker
that died, or a holder busy with another trial while a worker is idle), the trial is trained from the start to
the requested budget, which gives the same result (`glp.trial.loop` guarantees that continuing equals training
straight through).

A worker that dies (killed, out of host memory, node lost) is replaced by a fresh one, and its trial is
retried on the next free worker, up to ``max_retries`` times; after that the trial is a failed result whose
reason says what happened, and the run goes on. An exception raised inside a trial (a GLPError the user can
fix, a bug) is raised in the driver.
"""

from __future__ import annotations

import dataclasses

from glp.run.executors.base import EXECUTORS, ExecutionSettings, Executor, TrialHost
from glp.run.executors.devices import parse_devices

# Importing these registers them in EXECUTORS, in this order (the order of the --executor choices): local, ray.
from glp.run.executors.local import LocalExecutor
from glp.run.executors.pool import InFlight
from glp.run.executors.process import ProcessExecutor
from glp.run.executors.ray import RayExecutor
from glp.trial.scoring import TrialSpec

__all__ = [
    "Executor",
    "ExecutionSettings",
    "InFlight",
    "LocalExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "TrialHost",
    "EXECUTORS",
    "make_executor",
    "parse_devices",
]


def make_executor(config: ExecutionSettings, spec: TrialSpec) -> Executor:
    """The executor ``config`` asks for (``EXECUTORS``); every worker builds its trials with ``spec.trial``, each
    candidate placed over the worker's devices where ``--device-map`` asks for it."""
    if spec is not None and config.placement is not None:
        spec = dataclasses.replace(spec, placement=config.placement)
    return EXECUTORS.get(config.executor).from_settings(config, spec)
