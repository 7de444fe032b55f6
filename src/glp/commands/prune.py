"""`glp prune`: a search from start to plan, resumable from its run directory.

`PruneConfig` holds every setting (the CLI and a YAML ``--config`` fill the same dataclass); `prune()`
loads the task and data, makes the seeded search split, tokenizes once, opens the run directory's trial
journal, runs the strategy through an executor and writes ``plan.json`` after every step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from glp import __version__, models
from glp.data import DataSpec, column_tuple
from glp.errors import ConfigError, reading
from glp.kinds import kind_of, load_data
from glp.plan import Plan
from glp.results.targets import Drop
from glp.run import executors
from glp.run.executors import ExecutionSettings
from glp.run.rundir import RunDir
from glp.run.store import journaled_runner
from glp.search import SearchContext, SearchStopped, Strategy, make_strategy
from glp.search.base import defaults as strategy_defaults
from glp.search.base import setting_names
from glp.search.proxies import PROXIES, make_block_angular, make_proxy
from glp.search.schedule import FULL, Halving
from glp.trial.hparams import HParams
from glp.trial.parents import INITS, Parents
from glp.trial.scoring import TrialSpec
from glp.trial.types import TrialData, TrialRequest

EventHandler = Callable[..., None]


@dataclass(frozen=True)
class PruneConfig(DataSpec, ExecutionSettings):
    """Every setting of a search: the model, the data settings (`DataSpec`: ``task``, ``data_dir``, ...), where
    trials run (`ExecutionSettings`: ``devices``, ...), the search's own settings below and the fine-tuning
    hyper-parameters. Flat: a YAML ``--config`` and the flags name the same fields."""

    model: str = field(metadata={"help": "Model directory, .gguf file, pkg:PACKAGE or Hugging Face hub name."})
    out: str = field(
        default="runs/glp",
        metadata={"help": "Run directory (plan.json, trial journal). Re-running the same command resumes."},
    )
    max_remove: int = field(default=1, metadata={"help": "Search removal sets up to this many layers."})
    strategy: str = field(default="greedy", metadata={"help": "How removal sets are chosen."})
    eval_fraction: float = field(default=0.15, metadata={"help": "Share of train held out to score candidates."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow a model's own modeling code to run."})
    gguf_file: str | None = field(default=None, metadata={"help": "The GGUF file inside a model directory."})
    # search
    keep: tuple[int, ...] = field(default=(), metadata={"help": "Protected layers, never removed, e.g. 0,11."})
    search_seeds: int = field(
        default=1, metadata={"help": "Fine-tune each candidate with this many seeds and select on the mean."}
    )
    seed: int = field(default=42, metadata={"help": "Base seed (split, first search seed)."})
    strategy_settings: Mapping[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Settings of the strategies' own (`glp.search.base`: beam_width, max_trials, ...)."},
    )
    baseline: bool = field(default=True, metadata={"help": "Also score the unpruned model."})
    # early rejection
    halving: bool = field(
        default=False, metadata={"help": "Early rejection by successive halving within each step (off: the paper)."}
    )
    rungs: int = field(default=3, metadata={"help": "Successive-halving rungs."})
    eta: float = field(default=3.0, metadata={"help": "Keep the best 1/eta after each rung."})
    min_budget: float | None = field(
        default=None, metadata={"help": "First rung's budget as a fraction of the fine-tune (default eta^-(rungs-1))."}
    )
    # proxies
    proxy: str = field(default="bi", metadata={"help": "Proxy for --prefilter-top."})
    prefilter_top: int | None = field(
        default=None, metadata={"help": "Fine-tune only the m candidates of each step the proxy ranks most removable."}
    )
    proxy_examples: int = field(default=256, metadata={"help": "Search-eval examples the proxies read."})
    stop_drop: str | None = field(
        default=None,
        metadata={
            "help": "End the search after the first step whose best candidate falls more than this below the "
            "unpruned model: 1% (relative) or 0.01 (absolute). A larger bound later goes on from there."
        },
    )
    init: str = field(
        default="pretrained",
        metadata={
            "help": "Where a candidate starts: pretrained (the pre-trained weights, fine-tuned with the whole "
            "schedule: the paper) or parent (the previous step's winner, fine-tuned, with one more layer removed, "
            "trained --heal-steps steps: a warm start)."
        },
    )
    hparams: HParams = field(default_factory=HParams)

    def __post_init__(self) -> None:
        super().__post_init__()  # ExecutionSettings: --executor, --devices, ...
        if not 0 < self.eval_fraction < 1:
            raise ConfigError(f"--eval-fraction must be between 0 and 1, got {self.eval_fraction}")
        if self.search_seeds < 1:
            raise ConfigError(f"--search-seeds must be at least 1, got {self.search_seeds}")
        PROXIES.get(self.proxy)  # ConfigError on an unknown --proxy, listing the known ones
        # every strategy setting, at its default unless given: the same config however it was built (round trips)
        object.__setattr__(self, "strategy_settings", {**strategy_defaults(), **dict(self.strategy_settings)})
        self.make_strategy()  # ConfigError on an unknown --strategy or a bad setting of it
        if self.stop_drop is not None:
            Drop.parse(self.stop_drop, "--stop-drop")
            if not self.baseline:
                raise ConfigError("--stop-drop compares with the unpruned model: it needs --baseline")
        if self.prefilter_top is not None and self.prefilter_top < 1:
            raise ConfigError(f"--prefilter-top must be at least 1, got {self.prefilter_top}")
        self._check_init()

    def _check_init(self) -> None:
        if self.init not in INITS:
            raise ConfigError(f"unknown --init {self.init!r}; known: {', '.join(INITS)}")
        if self.init == "pretrained":
            return
        strategy = self.make_strategy()
        if not strategy.nested or strategy.needs == "block-angular":
            raise ConfigError(
                f"--init parent warm-starts each removal set from the one before it: it needs a nested strategy "
                f"(greedy, a fixed pattern, a proxy or shortgpt), not {self.strategy}"
            )
        if self.hparams.heal_steps is None:
            raise ConfigError("--init parent trains each candidate --heal-steps steps from its parent; give them")
        if self.hparams.heal == "none":
            raise ConfigError("--init parent trains each candidate from its parent: it needs --heal full or lora")
        if not self.baseline:
            raise ConfigError("--init parent starts from the unpruned model fine-tuned: keep --baseline")

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.seed + i for i in range(self.search_seeds))

    @property
    def schedule(self) -> Halving:
        return Halving(self.rungs, self.eta, self.min_budget) if self.halving else FULL

    def make_strategy(self) -> Strategy:
        """The strategy these settings name, built with its own settings."""
        return make_strategy(self.strategy, self.strategy_settings, seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        """Flat, as a YAML ``--config`` gives it: every strategy setting a key of its own (at its default unless
        given), the hyper-parameters under ``hparams``."""
        d = dataclasses.asdict(self)
        d.update(d.pop("strategy_settings"))
        d["hparams"] = self.hparams.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PruneConfig:
        d = dict(d)
        names = {f.name for f in dataclasses.fields(cls)}
        hp_names = {f.name for f in dataclasses.fields(HParams)}
        for k in ("hparams", "strategy_settings"):
            if not isinstance(d.get(k) or {}, Mapping):
                raise ConfigError(f"{k} must be a mapping of settings (name: value), got {d[k]!r}")
        hp = dict(d.pop("hparams", None) or {})
        strategy = dict(d.pop("strategy_settings", None) or {})
        strategy_names = setting_names()
        for k in list(d):
            if k in hp_names and k not in names:
                hp[k] = d.pop(k)
            elif k in strategy_names and k not in names:
                strategy[k] = d.pop(k)
        unknown = sorted(set(d) - names)
        if unknown:
            known = sorted((names - {"strategy_settings"}) | hp_names | strategy_names)
            raise ConfigError(f"unknown setting(s) {unknown}; known: {known}")
        for k in ("keep", "text_columns", "label_names"):
            v = d.get(k)
            if isinstance(v, Mapping):
                raise ConfigError(f"{k} takes a list or a comma separated string, got {v!r}")
            if v is not None:
                d[k] = column_tuple(v if isinstance(v, str | list | tuple) else [v])  # (YAML `keep: 0`)
        for k in ("token_column", "tag_column"):
            if d.get(k) is not None:
                d[k] = str(d[k])
        if d.get("keep"):
            try:
                d["keep"] = tuple(int(x) for x in d["keep"])
            except (TypeError, ValueError, OverflowError):
                raise ConfigError(f"keep takes layer numbers, e.g. 0,11; got {d['keep']!r}") from None
        ExecutionSettings.normalize_devices(d)
        unknown_hp = sorted(set(hp) - hp_names, key=str)
        if unknown_hp:
            raise ConfigError(f"unknown hyper-parameter(s) {unknown_hp}; known: {sorted(hp_names)}")
        try:
            return cls(**d, hparams=HParams(**hp), strategy_settings=strategy)
        except (TypeError, ValueError, OverflowError) as e:  # a value of the wrong type (max_seq_length: abc)
            raise ConfigError(f"invalid settings: {e}") from e


def load_yaml_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    with reading(f"config file {p}", ConfigError):
        text = p.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as e:  # (a date like 2024-13-45: ValueError)
        raise ConfigError(f"{p} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping of settings, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


# -------------------------------------------------------------------------------------------------


@dataclass
class Session:
    """Everything a run needs, loaded once: the model source, task, search split, tokenized data, model facts, and
    the `TrialSpec` every trial of the run is built from."""

    config: PruneConfig
    source: Any  # glp.models.ModelSource
    task: Any
    dataset: Any
    split: Any
    trial_data: Any
    spec: Any  # glp.trial.scoring.TrialSpec
    model_info: dict[str, Any]
    context: dict[str, Any]


def open_session(config: PruneConfig, cache_dir: str | os.PathLike[str] | None = None) -> Session:
    source = models.resolve(config.model, gguf_file=config.gguf_file, trust_remote_code=config.trust_remote_code)
    model_info = models.describe(source)  # the config: a model that cannot load fails before the data is read
    models.quantization(config.hparams.quantize)  # --quantize 4bit without bitsandbytes or a GPU: before the data
    ds = load_data(config)
    task = ds.task
    kind = kind_of(task)
    split = kind.split(ds.train, config.eval_fraction, config.seed)
    tokenizer = models.load_tokenizer(source, pre_split_words=kind.pre_split_words)
    max_len = config.hparams.max_seq_length
    trial_data = TrialData(
        task,
        kind.encode(split.train, tokenizer, max_len, cache_dir=cache_dir),
        kind.encode(split.eval, tokenizer, max_len, cache_dir=cache_dir),
    )
    context = {  # what a trial's journal key hashes (glp.run.store.trial_key): the model as given, its weights, ...
        "model": config.model,
        "revision": model_info["revision"],
        "task": task.to_dict(),
        "split": split.fingerprint,
        "hparams": config.hparams.to_dict(),
        **kind.tokenizer_context(tokenizer),
    }
    parents = None
    if config.init == "parent":  # its trials never share a journal key with the pre-trained-init ones
        context["init"] = "parent"
        parents = Parents(str(Path(cache_dir or config.out, "parents").resolve()), dict(context))
    spec = TrialSpec(source, trial_data, config.hparams, parents=parents)
    return Session(config, source, task, ds, split, trial_data, spec, model_info, context)


def prune(config: PruneConfig, on_event: EventHandler | None = None) -> Plan:
    """Run (or resume) a search and return its plan; ``RUN_DIR/plan.json`` is rewritten after every step."""
    run_dir = RunDir(config.out)
    strategy = config.make_strategy()
    with run_dir.journal() as store, contextlib.ExitStack() as cleanup:
        t0 = time.monotonic()
        session = open_session(config, cache_dir=run_dir.cache_dir)
        kind = kind_of(session.task)
        clock = run_dir.write_config(store, strategy.name, config.to_dict(), _NOT_THE_SEARCH, started=t0)
        cleanup.callback(clock.save_quietly)  # an interrupted call keeps its time too
        executor = executors.make_executor(config, session.spec)
        cleanup.callback(executor.close)  # workers stop on errors too

        def on_trial(event: str, **info: Any) -> None:
            if event == "trial_done":  # the search's wall time survives a kill up to its last trial
                clock.save()
            if on_event:
                on_event(event, **info)

        run_trials, stats = journaled_runner(store, session.context, executor, on_trial)
        plan = _new_plan(config, session, strategy)

        def on_step(event: str, **info: Any) -> None:
            if event == "step_done":
                s = info["step"]
                plan.steps.append(s)
                plan.removals[s.n] = list(s.chosen)
                if session.spec.parents is not None:
                    _keep_winner(session.spec.parents, plan, s, config.seeds, run_dir)
                _finish_cost(plan, stats, clock)
                run_dir.save_plan(plan, strategy.name)
            elif event == "step_start" and session.spec.parents is not None:
                info["parent"] = plan.removals.get(info["n"] - 1, [])  # progress says which model a step starts from
            if on_event:
                on_event(event, **info)

        baseline = _Baseline(config, plan, session, kind, run_trials, on_event)
        if session.spec.parents is not None:  # the first parent: trained before any candidate starts from it
            baseline.run([])
        ctx = _search_context(config, plan, baseline.run, on_step, kind.higher_is_better())
        need = strategy.needs
        if config.prefilter_top or need in PROXIES:
            ctx.proxy = make_proxy(need if need in PROXIES else config.proxy, config, session, run_dir=run_dir)
        if need == "block-angular":
            ctx.block_distance = make_block_angular(config, session)
        try:
            result = strategy.run(ctx)
        except SearchStopped as stop:
            plan.stopped = {"after_n": stop.n, "reason": stop.reason, "stop_drop": config.stop_drop}
            if strategy.nested:
                plan.order = list(plan.removals[stop.n])
            if on_event:
                on_event("warning", text=f"the search stopped early: {stop.reason}")
        else:
            if baseline.pending:  # a search that asked for no trials at all still scores the baseline
                baseline.run([])
            plan.removals = dict(result.removals)
            plan.order = result.order
            plan.complete = True
        _finish_cost(plan, stats, clock)
        run_dir.save_plan(plan, strategy.name)
        executor.close()
        return plan


def dry_run(config: PruneConfig) -> Any:
    """What `prune` with ``config`` would need and run: the predicted memory of a candidate, whether it fits the
    devices, the candidates, fine-tunes and optimizer steps; no weights are read, nothing is trained or written
    (`glp.commands.dry_run`; its ``render()`` is what ``glp prune --dry-run`` prints)."""
    from glp.commands.dry_run import dry_run as plan_only  # deferred: only --dry-run needs it

    return plan_only(config)


def _new_plan(config: PruneConfig, session: Session, strategy: Strategy) -> Plan:
    """The plan before its first step: what is searched, on which data, with which settings."""
    return Plan(
        model=session.model_info,
        task=session.task.to_dict(),
        data={
            "source": session.dataset.source,
            "split_fingerprint": session.split.fingerprint,
            "eval_fraction": config.eval_fraction,
            "split_seed": config.seed,
            "search_train": len(session.split.train),
            "search_eval": len(session.split.eval),
            "dev": len(session.dataset.dev),
        },
        hparams=config.hparams.to_dict(),
        strategy={
            "name": strategy.name,
            **strategy.params(),
            "keep": sorted(config.keep),
            "search_seeds": list(config.seeds),
            "halving": config.schedule.to_dict() if config.halving else None,
            "prefilter": {"proxy": config.proxy, "top": config.prefilter_top} if config.prefilter_top else None,
            **({"init": config.init, "parents": {}} if config.init != "pretrained" else {}),
        },
        num_layers=session.model_info["num_layers"],
        max_remove=config.max_remove,
        glp_version=__version__,
    )


def _keep_winner(parents: Parents, plan: Plan, step: Any, seeds: Sequence[int], run_dir: RunDir) -> None:
    """A warm-started step is recorded: its winner's trained models stay (the next step's parents, and what ``glp
    export`` ships for this n), the other candidates' go; the plan says where the winner's model is."""
    for c in step.candidates:
        if list(c.removed) != list(step.chosen):
            for s in seeds:
                parents.forget(c.removed, s)
    path = parents.path(step.chosen, seeds[0])
    plan.strategy["parents"][str(step.n)] = os.path.relpath(path, run_dir.path)


def _search_context(
    config: PruneConfig, plan: Plan, run_trials: Callable, on_step: EventHandler, higher_is_better: bool
) -> SearchContext:
    return SearchContext(  # validates --max-remove and --keep before any training
        num_layers=plan.num_layers,
        max_remove=config.max_remove,
        run_trials=run_trials,
        seeds=config.seeds,
        keep=frozenset(config.keep),
        schedule=config.schedule,
        prefilter_top=config.prefilter_top,
        on_event=on_step,
        higher_is_better=higher_is_better,
        stop_rule=_stop_rule(config.stop_drop, plan, higher_is_better),
    )


class _Baseline:
    """The unpruned model's trials (one per search seed) ride along with the search's first batch of trials, so that
    parallel workers take them together instead of the baseline running alone first; their scores go into
    ``plan.baseline`` (with the constant predictor's score and the warning when the model learned nothing)."""

    def __init__(self, config: PruneConfig, plan: Plan, session: Session, kind: Any, run_trials: Callable, on_event):
        self.pending = [TrialRequest((), s, 1.0) for s in config.seeds] if config.baseline else []
        self.plan, self.session, self.kind, self.run_trials, self.on_event = plan, session, kind, run_trials, on_event

    def run(self, requests: list[TrialRequest]) -> list[dict[str, Any]]:
        """Run ``requests`` (a `glp.search.context.TrialRunner`), with the baseline's trials the first time."""
        if not self.pending:
            return self.run_trials(requests)
        extra, self.pending = self.pending, []
        results = self.run_trials(extra + list(requests))
        self._record(results[: len(extra)])
        return results[len(extra) :]

    def _record(self, results: list[dict[str, Any]]) -> None:
        scores = [r.get("score") for r in results]
        ok = [s for s in scores if s is not None]
        self.plan.baseline = {
            "scores": scores,
            "mean": sum(ok) / len(ok) if ok else None,
            "metrics": [r.get("metrics") for r in results],
            "constant": self.kind.constant_score(self.session.trial_data.eval.labels),
        }
        warning = untrained_warning(
            self.plan.baseline["mean"],
            self.plan.baseline["constant"],
            self.session.task.metric,
            self.kind.higher_is_better(),
        )
        if warning:
            self.plan.baseline["warning"] = warning
            if self.on_event:
                self.on_event("warning", text=warning)


def _stop_rule(stop_drop: str | None, plan: Plan, higher_is_better: bool):
    """``--stop-drop``: a reason to end the search when a step's best candidate falls too far below the baseline."""
    if stop_drop is None:
        return None
    drop = Drop.parse(stop_drop, "--stop-drop")

    def rule(step: Any) -> str | None:
        base = (plan.baseline or {}).get("mean")
        if not drop.exceeded(step.chosen_mean, base, higher_is_better):
            return None
        lost = Drop(drop.of(step.chosen_mean, base, higher_is_better), drop.relative)
        return (
            f"step {step.n}'s best candidate scores {step.chosen_mean:.4f}, {lost} below the unpruned model's "
            f"{base:.4f}, more than --stop-drop {drop}; run the same command with a larger --stop-drop to go on"
        )

    return rule


UNTRAINED_MARGIN = 0.01


def untrained_warning(
    mean: float | None, constant: float | None, metric: str, higher_is_better: bool = True
) -> str | None:
    """A warning when the unpruned model's search-eval score is within ``UNTRAINED_MARGIN`` of predicting one
    class for everything (the task kind's constant predictor): then the candidates' scores are noise around that
    level, not a ranking."""
    if mean is None or constant is None:
        return None
    learned = mean > constant + UNTRAINED_MARGIN if higher_is_better else mean < constant - UNTRAINED_MARGIN
    if learned:
        return None
    return (
        f"the unpruned model scores {metric} {mean:.4f} on search-eval, no better than predicting one class for "
        f"every example ({constant:.4f}): at this fine-tuning budget the search cannot rank removal sets. "
        "Raise --learning-rate or --num-train-epochs (or --max-train-samples) and check the baseline first, "
        "e.g. with --strategy top --max-remove 1."
    )


# settings that do not change which plan a search finds: where its trials run, where it writes, how far it goes
_NOT_THE_SEARCH = {f.name for f in dataclasses.fields(ExecutionSettings)} | {"out", "max_remove", "stop_drop"}


def _finish_cost(plan: Plan, stats: dict[str, Any], clock: Any) -> None:
    """The search's cost. ``trial_seconds`` and ``train_steps`` count every trial of the plan, those read back from
    the journal included, so they are the search's whole cost however often it was resumed; ``wall_seconds`` is
    this call's wall time, ``search_wall_seconds`` that of every call of this strategy on the run directory
    (``search_wall_complete`` False: calls of a glp that did not journal it are missing)."""
    plan.cost = {
        "trials_run": stats["run"],
        "trials_reused": stats["reused"],
        "trials": len(stats["steps"]),
        "train_steps": sum(stats["steps"].values()),
        "trial_seconds": round(sum(stats["seconds"].values()), 2),
        **clock.save(),
    }
