"""Every generated table of docs/results.md (and the few of docs/benchmarks.md), recomputed from the committed
artifacts under docs/results/.

    .venv/bin/python benchmarks/results_tables.py            # print every table between its markers
    .venv/bin/python benchmarks/results_tables.py --check    # exit 1 when a marked table of either page differs
    .venv/bin/python benchmarks/results_tables.py --write    # rewrite the marked tables of both pages in place

A table sits on one page between ``<!-- table:NAME -->`` and ``<!-- /table -->``. The inputs are the plans
(``docs/results/<task>/plans/*.json``, as ``glp prune`` writes them) and evaluations (``evaluation.json``, as
``glp evaluate`` writes it) of each study, the latency profile, and for the depth study on MPNet
``docs/results/mpnet/<task>/plans/*.json`` and ``docs/results/mpnet/<task>/evaluation.json`` once they are
committed (until then its block says so). Scores are x100, medians over the final seeds with (min–max). The paired
comparisons and the sign test are described in benchmarks/results_lib.py.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from results_lib import (
    RESULTS,
    ROOT,
    TEST_HEAD,
    clearly_learning,
    layers,
    learns_rows,
    load_json,
    p_value,
    paired,
    part,
    per_seed,
    plans,
    rank_cells,
    removed_of,
    same_sets,
    search_baseline,
    sign_rows,
    sign_test,
    spread,
    t_mpnet,
    t_mpnet_compare,
    t_mpnet_distill,
    t_mpnet_gates,
    t_mpnet_headline,
    t_mpnet_setup,
    table,
    wtl,
)
from summarize_study import rows_every_task_has

from glp.plan import Plan
from glp.results.evaluation import summarize
from glp.tasks import task_title

DOC = ROOT / "docs" / "results.md"
PAGES = [DOC, ROOT / "docs" / "benchmarks.md"]  # the pages whose marked tables this script prints
GLUE = ["sst2", "stsb", "cola", "mrpc", "rte"]
# Where each task's searches and final rows ran: the plans do not record it, the study scripts do
# (benchmarks/glue_study.sh on the CPU, benchmarks/gpu_study.sh on one GPU).
RAN_ON = {"sst2": "2 CPU cores, float32", "stsb": "2 CPU cores, float32", "cola": "2 CPU cores, float32",
          "mrpc": "1 H100 GPU, bf16 autocast", "rte": "1 H100 GPU, bf16 autocast"}
MARKER = re.compile(r"<!-- table:([\w-]+) -->\n(.*?)<!-- /table -->", re.S)


# -------------------------------------------------------------------------------------- MiniLM, GLUE tasks


def glue_evals(root: Path = RESULTS) -> dict[str, dict[str, Any]]:
    return {t: load_json(root / t / "evaluation.json") for t in GLUE}


def t_setup(root: Path = RESULTS) -> str:
    rows = []
    for t in GLUE:
        p = Plan.load(root / t / "plans" / "greedy.json")
        ev = load_json(root / t / "evaluation.json")
        info, hp = ev["tasks"][t], ev["tasks"][t]["hparams"]
        d, shp = p.data, p.hparams

        search = f"{part(d['search_train'], shp.get('max_train_samples'))} / "
        search += part(d["search_eval"], shp.get("max_eval_samples"))
        rows.append([
            task_title(t), p.task["metric"], search,
            part(info["data"]["train_rows"], hp.get("max_train_samples")), f"{info['data']['dev_rows']:,}",
            f"{hp['num_train_epochs']:g}", f"{hp['learning_rate']:g}", f"{hp['warmup_ratio']:g}",
            str(hp["max_seq_length"]), str(hp["per_device_train_batch_size"]), str(len(ev["seeds"])), RAN_ON[t],
        ])
    head = ["task", "metric", "search: train / eval examples", "final: train examples", "dev", "epochs", "lr",
            "warmup", "max len", "batch", "final seeds", "ran on"]
    return table(head, rows, "llllrrrrrrrl")


def t_learns(root: Path = RESULTS) -> str:
    head = ["task", "metric", "constant prediction (dev)", "unpruned (dev)", "worst seed − constant",
            "unpruned (search-eval)", "clearly learns"]
    return table(head, learns_rows(glue_evals(root), {t: root / t for t in GLUE}), "llrrrrl")


def t_table1(root: Path = RESULTS) -> str:
    """The paper's Table 1 over the five tasks: glp evaluate's own summary of every task's records, the rows that
    every task has."""
    records = [r for t, ev in glue_evals(root).items() for r in ev["records"] if r["task"] == t]
    return rows_every_task_has(summarize(records), GLUE)


COMPARED = ["top", "bottom", "proxy-bi", "optimal"]


def glue_cells(evals: dict[str, dict[str, Any]], other: str, tasks: list[str] | None = None) -> list[list[float]]:
    """GLP - other per seed, one list per (task, n) both rows have."""
    cells = []
    for t in tasks or GLUE:
        ev = evals[t]
        for n in (1, 2, 3):
            a, b = per_seed(ev, t, "greedy", n), per_seed(ev, t, other, n)
            if a and b:
                cells.append(paired(a, b))
    return cells


def t_paired(root: Path = RESULTS) -> str:
    evals = glue_evals(root)
    rows = []
    for t in GLUE:
        ev = evals[t]
        for n in (1, 2, 3):
            g = per_seed(ev, t, "greedy", n)
            d_top = paired(g, per_seed(ev, t, "top", n))
            row = [task_title(t), str(n), layers(removed_of(ev, t, "greedy", n)), layers(removed_of(ev, t, "top", n)),
                   " ".join(f"{100 * d:+.1f}" for d in d_top)]
            row += [wtl(paired(g, per_seed(ev, t, o, n))) for o in COMPARED]
            rows.append(row)
    head = ["task", "n", "GLP removes", "Top removes", "GLP − Top per seed (x100)", "vs Top", "vs Bottom",
            "vs proxy-bi", "vs optimal"]
    return table(head, rows, "lrlllllll")


def t_tests(root: Path = RESULTS) -> str:
    evals = glue_evals(root)
    clear = clearly_learning(evals)
    scopes = [
        ("all five tasks, n = 1–3", None),
        (f"where the unpruned model clearly learns ({', '.join(task_title(t) for t in clear)})", clear),
        ("without SST-2", [t for t in GLUE if t != "sst2"]),
    ]
    rows = sign_rows(lambda o, tasks: glue_cells(evals, o, tasks), COMPARED, scopes)
    return table(TEST_HEAD, rows, "llrlll")


def t_gap(root: Path = RESULTS) -> str:
    """Each task's share of the GLP - Top gap in the five tasks' mean (medians)."""
    evals = glue_evals(root)
    rows = []
    for n in (2, 3):
        diffs = {}
        for t in GLUE:
            g, o = per_seed(evals[t], t, "greedy", n), per_seed(evals[t], t, "top", n)
            diffs[t] = statistics.median(g.values()) - statistics.median(o.values())
        gap = sum(diffs.values()) / len(GLUE)
        rows.append([str(n), f"{100 * gap:+.2f}"] + [
            f"{100 * diffs[t]:+.1f} ({diffs[t] / len(GLUE) / gap:.0%})" for t in GLUE
        ])
    head = ["n", "GLP − Top, GLUE mean (x100)"] + [f"{task_title(t)}: GLP − Top (share)" for t in GLUE]
    return table(head, rows, "r" * (2 + len(GLUE)))


def t_search(root: Path = RESULTS) -> str:
    """GLP's, Top's and early rejection's paths on search-eval (one seed), and their cost (Bottom's and the proxy's
    sets are in the ranks table and the final rows)."""
    rows = []
    names = {"greedy": "GLP", "top": "Top", "greedy-halving": "GLP + halving", "greedy-halving-loss": "GLP + halving"}
    for t in GLUE:
        ps = plans(root / t)
        rows.append([task_title(t), "unpruned", f"{search_baseline(ps):.4f}", "", "", "", "", ""])
        for stem, label in names.items():
            p = ps.get(stem)
            if p is None or (stem == "greedy-halving" and "greedy-halving-loss" in ps):
                continue  # CoLA's early rejection: the plan of the search as it stands (exact ties by the loss)
            steps = {s.n: s for s in p.steps}
            cells = [f"{layers(p.removals[n])} ({steps[n].chosen_mean:.4f})" if n in steps else "–" for n in (1, 2, 3)]
            rows.append(["", label, *cells, str(p.cost.get("trials", 0)), f"{p.cost.get('train_steps', 0):,}",
                         f"{p.cost.get('trial_seconds', 0):,.0f}"])
    head = ["task", "strategy", "n = 1: removes (score)", "n = 2", "n = 3", "trials", "training steps",
            "fine-tuning time (s)"]
    return table(head, rows, "llllll" + "rr")


def t_ranks(root: Path = RESULTS) -> str:
    rows = []
    for t in GLUE:
        ps = plans(root / t)
        halving = "greedy-halving-loss" if "greedy-halving-loss" in ps else "greedy-halving"
        names = ["greedy", "top", "bottom", "proxy-bi", halving]
        r = rank_cells(ps.get("optimal"), {k: ps[k].removals.get(2) if k in ps else None for k in names})
        if r is not None:
            rows.append([task_title(t), str(r[1]), r[0], *r[2]])
    head = ["task", "sets", "optimum, worst", "GLP: rank (score)", "Top", "Bottom", "proxy-bi", "GLP + halving"]
    return table(head, rows, "lrllllll")


def t_variants(root: Path = RESULTS) -> str:
    """GLP with early rejection and with three search seeds against GLP: the sets, the cost, dev relative to the
    unpruned model and the per-seed comparison with GLP's rows."""
    rows = []
    for t in GLUE:
        ps, ev = plans(root / t), load_json(root / t / "evaluation.json")
        variants = [("GLP", "greedy", ps["greedy"])]
        h = next((h for h in ("halving-loss", "halving") if f"greedy-{h}" in ps), None)
        if h is not None:  # CoLA's: the search as it stands (exact ties of the metric broken by the loss)
            variants.append(("GLP + halving", f"greedy ({t}-{h})", ps[f"greedy-{h}"]))
        for label, strategy, p in variants:
            rel = [ev_rel(ev, t, strategy, n) for n in (1, 2, 3)]
            vs = [wtl(paired(per_seed(ev, t, strategy, n), per_seed(ev, t, "greedy", n))) for n in (1, 2, 3)]
            rows.append([task_title(t), label, "; ".join(layers(p.removals[n]) for n in sorted(p.removals)),
                         f"{p.cost['train_steps']:,}", " / ".join(rel), "" if strategy == "greedy" else " ".join(vs)])
        seeds3 = root / t / "evaluation-search-seeds3.csv"
        if seeds3.exists():
            p = ps["greedy-search-seeds3"]
            rel = {int(r["n"]): float(r["rel_percent"]) for r in _csv(seeds3) if r["strategy"] == "greedy"}
            rows.append([task_title(t), "GLP, 3 search seeds",
                         "; ".join(layers(p.removals[n]) for n in sorted(p.removals)),
                         f"{p.cost['train_steps']:,}", " / ".join(f"{rel[n]:.1f}" for n in (1, 2, 3)), "–"])
    head = ["task", "search", "removes (n = 1; 2; 3)", "training steps", "dev, % of unpruned (n = 1 / 2 / 3)",
            "vs GLP per seed, W/T/L (n = 1 / 2 / 3)"]
    return table(head, rows, "llllll")


