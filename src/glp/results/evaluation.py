"""The evaluation artifact (``glp evaluate``'s ``evaluation.json``): its records summarized, its tables, its files.

``summarize`` turns the per-seed records into rows (median / min / max over seeds per task, the row score, the
relative performance); ``markdown_table``, ``removal_table``, ``paired_table`` (GLP against every other row of its
n, seed by seed: ``paired_rows``, ``paired_differences``, ``wins_ties_losses``, ``sign_test``), ``csv_text`` and
``setup_lines`` are pure functions of the summary (and of the result for ``setup_lines``); ``write_outputs`` writes
the tables and the JSON into an evaluation directory (`glp.run.rundir.RunDir`) and ``load_evaluation`` reads the
JSON back. ``glp evaluate`` writes it, ``glp report`` reads it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from glp.atomic import write_text_atomic
from glp.errors import ConfigError, TaskError
from glp.plan import read_artifact
from glp.run.rundir import EVALUATION, RunDir
from glp.tasks import glue_score, is_glue_task, relative_performance, task_title
from glp.trial.scoring import FINAL_PROTOCOL as PROTOCOL

SCHEMA = "glp.evaluation/1"
BASELINE = "baseline"  # the strategy of the row with no layer removed (n = 0)
REFERENCE = "greedy"  # the row the paired table sets against every other one: GLP


def row_score(medians: dict[str, float]) -> float | None:
    """GLUE score (mean of the main metrics, WNLI excluded) when every task is a GLUE task, else the mean."""
    if not medians:
        return None
    if all(is_glue_task(t) for t in medians):
        try:
            return glue_score(medians)
        except TaskError:
            pass
    return float(statistics.fmean(medians.values()))


def summarize(
    records: Sequence[dict[str, Any]], score_key: str = "score", reference: str = REFERENCE
) -> dict[str, Any]:
    """Median / min / max over seeds per (strategy, n, task), the row score and the relative performance.

    ``records`` are dicts with ``task, strategy, n, removed, seed, score`` (score None = failed trial) and
    optionally ``metric``. The baseline is the row with strategy ``"baseline"`` (n = 0). Relative performance
    is median(pruned) / median(baseline) × 100 per task, and score(pruned row) / score(baseline row) × 100 for
    the row, where a row's score is the GLUE score of its task medians (only when it has every task).
    """
    tasks: list[str] = []
    metrics: dict[str, str] = {}
    lower: set[str] = set()  # tasks whose metric is lower-is-better (a record says higher_is_better: false)
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for r in records:
        t = str(r["task"])
        if t not in tasks:
            tasks.append(t)
        if r.get("metric"):
            metrics.setdefault(t, str(r["metric"]))
        if r.get("higher_is_better") is False:
            lower.add(t)
        key = (str(r["strategy"]), int(r["n"]))
        row = rows.setdefault(key, {"strategy": key[0], "n": key[1], "cells": {}})
        cell = row["cells"].setdefault(t, {"removed": list(r.get("removed") or []), "scores": [], "seeds": []})
        cell["seeds"].append(r.get("seed"))
        s = r.get(score_key)
        cell["scores"].append(None if s is None or not math.isfinite(float(s)) else float(s))
    for row in rows.values():
        for cell in row["cells"].values():
            good = [s for s in cell["scores"] if s is not None]
            cell["failed"] = len(cell["scores"]) - len(good)
            cell["median"] = float(statistics.median(good)) if good else None
            cell["min"] = min(good) if good else None
            cell["max"] = max(good) if good else None
    base = rows.get((BASELINE, 0))
    base_score = None
    if base is not None:
        base_score = _row_total(base, tasks)
    ordered = sorted(rows.values(), key=lambda r: (_rank(r["strategy"], reference), _first_index(records, r), r["n"]))
    for row in ordered:
        row["score"] = _row_total(row, tasks)
        for t, cell in row["cells"].items():
            b = base["cells"].get(t) if base is not None else None
            bm = b["median"] if b is not None else None
            cell["rel"] = relative_performance(cell["median"], bm, t not in lower)
        one_direction = not lower or lower == set(tasks)  # a row score over mixed directions means nothing
        row["rel"] = relative_performance(row["score"], base_score, not lower) if one_direction else None
    all_glue = bool(tasks) and all(is_glue_task(t) for t in tasks)
    return {
        "tasks": tasks,
        "metrics": metrics,
        "score_name": "GLUE" if all_glue else "Mean",
        "rows": ordered,
        "lower_is_better": sorted(lower),
    }


def _rank(strategy: str, reference: str) -> int:
    """Rows in a fixed order: the unpruned model, then GLP (``reference``, as the rows name it) and its variants
    ("greedy (parent)"), then the others in the order they come (plans by file name, then the patterns and models of
    the command line)."""
    if strategy == BASELINE:
        return 0
    return 1 if strategy == reference or strategy.startswith((reference + " (", REFERENCE + " (")) else 2


def _first_index(records: Sequence[dict[str, Any]], row: dict[str, Any]) -> int:
    for i, r in enumerate(records):
        if r["strategy"] == row["strategy"]:
            return i
    return len(records)


def _row_total(row: dict[str, Any], tasks: list[str]) -> float | None:
    medians = {t: row["cells"][t]["median"] for t in tasks if t in row["cells"]}
    if len(medians) < len(tasks) or any(v is None for v in medians.values()):
        return None
    return row_score(medians)  # type: ignore[arg-type]


def _pct(x: float | None, digits: int = 1, scale: float = 100.0) -> str:
    return "–" if x is None else f"{scale * x:.{digits}f}"


def markdown_table(summary: dict[str, Any], spread: bool = True) -> str:
    """The paper's Table 1 shape: one row per (strategy, n), tasks as columns (×100; a lower-is-better metric such
    as perplexity as it is), GLUE score, Rel. (%)."""
    tasks = summary["tasks"]
    lower = set(summary.get("lower_is_better", ()))
    metrics = summary.get("metrics", {})
    head = ["Method", "n"]
    head += [f"{task_title(t)} ({metrics[t]})" if t in metrics else task_title(t) for t in tasks]
    head += [summary.get("score_name", "GLUE"), "Rel. (%)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in summary["rows"]:
        cells = [row["strategy"], str(row["n"])]
        for t in tasks:
            c = row["cells"].get(t)
            if c is None or c["median"] is None:
                cells.append("–" if c is None else f"failed ({c['failed']})")
                continue
            fmt = (2, 1.0) if t in lower else (1, 100.0)  # (digits, scale)
            text = _pct(c["median"], *fmt)
            if spread and len([s for s in c["scores"] if s is not None]) > 1:
                text += f" ({_pct(c['min'], *fmt)}–{_pct(c['max'], *fmt)})"
            if c.get("failed"):
                text += f" [{c['failed']} failed]"
            cells.append(text)
        cells.append(_pct(row["score"], 2, 1.0) if lower and lower == set(tasks) else _pct(row["score"]))
        cells.append("–" if row["rel"] is None else f"{row['rel']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def removal_table(summary: dict[str, Any]) -> str:
    """Which layers each row removed, per task (0-based, in the order they were chosen)."""
    lines = ["| Method | n | Task | Removed layers | Seeds |", "|---|---:|---|---|---:|"]
    for row in summary["rows"]:
        for t, c in row["cells"].items():
            removed = ",".join(map(str, c["removed"])) or "–"
            lines.append(f"| {row['strategy']} | {row['n']} | {task_title(t)} | {removed} | {len(c['scores'])} |")
    return "\n".join(lines) + "\n"


TIE = 1e-4  # a paired difference this small is a tie: the same set and seed on other threads differs in the 6th decimal
DISTILLED = " (distilled, "  # how a distilled row's name goes on: "top (distilled, teacher init)"


def distilled_name(strategy: str, init: str) -> str:
    """The row of ``strategy``'s sets fine-tuned by distillation (``glp evaluate --distill``)."""
    return f"{strategy}{DISTILLED}{init} init)"


