"""Devices: the worker slots ``--devices`` names, and the checks that they exist on this machine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from glp.errors import ConfigError


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


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_gpus(slots: Sequence[str]) -> None:
    ids = sorted({int(d[5:]) for d in slots if d.startswith("cuda:")})
    if not ids and "cuda" not in slots:
        return

    count = torch.cuda.device_count()
    if count == 0:
        raise ConfigError("--devices asks for GPUs but none is visible (torch.cuda.device_count() is 0)")
    bad = [i for i in ids if i >= count]
    if bad:
        raise ConfigError(f"--devices: GPU {bad[0]} does not exist; this machine has GPUs 0..{count - 1}")
