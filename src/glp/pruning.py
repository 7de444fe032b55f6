"""`glp prune`: a search from start to plan, resumable from its run directory.

`PruneConfig` holds every setting (the CLI and a YAML ``--config`` fill the same dataclass); `prune()`
loads the task and data, makes the seeded search split, tokenizes once, opens the run directory's trial
journal, runs the strategy through an executor and writes ``plan.json`` after every step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from glp import __version__
from glp.data import DataSpec, column_tuple
from glp.errors import ConfigError
from glp.executors import ExecutionSettings
from glp.plan import Plan
from glp.schedule import FULL, Halving
from glp.search import PROXIES, SearchContext, TrialRequest, make_strategy
from glp.store import Store, trial_key
from glp.tasks import constant_score
from glp.train import HParams

EventHandler = Callable[..., None]


@dataclass(frozen=True)
class PruneConfig(DataSpec, ExecutionSettings):
    """Every setting of a search: the model, the data settings (`DataSpec`: ``task``, ``data_dir``, ...), where
    trials run (`ExecutionSettings`: ``devices``, ...), the search's own settings below and the fine-tuning
    hyper-parameters. Flat: a YAML ``--config`` and the flags name the same fields."""

    model: str
    out: str = "runs/glp"
    max_remove: int = 1
    strategy: str = "greedy"
    eval_fraction: float = 0.15
    # search
    keep: tuple[int, ...] = ()
    search_seeds: int = 1
    seed: int = 42
    beam_width: int = 2
    max_trials: int = 200
    force: bool = False
    baseline: bool = True
    # early rejection
    halving: bool = False
    rungs: int = 3
    eta: float = 3.0
    min_budget: float | None = None
    # proxies
    proxy: str = "bi"
    prefilter_top: int | None = None
    proxy_examples: int = 256
    hparams: HParams = field(default_factory=HParams)

    def __post_init__(self) -> None:
        super().__post_init__()  # ExecutionSettings: --executor, --devices, ...
        if not 0 < self.eval_fraction < 1:
            raise ConfigError(f"--eval-fraction must be between 0 and 1, got {self.eval_fraction}")
        if self.search_seeds < 1:
            raise ConfigError(f"--search-seeds must be at least 1, got {self.search_seeds}")
        if self.proxy not in PROXIES:
            raise ConfigError(f"--proxy must be one of {', '.join(PROXIES)}, got {self.proxy!r}")
        if self.prefilter_top is not None and self.prefilter_top < 1:
            raise ConfigError(f"--prefilter-top must be at least 1, got {self.prefilter_top}")

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.seed + i for i in range(self.search_seeds))

    @property
    def schedule(self) -> Halving:
        return Halving(self.rungs, self.eta, self.min_budget) if self.halving else FULL

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hparams"] = self.hparams.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PruneConfig:
        d = dict(d)
        names = {f.name for f in dataclasses.fields(cls)}
        hp_names = {f.name for f in dataclasses.fields(HParams)}
        hp = dict(d.pop("hparams", None) or {})
        for k in list(d):
            if k in hp_names and k not in names:
                hp[k] = d.pop(k)
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown}; known: {sorted(names | hp_names)}")
        for k in ("keep", "text_columns"):
            if d.get(k) is not None:
                d[k] = column_tuple(d[k])
        if d.get("keep"):
            d["keep"] = tuple(int(x) for x in d["keep"])
        ExecutionSettings.normalize_devices(d)
        unknown_hp = sorted(set(hp) - hp_names)
        if unknown_hp:
            raise ConfigError(f"unknown hyper-parameter(s) {unknown_hp}; known: {sorted(hp_names)}")
        try:
            return cls(**d, hparams=HParams(**hp))
        except TypeError as e:
            raise ConfigError(f"invalid settings: {e}") from e


def load_yaml_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping of settings, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def weights_revision(source: str) -> str | None:
    """sha256 over a local model directory's weight files; the hub commit hash for a hub name, if known."""
    p = Path(source)
    if p.is_dir():
        h = hashlib.sha256()
        files = sorted(f for f in p.iterdir() if f.suffix in (".safetensors", ".bin") and f.is_file())
        for f in files:
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        return "sha256:" + h.hexdigest() if files else None
    return None