def ev_rel(ev: dict[str, Any], task: str, strategy: str, n: int) -> str:
    row = next(r for r in ev["summary"]["rows"] if r["strategy"] == strategy and int(r["n"]) == n)
    return f"{row['cells'][task]['rel']:.1f}"


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def t_speed(root: Path = RESULTS) -> str:
    prof = load_json(root / "profile.json")
    rows = [[str(r["n"]), layers(r["removed"]), str(r["layers"]), f"{r['params'] / 1e6:.1f}M ({r['params_ratio']:.1%})",
             f"{r['cpu_ms']:.1f} ({r['cpu_ms_min']:.1f}–{r['cpu_ms_max']:.1f})", f"{r['cpu_speedup']:.2f}x"]
            for r in prof["rows"]]
    head = ["n", "removes", "layers", "parameters", "CPU ms per input, median (min–max)", "speed-up"]
    return table(head, rows, "rlrrrr")


# ------------------------------------------------------------------------------------ MiniLM, CoNLL-2003


def t_conll_search(root: Path = RESULTS) -> str:
    p = Plan.load(root / "conll2003" / "plans" / "greedy.json")
    rows = [[str(s.n), ", ".join(f"{{{layers(c.removed)}}} {c.mean:.4f}" for c in s.candidates if c.mean is not None)]
            for s in p.steps]
    c = p.cost
    cost = (f"{c['trials']} fine-tunes of {p.hparams['max_train_samples']:,} sampled search-train sentences, "
            f"{c['train_steps']:,} training steps, {c['trial_seconds']:,.0f} s of fine-tuning on 2 CPU cores")
    head = ["step", "candidates: removes → entity F1 on search-eval, best first"]
    return table(head, rows, "rl") + f"\nIts cost: {cost}.\n"


