"""Tables for docs/results.md from the run directories benchmarks/glue_study.sh wrote.

    .venv/bin/python benchmarks/summarize_study.py [runs/glue] [TASK ...]
    .venv/bin/python benchmarks/summarize_study.py ROOT:TASK[,TASK...] ...   # tasks from several study roots
    e.g. summarize_study.py runs/glue:sst2,stsb runs/glue-lr1e-4:cola runs/glue-gpu:mrpc,rte

First the paper's Table 1 shape (dev score x100 per task, their mean, Rel. = mean / the baseline's mean; only
rows every task has), then the relative dev performance of every method and n across tasks. Then for each
task: every strategy's
removal set and search-eval score per n, its search cost, where GLP stands
among all C(6, 2) removal sets scored by the exhaustive search, and the dev evaluation table of glp evaluate.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from glp.plan import Plan
from glp.tasks import task_title


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
        out += [
            "",
            f"Exhaustive n=2: {len(ranked)} removal sets, best {','.join(map(str, ranked[0].removed))} "
            f"({best:.4f}), worst {ranked[-1].mean:.4f}.",
        ]
        for name in plans:
            if name != "optimal" and 2 in plans[name].removals:
                s = frozenset(plans[name].removals[2])
                score = by_set[s]
                rank = 1 + sum(1 for v in by_set.values() if v > score)
                out.append(
                    f"- {name}: {{{','.join(map(str, sorted(s)))}}} scores {score:.4f}, rank {rank} of "
                    f"{len(by_set)}{' (the optimum)' if score == best else ''}"
                )
    table = root / f"{task}-eval" / "table.md"
    if table.exists():
        out += ["", "Dev (fine-tuned on train, median of seeds; `glp evaluate`):", "", table.read_text().strip()]
    return "\n".join(out) + "\n"


def _eval_rows(pairs: list[tuple[Path, str]]) -> dict[tuple[str, int], dict[str, dict]]:
    """(method, n) -> task -> the evaluation cell (median, min, max, rel), from each task's evaluation.json."""
    from glp.results.evaluation import load_evaluation

    cells: dict[tuple[str, int], dict[str, dict]] = {}
    for root, task in pairs:
        ev = root / f"{task}-eval"
        if not (ev / "evaluation.json").exists():
            continue
        for row in load_evaluation(ev)["summary"]["rows"]:
            name = re.sub(rf" \({task}-(halving[\w-]*)\)", r" + \1", row["strategy"])
            cell = row["cells"].get(task)
            if cell and cell.get("median") is not None:
                cells.setdefault((name, row["n"]), {})[task] = cell
    return cells


_ORDER = ["baseline", "greedy", "greedy + halving", "greedy + halving-loss", "optimal", "top", "bottom", "proxy-bi"]


def _keys(cells: dict) -> list[tuple[str, int]]:
    return sorted(cells, key=lambda k: (k[1], _rank(k[0]), k[0]))


def overview(pairs: list[tuple[Path, str]]) -> str:
    """Relative dev performance (median pruned / median baseline, %) of every (method, n), tasks as columns."""
    tasks = [t for _, t in pairs]
    cells = _eval_rows(pairs)
    out = [
        "| Method | n | " + " | ".join(task_title(t) for t in tasks) + " |",
        "|---|---:|" + "---:|" * len(tasks),
    ]
    for k in _keys(cells):
        if k[1] == 0:
            continue
        rel = {t: c.get("rel") for t, c in cells[k].items()}
        out.append(
            f"| {k[0]} | {k[1]} | " + " | ".join("–" if rel.get(t) is None else f"{rel[t]:.1f}" for t in tasks) + " |"
        )
    return "\n".join(out) + "\n"


def table1(pairs: list[tuple[Path, str]]) -> str:
    """The paper's Table 1 over tasks from several evaluations: glp evaluate's own summary and table, fed with
    every task's per-seed records. Only (method, n) rows that every task has are listed: a mean over fewer
    tasks would not compare."""
    from glp.results.evaluation import load_evaluation, summarize

    records = []
    for root, task in pairs:
        ev = root / f"{task}-eval"
        if (ev / "evaluation.json").exists():
            for r in load_evaluation(ev)["records"]:
                if r["task"] == task:
                    name = re.sub(rf" \({task}-(halving[\w-]*)\)", r" + \1", r["strategy"])
                    records.append({**r, "strategy": name})
    summary = summarize(records)
    tasks = [t for _, t in pairs]
    if summary["tasks"] != tasks or not any(r["strategy"] == "baseline" and r["score"] for r in summary["rows"]):
        return "(no baseline evaluation for every task)\n"
    return rows_every_task_has(summary, tasks)


def rows_every_task_has(summary: dict, tasks: list[str]) -> str:
    """glp evaluate's table of ``summary`` with only the (method, n) rows every task has, by n then method."""
    from glp.results.evaluation import markdown_table

    rows = [r for r in summary["rows"] if all(t in r["cells"] for t in tasks)]
    return markdown_table({**summary, "rows": sorted(rows, key=lambda r: (r["n"], _rank(r["strategy"])))})


def _rank(name: str) -> int:
    return _ORDER.index(name) if name in _ORDER else len(_ORDER)


def parse_args(argv: list[str]) -> list[tuple[Path, str]]:
    """``[ROOT] [TASK ...]`` or ``ROOT:TASK[,TASK...] ...`` -> (root, task) pairs in the order given."""
    if any(":" in a for a in argv):
        pairs = []
        for a in argv:
            root, _, tasks = a.partition(":")
            if not tasks:
                sys.exit(f"expected ROOT:TASK[,TASK...], got {a!r}")
            pairs += [(Path(root), t) for t in tasks.split(",") if t]
        return pairs
    root = Path(argv[0]) if argv else Path("runs/glue")
    tasks = argv[1:] or sorted(p.name[: -len("-full")] for p in root.glob("*-full"))
    return [(root, t) for t in tasks]


def main(argv: list[str]) -> None:
    pairs = parse_args(argv)
    print("Dev score x100, median of the final seeds (min–max); GLUE = mean over the tasks:\n")
    print(table1(pairs))
    print("Relative dev performance (% of the unpruned model, medians over seeds):\n")
    print(overview(pairs))
    for root, task in pairs:
        print(task_tables(root, task))


if __name__ == "__main__":
    main(sys.argv[1:])
