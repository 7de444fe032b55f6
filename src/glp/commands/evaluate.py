"""`glp evaluate`: the paper's Table 1 protocol — fine-tune on the full train set, score on dev, median of seeds.

For each task, the baseline (no layer removed) and every asked-for (strategy, n) — removal sets read from the
plans of run directories (``RUN_DIR/plans/*.json``) and/or fixed patterns (``top``, ``bottom``, ...) — are
fine-tuned with several seeds on the task's whole train set and scored on its dev set. The table reports, per
task, the median over seeds (with min and max), the GLUE score (mean of the tasks' main metrics, WNLI excluded)
and the relative performance: median of the pruned model / median of the baseline, in %.

Every trial is journaled in ``OUT/trials.sqlite`` (the same `Store` as a search) under a context holding
``"protocol": "full-train/dev"``, so its keys never collide with search trials and a stopped evaluation resumes
where it stopped. The fine-tunes (rows × seeds) are independent: ``devices`` / ``executor`` run them on worker
processes or Ray actors exactly as ``glp prune`` runs candidates (`glp.run.executors.make_executor`).
``summarize`` and ``markdown_table`` are pure functions of the per-seed records.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from glp.atomic import write_text_atomic
from glp.data import DataSpec
from glp.errors import ConfigError
from glp.plan import Plan
from glp.run.executors import ExecutionSettings
from glp.run.rundir import RunDir
from glp.tasks import relative_performance
from glp.trial.hparams import HParams
from glp.trial.scoring import FINAL_PROTOCOL as PROTOCOL

SCHEMA = "glp.evaluation/1"
BASELINE = "baseline"

EventHandler = Callable[..., None]


# ------------------------------------------------------------------------------------------- run dirs


# ------------------------------------------------------------------------------------------- the arms


@dataclass(frozen=True)
class Arm:
    """One row of the table for one task: a removal set named by its strategy and size."""

    task: str
    strategy: str
    n: int
    removed: tuple[int, ...]
    source: str | None = None  # the plan file it came from, or "pattern"


@dataclass(frozen=True)
class EvalConfig(ExecutionSettings):
    """``glp evaluate``'s settings; where its fine-tunes run (`ExecutionSettings`) as for ``glp prune``."""

    run_dirs: tuple[str, ...] = field(default=(), metadata={"help": "Run directories; every plans/*.json of each."})
    out: str = field(
        default="runs/evaluation", metadata={"help": "Output directory (tables, trial journal; re-run resumes)."}
    )
    ns: tuple[int, ...] | None = field(
        default=None, metadata={"help": "Numbers of removed layers, e.g. 1,2,3 (default: the plans')."}
    )
    patterns: tuple[str, ...] = field(default=(), metadata={"help": "Fixed pattern(s) too (repeat or a,b)."})
    seeds: int = field(default=5, metadata={"help": "Fine-tune every row with this many seeds; report the median."})
    seed: int = field(default=42, metadata={"help": "First seed."})
    model: str | None = field(
        default=None,
        metadata={
            "help": "Model, when no run directory is given; with one, a copy of the plans' model at another path "
            "(accepted when its weights hash to the plan's recorded revision)."
        },
    )
    tasks: tuple[str, ...] = field(default=(), metadata={"help": "Task(s), when no run directory is given."})
    data_dir: str | None = field(default=None, metadata={"help": "GLUE directory (default: the runs')."})
    train_file: str | None = field(default=None, metadata={"help": "Override the run's train file."})
    dev_file: str | None = field(default=None, metadata={"help": "Override the run's dev file."})
    hparams: dict[str, Any] = field(default_factory=dict)  # overrides of the plans' hyper-parameters
    pattern_seed: int = 0
    distill: bool = field(
        default=False,
        metadata={"help": "Fine-tune every removal set distilled from the unpruned model (fine-tuned once per seed)."},
    )
    distill_alpha: float | None = None  # None: glp.trial.distill.DistillSettings' default (the one place defaults live)
    distill_temperature: float | None = None
    distill_init: str | None = None
    lm_eval_tasks: str | None = field(
        default=None,
        metadata={"help": "Causal LMs: also score every row zero-shot with lm-evaluation-harness, e.g. arc_easy,piqa."},
    )
    lm_eval_include_path: str | None = field(
        default=None, metadata={"help": "A directory of extra lm-eval task YAMLs (benchmarks/lm_eval_tasks: offline)."}
    )
    lm_eval_limit: float | None = field(default=None, metadata={"help": "The first k examples of each lm-eval task."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.lm_eval_settings()  # ConfigError on bad values
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {self.seeds}")
        if self.ns is not None and any(n < 1 for n in self.ns):
            raise ConfigError(f"--n values must be at least 1, got {list(self.ns)}")
        if not self.run_dirs and not (self.model and self.tasks):
            raise ConfigError("give RUN_DIR(s) with plans, or --model and --task (with --pattern) to evaluate")
        if self.distill:
            self.distill_settings()  # ConfigError on bad values
        if self.train_file or self.dev_file:
            if len(self.tasks) > 1 or len(self.run_dirs) > 1:
                raise ConfigError("--train-file/--dev-file work with a single task only")

    def lm_eval_settings(self) -> Any:
        """The `glp.trial.lmeval.LMEvalSettings` of ``--lm-eval-tasks`` (None without)."""
        from glp.trial.lmeval import LMEvalSettings

        return LMEvalSettings.parse(self.lm_eval_tasks, self.lm_eval_include_path, self.lm_eval_limit)

    def distill_settings(self) -> Any:
        """The `glp.trial.distill.DistillSettings` of ``--distill``, the flags given over its defaults."""
        from glp.trial.distill import DistillSettings

        given = {"alpha": self.distill_alpha, "temperature": self.distill_temperature, "init": self.distill_init}
        return DistillSettings(**{k: v for k, v in given.items() if v is not None})


@dataclass
class TaskJob:
    """Everything evaluate needs for one task."""

    task: str
    model: str  # the model's name as the plans (or --model) give it
    source: Any  # glp.models.ModelSource: where it is read on this machine
    spec: DataSpec
    hparams: dict[str, Any]
    num_layers: int | None
    arms: list[Arm]
    notes: list[str]


def _same_model(given: str, recorded: dict[str, Any], revisions: dict[str, str | None]) -> bool:
    """Whether ``given`` (``--model``, or the first plan's model) is the model a plan ``recorded``: the same path or
    name, or a local copy whose weights hash to the plan's recorded ``sha256:`` revision (a plan searched on
    another machine names that machine's path). ``revisions`` caches the hashes by model."""

    def norm(s: str) -> str:
        return os.path.realpath(s) if os.path.exists(s) else s

    from glp.models import recorded_hash, weights_revision

    if norm(given) == norm(str(recorded.get("source"))):
        return True
    rev = recorded_hash(recorded)
    if rev is None:
        return False
    if given not in revisions:
        revisions[given] = weights_revision(given)
    return revisions[given] == rev


def plan_jobs(cfg: EvalConfig) -> list[TaskJob]:
    """Group the removal sets to evaluate by task (the plans' tasks, then ``--task``s)."""
    from glp import models
    from glp.search.strategies import pattern_order

    jobs: dict[str, TaskJob] = {}
    model = cfg.model
    source = models.resolve(cfg.model) if cfg.model else None
    labels_seen: dict[tuple[str, str], str] = {}
    revisions: dict[str, str | None] = {}
    for run_dir in cfg.run_dirs:
        for path in RunDir.plans_at(run_dir):
            plan = Plan.load(path)
            src = str(plan.model.get("source"))
            if model is None:
                model = src
                source = models.from_record(plan.model)
            elif not _same_model(model, plan.model, revisions):
                rev = plan.model.get("revision")
                raise ConfigError(
                    f"{path} was searched on model {src!r}"
                    + (f" (weights {rev})" if rev else "")
                    + f", not {model!r}: evaluate one model at a time (a copy of the plan's model at another path"
                    " is accepted when its weights hash the same)"
                )
            tname = str(plan.task.get("name"))
            job = jobs.get(tname)
            if job is None:
                found = RunDir.of(path).data_spec(str(plan.strategy.get("name")))
                spec = found or DataSpec(task=tname)
                job = jobs[tname] = TaskJob(tname, model, source, spec, dict(plan.hparams), plan.num_layers, [], [])
                if found is None:
                    job.notes.append(f"{path}: no journaled prune config; data located from the task name only")
            strategy = str(plan.strategy.get("name"))
            label = strategy
            prev = labels_seen.get((tname, strategy))
            if prev is not None and prev != str(path):  # the same strategy from another run directory
                label = f"{strategy} ({Path(run_dir).name})"
            labels_seen.setdefault((tname, strategy), str(path))
            ns = cfg.ns if cfg.ns is not None else sorted(plan.removals)
            for n in ns:
                if any(a.strategy == label and a.n == n for a in job.arms):
                    continue  # the same plan given twice
                if n in plan.removals:
                    job.arms.append(Arm(tname, label, n, tuple(plan.layers_to_remove(n)), str(path)))
                else:
                    job.notes.append(f"{path}: no removal set for n={n} (the plan covers {sorted(plan.removals)})")
    for t in cfg.tasks:
        from glp.tasks import get_task, is_glue_task

        tname = get_task(t).name if is_glue_task(t) else t
        if tname not in jobs:
            if model is None:
                raise ConfigError("give --model for --task without a run directory")
            jobs[tname] = TaskJob(tname, model, source, DataSpec(task=tname), {}, None, [], [])
    if not jobs:
        raise ConfigError("nothing to evaluate: no plan found and no --task given")
    for job in jobs.values():
        job.spec = job.spec.override(data_dir=cfg.data_dir, train_file=cfg.train_file, dev_file=cfg.dev_file)
        if cfg.patterns:
            if job.num_layers is None:
                job.num_layers = _model_num_layers(job.source)
            ns = cfg.ns if cfg.ns is not None else sorted({a.n for a in job.arms})
            if not ns:
                raise ConfigError("give --n with --pattern when there is no plan to take the n values from")
            for name in cfg.patterns:
                order = pattern_order(name, job.num_layers, cfg.pattern_seed)
                for n in ns:
                    if n >= job.num_layers:
                        raise ConfigError(f"--n {n}: the model has only {job.num_layers} layers; remove fewer")
                    if any(a.strategy == name and a.n == n for a in job.arms):
                        continue  # the run directory has this pattern's plan already
                    job.arms.append(Arm(job.task, name, n, tuple(order[:n]), "pattern"))
        job.arms.insert(0, Arm(job.task, BASELINE, 0, (), None))
    return list(jobs.values())


def _model_num_layers(source: Any) -> int:
    from glp.errors import UnsupportedModelError
    from glp.layers import config_num_layers
    from glp.models import load_config

    n = config_num_layers(load_config(source))
    if n is None:
        raise UnsupportedModelError(f"cannot tell how many layers {source.name!r} has from its config")
    return int(n)


# ------------------------------------------------------------------------------------------------ run


def evaluate(cfg: EvalConfig, on_event: EventHandler | None = None) -> dict[str, Any]:
    """Run (or resume) the evaluation; write ``table.md``, ``evaluation.csv``, ``evaluation.json`` in ``cfg.out``."""
    from glp import __version__
    from glp.kinds import kind_of
    from glp.run.executors import make_executor
    from glp.run.store import journaled_runner, trial_key
    from glp.search.strategies import TrialRequest
    from glp.trial.scoring import TrialSpec, final_context, final_data

    out = RunDir(cfg.out)
    jobs = plan_jobs(cfg)
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    records: list[dict[str, Any]] = []
    tasks_meta: dict[str, Any] = {}
    settings = cfg.distill_settings() if cfg.distill else None
    with out.journal() as store:
        store.set_meta("evaluate_config", _jsonable(dataclasses.asdict(cfg)))
        for job in jobs:
            hp = HParams.final(job.hparams, cfg.hparams)
            data = final_data(job.spec, job.source, hp.max_seq_length, cache_dir=out.cache_dir)
            higher = kind_of(data.task).higher_is_better()
            context = final_context(job.model, job.source, data, hp)
            spec = TrialSpec(job.source, data.trial_data, hp)
            lm_eval = cfg.lm_eval_settings()
            if lm_eval is not None:
                from glp.trial import lmeval

                if not kind_of(data.task).lm_eval:
                    raise ConfigError("--lm-eval-tasks scores causal LMs; this task is not one")
                lmeval.check(lm_eval)
                context = {**context, "lm_eval": lm_eval.to_dict()}
                spec = dataclasses.replace(spec, lm_eval=lm_eval)
            # (arms, journal context, spec) groups, run in order: all arms plainly, or the baseline plainly (whose
            # trials keep themselves as the teachers) and then the removal sets, distilled from their seed's teacher
            groups: list[tuple[list[Arm], dict[str, Any], Callable[[], Any]]] = [
                (job.arms, context, partial(dataclasses.replace, spec))
            ]
            if settings is not None:
                from glp.trial.distill import TeacherFiles, check_kind, teacher_stem

                check_kind(data.task)
                keys = {s: trial_key(context, (), s, 1.0) for s in seeds}
                stems = {s: str(teacher_stem(out.cache_dir, k)) for s, k in keys.items()}
                files = TeacherFiles(stems, weights=settings.init == "teacher")
                teachers = partial(
                    _distilled_spec, spec, settings, keys, cfg.device, out.cache_dir, store, context, on_event, job.task
                )
                groups = [
                    (
                        [a for a in job.arms if not a.removed],
                        context,
                        partial(dataclasses.replace, spec, keep_teachers=files),
                    ),
                    ([a for a in job.arms if a.removed], {**context, "distill": settings.to_dict()}, teachers),
                ]
            tasks_meta[job.task] = {
                "metric": data.task.metric,
                "higher_is_better": higher,
                "hparams": hp.to_dict(),
                "data": data.fingerprint,
                "num_layers": job.num_layers,
                "notes": job.notes,
            }

            def relay(event: str, _task=job.task, **info: Any) -> None:
                if on_event:
                    on_event(event, task=_task, **info)

            results: dict[tuple[frozenset[int], int, bool], dict[str, Any]] = {}
            for arms, ctx, make_spec in groups:
                if not arms:
                    continue
                group_spec = make_spec()
                distilled = group_spec.distill is not None
                executor = make_executor(cfg, group_spec)
                try:
                    run, _ = journaled_runner(store, ctx, executor, relay)
                    unique: dict[tuple[frozenset[int], int, bool], TrialRequest] = {}
                    for arm in arms:
                        for s in seeds:
                            key = (frozenset(arm.removed), s, distilled)
                            unique.setdefault(key, TrialRequest(arm.removed, s, 1.0))
                    results.update(zip(unique, run(list(unique.values())), strict=True))
                finally:
                    executor.close()
            distill_label = f"distilled, {settings.init} init" if settings is not None else ""
            for arm in job.arms:
                distilled = bool(settings is not None and arm.removed)
                for s in seeds:
                    r = results[(frozenset(arm.removed), s, distilled)]
                    ok = r.get("status") == "ok" and r.get("score") is not None
                    records.append(
                        {
                            "task": job.task,
                            "metric": data.task.metric,
                            **({} if higher else {"higher_is_better": False}),
                            "strategy": f"{arm.strategy} ({distill_label})" if distilled else arm.strategy,
                            "distilled": distilled,
                            "n": arm.n,
                            "removed": list(arm.removed),
                            "plan": arm.source,
                            "seed": s,
                            "score": float(r["score"]) if ok else None,
                            **_extra_scores(r, data.task.metric, data.trial_data.extra),
                            "metrics": r.get("metrics") or {},
                            "status": r.get("status"),
                            "reason": r.get("reason"),
                            "wall_time": r.get("wall_time"),
                        }
                    )
    summary = summarize(records)
    splits = sorted({k[: -len("_score")] for r in records for k in r if k.endswith("_score") and k != "score"})
    result = {
        "schema": SCHEMA,
        "protocol": PROTOCOL,
        "glp_version": __version__,
        "model": jobs[0].model,
        "seeds": seeds,
        "tasks": tasks_meta,
        "summary": summary,
        "records": records,
    }
    for split in splits:  # token classification: the same rows scored on test
        result[f"summary_{split}"] = summarize(records, score_key=f"{split}_score")
    write_outputs(result, out.path)
    return result


def _distilled_spec(
    spec: Any,
    settings: Any,
    keys: dict[int, str],
    device: Any,
    cache_dir: Any,
    store: Any,
    context: dict[str, Any],
    on_event: EventHandler | None,
    task: str,
) -> Any:
    """``spec`` with the teacher of every seed: kept by the baseline's trials, or (where those came from the journal
    without their teacher) fine-tuned here, journaled as the baseline's trial."""
    from glp.trial.distill import cached_teacher, fit_teacher

    weights = settings.init == "teacher"
    teachers = {}
    for s, key in keys.items():
        if on_event and cached_teacher(key, cache_dir, weights=weights) is None:
            on_event("teacher", task=task, seed=s)
        teachers[s], result = fit_teacher(spec, s, device, cache_dir, key, weights=weights)
        if result is not None and store.get(key) is None:
            store.put(key, result.to_dict(), context)
    return dataclasses.replace(spec, distill=settings, teachers=teachers)


def _extra_scores(result: dict[str, Any], metric: str, extra: dict[str, Any]) -> dict[str, Any]:
    """``{"test_score": ...}`` for each extra scored set (token classification: test)."""
    m = result.get("metrics") or {}
    return {f"{k}_score": m.get(f"{k}:{metric}") for k in extra}


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=list))