def t_conll_final(root: Path = RESULTS) -> str:
    ev = load_json(root / "conll2003" / "evaluation.json")
    t = "conll2003"
    base = {k: per_seed(ev, t, "baseline", 0, k) for k in ("score", "test_score")}
    summary = summarize(ev["records"])  # glp's row order (unpruned, GLP, the others); the stored summary predates it
    same = same_sets((int(r["n"]), r["strategy"], r["cells"][t]["removed"]) for r in summary["rows"])
    rows = []
    for r in summary["rows"]:
        s, n = r["strategy"], int(r["n"])
        names = same[(n, s)]
        if s != names[0]:
            continue
        cells = [" = ".join(names), str(n), layers(r["cells"][t]["removed"])]
        for k in ("score", "test_score"):
            v = per_seed(ev, t, s, n, k).values()
            cells += [spread(v), f"{100 * statistics.median(v) / statistics.median(base[k].values()):.1f}"]
        vs_top = [wtl(paired(per_seed(ev, t, s, n, k), per_seed(ev, t, "top", n, k))) for k in ("score", "test_score")]
        cells += ["", ""] if s == "baseline" or "top" in names else vs_top
        rows.append(cells)
    head = ["Method", "n", "removes", "dev entity F1", "% of unpruned", "test entity F1", "% of unpruned",
            "vs Top, dev W/T/L", "test W/T/L"]
    return table(head, rows, "lrlrrrrll")


