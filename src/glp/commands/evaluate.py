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
The tables are the evaluation artifact's (`glp.results.evaluation`: ``summarize``, ``markdown_table``, ...): pure
functions of the per-seed records.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from glp import __version__, models
from glp.data import DataSpec
from glp.errors import ConfigError, UnsupportedModelError
from glp.kinds import kind_of
from glp.layers import config_num_layers
from glp.plan import Plan
from glp.results.evaluation import BASELINE, SCHEMA, distilled_name, summaries, write_outputs
from glp.results.evaluation import load_evaluation as load_evaluation  # re-exported for benchmarks and tests
from glp.results.evaluation import markdown_table as markdown_table  # re-exported for glp.cli
from glp.results.evaluation import paired_rows as paired_rows  # re-exported for glp.cli
from glp.results.evaluation import paired_table as paired_table  # re-exported for glp.cli
from glp.run import executors
from glp.run.executors import ExecutionSettings
from glp.run.rundir import RunDir
from glp.run.store import journaled_runner, trial_key
from glp.search.patterns import named_order
from glp.tasks import get_task, is_glue_task
from glp.trial import lmeval
from glp.trial.distill import DistillSettings, TeacherFiles, cached_teacher, check_kind, fit_teacher, teacher_stem
from glp.trial.hparams import HParams
from glp.trial.scoring import FINAL_PROTOCOL as PROTOCOL
from glp.trial.scoring import TrialSpec, final_context, final_data
from glp.trial.types import TrialRequest

EventHandler = Callable[..., None]


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
    compare: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Other models (a directory, pkg:PACKAGE or hub name; a,b) fine-tuned and scored with exactly the "
            "same protocol, each a row of its own: a ready-made small model beside the pruned ones."
        },
    )
    data_dir: str | None = field(default=None, metadata={"help": "Data directory (default: the runs', else the "
                                                                  "local folder a plan file records)."})
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
        return lmeval.LMEvalSettings.parse(self.lm_eval_tasks, self.lm_eval_include_path, self.lm_eval_limit)

    def distill_settings(self) -> Any:
        """The `glp.trial.distill.DistillSettings` of ``--distill``, the flags given over its defaults."""
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
    arms: list[Arm] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _same_model(given: str, recorded: dict[str, Any], revisions: dict[str, str | None]) -> bool:
    """Whether ``given`` (``--model``, or the first plan's model) is the model a plan ``recorded``: the same path or
    name, or a local copy whose weights hash to the plan's recorded ``sha256:`` revision (a plan searched on
    another machine names that machine's path). ``revisions`` caches the hashes by model."""

    def norm(s: str) -> str:
        return os.path.realpath(s) if os.path.exists(s) else s

    if norm(given) == norm(str(recorded.get("source"))):
        return True
    rev = models.recorded_hash(recorded)
    if rev is None:
        return False
    if given not in revisions:
        revisions[given] = models.weights_revision(given)
    return revisions[given] == rev


def plan_jobs(cfg: EvalConfig) -> list[TaskJob]:
    """Group the removal sets to evaluate by task (the plans' tasks, then ``--task``s)."""
    jobs: dict[str, TaskJob] = {}
    model, source = _add_plans(cfg, jobs)
    for t in cfg.tasks:
        tname = get_task(t).name if is_glue_task(t) else t
        if tname not in jobs:
            if model is None:
                raise ConfigError("give --model for --task without a run directory")
            jobs[tname] = TaskJob(tname, model, source, DataSpec(task=tname), {}, None)
    if not jobs:
        raise ConfigError("nothing to evaluate: no plan found and no --task given")
    for job in jobs.values():
        job.spec = job.spec.override(data_dir=cfg.data_dir, train_file=cfg.train_file, dev_file=cfg.dev_file)
        if cfg.patterns:
            _add_patterns(job, cfg)
        job.arms.insert(0, Arm(job.task, BASELINE, 0, (), None))
    return list(jobs.values())


def _run_name(plan_path: Path) -> str:
    """The name that tells a plan's run from another's: its run directory's (``RUN/plans/greedy.json``), else the
    folder that holds it (``docs/results/llm/sleb/plan.json``: ``sleb``)."""
    folder = plan_path.parent
    return folder.parent.name if folder.name == "plans" else folder.name


def _add_plans(cfg: EvalConfig, jobs: dict[str, TaskJob]) -> tuple[str | None, Any]:
    """Add the removal sets of every plan of ``cfg.run_dirs`` to ``jobs`` (a job per task); the model to evaluate
    (``--model``, else the first plan's) and where it is read, None without either."""
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
                job = jobs[tname] = _plan_job(plan, path, model, source)
            strategy = str(plan.strategy.get("name"))
            label = strategy
            prev = labels_seen.get((tname, strategy))
            if prev is not None and prev != str(path):  # the same strategy from another run directory
                label = f"{strategy} ({_run_name(path)})"
            labels_seen.setdefault((tname, strategy), str(path))
            ns = cfg.ns if cfg.ns is not None else sorted(plan.removals)
            for n in ns:
                if any(a.strategy == label and a.n == n for a in job.arms):
                    continue  # the same plan given twice
                if n in plan.removals:
                    job.arms.append(Arm(tname, label, n, tuple(plan.layers_to_remove(n)), str(path)))
                else:
                    job.notes.append(f"{path}: no removal set for n={n} (the plan covers {sorted(plan.removals)})")
    return model, source