# -------------------------------------------------------------------------------------------------


@dataclass
class Session:
    """Everything a run needs, loaded once: task, search split, tokenized data, model facts."""

    config: PruneConfig
    task: Any
    dataset: Any
    split: Any
    trial_data: Any
    model_info: dict[str, Any]
    context: dict[str, Any]


def open_session(config: PruneConfig, cache_dir: str | os.PathLike[str] | None = None) -> Session:
    from transformers import AutoConfig, AutoTokenizer

    from glp.data import encode, search_split
    from glp.layers import config_num_layers
    from glp.scoring import TrialData

    ds = config.load()
    task = ds.task
    split = search_split(ds.train, eval_fraction=config.eval_fraction, seed=config.seed, regression=task.is_regression)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    max_len = config.hparams.max_seq_length
    trial_data = TrialData(
        task,
        encode(split.train, tokenizer, max_len, cache_dir=cache_dir),
        encode(split.eval, tokenizer, max_len, cache_dir=cache_dir),
    )
    mconf = AutoConfig.from_pretrained(config.model)
    model_info = {
        "source": config.model,
        "revision": weights_revision(config.model) or getattr(mconf, "_commit_hash", None),
        "model_type": mconf.model_type,
        "architectures": list(getattr(mconf, "architectures", None) or []),
        "num_layers": config_num_layers(mconf),
    }
    context = {
        "model": config.model,
        "revision": model_info["revision"],
        "task": task.to_dict(),
        "split": split.fingerprint,
        "hparams": config.hparams.to_dict(),
    }
    return Session(config, task, ds, split, trial_data, model_info, context)


def make_runner(store: Store, context: dict[str, Any], executor: Any, on_event: EventHandler | None = None):
    """A TrialRunner: journaled trials are looked up, the rest run on the executor and are journaled at once."""
    # steps and wall_time of a result count from the start of its trial (a continued trial includes what it
    # trained before), so the cost of a trial is its largest value over the budgets it reached.
    stats: dict[str, Any] = {"run": 0, "reused": 0, "steps": {}, "seconds": {}}

    def run(requests: list[TrialRequest]) -> list[dict[str, Any]]:
        out: list[dict[str, Any] | None] = [None] * len(requests)
        keys = [trial_key(context, r.removed, r.seed, r.budget) for r in requests]
        todo = []
        for i, key in enumerate(keys):
            hit = store.get(key)
            if hit is not None:
                out[i] = hit
                stats["reused"] += 1
            else:
                todo.append(i)
        if on_event:
            on_event("trials_start", total=len(requests), cached=len(requests) - len(todo))
        for j, result in executor.run([requests[i] for i in todo]):
            i = todo[j]
            if not result.get("infrastructure"):  # a worker that died is no property of the trial: retry on resume
                store.put(keys[i], result, context)
            out[i] = result
            stats["run"] += 1
            if on_event:
                on_event("trial_done", request=requests[i], result=result)
        for req, r in zip(requests, out, strict=True):
            tid = (frozenset(req.removed), req.seed)
            stats["steps"][tid] = max(stats["steps"].get(tid, 0), int(r.get("steps") or 0))
            stats["seconds"][tid] = max(stats["seconds"].get(tid, 0.0), float(r.get("wall_time") or 0.0))
        return out  # type: ignore[return-value]

    return run, stats