# --------------------------------------------------------------------------------- MiniLM, distillation


DISTILL = ["sst2", "cola", "mrpc"]
VARIANTS = [("pretrained-init", "pretrained init"), ("teacher-init", "teacher init"),
            ("teacher-init-alpha1", "teacher init, α = 1")]


def _pruned(ev: dict[str, Any], n: int) -> dict[int, float]:
    t = next(iter(ev["tasks"]))
    strategy = next(r["strategy"] for r in ev["records"] if int(r["n"]) == n)
    return per_seed(ev, t, strategy, n)


def distill_cells(root: Path = RESULTS) -> dict[str, list[tuple[str, int, float | None, list[float], float, float]]]:
    """variant -> (task, n, share of the gap, per-seed differences to plain, points recovered, points of gap)."""
    out: dict[str, list] = {v: [] for v, _ in VARIANTS}
    for t in DISTILL:
        plain = load_json(root / t / "distill" / "plain" / "evaluation.json")
        unpruned = statistics.median(per_seed(plain, t, "baseline", 0).values())
        for v, _ in VARIANTS:
            ev = load_json(root / t / "distill" / v / "evaluation.json")
            for n in (2, 3):
                p, d = _pruned(plain, n), _pruned(ev, n)
                gap = unpruned - statistics.median(p.values())
                won = statistics.median(d.values()) - statistics.median(p.values())
                out[v].append((t, n, won / gap if gap > 0 else None, paired(d, p), won, gap))
    return out


def t_distill(root: Path = RESULTS) -> str:
    cells = distill_cells(root)
    rows = []
    for t in DISTILL:
        plain = load_json(root / t / "distill" / "plain" / "evaluation.json")
        for n in (2, 3):
            row = [task_title(t), str(n), spread(per_seed(plain, t, "baseline", 0).values()),
                   spread(_pruned(plain, n).values())]
            for v, _ in VARIANTS:
                ev = load_json(root / t / "distill" / v / "evaluation.json")
                c = next(c for c in cells[v] if c[0] == t and c[1] == n)
                share = "no gap" if c[2] is None else f"{c[2]:+.0%}"
                row.append(f"{spread(_pruned(ev, n).values())}; {share}; {wtl(c[3])}")
            rows.append(row)
    head = ["task", "n", "unpruned", "plain"] + [f"{name}: score; share; vs plain W/T/L" for _, name in VARIANTS]
    return table(head, rows, "lrrrlll")


def t_distill_summary(root: Path = RESULTS) -> str:
    rows = []
    for v, name in VARIANTS:
        cs = distill_cells(root)[v]
        shares = [c[2] for c in cs if c[2] is not None]
        by_task = {t: statistics.fmean([c[2] for c in cs if c[0] == t and c[2] is not None]) for t in DISTILL}
        pooled = sum(c[4] for c in cs if c[2] is not None) / sum(c[5] for c in cs if c[2] is not None)
        r = sign_test([c[3] for c in cs])
        rows.append([name, f"{statistics.fmean(shares):+.0%} ({len(shares)})",
                     ", ".join(f"{task_title(t)} {s:+.0%}" for t, s in by_task.items()),
                     f"{statistics.fmean(by_task.values()):+.0%}", f"{pooled:+.0%}",
                     f"{r['ahead']}/{r['level']}/{r['behind']}", p_value(r["p"])])
    head = ["student", "mean share (cells with a gap)", "per task", "over tasks", "pooled",
            "cells ahead / level / behind plain", "sign test p"]
    return table(head, rows, "lrlrrll")


