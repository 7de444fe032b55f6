"""Tables for docs/results.md from the run directories benchmarks/glue_study.sh wrote.

    .venv/bin/python benchmarks/summarize_study.py [runs/glue] [TASK ...]

First the relative dev performance of every method and n across tasks. Then for each task: every strategy's
removal set and search-eval score per n, its search cost, where GLP stands
among all C(6, 2) removal sets scored by the exhaustive search, and the dev evaluation table of glp evaluate.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from glp.plan import Plan


def task_tables(root: Path, task: str) -> str:
    run = root / f"{task}-full"
    plans = {p.stem: Plan.load(p) for p in sorted((run / "plans").glob("*.json"))}
    for d in sorted(root.glob(f"{task}-halving*")):  # -halving, and e.g. -halving-loss (a rerun after a change)
        if (d / "plan.json").exists():
            plans["greedy + " + d.name[len(task) + 1 :]] = Plan.load(d / "plan.json")
    out = [f"### {task}", ""]
    any_plan = next(iter(plans.values()))
    metric = any_plan.task["metric"]
    hp = any_plan.hparams
    out.append(
        f"Fine-tuning: {hp.get('num_train_epochs')} epochs, learning rate {hp.get('learning_rate')}, batch "
        f"{hp.get('per_device_train_batch_size')}, max length {hp.get('max_seq_length')}, search-train subsample "
        f"{hp.get('max_train_samples') or 'none'}, search-eval subsample {hp.get('max_eval_samples') or 'none'}."
    )
    out.append("")
    base = any_plan.baseline["mean"] if any_plan.baseline else None
    out.append(
        f"Search (85/15 split of train, {metric} on search-eval; unpruned baseline {base:.4f}):"
        if base is not None
        else f"Search ({metric} on search-eval):"
    )
    ns = sorted({n for p in plans.values() for n in p.removals})
    head = " | ".join(f"n={n}: removed | score" for n in ns)
    out += ["", f"| strategy | {head} | trials | training steps | trial time (s) |", "|---" * (2 * len(ns) + 4) + "|"]
    for name, p in plans.items():
        steps = {s.n: s for s in p.steps}
        cells = []
        for n in ns:
            s = steps.get(n)
            cells += [",".join(map(str, p.removals.get(n, []))) or "-", f"{s.chosen_mean:.4f}" if s else "-"]
        c = p.cost
        out.append(
            f"| {name} | {' | '.join(cells)} | {c.get('trials', 0)} | {c.get('train_steps', 0):,} | "
            f"{c.get('trial_seconds', 0):.0f} |"
        )
    opt = plans.get("optimal")
    step2 = next((s for s in opt.steps if s.n == 2), None) if opt is not None else None
    if step2 is not None:
        ranked = [c for c in step2.candidates if c.mean is not None]
        by_set = {frozenset(c.removed): c.mean for c in ranked}
        best = ranked[0].mean
        out += ["", f"Exhaustive n=2: {len(ranked)} removal sets, best {','.join(map(str, ranked[0].removed))} "
                f"({best:.4f}), worst {ranked[-1].mean:.4f}."]
        for name in plans:
            if name != "optimal" and 2 in plans[name].removals:
                s = frozenset(plans[name].removals[2])
                score = by_set[s]
                rank = 1 + sum(1 for v in by_set.values() if v > score)
                out.append(f"- {name}: {{{','.join(map(str, sorted(s)))}}} scores {score:.4f}, rank {rank} of "
                           f"{len(by_set)}{' (the optimum)' if score == best else ''}")
    table = root / f"{task}-eval" / "table.md"
    if table.exists():
        out += ["", "Dev (fine-tuned on train, median of seeds; `glp evaluate`):", "", table.read_text().strip()]
    return "\n".join(out) + "\n"


def overview(root: Path, tasks: list[str]) -> str:
    """Relative dev performance (median pruned / median baseline, %) of every (method, n), tasks as columns."""
    from glp.evaluate import load_evaluation

    cells: dict[tuple[str, int], dict[str, str]] = {}
    for task in tasks:
        ev = root / f"{task}-eval"
        if not (ev / "evaluation.json").exists():
            continue
        for row in load_evaluation(ev)["summary"]["rows"]:
            if row["n"] == 0:
                continue
            name = re.sub(rf" \({task}-(halving[\w-]*)\)", r" + \1", row["strategy"])
            cell = row["cells"].get(task) or {}
            rel = cell.get("rel")
            cells.setdefault((name, row["n"]), {})[task] = "–" if rel is None else f"{rel:.1f}"
    order = ["greedy", "greedy + halving", "greedy + halving-loss", "optimal", "top", "bottom", "proxy-bi"]
    keys = sorted(cells, key=lambda k: (k[1], order.index(k[0]) if k[0] in order else len(order), k[0]))
    names = {"sst2": "SST-2", "stsb": "STS-B", "cola": "CoLA"}
    out = [
        "| Method | n | " + " | ".join(names.get(t, t.upper()) for t in tasks) + " |",
        "|---|---:|" + "---:|" * len(tasks),
    ]
    for k in keys:
        out.append(f"| {k[0]} | {k[1]} | " + " | ".join(cells[k].get(t, "–") for t in tasks) + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> None:
    root = Path(argv[0]) if argv else Path("runs/glue")
    tasks = argv[1:] or sorted(p.name[: -len("-full")] for p in root.glob("*-full"))
    print("Relative dev performance (% of the unpruned model, medians over seeds):\n")
    print(overview(root, tasks))
    for task in tasks:
        print(task_tables(root, task))


if __name__ == "__main__":
    main(sys.argv[1:])