def prune(config: PruneConfig, on_event: EventHandler | None = None) -> Plan:
    """Run (or resume) a search and return its plan; ``RUN_DIR/plan.json`` is rewritten after every step."""
    from glp.executors import WorkerSpec, make_executor
    from glp.scoring import Trial

    run_dir = Path(config.out)
    strategy = make_strategy(
        config.strategy,
        beam_width=config.beam_width,
        max_trials=config.max_trials,
        force=config.force,
        seed=config.seed,
    )
    with Store(run_dir) as store, contextlib.ExitStack() as cleanup:
        t0 = time.time()
        session = open_session(config, cache_dir=run_dir / "cache")
        store.set_meta("config:" + config.strategy, config.to_dict())

        def factory(removed: tuple[int, ...], seed: int):
            return Trial(config.model, removed, session.trial_data, config.hparams, seed, device=config.device)

        executor = make_executor(config, WorkerSpec(str(config.model), session.trial_data, config.hparams), factory)
        cleanup.callback(executor.close)  # workers stop on errors too
        run_trials, stats = make_runner(store, session.context, executor, on_event)
        plan = Plan(
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
            },
            num_layers=session.model_info["num_layers"],
            max_remove=config.max_remove,
            glp_version=__version__,
        )

        def on_step(event: str, **info: Any) -> None:
            if event == "step_done":
                s = info["step"]
                plan.steps.append(s)
                plan.removals[s.n] = list(s.chosen)
                _finish_cost(plan, stats, t0)
                _save(plan, run_dir, strategy.name)
            if on_event:
                on_event(event, **info)

        # The unpruned model's trials ride along with the search's first batch of trials, so that parallel
        # workers take them together instead of the baseline running alone first.
        baseline = [TrialRequest((), s, 1.0) for s in config.seeds] if config.baseline else []

        def set_baseline(results: list[dict[str, Any]]) -> None:
            scores = [r.get("score") for r in results]
            ok = [s for s in scores if s is not None]
            plan.baseline = {
                "scores": scores,
                "mean": sum(ok) / len(ok) if ok else None,
                "metrics": [r.get("metrics") for r in results],
                "constant": constant_score(session.task, session.trial_data.eval.labels),
            }
            warning = untrained_warning(plan.baseline["mean"], plan.baseline["constant"], session.task.metric)
            if warning:
                plan.baseline["warning"] = warning
                if on_event:
                    on_event("warning", text=warning)

        def run_with_baseline(requests: list[TrialRequest]) -> list[dict[str, Any]]:
            nonlocal baseline
            if not baseline:
                return run_trials(requests)
            extra, baseline = baseline, []
            results = run_trials(extra + list(requests))
            set_baseline(results[: len(extra)])
            return results[len(extra) :]

        ctx = SearchContext(  # validates --max-remove and --keep before any training
            num_layers=plan.num_layers,
            max_remove=config.max_remove,
            run_trials=run_with_baseline,
            seeds=config.seeds,
            keep=frozenset(config.keep),
            schedule=config.schedule,
            prefilter_top=config.prefilter_top,
            on_event=on_step,
        )
        if config.prefilter_top or strategy.name.startswith("proxy-"):
            from glp.proxies import make_proxy

            kind = strategy.name[len("proxy-") :] if strategy.name.startswith("proxy-") else config.proxy
            ctx.proxy = make_proxy(kind, config, session, run_trials=run_with_baseline, run_dir=run_dir)

        result = strategy.run(ctx)
        if baseline:  # a search that asked for no trials at all
            run_with_baseline([])
        plan.removals = dict(result.removals)
        plan.order = result.order
        plan.complete = True
        _finish_cost(plan, stats, t0)
        _save(plan, run_dir, strategy.name)
        executor.close()
        return plan


UNTRAINED_MARGIN = 0.01


def untrained_warning(mean: float | None, constant: float | None, metric: str) -> str | None:
    """A warning when the unpruned model's search-eval score is within ``UNTRAINED_MARGIN`` of predicting one
    class for everything: then the candidates' scores are noise around that level, not a ranking."""
    if mean is None or constant is None or mean > constant + UNTRAINED_MARGIN:
        return None
    return (
        f"the unpruned model scores {metric} {mean:.4f} on search-eval, no better than predicting one class for "
        f"every example ({constant:.4f}): at this fine-tuning budget the search cannot rank removal sets. "
        "Raise --learning-rate or --num-train-epochs (or --max-train-samples) and check the baseline first, "
        "e.g. with --strategy top --max-remove 1."
    )


def _finish_cost(plan: Plan, stats: dict[str, Any], t0: float) -> None:
    plan.cost = {
        "trials_run": stats["run"],
        "trials_reused": stats["reused"],
        "trials": len(stats["steps"]),
        "train_steps": sum(stats["steps"].values()),
        "trial_seconds": round(sum(stats["seconds"].values()), 2),
        "wall_seconds": round(time.time() - t0, 2),
    }


def _save(plan: Plan, run_dir: Path, label: str) -> None:
    """``plan.json`` is the latest search; ``plans/<strategy>.json`` keeps each strategy's plan."""
    plan.save(run_dir, f"plans/{label}.json")
    plan.save(run_dir)
