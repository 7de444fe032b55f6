"""benchmarks/mpnet_study.sh's gate: a task whose unpruned model learns too little is skipped, one that learns goes
on to its search, and one whose gate check fails (here: a plan without the unpruned model's score) stops the study
instead of being taken for a skip. A fake `glp` (GLP=...) writes the gate's plan and logs its calls, and a fake
python (PY=...) runs the gate's check and logs, without running, the publishing step's table rewrite: nothing is
trained and nothing in the checkout is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE_GLP = """#!/usr/bin/env bash
echo "glp $*" >> "$LOG"
cmd=$1; out=""; strategy=greedy
while [ $# -gt 0 ]; do case $1 in --out) out=$2; shift ;; --strategy) strategy=$2; shift ;; esac; shift; done
if [ "$cmd" = prune ] && [ "$strategy" = top ]; then mkdir -p "$out/plans"; cp "$GATE_PLAN" "$out/plans/top.json"; fi
"""
FAKE_PY = """#!/usr/bin/env bash
if [ "$1" = - ]; then exec "$REAL_PY" "$@"; fi
echo "py $*" >> "$LOG"
"""


def _study(tmp_path: Path, baseline: dict | None) -> tuple[subprocess.CompletedProcess, list[str]]:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"")
    for name, text in (("glp", FAKE_GLP), ("python", FAKE_PY)):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    plan = tmp_path / "gate.json"
    plan.write_text(json.dumps({"baseline": baseline}))
    log = tmp_path / "calls.log"
    env = {k: v for k, v in os.environ.items() if k not in ("GATE_ONLY", "TASKS")}
    env.update(GLP=str(tmp_path / "glp"), PY=str(tmp_path / "python"), REAL_PY=sys.executable, MODEL=str(model),
               OUT=str(tmp_path / "runs"), GATE_PLAN=str(plan), LOG=str(log), GATE_SHARE="0.25", WARM_TASKS="",
               DISTILL_TASKS="", OPTIMAL_TASKS="")
    done = subprocess.run(["bash", "benchmarks/mpnet_study.sh", "cola"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    return done, log.read_text().splitlines() if log.exists() else []


def test_a_task_that_learns_too_little_is_skipped(tmp_path):
    done, calls = _study(tmp_path, {"mean": 0.1, "constant": 0.0})
    assert done.returncode == 0 and "too little, task skipped" in done.stderr
    assert calls[0].startswith("glp prune") and "--strategy top" in calls[0]  # the gate
    assert not any("--max-remove 6" in c for c in calls)  # no search after it


def test_a_task_that_learns_goes_on_to_its_search(tmp_path):
    done, calls = _study(tmp_path, {"mean": 0.5, "constant": 0.0})
    assert done.returncode == 0 and "it learns, go on" in done.stderr
    assert any(c.startswith("glp prune") and "--max-remove 6" in c and "--strategy" not in c for c in calls)  # GLP


def test_a_gate_check_that_fails_stops_the_study(tmp_path):
    done, calls = _study(tmp_path, None)
    assert done.returncode != 0 and "the gate check of cola failed" in done.stderr
    assert "has no score of the unpruned model" in done.stderr
    assert len(calls) == 1  # the gate; nothing ran after it
