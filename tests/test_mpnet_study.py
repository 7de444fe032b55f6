"""benchmarks/mpnet_study.sh's gate: a task whose unpruned model learns too little is skipped, one whose gate check
fails (here: a plan without the unpruned model's score) stops the study, instead of being taken for a skip. A fake
`glp` (GLP=...) writes the gate's plan and logs its calls; nothing is trained or published."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE_GLP = """#!/usr/bin/env bash
echo "$*" >> "$LOG"
out=""; strategy=greedy
while [ $# -gt 0 ]; do case $1 in --out) out=$2; shift ;; --strategy) strategy=$2; shift ;; esac; shift; done
if [ "$1" != evaluate ] && [ "$strategy" = top ]; then mkdir -p "$out/plans"; cp "$GATE_PLAN" "$out/plans/top.json"; fi
"""


def _study(tmp_path: Path, baseline: dict | None) -> tuple[subprocess.CompletedProcess, list[str]]:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"")
    glp = tmp_path / "glp"
    glp.write_text(FAKE_GLP)
    glp.chmod(0o755)
    plan = tmp_path / "gate.json"
    plan.write_text(json.dumps({"baseline": baseline}))
    log = tmp_path / "calls.log"
    env = {**os.environ, "GLP": str(glp), "PY": sys.executable, "MODEL": str(model), "OUT": str(tmp_path / "runs"),
           "GATE_PLAN": str(plan), "LOG": str(log), "GATE_ONLY": "1"}  # GATE_ONLY: nothing is published
    done = subprocess.run(["bash", "benchmarks/mpnet_study.sh", "cola"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    return done, log.read_text().splitlines() if log.exists() else []


def test_a_task_that_learns_too_little_is_skipped(tmp_path):
    done, calls = _study(tmp_path, {"mean": 0.1, "constant": 0.0})
    assert done.returncode == 0 and "too little, task skipped" in done.stderr
    assert len(calls) == 1 and "--strategy top" in calls[0]  # the gate, and no search after it


def test_a_gate_check_that_fails_stops_the_study(tmp_path):
    done, calls = _study(tmp_path, None)
    assert done.returncode != 0 and "the gate check of cola failed" in done.stderr
    assert "has no score of the unpruned model" in done.stderr
    assert len(calls) == 1  # nothing ran after it