def paired_differences(summary: dict[str, Any], task: str, a: dict[str, Any], b: dict[str, Any]) -> list[float]:
    """Row ``a``'s score minus row ``b``'s on ``task`` for every seed both scored; positive when ``a`` is better (a
    lower-is-better metric such as perplexity is flipped)."""
    ca, cb = a["cells"].get(task), b["cells"].get(task)
    if ca is None or cb is None:
        return []
    sa = {seed: x for seed, x in zip(ca["seeds"], ca["scores"], strict=True) if x is not None and seed is not None}
    sb = {seed: x for seed, x in zip(cb["seeds"], cb["scores"], strict=True) if x is not None and seed is not None}
    sign = -1.0 if task in summary.get("lower_is_better", ()) else 1.0
    return [sign * (x - sb[seed]) for seed, x in sa.items() if seed in sb]


def wins_ties_losses(diffs: Sequence[float], tie: float = TIE) -> tuple[int, int, int]:
    """Differences above ``tie``, within it, below ``-tie``."""
    return sum(d > tie for d in diffs), sum(abs(d) <= tie for d in diffs), sum(d < -tie for d in diffs)


def sign_test(ahead: int, behind: int) -> float | None:
    """The exact two-sided sign test's p-value for cells ahead / behind (level ones left out); None without any."""
    if not ahead + behind:
        return None
    from scipy.stats import binomtest

    return float(binomtest(ahead, ahead + behind, 0.5).pvalue)