def t_distill_epochs(root: Path = RESULTS) -> str:
    d = root / "sst2" / "distill"
    evs = {k: load_json(d / k / "evaluation.json") for k in ("plain", "teacher-init", "teacher-init-alpha1",
                                                            "plain-4epochs")}
    rows = []
    for n in (0, 2, 3):
        cells = [str(n)]
        for k, ev in evs.items():
            if n == 0:
                cells.append(spread(per_seed(ev, "sst2", "baseline", 0).values()) if k.startswith("plain") else "–")
            else:
                cells.append(spread(_pruned(ev, n).values()))
        rows.append(cells)
    return table(["n", "plain, 2 epochs", "teacher init", "teacher init, α = 1", "plain, 4 epochs"], rows, "rrrrr")


# ------------------------------------------------------------------------------------ SmolLM2-135M, LLMs


LLM = {"glp": ("GLP", "greedy"), "sleb": ("SLEB", "greedy (sleb)"), "shortgpt": ("ShortGPT", "shortgpt"),
       "gromov": ("Gromov et al.", "block-angular"), "top": ("reverse order, last layer kept", "top")}


def t_llm_search(root: Path = RESULTS) -> str:
    rows = []
    for d, (name, _) in LLM.items():
        p = Plan.load(root / "llm" / d / "plan.json")
        c = p.cost
        wall = c.get("search_wall_seconds", c["wall_seconds"])  # over all its calls; older plans: their one call
        rows.append([name, p.strategy["name"], str(c["trials"]), f"{c['train_steps']:,}", f"{wall:,.0f}"])
    return table(["method", "strategy", "search trials", "training steps", "search wall time (s)"], rows, "llrrr")


REEVAL = "llm/eval-3seeds"  # the final evaluation again: 3 seeds, the whole test set (benchmarks/llm_study.sh)


def t_llm_reeval(root: Path = RESULTS) -> str:
    """The decoder study's final rows with several seeds on the whole test set, beside the one-seed, 32-block
    perplexity of the first evaluation, and GLP against each method paired by seed (a win: lower perplexity)."""
    path = root / REEVAL / "evaluation.json"
    if not path.exists():
        return (f"Not committed yet (docs/results/{REEVAL}/evaluation.json, from `PLANS=docs/results/llm SEEDS=3 "
                "TEST_SAMPLES=0 LM_EVAL_LIMIT=500 DTYPE=bf16 OUT=runs/llm-reeval PUBLISH=docs/results/llm/eval-3seeds "
                "bash benchmarks/llm_study.sh`).\n")
    ev, first = load_json(path), load_json(root / "llm" / "eval" / "evaluation.json")
    task = next(iter(ev["tasks"]))
    names = {"baseline": "unpruned", **{s: name for name, s in LLM.values()}}
    once = {(r["strategy"], r["n"]): r["score"] for r in first["records"] if r.get("score") is not None}
    keys = sorted({(int(r["n"]), r["strategy"]) for r in ev["records"] if r.get("score") is not None},
                  key=lambda k: (k[0], list(names).index(k[1])))
    med = {k: statistics.median(per_seed(ev, task, k[1], k[0]).values()) for k in keys}
    best = {n: min(v for (m, _), v in med.items() if m == n) for n, _ in keys if n}
    same = same_sets((n, s, removed_of(ev, task, s, n) or []) for n, s in keys)
    rows = []
    for n, strategy in keys:
        group = same[(n, strategy)]
        if strategy != group[0]:
            continue
        ppl = per_seed(ev, task, strategy, n)
        cell = f"{med[(n, strategy)]:.2f} ({min(ppl.values()):.2f}–{max(ppl.values()):.2f})"
        cell = f"**{cell}**" if n and med[(n, strategy)] == best[n] else cell
        acc = [spread(r["metrics"][m] for r in ev["records"] if r["strategy"] == strategy and int(r["n"]) == n
                      and r.get("score") is not None) for m in ("arc_easy_local:acc", "piqa_local:acc")]
        glp = per_seed(ev, task, "greedy", n)
        versus = "" if "greedy" in group or strategy == "baseline" or not glp else wtl(paired(ppl, glp))
        once_ = once.get((strategy, n))
        removes = layers(sorted(removed_of(ev, task, strategy, n) or [], reverse=True))
        rows.append([str(n), " = ".join(names[g] for g in group), removes, cell,
                     f"{once_:.2f}" if once_ is not None else "–", *acc, versus])
    seeds = len(ev["seeds"])
    head = ["n", "method", "removes", f"test perplexity, median of {seeds} seeds (min–max)",
            "1 seed, 32 blocks", "ARC-Easy acc", "PIQA acc", "GLP vs it, per seed (W/T/L)"]

    def lowest(scores: dict[str, float]) -> str:  # the lowest perplexity's rows (one set: several names)
        low = min(scores.values())
        return " = ".join(names[s] for s, v in scores.items() if v == low)

    changes = [f"n = {n}: {lowest({s: once[(s, m)] for m, s in keys if m == n and (s, m) in once})} → "
               f"{lowest({s: med[(m, s)] for m, s in keys if m == n})}" for n in sorted(best)]
    return (table(head, rows, "rllrrrrl") + f"\nThe lowest perplexity, one seed on 32 blocks → the median of {seeds} "
            f"seeds on the whole test set: {'; '.join(changes)}.\n")