def _plan_job(plan: Plan, path: Path, model: str, source: Any) -> TaskJob:
    """The job of the plan's task, its data located by the settings the plan was searched with."""
    spec, note = RunDir.plan_data(path, plan)
    job = TaskJob(str(plan.task.get("name")), model, source, spec, plan.final_hparams(), plan.num_layers)
    job.notes += [note] if note else []
    return job


def _add_patterns(job: TaskJob, cfg: EvalConfig) -> None:
    """Add the removal sets of every ``--pattern`` to ``job``, for ``--n`` (else the plans' n values)."""
    if job.num_layers is None:
        job.num_layers = _model_num_layers(job.source)
    ns = cfg.ns if cfg.ns is not None else sorted({a.n for a in job.arms})
    if not ns:
        raise ConfigError("give --n with --pattern when there is no plan to take the n values from")
    for name in cfg.patterns:
        order = named_order(name, job.num_layers, cfg.pattern_seed)
        for n in ns:
            if n >= job.num_layers:
                raise ConfigError(f"--n {n}: the model has only {job.num_layers} layers; remove fewer")
            if any(a.strategy == name and a.n == n for a in job.arms):
                continue  # the run directory has this pattern's plan already
            job.arms.append(Arm(job.task, name, n, tuple(order[:n]), "pattern"))


def _model_num_layers(source: Any) -> int:
    n = config_num_layers(models.load_config(source))
    if n is None:
        raise UnsupportedModelError(f"cannot tell how many layers {source.name!r} has from its config")
    return int(n)


# ------------------------------------------------------------------------------------------------ run


# The fine-tunes of one task, run in order: (its arms, the journal context, a function giving the TrialSpec)
Group = tuple[list[Arm], dict[str, Any], Callable[[], Any]]
ResultKey = tuple[frozenset[int], int, bool]  # (removed layers, seed, distilled)


@dataclass
class _Evaluation:
    """What every task of one ``evaluate`` call shares."""

    cfg: EvalConfig
    out: RunDir
    seeds: list[int]
    store: Any  # glp.run.store.Store: the journal of cfg.out
    settings: DistillSettings | None  # with --distill
    on_event: EventHandler | None


def evaluate(cfg: EvalConfig, on_event: EventHandler | None = None) -> dict[str, Any]:
    """Run (or resume) the evaluation; write ``table.md``, ``evaluation.csv``, ``evaluation.json`` in ``cfg.out``."""
    out = RunDir(cfg.out)
    jobs = plan_jobs(cfg)
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    records: list[dict[str, Any]] = []
    tasks_meta: dict[str, Any] = {}
    settings = cfg.distill_settings() if cfg.distill else None
    with out.journal() as store:
        store.set_meta("evaluate_config", _jsonable(dataclasses.asdict(cfg)))
        ev = _Evaluation(cfg, out, seeds, store, settings, on_event)
        for job in jobs:
            tasks_meta[job.task], job_records = _evaluate_task(ev, job)
            records += job_records
            for name in cfg.compare:
                records += _compare(ev, job, name)
    result = _result(jobs[0].model, seeds, tasks_meta, records)
    write_outputs(result, out.path)
    return result


def _evaluate_task(ev: _Evaluation, job: TaskJob) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fine-tune and score every arm of ``job`` with every seed: the task's entry of ``tasks`` and its records."""
    hp = HParams.final(job.hparams, ev.cfg.hparams)
    data = final_data(job.spec, job.source, hp.max_seq_length, cache_dir=ev.out.cache_dir)
    higher = kind_of(data.task).higher_is_better()
    context = final_context(job.model, job.source, data, hp)
    spec = TrialSpec(job.source, data.trial_data, hp)
    lm_eval = ev.cfg.lm_eval_settings()
    if lm_eval is not None:
        if not kind_of(data.task).lm_eval:
            raise ConfigError("--lm-eval-tasks scores causal LMs; this task is not one")
        lmeval.check(lm_eval)
        context = {**context, "lm_eval": lm_eval.to_dict()}
        spec = dataclasses.replace(spec, lm_eval=lm_eval)
    groups = _groups(ev, job, data.task, context, spec)
    meta = {
        "metric": data.task.metric,
        "higher_is_better": higher,
        "hparams": hp.to_dict(),
        "data": data.fingerprint,
        "num_layers": job.num_layers,
        "notes": job.notes,
    }
    results = _run_groups(ev, job.task, groups)
    return meta, _records(ev, job, results, data, higher)


