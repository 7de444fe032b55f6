"""The latency profile (``glp profile``'s JSON): its table, its speed-ups by n, writing and reading it.

``glp profile`` writes it; ``glp report`` and the targets (`glp.results.targets`) read its speed-ups.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from glp.atomic import write_text_atomic
from glp.plan import read_artifact

SCHEMA = "glp.profile/1"


def markdown_table(result: dict[str, Any]) -> str:
    has_cpu = result.get("cpu") is not None
    has_gpu = result.get("gpu") is not None
    head = ["Model", "n", "Removed", "Layers", "Params (M)", "Params %"]
    if has_cpu:
        head += [f"CPU ms (b={result['cpu']['batch']})", "CPU speed-up"]
    if has_gpu:
        head += [f"GPU ms (b={result['gpu']['batch']})", "GPU speed-up"]
    has_gen = result.get("generate") is not None
    if has_gen:
        head += ["TTFT ms", "tokens/s", "tokens/s speed-up"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in result["rows"]:
        cells = [
            r["label"],
            str(r["n"]),
            ",".join(map(str, r["removed"])) or "–",
            str(r["layers"]),
            f"{r['params'] / 1e6:.2f}",
            f"{100 * r['params_ratio']:.1f}",
        ]
        if has_cpu:
            cells += [f"{r['cpu_ms']:.2f}", f"{r['cpu_speedup']:.2f}×"]
        if has_gpu:
            cells += [f"{r['gpu_ms']:.2f}", f"{r['gpu_speedup']:.2f}×"]
        if has_gen:
            tps, up = r.get("tokens_per_s"), r.get("tokens_per_s_speedup")
            cells += [f"{r['ttft_ms']:.1f}", f"{tps:.1f}" if tps else "–", f"{up:.2f}×" if up else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def speedups_by_n(result: dict[str, Any], kind: str = "cpu") -> dict[int, float]:
    """n → speed-up (the first row with that n), for the report's trade-off plot."""
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
