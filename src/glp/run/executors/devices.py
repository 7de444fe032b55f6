"""Devices: the worker slots ``--devices`` names, and the checks that they exist on this machine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from glp.errors import ConfigError


def parse_devices(devices: str | Sequence[Any] | None, workers_per_device: int = 1) -> list[str]:
    """Worker slots from ``--devices``: ``0,1`` / ``cuda:0,cuda:1`` → GPUs, ``cpu,cpu`` → CPU workers, ``0+1,2+3``
    → device groups (``cuda:0+1``: a worker that sees GPUs 0 and 1, one candidate over both with ``--device-map``).

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
        elif "+" in d and all(g.strip().removeprefix("cuda:").isdigit() for g in d.split("+")):
            ids = [int(g.strip().removeprefix("cuda:")) for g in d.split("+")]
            if len(set(ids)) != len(ids):
                raise ConfigError(f"--devices {devices!r}: the group {raw!r} names a GPU twice")
            out.append("cuda:" + "+".join(map(str, ids)))
        else:
            raise ConfigError(
                f"--devices {devices!r}: each entry is a GPU id (0, cuda:1), a group of GPUs (0+1), cuda or cpu; "
                f"got {raw!r}"
            )
    if not out:
        raise ConfigError(f"--devices {devices!r} names no device")
    gpus = [int(g) for d in out if d.startswith("cuda:") for g in d[5:].split("+")]
    if any("+" in d for d in out) and len(set(gpus)) != len(gpus):
        raise ConfigError(f"--devices {devices!r}: a GPU is in two device groups")
    return [d for _ in range(workers_per_device) for d in out]


def group_size(slot: str) -> int:
    """GPUs in a worker slot (``cuda:0+1`` → 2; any other slot → 1)."""
    return len(slot[5:].split("+")) if slot.startswith("cuda:") else 1


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_gpus(slots: Sequence[str]) -> None:
    ids = sorted({int(g) for d in slots if d.startswith("cuda:") for g in d[5:].split("+")})
    if not ids and "cuda" not in slots:
        return

    count = torch.cuda.device_count()
    if count == 0:
        raise ConfigError("--devices asks for GPUs but none is visible (torch.cuda.device_count() is 0)")
    bad = [i for i in ids if i >= count]
    if bad:
        raise ConfigError(f"--devices: GPU {bad[0]} does not exist; this machine has GPUs 0..{count - 1}")
