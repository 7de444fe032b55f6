"""`glp report`: one self-contained report of runs, their evaluation and their latency profile.

Writes into ``OUT``: ``report.md`` (the plans, the evaluation table, the profile table), PNG figures —
``heatmap_<task>_<strategy>.png`` (step × layer: each cell is the mean score of the candidate that removes
that layer at that step, blank when not tried, the chosen one boxed) and ``tradeoff.png`` (the paper's Figure 1:
relative performance against speed-up, one line per strategy, the baseline as a point) — and, with
``html=True``, ``report.html`` with the figures embedded.

Without an evaluation the trade-off curve uses the search scores (relative to the search baseline); without a
profile its x axis is the number of layers removed.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glp import __version__
from glp.atomic import write_dir_atomic
from glp.errors import ConfigError
from glp.plan import Plan
from glp.results import evaluation as ev
from glp.results import profile as pf
from glp.results.render import DPI, error_bars, pyplot, seed_range, to_html
from glp.run.rundir import RunDir
from glp.tasks import relative_performance, task_title

# matplotlib (and PIL, which it brings) is imported where a figure is drawn or measured, markdown-it (not a declared
# dependency: it comes with rich) where HTML is written.

TRADEOFF_SIZE = (9.0, 4.5)  # inches → 900 × 450 px: the axes and the legend beside them


@dataclass
class Report:
    out: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)
    html: Path | None = None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "x"


def _fmt(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


# ------------------------------------------------------------------------------------------ heat map


def heatmap_matrix(plan: Plan) -> tuple[list[list[float | None]], list[tuple[int, int]], list[tuple[int, int]]]:
    """(matrix[step][layer] of candidate mean scores, chosen (step, layer) cells, rejected cells).

    A cell is the candidate that adds that layer at that step (the best one when several beams add it);
    None when no candidate removed it at that step.
    """
    mat: list[list[float | None]] = [[None] * plan.num_layers for _ in plan.steps]
    sign = 1.0 if plan.higher_is_better else -1.0
    chosen: list[tuple[int, int]] = []
    rejected: list[tuple[int, int]] = []
    for i, step in enumerate(plan.steps):
        for c in step.candidates:
            if c.added is None or c.mean is None or not 0 <= c.added < plan.num_layers:
                continue
            cur = mat[i][c.added]
            if cur is None or sign * c.mean > sign * cur:
                mat[i][c.added] = c.mean
                if c.status == "rejected":
                    rejected.append((i, c.added))
                elif (i, c.added) in rejected:
                    rejected.remove((i, c.added))
        win = next((c for c in step.candidates if sorted(c.removed) == sorted(step.chosen)), None)
        if win is not None and win.added is not None:
            chosen.append((i, win.added))
    return mat, chosen, rejected


def heatmap_size(plan: Plan) -> tuple[float, float]:
    return (max(5.0, 1.8 + 0.55 * plan.num_layers), max(2.6, 1.6 + 0.5 * len(plan.steps)))


def plot_heatmap(plan: Plan, path: str | os.PathLike[str]) -> Path | None:
    """Step × layer heat map of one plan; None when it has no per-layer candidates (e.g. optimal)."""
    plt = pyplot()
    from matplotlib.patches import Rectangle

    mat, chosen, rejected = heatmap_matrix(plan)
    if not any(v is not None for row in mat for v in row):
        return None
    arr = np.array([[np.nan if v is None else float(v) for v in row] for row in mat], dtype=float)
    higher = plan.higher_is_better
    cmap = plt.colormaps["viridis" if higher else "viridis_r"].with_extremes(bad="white")  # bright = better
    fig, ax = plt.subplots(figsize=heatmap_size(plan), dpi=DPI, layout="constrained")
    im = ax.imshow(np.ma.masked_invalid(arr), cmap=cmap, aspect="auto")
    ax.set_xticks(range(plan.num_layers))
    ax.set_yticks(range(len(plan.steps)))
    ax.set_yticklabels([f"step {s.n}" for s in plan.steps])
    ax.set_xlabel("layer removed at this step (0-based)")
    metric = plan.task.get("metric", "score")
    base = plan.baseline.get("mean") if plan.baseline else None
    title = f"{plan.strategy.get('name')} on {task_title(plan.task.get('name'))}: mean {metric} of each candidate"
    if base is not None:
        title += f"\n(search split; unpruned {base:.3f}; boxed = chosen)"
    ax.set_title(title, fontsize=9)
    finite = arr[np.isfinite(arr)]
    mid = float(np.nanmean(finite)) if finite.size else 0.0
    if plan.num_layers <= 24:
        for i in range(arr.shape[0]):
            for j in range(arr.shape[1]):
                if np.isfinite(arr[i, j]):
                    mark = "*" if (i, j) in rejected else ""
                    ax.text(
                        j,
                        i,
                        f"{arr[i, j]:.3f}{mark}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if (arr[i, j] > mid) == higher else "white",
                    )
    for i, j in chosen:
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    fig.colorbar(im, ax=ax, label=metric if higher else f"{metric} (lower is better)")
    out = Path(path)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


# ----------------------------------------------------------------------------------------- trade-off


def tradeoff_series(
    plans: Sequence[Plan], evaluation: dict[str, Any] | None, profile: dict[str, Any] | None, speedup: str = "auto"
) -> dict[str, Any]:
    """The points of the trade-off plot: {"x_label", "y_label", "series": {name: [(x, y, n)]}, "baseline"}."""
    kind = speedup
    if kind == "auto":
        kind = "gpu" if profile is not None and profile.get("gpu") else "cpu"
    speed = pf.speedups_by_n(profile, kind) if profile is not None else {}

    def x_of(n: int) -> float | None:
        if profile is None:
            return float(n)
        return speed.get(n)

    series: dict[str, list[tuple[float, float, int]]] = {}
    ranges: dict[str, dict[int, tuple[float, float]]] = {}  # strategy -> n -> the seeds' min–max, relative
    missing: set[int] = set()
    if evaluation is not None:
        summary, rows = evaluation["summary"], evaluation["summary"]["rows"]
        tasks = summary.get("tasks") or []  # one task: its metric; several: their GLUE score (or mean)
        score = f"{task_title(tasks[0])} {summary['metrics'][tasks[0]]}" if len(tasks) == 1 else (
            f"{summary.get('score_name', 'GLUE')} score")
        y_label = f"relative performance (%): {score} / baseline"
        # a compared model (glp evaluate --compare) sits at its own measured speed-up (glp profile --compare)
        compared = {r["strategy"]: r["compare"] for r in evaluation.get("records", []) if r.get("compare")}
        own = {r["label"]: r.get(f"{kind}_speedup") for r in profile.get("rows", [])} if profile is not None else {}
        for row in rows:
            if row["strategy"] == ev.BASELINE or row.get("rel") is None:
                continue
            c = compared.get(row["strategy"])
            if c is not None and profile is not None:
                x = own.get(f"{c['model']} ({c['layers']} layers)")
            else:
                x = x_of(int(row["n"]))
            if x is None:
                if c is None:  # (a compared model without a profile row is left out: it has no n of its own)
                    missing.add(int(row["n"]))
                continue
            series.setdefault(row["strategy"], []).append((x, float(row["rel"]), int(row["n"])))
            if (rng := seed_range(row, evaluation["summary"])) is not None:
                ranges.setdefault(row["strategy"], {})[int(row["n"])] = rng
        base_range = next((seed_range(r, evaluation["summary"]) for r in rows if r["strategy"] == ev.BASELINE), None)
        source = "evaluation (train → dev, median of seeds)"
    else:
        y_label = "relative performance (%): search score / unpruned"
        for plan in plans:
            base = plan.baseline.get("mean") if plan.baseline else None
            if not base:
                continue
            name = f"{plan.strategy.get('name')} ({task_title(plan.task.get('name'))})"
            for step in plan.steps:
                if step.chosen_mean is None:
                    continue
                x = x_of(step.n)
                if x is None:
                    missing.add(step.n)
                    continue
                rel = relative_performance(step.chosen_mean, base, plan.higher_is_better)
                if rel is not None:
                    series.setdefault(name, []).append((x, rel, step.n))
        source = "search (held-out part of train)"
        base_range = None
    for pts in series.values():
        pts.sort(key=lambda p: p[2])  # connect the points in the order of n
    runtime = f"{profile['runtimes'][0]}, " if profile is not None and len(profile.get("runtimes", [])) > 1 else ""
    x_label = "layers removed" if profile is None else f"speed-up over the unpruned model ({kind.upper()}, {runtime}×)"
    return {
        "x_label": x_label,
        "y_label": y_label,
        "series": series,
        "baseline": (x_of(0) or 0.0, 100.0),
        "source": source,
        "missing_n": sorted(missing),
        "kind": kind if profile is not None else None,
        "ranges": ranges,
        "baseline_range": base_range,
    }


def plot_tradeoff(data: dict[str, Any], path: str | os.PathLike[str], title: str = "") -> Path:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=TRADEOFF_SIZE, dpi=DPI, layout="constrained")
    markers = "osD^vP*Xh<>"
    bx, by = data["baseline"]
    ranges = data.get("ranges") or {}
    xs_all = [bx] + [p[0] for pts in data["series"].values() for p in pts]
    dodge = 0.012 * ((max(xs_all) - min(xs_all)) or 1.0)  # each series' bars a little apart: equal x stay legible
    for k, (name, pts) in enumerate(sorted(data["series"].items())):
        xs = [bx] + [p[0] for p in pts]  # every line starts at the unpruned model
        ys = [by] + [p[1] for p in pts]
        (line,) = ax.plot(
            xs,
            ys,
            marker=markers[k % len(markers)],
            markevery=list(range(1, len(xs))),
            markersize=max(4.0, 9.0 - 2.0 * k),  # later series smaller and on top: coinciding points stay visible
            linestyle=("-", "--", "-.", ":")[k % 4],
            zorder=2 + k,
            label=name,
        )
        for x, y, n in pts:
            ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        shift = (k - (len(data["series"]) - 1) / 2) * dodge  # the seeds' spread, a little beside the point
        error_bars(ax, [(x + shift, y, ranges[name][n]) for x, y, n in pts if n in ranges.get(name, {})],
                   line.get_color(), 2 + k)
    ax.plot([bx], [by], marker="*", markersize=14, color="black", linestyle="none", label="baseline (unpruned)")
    base_range = data.get("baseline_range")
    error_bars(ax, [(bx, by, base_range)] if base_range is not None else [], "black", 2, "min–max over seeds")
    ax.axhline(100.0, color="grey", linewidth=0.8, linestyle=":")
    ys_all = [by] + [p[1] for pts in data["series"].values() for p in pts]
    ys_all += [v for rs in ranges.values() for r in rs.values() for v in r] + list(base_range or ())
    lo, hi = min(ys_all), max(ys_all)
    if hi - lo < 4.0:  # do not blow noise of a few tenths of a percent up to the full height
        mid = (hi + lo) / 2
        ax.set_ylim(mid - 2.5, mid + 2.5)
    ax.set_xlabel(data["x_label"])
    ax.set_ylabel(data["y_label"], fontsize=8)
    ax.set_title(title or f"Performance vs. speed-up — {data['source']}", fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.legend(fontsize=8, loc="outside right upper")  # beside the axes: it hides no point
    out = Path(path)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


# -------------------------------------------------------------------------------------------- report


def _plan_table(plan: Plan) -> str:
    metric = plan.task.get("metric", "score")
    lines = [
        f"| n | Removed (in order) | Layers left | {metric} mean | ± std | Seeds separate it? | Candidates |",
        "|---:|---|---:|---:|---:|---|---:|",
    ]
    for r in plan.table_rows():
        sep = "" if r["separated"] is None else ("yes" if r["separated"] else "**no**")
        lines.append(
            f"| {r['n']} | {','.join(map(str, r['removed'])) or '–'} | {r['layers_left']} | {_fmt(r['mean'])} | "
            f"{'' if r['std'] is None else _fmt(r['std'])} | {sep} | {'' if r['tried'] is None else r['tried']} |"
        )
    return "\n".join(lines) + "\n"


def _load_plans(run_dirs: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, Plan]]:
    out: list[tuple[Path, Plan]] = []
    for d in run_dirs:
        for f in RunDir.plans_at(d):
            out.append((f, Plan.load(f)))
    return out


def report(
    run_dirs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    evaluation: str | os.PathLike[str] | None = None,
    profile: str | os.PathLike[str] | None = None,
    html: bool = False,
    speedup: str = "auto",
    title: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Report:
    """Write the report (markdown + PNGs, optionally HTML) into ``out``; ``labels`` renames evaluation rows."""
    if not run_dirs and evaluation is None:
        raise ConfigError("give at least one RUN_DIR or --evaluation to report on")
    if speedup not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"--speedup must be auto, cpu or gpu, got {speedup!r}")
    if labels and evaluation is None:
        raise ConfigError("--label renames rows of an evaluation: give --evaluation too")
    plans = _load_plans(run_dirs)
    evald = ev.load_evaluation(evaluation) if evaluation is not None else None
    evald = ev.relabel(evald, labels) if evald is not None and labels else evald
    prof = pf.load(profile) if profile is not None else None
    # written whole or not at all: into a hidden sibling, moved into ``out`` when complete (`write_dir_atomic`)

    def write(tmp: Path) -> Report:
        return _write(Path(tmp), plans, evald, prof, evaluation, profile, html, speedup, title)

    written = write_dir_atomic(out, write, overwrite=True)
    outp = Path(out)
    moved = Report(outp, outp / written.markdown.name, [outp / f.name for f in written.figures])
    moved.html = outp / written.html.name if written.html is not None else None
    return moved


def _write(
    outp: Path,
    plans: list[tuple[Path, Plan]],
    evald: dict[str, Any] | None,
    prof: dict[str, Any] | None,
    evaluation: Any,
    profile: Any,
    html: bool,
    speedup: str,
    title: str | None,
) -> Report:
    """The report's files in the folder ``outp``."""
    rep = Report(outp, outp / "report.md")

    md = _header(plans, evald, evaluation, profile, title)
    # the trade-off first: it is the answer to "how many layers can I remove?"
    md += _tradeoff_section(rep, plans, evald, prof, speedup)
    if evald is not None:
        md += _evaluation_section(evald)
    if prof is not None:
        md += _profile_section(prof)
    for f, plan in plans:
        md += _plan_section(rep, f, plan)

    text = "\n".join(md).rstrip() + "\n"
    rep.markdown.write_text(text)
    if html:
        rep.html = outp / "report.html"
        rep.html.write_text(to_html(text, outp, title or "glp report"))
    return rep


