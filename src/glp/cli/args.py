"""From the command line's values to what the commands take: layer indices, the flags that were given, the configs
of prune and evaluate, the n a target chooses, and the default output paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glp.commands.evaluate import EvalConfig
from glp.commands.profile import load as load_profile
from glp.commands.prune import PruneConfig, load_yaml_config
from glp.errors import ConfigError, LayerIndexError
from glp.plan import Plan
from glp.results.targets import Targets, choose
from glp.run.rundir import RunDir
from glp.trial.distill import DistillSettings


def parse_indices(text: str) -> list[int]:
    """Parse a comma separated list of 0-based layer indices ("3,1" -> [3, 1])."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise LayerIndexError(f"no layer indices given in {text!r}; expected e.g. --remove 3,1")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise LayerIndexError(f"layer indices must be comma separated integers (0-based), got {text!r}") from None


def given(**kw) -> dict:
    """The flags that were given (None = not given); for hyper-parameters, ``max_*_samples 0`` means no limit."""
    return {k: v for k, v in kw.items() if v is not None}


def distill_settings(distill: bool, alpha: float | None, temperature: float | None, init: str | None):
    """``glp export``'s distillation settings (None without --distill)."""
    if not distill:
        return None
    return DistillSettings(**given(alpha=alpha, temperature=temperature, init=init))


# ------------------------------------------------------------------------------------------------ prune


def prune_config(config: Path | None, flags: dict[str, Any]) -> PruneConfig:
    """``glp prune``'s config: the YAML file ``config`` (if any), overridden by the flags given."""
    settings = load_yaml_config(config) if config is not None else {}
    settings.update(flags)
    for k in ("model", "task"):
        if not settings.get(k):
            raise ConfigError(f"no {k} given: pass {'MODEL' if k == 'model' else '--task'} or set `{k}:` in --config")
    if isinstance(settings.get("keep"), str):
        settings["keep"] = parse_indices(settings["keep"])
    return PruneConfig.from_dict(settings)


# ------------------------------------------------------------------------------------------ show / export


def choose_by_targets(plan, max_drop, min_speedup, max_params, profile):
    """The plan's n for the targets given (None when none is given), and the choice's details."""
    targets = Targets.parse(max_drop, min_speedup, max_params)
    if not targets:
        return None, None
    prof = load_profile(profile) if profile is not None else None
    choice = choose(plan, targets, prof)
    return choice, targets


def load_plan(run_dir: Path, strategy: str | None, in_dir_only: bool = False) -> Plan:
    """The plan of a run directory (its ``plans/<strategy>.json`` with a strategy) or of a plan file.
    ``in_dir_only``: the strategy applies to a run directory only (a plan file is read as it is)."""
    by_strategy = strategy and (run_dir.is_dir() or not in_dir_only)
    return RunDir(run_dir).load_plan(strategy) if by_strategy else RunDir.read_plan(run_dir)


def export_n(run_dir: Path, strategy: str | None, remove: int | None, max_drop, min_speedup, max_params, profile):
    """How many layers ``glp export`` removes: ``--remove``, or the n the targets choose (then with the choice's
    summary, else None); ConfigError for neither or both."""
    if remove is not None:
        if any(x is not None for x in (max_drop, min_speedup, max_params)):
            raise ConfigError("give --remove n or targets (--max-drop, --min-speedup, --max-params), not both")
        return remove, None
    plan = load_plan(run_dir, strategy, in_dir_only=True)
    choice, targets = choose_by_targets(plan, max_drop, min_speedup, max_params, profile)
    if choice is None:
        raise ConfigError(
            "say how many layers to remove: --remove n, or a target (--max-drop, --min-speedup, --max-params)"
        )
    return choice.n, choice.summary(targets)


# --------------------------------------------------------------------------------------------- evaluate

# evaluate's flags that go to `EvalConfig` as they are when given
_EVAL_FLAGS = (
    "out",
    "seeds",
    "seed",
    "model",
    "data_dir",
    "train_file",
    "dev_file",
    "device",
    "executor",
    "devices",
    "workers_per_device",
    "ray_address",
    "max_retries",
    "device_map",
    "max_memory",
    "distill",
    "distill_alpha",
    "distill_temperature",
    "distill_init",
    "lm_eval_tasks",
    "lm_eval_include_path",
    "lm_eval_limit",
)


def eval_config(args: dict[str, Any]) -> EvalConfig:
    """``glp evaluate``'s config from the command's ``locals()``: --n and --pattern parsed, the other flags given."""
    hp = dict(args.get("final_hp") or {})
    patterns = tuple(p.strip() for item in (args["pattern"] or []) for p in item.split(",") if p.strip())
    n = args["n"]
    ns = None
    if n:
        try:
            ns = tuple(int(x) for x in n.split(",") if x.strip())
        except ValueError:
            raise ConfigError(f"--n takes comma separated integers, e.g. 1,2,3; got {n!r}") from None
    return EvalConfig(
        run_dirs=tuple(str(d) for d in args["run_dirs"] or ()),
        ns=ns,
        patterns=patterns,
        tasks=tuple(args["task"] or ()),
        compare=tuple(m.strip() for m in (args.get("compare") or "").split(",") if m.strip()),
        hparams=hp,
        **given(**{k: args[k] for k in _EVAL_FLAGS}),
    )


# --------------------------------------------------------------------------------------- profile / report


def profile_path(model: str, plan: Path | None, out: Path | None) -> Path:
    """Where ``glp profile`` writes: --out, else RUN_DIR/profile.json (of --plan or of a run directory given as the
    model), else ./profile.json."""
    run_dir = RunDir(plan) if plan is not None else RunDir(model) if RunDir(model).plan_path.exists() else None
    return out or (run_dir.profile_path if run_dir is not None else Path("profile.json"))


def report_dir(run_dirs: list[Path], evaluation: Path | None, out: Path | None) -> Path:
    """Where ``glp report`` writes: --out, else RUN_DIR/report with one run directory, EVALUATION/report with none."""
    if out is not None:
        return out
    if len(run_dirs) > 1:
        raise ConfigError("several run directories: say where the report goes with --out")
    return RunDir.of(run_dirs[0]).report_dir if run_dirs else RunDir(evaluation or ".").report_dir


def label_pairs(pairs: list[str]) -> dict[str, str]:
    """``glp report --label OLD=NEW`` options as {OLD: NEW}; one without ``=``, or with an empty side, is refused."""
    labels: dict[str, str] = {}
    for p in pairs:
        old, sep, new = p.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ConfigError(f"--label {p!r}: write OLD=NEW, e.g. 'greedy (sst2-parent)=greedy (warm start)'")
        labels[old.strip()] = new.strip()
    return labels
