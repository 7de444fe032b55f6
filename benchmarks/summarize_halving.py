"""Print the early-rejection table (markdown) from the plans that benchmarks/bench_halving.sh wrote (TASK-full and
every TASK-halving* run directory, e.g. a rerun after a change to the search)."""

from __future__ import annotations

import sys
from pathlib import Path

from glp.plan import Plan


def main(root: str = "runs/glue") -> None:
    print("| task | search | removal sets (n = 1, 2, ...) | search-eval score of the chosen sets | trials | "
          "training steps | trial time (s) |")
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for full_dir in sorted(Path(root).glob("*-full")):
        task = full_dir.name[: -len("-full")]
        modes = ["full"] + [d.name[len(task) + 1 :] for d in sorted(Path(root).glob(f"{task}-halving*"))]
        plans = {m: Plan.load(Path(root) / f"{task}-{m}" / "plans" / "greedy.json") for m in modes}
        for mode, p in plans.items():
            sets = "; ".join(",".join(map(str, p.removals[n])) for n in sorted(p.removals))
            scores = ", ".join(f"{s.chosen_mean:.4f}" for s in p.steps)
            c = p.cost
            print(f"| {task} | {mode} | {sets} | {scores} | {c['trials']} | {c['train_steps']:,} | "
                  f"{c['trial_seconds']:.0f} |")
        for m in modes[1:]:
            f, h = plans["full"].cost, plans[m].cost
            same = all(set(plans["full"].removals[n]) == set(plans[m].removals[n]) for n in plans["full"].removals)
            ratios.append(f"{task} {m}: {f['train_steps'] / h['train_steps']:.2f}x fewer training steps, "
                          f"{f['trial_seconds'] / h['trial_seconds']:.2f}x less trial time, "
                          f"{'same' if same else 'different'} removal sets")
    print()
    for r in ratios:
        print(f"- {r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