def _header(
    plans: list[tuple[Path, Plan]], evald: dict[str, Any] | None, evaluation: Any, profile: Any, title: str | None
) -> list[str]:
    """The title, the models and what the report was made from."""
    models = sorted({str(p.model.get("source")) for _, p in plans} | ({str(evald["model"])} if evald else set()))
    tasks = sorted({str(p.task.get("name")) for _, p in plans} | (set(evald["summary"]["tasks"]) if evald else set()))
    return [
        f"# {title}" if title else f"# glp report: {', '.join(task_title(t) for t in tasks)}",
        "",
        f"Model: {', '.join(f'`{m}`' for m in models)}  ",
        f"Generated by glp {__version__} on {_dt.date.today().isoformat()} from: "
        + ", ".join(
            [f"`{f}`" for f, _ in plans]
            + ([f"evaluation `{evaluation}`"] if evaluation else [])
            + ([f"profile `{profile}`"] if profile else [])
        ),
        "",
    ]


def _tradeoff_section(
    rep: Report,
    plans: list[tuple[Path, Plan]],
    evald: dict[str, Any] | None,
    prof: dict[str, Any] | None,
    speedup: str,
) -> list[str]:
    """The trade-off figure (written into the report's directory) and what its axes show."""
    data = tradeoff_series([p for _, p in plans], evald, prof, speedup)
    fig = plot_tradeoff(data, rep.out / "tradeoff.png")
    rep.figures.append(fig)
    md = ["## Performance vs. speed-up", "", f"![trade-off]({fig.name})", ""]
    md.append(
        f"y: {data['y_label']} ({data['source']}); x: {data['x_label']}. One line per strategy; "
        "the star is the unpruned model."
    )
    if data["missing_n"]:
        md.append(f"Not plotted (no profile row for n = {data['missing_n']}).")
    md.append("")
    return md