def _reference(summary: dict[str, Any], reference: str | None) -> str:
    """GLP's row: ``reference``, else the name a relabelling gave it (`relabel`), else ``greedy``."""
    return reference or summary.get("reference") or REFERENCE


def paired_rows(summary: dict[str, Any], reference: str | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(GLP's row, another row of the same n) for every row GLP is set against: a distilled row against GLP's
    distilled one; the unpruned row against none."""
    reference = _reference(summary, reference)
    by_name = {(r["strategy"], r["n"]): r for r in summary["rows"]}
    pairs = []
    for row in summary["rows"]:
        cut = row["strategy"].find(DISTILLED)
        ref = by_name.get((reference + (row["strategy"][cut:] if cut >= 0 else ""), row["n"]))
        if ref is not None and ref is not row and row["strategy"] != BASELINE:
            pairs.append((ref, row))
    return pairs


def paired_table(summary: dict[str, Any], reference: str | None = None) -> str:
    """``reference`` (GLP) against every other row of the same n, paired by seed (a distilled row against GLP's
    distilled one): per task and n its wins / ties / losses and mean difference, then, for a row with several such
    cells, the cells it is ahead of / level with / behind, and the sign test over them where they span two tasks or
    more (one task's cells are nested: GLP's sets grow with n). Empty where no other row shares two seeds with it."""
    reference = _reference(summary, reference)
    lower = set(summary.get("lower_is_better", ()))
    cells = []  # (task, n, other row's strategy, differences, the tie of that task's scale)
    for ref, row in paired_rows(summary, reference):
        for t in summary["tasks"]:
            d = paired_differences(summary, t, ref, row)
            if len(d) >= 2:  # perplexity in the hundreds: a tie relative to the score, as for a metric in [0, 1]
                tie = TIE * max(1.0, abs(ref["cells"][t]["median"])) if t in lower else TIE
                cells.append((t, row["n"], row["strategy"], d, tie))
    if not cells:
        return ""
    who = reference if reference.upper().startswith("GLP") else f"GLP ({reference})"
    lines = [f"{who} against each row of the same n, paired by seed: wins / ties / losses (a win: GLP "
             "scores better) and the mean difference, positive where GLP is better (×100; a lower-is-better metric "
             "such as perplexity unscaled):", "",
             "| Task | n | vs | Seeds | W/T/L | Mean difference |", "|---|---:|---|---:|---|---:|"]
    for t, n, other, d, tie in cells:
        mean = statistics.fmean(d) * (1.0 if t in lower else 100.0)
        lines.append(f"| {task_title(t)} | {n} | {other} | {len(d)} | "
                     f"{'/'.join(map(str, wins_ties_losses(d, tie)))} | {mean:+.2f} |")
    others = [o for o in dict.fromkeys(c[2] for c in cells) if sum(c[2] == o for c in cells) > 1]
    if others:
        lines += ["", "Across tasks and n (a cell is ahead, level or behind by its mean difference; the sign test "
                  "leaves level cells out and needs two tasks or more):", "",
                  "| vs | Cells | Ahead / level / behind | Seed pairs W/T/L | Sign test p |", "|---|---:|---|---|---:|"]
        for o in others:
            mine = [c for c in cells if c[2] == o]
            status = [wins_ties_losses([statistics.fmean(c[3])], c[4]) for c in mine]  # each cell's, by its mean
            ahead, level, behind = map(sum, zip(*status, strict=True))
            pairs = "/".join(str(sum(col)) for col in zip(*(wins_ties_losses(c[3], c[4]) for c in mine), strict=True))
            p = sign_test(ahead, behind) if len({c[0] for c in mine}) > 1 else None
            lines.append(f"| {o} | {len(mine)} | {ahead}/{level}/{behind} | {pairs} | "
                         f"{'–' if p is None else f'{p:.3f}'} |")
    return "\n".join(lines) + "\n"


def csv_text(summary: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        [
            "strategy",
            "n",
            "task",
            "metric",
            "removed",
            "seeds",
            "failed",
            "median",
            "min",
            "max",
            "rel_percent",
            "row_score",
            "row_rel_percent",
        ]
    )
    for row in summary["rows"]:
        for t in summary["tasks"]:
            c = row["cells"].get(t)
            if c is None:
                continue
            w.writerow(
                [
                    row["strategy"],
                    row["n"],
                    t,
                    summary["metrics"].get(t, ""),
                    " ".join(map(str, c["removed"])),
                    len(c["scores"]),
                    c["failed"],
                    _num(c["median"]),
                    _num(c["min"]),
                    _num(c["max"]),
                    _num(c["rel"]),
                    _num(row["score"]),
                    _num(row["rel"]),
                ]
            )
    return buf.getvalue()


def _num(x: float | None) -> str:
    return "" if x is None else repr(round(float(x), 6))


def setup_lines(result: dict[str, Any]) -> list[str]:
    """One line per task: the data and hyper-parameters its rows were fine-tuned and scored with."""
    lines = []
    for t, meta in (result.get("tasks") or {}).items():
        hp = meta.get("hparams") or {}
        data = meta.get("data") or {}
        ntrain, ndev = data.get("train_rows"), data.get("dev_rows")
        train = f"{hp['max_train_samples']} of {ntrain}" if hp.get("max_train_samples") else f"all {ntrain}"
        dev = f"{hp['max_eval_samples']} of {ndev}" if hp.get("max_eval_samples") else f"all {ndev}"
        counts = f"{train} train examples, {dev} dev examples; " if ntrain is not None else ""
        lines.append(
            f"{task_title(t)}: {counts}{hp.get('num_train_epochs')} epoch(s), "
            f"learning rate {hp.get('learning_rate')}, batch {hp.get('per_device_train_batch_size')}, "
            f"max length {hp.get('max_seq_length')}"
        )
    return lines


def write_outputs(result: dict[str, Any], out: str | os.PathLike[str]) -> dict[str, Path]:
    """``table.md``, ``evaluation.csv`` and ``evaluation.json`` of ``result`` in the evaluation directory ``out``."""
    run = RunDir(out)
    run.path.mkdir(parents=True, exist_ok=True)
    summary = result["summary"]
    seeds = result.get("seeds") or []
    md = (
        f"# Evaluation ({PROTOCOL}): {result.get('model')}\n\n"
        f"Fine-tuned on the train set, scored on dev; median over {len(seeds)} seed(s) {seeds} "
        "(min–max in brackets), ×100 (perplexity and other lower-is-better metrics as they are). Rel. = score / "
        "baseline score (baseline / score when lower is better).\n\n"
        + markdown_table(summary)
        + "\n"
        + removal_table(summary)
        + "\n"
        + "".join(f"- {line}\n" for line in setup_lines(result))
    )
    if paired := paired_table(summary):
        md += "\n## Paired by seed\n\n" + paired
    for key in sorted(k for k in result if k.startswith("summary_")):
        split = key[len("summary_") :]
        md += f"\n## Scored on {split} (the same fine-tunes)\n\n" + markdown_table(result[key])
    paths = {"markdown": run.evaluation_table_path, "csv": run.evaluation_csv_path, "json": run.evaluation_path}
    write_text_atomic(paths["markdown"], md)
    write_text_atomic(paths["csv"], csv_text(summary))
    write_text_atomic(paths["json"], json.dumps(result, indent=1, allow_nan=False) + "\n")
    return paths


def load_evaluation(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``evaluation.json`` of an evaluation directory (or the file itself)."""
    hint = f"glp evaluate --out DIR writes DIR/{EVALUATION}"
    return read_artifact(RunDir.evaluation_at(path), SCHEMA, "evaluation", hint)


def relabel(evald: dict[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """``evald`` with rows renamed (``labels``: a row's label, as the evaluation's tables print it, to the one to
    print instead) and its summaries recomputed; a label the evaluation has no row of is a `ConfigError`."""
    known = {str(r["strategy"]) for r in evald["records"]}
    for old, new in labels.items():
        if old not in known:
            rows = ", ".join(sorted(known))
            raise ConfigError(f"--label {old!r}: the evaluation has no row so named; its rows: {rows}")
        if BASELINE in (old, new):  # the rows' Rel. is read against the row of that name
            raise ConfigError(f"--label {old}={new}: the unpruned row keeps its name, {BASELINE!r}")
    after = [labels.get(k, k) for k in known]
    if len(set(after)) < len(after):  # two rows under one name would pool their seeds
        twice = sorted({a for a in after if after.count(a) > 1})
        raise ConfigError(f"--label: two rows would both be named {twice[0]!r}")
    records = [{**r, "strategy": labels.get(str(r["strategy"]), r["strategy"])} for r in evald["records"]]
    out = {**evald, "records": records, **summaries(records, labels.get(REFERENCE, REFERENCE))}
    if REFERENCE in labels:  # the paired table's GLP row under its new name
        out["summary"]["reference"] = labels[REFERENCE]
    return out


def summaries(records: Sequence[dict[str, Any]], reference: str = REFERENCE) -> dict[str, dict[str, Any]]:
    """An evaluation's summaries of ``records``: ``summary`` of the main score, and ``summary_<split>`` of each extra
    scored set (a record's ``<split>_score``, e.g. token classification's test); ``reference``: GLP's row's name."""
    splits = sorted({k[: -len("_score")] for r in records for k in r if k.endswith("_score") and k != "score"})
    extra = {f"summary_{s}": summarize(records, f"{s}_score", reference) for s in splits}
    return {"summary": summarize(records, reference=reference), **extra}