# --------------------------------------------------------------------------------------------- the page


TABLES: dict[str, Callable[[], str]] = {
    "mpnet-headline": t_mpnet_headline,
    "mpnet-setup": t_mpnet_setup,
    "mpnet": t_mpnet,
    "mpnet-gates": t_mpnet_gates,
    "mpnet-compare": t_mpnet_compare,
    "mpnet-distill": t_mpnet_distill,
    "minilm-setup": t_setup,
    "minilm-learns": t_learns,
    "minilm-table1": t_table1,
    "minilm-paired": t_paired,
    "minilm-tests": t_tests,
    "minilm-gap": t_gap,
    "minilm-search": t_search,
    "minilm-ranks": t_ranks,
    "minilm-variants": t_variants,
    "minilm-speed": t_speed,
    "conll-search": t_conll_search,
    "conll-final": t_conll_final,
    "distill": t_distill,
    "distill-summary": t_distill_summary,
    "distill-epochs": t_distill_epochs,
    "llm-search": t_llm_search,
    "llm-reeval": t_llm_reeval,
}


def generate() -> dict[str, str]:
    return {name: fn().rstrip("\n") + "\n" for name, fn in TABLES.items()}


def problems(docs: dict[str, str], tables: dict[str, str]) -> list[str]:
    """What differs between the marked blocks of the pages ``docs`` (name -> text) and ``tables``: a block that
    differs, a table no page has, a block of an unknown table, a table on two pages."""
    out, seen = [], {}
    for page, doc in docs.items():
        for m in MARKER.finditer(doc):
            name, body = m.group(1), m.group(2)
            if name in seen:
                out.append(f"{name}: on {seen[name]} and on {page}")
            seen[name] = page
            if name not in tables:
                out.append(f"{name}: no such table (known: {', '.join(tables)})")
            elif body != tables[name]:
                diff = difflib.unified_diff(body.splitlines(), tables[name].splitlines(), page, "artifacts",
                                            lineterm="")
                out.append(f"{name}: differs from the artifacts\n" + "\n".join(diff))
    out += [f"{name}: not in {' or '.join(docs)} (add <!-- table:{name} --> ... <!-- /table -->)"
            for name in tables if name not in seen]
    return out


def rewrite(doc: str, tables: dict[str, str]) -> str:
    return MARKER.sub(lambda m: f"<!-- table:{m.group(1)} -->\n{tables.get(m.group(1), m.group(2))}<!-- /table -->",
                      doc)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Without an option: print every table.")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when a marked table of either page differs")
    mode.add_argument("--write", action="store_true", help="rewrite the marked tables of both pages in place")
    args = ap.parse_args(argv)
    tables = generate()
    if args.check or args.write:
        if args.write:
            for page in PAGES:
                page.write_text(rewrite(page.read_text(), tables))
        found = problems({str(p.relative_to(ROOT)): p.read_text() for p in PAGES}, tables)
        for p in found:
            print(p, file=sys.stderr)
        return 1 if found else 0
    for name, text in tables.items():
        print(f"<!-- table:{name} -->\n{text}<!-- /table -->\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