def _evaluation_section(evald: dict[str, Any]) -> list[str]:
    """The evaluation's table, the layers each row removed and the setup of each task."""
    s = evald["summary"]
    md = [
        "## Final evaluation (fine-tuned on the train set, scored on dev)",
        "",
        f"Median over {len(evald.get('seeds', []))} seed(s) {evald.get('seeds')} (min–max in brackets), "
        f"×100; {s.get('score_name', 'GLUE')} = mean of the tasks' main metrics; "
        "Rel. = score / baseline score.",
        "",
        ev.markdown_table(s),
        "<details><summary>Removed layers per row</summary>",
        "",
        ev.removal_table(s),
        "</details>",
        "",
    ]
    paired = ["### Paired by seed", "", table] if (table := ev.paired_table(s)) else []
    return md + [f"- {line}" for line in ev.setup_lines(evald)] + [""] + paired


def _profile_section(prof: dict[str, Any]) -> list[str]:
    """The profile's table and how it was timed."""
    env = []
    if prof.get("cpu"):
        c = prof["cpu"]
        env.append(f"CPU batch {c['batch']}, {c['threads']} thread(s)")
    if prof.get("gpu"):
        g = prof["gpu"]
        env.append(f"GPU {g['device']} batch {g['batch']}")
    reps = (prof.get("cpu") or prof.get("gpu") or {}).get("repeats")
    return [
        "## Size and latency",
        "",
        f"Sequence length {prof['seq_len']}, random input ids, {'; '.join(env)}; median of {reps} "
        "forward passes after warm-up (`glp profile`).",
        "",
        pf.markdown_table(prof),
        "",
    ]