# ------------------------------------------------------------------------------------ pure arithmetic


def _task_is_glue(name: str) -> bool:
    from glp.tasks import is_glue_task

    return is_glue_task(name)


def row_score(medians: dict[str, float]) -> float | None:
    """GLUE score (mean of the main metrics, WNLI excluded) when every task is a GLUE task, else the mean."""
    from glp.errors import TaskError
    from glp.tasks import glue_score

    if not medians:
        return None
    if all(_task_is_glue(t) for t in medians):
        try:
            return glue_score(medians)
        except TaskError:
            pass
    return float(statistics.fmean(medians.values()))


def summarize(records: Sequence[dict[str, Any]], score_key: str = "score") -> dict[str, Any]:
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
    ordered = sorted(rows.values(), key=lambda r: (r["strategy"] != BASELINE, _first_index(records, r), r["n"]))
    for row in ordered:
        row["score"] = _row_total(row, tasks)
        for t, cell in row["cells"].items():
            b = base["cells"].get(t) if base is not None else None
            bm = b["median"] if b is not None else None
            cell["rel"] = relative_performance(cell["median"], bm, t not in lower)
        one_direction = not lower or lower == set(tasks)  # a row score over mixed directions means nothing
        row["rel"] = relative_performance(row["score"], base_score, not lower) if one_direction else None
    all_glue = bool(tasks) and all(_task_is_glue(t) for t in tasks)
    return {
        "tasks": tasks,
        "metrics": metrics,
        "score_name": "GLUE" if all_glue else "Mean",
        "rows": ordered,
        "lower_is_better": sorted(lower),
    }


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
    head += [f"{t.upper()} ({metrics[t]})" if t in metrics else t.upper() for t in tasks]
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
            lines.append(f"| {row['strategy']} | {row['n']} | {t} | {removed} | {len(c['scores'])} |")
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
            f"{t}: {counts}{hp.get('num_train_epochs')} epoch(s), "
            f"learning rate {hp.get('learning_rate')}, batch {hp.get('per_device_train_batch_size')}, "
            f"max length {hp.get('max_seq_length')}"
        )
    return lines


def write_outputs(result: dict[str, Any], out: str | os.PathLike[str]) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
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
    for key in sorted(k for k in result if k.startswith("summary_")):
        split = key[len("summary_") :]
        md += f"\n## Scored on {split} (the same fine-tunes)\n\n" + markdown_table(result[key])
    paths = {"markdown": out / "table.md", "csv": out / "evaluation.csv", "json": out / "evaluation.json"}
    write_text_atomic(paths["markdown"], md)
    write_text_atomic(paths["csv"], csv_text(summary))
    write_text_atomic(paths["json"], json.dumps(result, indent=1, allow_nan=False) + "\n")
    return paths


def load_evaluation(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``evaluation.json`` of an evaluation directory (or the file itself)."""
    from glp.plan import read_artifact

    p = Path(path)
    f = p / "evaluation.json" if p.is_dir() else p
    return read_artifact(f, SCHEMA, "evaluation", "glp evaluate --out DIR writes DIR/evaluation.json")
