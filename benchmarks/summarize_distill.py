"""Distilled against plain final fine-tunes: the share of the pruned model's gap to the unpruned one that
distillation recovers, per task and n, from `glp evaluate` outputs.

    python benchmarks/summarize_distill.py [--names A,B,...] TASK=PLAIN_EVAL,DISTILLED_EVAL[,MORE_EVAL...] [TASK=...]

Each EVAL is a directory with `evaluation.json` (or the file). The first is the plain run (its baseline row is the
unpruned model); every later one is a distilled variant, named by its rows' strategy label (and its directory's
name where two labels are the same), or by ``--names`` in order (the same name for the k-th variant of every task,
where the labels differ between runs). Medians over seeds, x100.
A cell's share is (distilled - plain) / (unpruned - plain) with the medians, for a metric where higher is better;
it is left empty where the pruned model is not below the unpruned one (no gap to recover). The last lines average
the shares over the cells that have one, then per task and over the tasks (each task's mean counts once), and give
the pooled share (points recovered / points of gap).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def load(path: str) -> list[dict]:
    p = Path(path)
    return json.loads((p / "evaluation.json" if p.is_dir() else p).read_text())["records"]


def medians(records: list[dict]) -> tuple[dict[int, float], dict[int, str], dict[int, tuple[float, float]]]:
    by_n: dict[int, list[float]] = defaultdict(list)
    label: dict[int, str] = {}
    for r in records:
        if r.get("higher_is_better") is False:
            raise SystemExit(f"{r['task']}: its metric is lower-is-better; this summary is for accuracy-like metrics")
        if r["score"] is None:
            raise SystemExit(f"a failed row ({r['strategy']} n={r['n']} seed {r['seed']}): {r.get('reason')}")
        by_n[r["n"]].append(100 * r["score"])
        label[r["n"]] = r["strategy"]
    med = {n: statistics.median(v) for n, v in by_n.items()}
    return med, label, {n: (min(v), max(v)) for n, v in by_n.items()}


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    given: list[str] | None = None
    if argv[0].startswith("--names"):
        flag = argv.pop(0)
        given = (flag.partition("=")[2] or argv.pop(0)).split(",")
    shares: dict[str, list[float]] = defaultdict(list)
    by_task: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    pooled: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for arg in argv:
        task, _, paths = arg.partition("=")
        runs = [medians(load(p)) for p in paths.split(",")]
        dirs = [Path(p).name for p in paths.split(",")]
        if len(runs) < 2:
            raise SystemExit(f"{arg}: give the plain evaluation and at least one distilled one")
        (plain, _, prange), variants = runs[0], runs[1:]
        if 0 not in plain:
            raise SystemExit(f"{arg}: the plain evaluation has no baseline row (n = 0)")
        names = [next(label[n] for n in label if n) for _, label, _ in variants]
        names = [f"{x} [{d}]" if names.count(x) > 1 else x for x, d in zip(names, dirs[1:], strict=True)]
        if given is not None:
            if len(given) != len(variants):
                raise SystemExit(f"{arg}: {len(variants)} distilled evaluations, {len(given)} --names")
            names = given
        print(f"\n{task} (x100, median of seeds (min-max); share: of the gap to the unpruned model)\n")
        print("| n | unpruned | plain | " + " | ".join(f"{v} | share" for v in names) + " |")
        print("|---:|---:|---:|" + "---:|---:|" * len(variants))
        for n in sorted(k for k in plain if k):
            gap = plain[0] - plain[n]
            cells = [f"{n}", f"{plain[0]:.1f}", f"{plain[n]:.1f} ({prange[n][0]:.1f}–{prange[n][1]:.1f})"]
            for name, (med, _, rng) in zip(names, variants, strict=True):
                cells.append(f"{med[n]:.1f} ({rng[n][0]:.1f}–{rng[n][1]:.1f})")
                if gap > 0:
                    share = (med[n] - plain[n]) / gap
                    shares[name].append(share)
                    by_task[name][task].append(share)
                    pooled[name][0] += med[n] - plain[n]
                    pooled[name][1] += gap
                    cells.append(f"{share:+.0%}")
                else:
                    cells.append("no gap")
            print("| " + " | ".join(cells) + " |")
    print()
    for name, values in shares.items():
        recovered, gap = pooled[name]
        tasks = {t: statistics.mean(v) for t, v in by_task[name].items()}
        per_task = ", ".join(f"{t} {v:+.0%}" for t, v in tasks.items())
        print(
            f"{name}: mean share {statistics.mean(values):+.0%} over {len(values)} cells with a gap; per task "
            f"{per_task}: mean over {len(tasks)} tasks {statistics.mean(tasks.values()):+.0%}; pooled "
            f"{recovered:+.1f} of {gap:.1f} points ({recovered / gap:+.0%})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
