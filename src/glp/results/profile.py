"""The latency profile (``glp profile``'s JSON): its table, its speed-ups by n, writing and reading it.

``glp profile`` writes it; ``glp report`` and the targets (`glp.results.targets`) read its speed-ups.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from glp.atomic import write_text_atomic
from glp.errors import ConfigError
from glp.plan import read_artifact

SCHEMA = "glp.profile/1"
RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8")  # a row's ``runtime`` (a row without one is torch's)
_RUNTIME_ALIASES = {"ort": "onnxruntime", "int8": "onnxruntime-int8"}


def parse_runtimes(names: str | Sequence[str]) -> list[str]:
    """The runtimes named (comma separated or a list; ``int8`` = onnxruntime-int8, ``ort`` = onnxruntime), in order,
    each once."""
    parts = [p.strip().lower() for n in ([names] if isinstance(names, str) else names) for p in str(n).split(",")]
    out: list[str] = []
    for part in filter(None, parts):
        name = _RUNTIME_ALIASES.get(part, part)
        if name not in RUNTIMES:
            raise ConfigError(f"--runtime {part!r} is not one of {', '.join(RUNTIMES)} (int8 = onnxruntime-int8)")
        out += [] if name in out else [name]
    if not out:
        raise ConfigError(f"--runtime names no runtime: give some of {', '.join(RUNTIMES)}")
    return out


def markdown_table(result: dict[str, Any]) -> str:
    """The profile as a markdown table: a row per model (and runtime, in a Runtime column when not all torch)."""
    cpu, gpu = result.get("cpu"), result.get("gpu")
    batched = (cpu or {}).get("batched")
    several = {r.get("runtime", "torch") for r in result["rows"]} != {"torch"}  # a Runtime column
    head = ["Model", *(["Runtime"] if several else []), "n", "Removed", "Layers", "Params (M)", "Params %"]
    if cpu is not None:
        head += [f"CPU ms (b={cpu['batch']})", "CPU speed-up"]
    if batched:
        head += [f"CPU ms (b={batched})", f"examples/s (b={batched})", f"speed-up (b={batched})"]
    if gpu is not None:
        head += [f"GPU ms (b={gpu['batch']})", "GPU speed-up"]
    has_gen = result.get("generate") is not None
    if has_gen:
        head += ["TTFT ms", "tokens/s", "tokens/s speed-up"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in result["rows"]:
        cells = [r["label"], *([r.get("runtime", "torch")] if several else [])]
        cells += [
            str(r["n"]),
            ",".join(map(str, r["removed"])) or "–",
            str(r["layers"]),
            f"{r['params'] / 1e6:.2f}",
            f"{100 * r['params_ratio']:.1f}",
        ]
        if cpu is not None:
            cells += [_num(r.get("cpu_ms"), ".2f"), _num(r.get("cpu_speedup"), ".2f", "×")]
        if batched:
            cells += [_num(r.get(f"cpu_batched_{k}"), f, u) for k, f, u in (("ms", ".1f", ""), ("per_s", ".1f", ""))]
            cells.append(_num(r.get("cpu_batched_speedup"), ".2f", "×"))
        if gpu is not None:
            cells += [_num(r.get("gpu_ms"), ".2f"), _num(r.get("gpu_speedup"), ".2f", "×")]
        if has_gen:
            cells += [_num(r.get("ttft_ms"), ".1f"), _num(r.get("tokens_per_s"), ".1f")]
            cells.append(_num(r.get("tokens_per_s_speedup"), ".2f", "×"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _num(v: Any, fmt: str, unit: str = "") -> str:
    """A number of the table (``–`` where the row has none: a runtime not timed there)."""
    return "–" if v is None else f"{v:{fmt}}{unit}"


def speedups_by_n(result: dict[str, Any], kind: str = "cpu") -> dict[int, float]:
    """n → speed-up (the first row with that n: the first runtime's), for the report's trade-off plot."""
    out: dict[int, float] = {}
    for r in result.get("rows", []):
        v = r.get(f"{kind}_speedup")
        if v is not None and int(r["n"]) not in out:
            out[int(r["n"])] = float(v)
    return out


def save(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    return write_text_atomic(path, json.dumps(result, indent=1, allow_nan=False) + "\n")


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    return read_artifact(path, SCHEMA, "profile", "glp profile ... --out FILE writes one")