def _groups(ev: _Evaluation, job: TaskJob, task: Any, context: dict[str, Any], spec: TrialSpec) -> list[Group]:
    """All arms plainly; with ``--distill`` the baseline plainly (its trials keep themselves as the teachers) and
    then the removal sets, distilled from their seed's teacher."""
    settings = ev.settings
    if settings is None:
        return [(job.arms, context, partial(dataclasses.replace, spec))]
    check_kind(task)
    keys = {s: trial_key(context, (), s, 1.0) for s in ev.seeds}
    stems = {s: str(teacher_stem(ev.out.cache_dir, k)) for s, k in keys.items()}
    files = TeacherFiles(stems, weights=settings.init == "teacher")
    teachers = partial(
        _distilled_spec, spec, settings, keys, ev.cfg.device, ev.out.cache_dir, ev.store, context, ev.on_event, job.task
    )
    return [
        ([a for a in job.arms if not a.removed], context, partial(dataclasses.replace, spec, keep_teachers=files)),
        ([a for a in job.arms if a.removed], {**context, "distill": settings.to_dict()}, teachers),
    ]


def _run_groups(ev: _Evaluation, task: str, groups: list[Group]) -> dict[ResultKey, dict[str, Any]]:
    """Run every group's (arm, seed) trials once each (journaled: a resumed evaluation reads them back)."""

    def relay(event: str, **info: Any) -> None:
        if ev.on_event:
            ev.on_event(event, task=task, **info)

    results: dict[ResultKey, dict[str, Any]] = {}
    for arms, ctx, make_spec in groups:
        if not arms:
            continue
        group_spec = make_spec()
        distilled = group_spec.distill is not None
        executor = executors.make_executor(ev.cfg, group_spec)
        try:
            run, _ = journaled_runner(ev.store, ctx, executor, relay)
            unique: dict[ResultKey, TrialRequest] = {}
            for arm in arms:
                for s in ev.seeds:
                    key = (frozenset(arm.removed), s, distilled)
                    unique.setdefault(key, TrialRequest(arm.removed, s, 1.0))
            results.update(zip(unique, run(list(unique.values())), strict=True))
        finally:
            executor.close()
    return results


def _records(
    ev: _Evaluation, job: TaskJob, results: dict[ResultKey, dict[str, Any]], data: Any, higher: bool
) -> list[dict[str, Any]]:
    """One record per (arm, seed) of ``job``: what `glp.results.evaluation.summarize` reads."""
    settings = ev.settings
    records = []
    for arm in job.arms:
        distilled = bool(settings is not None and arm.removed)
        for s in ev.seeds:
            r = results[(frozenset(arm.removed), s, distilled)]
            ok = r.get("status") == "ok" and r.get("score") is not None
            records.append(
                {
                    "task": job.task,
                    "metric": data.task.metric,
                    **({} if higher else {"higher_is_better": False}),
                    "strategy": distilled_name(arm.strategy, settings.init) if distilled else arm.strategy,
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
                    "device": r.get("device"),
                    "precision": r.get("precision"),
                }
            )
    return records


def _compare(ev: _Evaluation, job: TaskJob, name: str) -> list[dict[str, Any]]:
    """``--compare``: the model ``name`` fine-tuned and scored on ``job``'s task with the same data, hyper-parameters
    and seeds as the plans' rows (its own tokenizer; journaled like any row). Its row is labelled with its name,
    layers and parameters, at the n of as many layers fewer than the plans' model."""
    source = models.resolve(name)
    hp = HParams.final(job.hparams, ev.cfg.hparams)
    data = final_data(job.spec, source, hp.max_seq_length, cache_dir=ev.out.cache_dir)
    layers = _model_num_layers(source)
    counts = models.count_parameters(source, data.task)
    size = f", {counts[0] / 1e6:.1f}M parameters" if counts else ""
    fewer = max(0, (job.num_layers or layers) - layers)
    arm = Arm(job.task, f"{name} ({layers} layers{size})", fewer, (), "compare")
    context = final_context(name, source, data, hp)
    spec = TrialSpec(source, data.trial_data, hp)
    results = _run_groups(ev, job.task, [([arm], context, partial(dataclasses.replace, spec))])
    compared = dataclasses.replace(job, arms=[arm])
    higher = kind_of(data.task).higher_is_better()
    rows = _records(dataclasses.replace(ev, settings=None), compared, results, data, higher)
    compare = {"model": name, "layers": layers, "parameters": counts[0] if counts else None}
    return [{**r, "compare": compare} for r in rows]


def _result(model: str, seeds: list[int], tasks_meta: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The evaluation artifact (``evaluation.json``): the records and their summary (one per extra scored set)."""
    extra = summaries(records)
    return {
        "schema": SCHEMA,
        "protocol": PROTOCOL,
        "glp_version": __version__,
        "model": model,
        "seeds": seeds,
        "tasks": tasks_meta,
        "summary": extra.pop("summary"),
        "records": records,
        **extra,  # token classification: the same rows scored on test
    }


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
