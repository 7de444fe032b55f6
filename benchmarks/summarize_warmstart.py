"""Warm start against the paper's GLP, from the committed artifacts of benchmarks/bench_warmstart.sh.

    python benchmarks/summarize_warmstart.py docs/results/warmstart/sst2
    python benchmarks/summarize_warmstart.py docs/results/warmstart/mpnet-sst2 docs/results/mpnet/sst2/evaluation.json \
        docs/results/warmstart/mpnet-sst2/evaluation-halving.json

reads ``pretrained.json``, ``parent.json``, ``parent-halving.json`` (the three searches' plans; the last is optional)
and ``evaluation.json`` (the final protocol on dev; or the files named after the folder, merged) and prints, as
markdown: each search's training steps and time, the layers each chooses and, per step, the rank correlation
(Spearman) of the candidates' search-eval scores between the warm start and the paper's search (over the candidates
that add the same layer to the same set), and the final dev scores per n.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from results_lib import paired, wtl
from scipy.stats import spearmanr

VARIANTS = ("pretrained", "parent", "parent-halving")
LABELS = {"pretrained": "GLP (paper)", "parent": "GLP warm start", "parent-halving": "GLP warm start + halving"}
# the final rows shown beside the searches' (an evaluation may hold more: Bottom, random orders, other searches)
CONTEXT = ("baseline", "top", "proxy-bi")


def _plans(root: Path) -> dict[str, dict]:
    return {v: json.loads((root / f"{v}.json").read_text()) for v in VARIANTS if (root / f"{v}.json").is_file()}


def cost_table(plans: dict[str, dict]) -> list[str]:
    base = plans["pretrained"]["cost"]
    out = ["| search | trials | train steps | x fewer steps | trial seconds | layers removed (n = 1..N) |",
           "|---|---:|---:|---:|---:|---|"]
    for v, plan in plans.items():
        c = plan["cost"]
        ratio = base["train_steps"] / c["train_steps"] if c["train_steps"] else float("nan")
        order = [plan["removals"][str(n)] for n in range(1, plan["max_remove"] + 1) if str(n) in plan["removals"]]
        out.append(f"| {LABELS[v]} | {c['trials']} | {c['train_steps']} | {ratio:.1f} | {c['trial_seconds']:.0f} | "
                   f"{order} |")
    return out


def step_table(plans: dict[str, dict]) -> list[str]:
    """Per step: both searches' winners and the Spearman correlation of the candidates they share."""
    ref, warm = plans["pretrained"], plans["parent"]
    out = ["| n | paper's winner | warm start's winner | same set searched from? | candidates compared | Spearman |",
           "|---:|---|---|---|---:|---:|"]
    for a, b in zip(ref["steps"], warm["steps"], strict=False):
        ca = {c["added"]: c["mean"] for c in a["candidates"] if c["mean"] is not None}
        cb = {c["added"]: c["mean"] for c in b["candidates"] if c["mean"] is not None}
        start_a = sorted(a["candidates"][0]["removed"][:-1]) if a["candidates"] else []
        start_b = sorted(b["candidates"][0]["removed"][:-1]) if b["candidates"] else []
        shared = sorted(set(ca) & set(cb))
        rho = spearmanr([ca[i] for i in shared], [cb[i] for i in shared]).statistic if len(shared) > 2 else None
        rho_text = "–" if rho is None or rho != rho else f"{rho:.2f}"
        out.append(f"| {a['n']} | {a['chosen']} | {b['chosen']} | {'yes' if start_a == start_b else 'no'} | "
                   f"{len(shared)} | {rho_text} |")
    return out


def _variant(record: dict) -> str:
    plan = record.get("plan") or ""
    for v in sorted(VARIANTS, key=len, reverse=True):
        if f"-{v}/" in plan or f"-{v}\\" in plan:
            return v
    if record["strategy"] == "greedy":  # the paper's search, from a run directory named otherwise (the depth study)
        return "pretrained"
    return record["strategy"]  # baseline, top, proxy-bi, compare


def final_table(evaluation: dict) -> list[str]:
    rows: dict[tuple[str, int], list[float]] = {}
    sets: dict[tuple[str, int], list[int]] = {}
    for r in evaluation["records"]:
        if r.get("score") is None:
            continue
        key = (_variant(r), int(r["n"]))
        if key[0] not in VARIANTS and key[0] not in CONTEXT and not r.get("compare"):
            continue
        rows.setdefault(key, []).append(float(r["score"]))
        sets[key] = r["removed"]
    metric = evaluation["records"][0]["metric"]
    base = statistics.median(rows[("baseline", 0)]) if ("baseline", 0) in rows else None
    out = [f"Dev {metric}, the paper's protocol (median of {len(evaluation['seeds'])} seeds, min–max; % of the "
           f"unpruned model's median {base:.4f})" if base else f"Dev {metric}", "",
           "| n | row | removed | median | min–max | % of unpruned |", "|---:|---|---|---:|---|---:|"]
    for (v, n), scores in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if n == 0:
            continue
        med = statistics.median(scores)
        rel = f"{100 * med / base:.1f}" if base else "–"
        label = LABELS.get(v, v)
        out.append(f"| {n} | {label} | {sets[(v, n)]} | {med:.4f} | {min(scores):.4f}–{max(scores):.4f} | {rel} |")
    return out