def _plan_section(rep: Report, f: Path, plan: Plan) -> list[str]:
    """One plan: its table, its cost, its heat map (written into the report's directory) and its notes."""
    label = f"{plan.strategy.get('name')} on {task_title(plan.task.get('name'))}"
    md = [
        f"## Plan: {label}",
        "",
        f"`{f}` — {plan.num_layers} layers, "
        f"{'complete' if plan.complete else 'partial'}; scores are {plan.task.get('metric')} on the held-out "
        "search split.",
        "",
        _plan_table(plan),
    ]
    c = plan.cost or {}
    if c:
        md += [
            f"Cost: {c.get('trials', 0)} trials, {c.get('train_steps', 0):,} training steps, "
            f"{c.get('trial_seconds', 0):,.0f} s of trial time "
            f"({c.get('trials_reused', 0)} trials read from the journal by the last invocation).",
            "",
        ]
    if any(len(s.candidates) > 1 for s in plan.steps):
        hm = plot_heatmap(plan, _heatmap_path(rep, plan))
        if hm is not None:
            rep.figures.append(hm)
            md += [
                f"![candidates of {label}]({hm.name})",
                "",
                "Each cell: mean score of the candidate that removes that layer at that step (blank: not "
                "tried; boxed: chosen" + ("; *: stopped early" if _has_rejected(plan) else "") + ").",
                "",
            ]
    notes = [f"step {s.n}: {s.note}" for s in plan.steps if s.note]
    notes += [
        f"step {s.n}: the winner {s.chosen} is not separated from {s.runner_up} by more than the seeds' spread"
        for s in plan.steps
        if s.separated is False
    ]
    if notes:
        md += [f"- {n}" for n in notes] + [""]
    return md


def _heatmap_path(rep: Report, plan: Plan) -> Path:
    """``heatmap_<task>_<strategy>.png`` in the report's directory, numbered when a figure has that name already."""
    stem = f"heatmap_{_safe(str(plan.task.get('name')))}_{_safe(str(plan.strategy.get('name')))}"
    name, k = f"{stem}.png", 1
    while (rep.out / name) in rep.figures:
        k += 1
        name = f"{stem}_{k}.png"
    return rep.out / name


def _has_rejected(plan: Plan) -> bool:
    return any(c.status == "rejected" for s in plan.steps for c in s.candidates)