def merged(evaluations: list[dict]) -> dict:
    """One evaluation of several (the same protocol and seeds): their records, each row and seed once."""
    seen, records = set(), []
    for ev in evaluations:
        for rec in ev["records"]:
            key = (_variant(rec), int(rec["n"]), int(rec["seed"]))
            if key not in seen:
                seen.add(key)
                records.append(rec)
    return {**evaluations[0], "records": records}


def main(root: str, *evaluations: str) -> str:
    r = Path(root)
    plans = _plans(r)
    parts = ["### Search cost", "", *cost_table(plans), "", "### Candidates step by step", "", *step_table(plans)]
    files = [Path(e) for e in evaluations] or [r / "evaluation.json"]
    if all(f.is_file() for f in files):
        parts += ["", "### Final scores", "", *final_table(merged([json.loads(f.read_text()) for f in files]))]
    return "\n".join(parts) + "\n"


def _medians(evaluation: dict) -> dict[tuple[str, int], dict[int, float]]:
    """(variant, n) -> {seed: score} over the records that scored."""
    out: dict[tuple[str, int], dict[int, float]] = {}
    for r in evaluation["records"]:
        if r.get("score") is not None:
            out.setdefault((_variant(r), int(r["n"])), {})[int(r["seed"])] = float(r["score"])
    return out


def _cell(scores: dict[int, float] | None, ref: dict[int, float] | None = None) -> str:
    """median (min–max) x100, and against ``ref`` (paired by seed) the wins/ties/losses (results_lib.wtl)."""
    if not scores:
        return "–"
    v = list(scores.values())
    text = f"{100 * statistics.median(v):.1f} ({100 * min(v):.1f}–{100 * max(v):.1f})"
    if ref:
        text += f"; {wtl(paired(scores, ref))}"
    return text


def overview(*specs: str) -> str:
    """One table over several tasks: ``DIR`` or ``DIR+EVALUATION+...`` each (the arguments of :func:`main`, joined
    by +). Per task the searches' training steps, per task and n the final dev rows with the warm starts' per-seed
    wins/ties/losses against the paper's search, and whether the warm start's median lies within the paper's seeds'
    spread or above it. A task whose evaluations are not there yet has its searches' row only."""
    cost = ["| task | training steps: paper / warm start / + halving | x fewer | Spearman, step 1 / 2 |",
            "|---|---|---|---|"]
    final = ["| task | n | GLP (paper) | warm start; W/T/L vs paper | + halving; W/T/L vs paper | Top "
             "| warm start within the paper's spread or above? |", "|---|---:|---|---|---|---|---|"]
    for spec in specs:
        root, *evaluations = spec.split("+")
        r = Path(root)
        plans = _plans(r)
        steps = [plans[v]["cost"]["train_steps"] for v in VARIANTS if v in plans]
        rhos = [line.split("|")[-2].strip() for line in step_table(plans)[2:4]]
        files = [Path(e) for e in evaluations] or [r / "evaluation.json"]
        found = [json.loads(f.read_text()) for f in files if f.is_file()]  # none yet: the searches' row only
        ev = merged(found) if found else {"records": []}
        task = r.name  # the artifacts' folder: the task, and the model where it is not MiniLM (mpnet-sst2)
        cost.append(f"| {task} | {' / '.join(map(str, steps))} | "
                    f"{' / '.join(f'{steps[0] / x:.1f}' for x in steps[1:])} | {' / '.join(rhos)} |")
        rows = _medians(ev)
        for n in sorted({n for _, n in rows if n}):
            ref, warm = rows.get(("pretrained", n)), rows.get(("parent", n))
            within = "–"
            if ref and warm:
                within = "yes" if statistics.median(warm.values()) >= min(ref.values()) else "no"
            final.append(f"| {task} | {n} | {_cell(ref)} | {_cell(warm, ref)} | "
                         f"{_cell(rows.get(('parent-halving', n)), ref)} | {_cell(rows.get(('top', n)))} | {within} |")
    return "\n".join(["Training steps of each search:", "", *cost, "", "Final dev x100, median of the seeds (min–max):",
                      "", *final]) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--overview"]:
        sys.stdout.write(overview(*sys.argv[2:]))
    else:
        sys.stdout.write(main(*sys.argv[1:]))
