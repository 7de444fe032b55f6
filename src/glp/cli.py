"""Command line interface: ``glp COMMAND ...``.

One function per command; heavy imports (torch, transformers) happen inside the commands so that ``glp --help``
stays fast. Errors a user can cause are ``GLPError``s: ``main()`` prints them as one red line and exits 2.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from glp.errors import ConfigError, GLPError, LayerIndexError

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


def load_config(source: str, trust_remote_code: bool = False):
    """The config of a local model directory or hub name; ``ConfigError`` when it cannot be loaded."""
    import transformers

    try:
        return transformers.AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ConfigError(f"cannot load a model config from {source!r}: {_one_line(exc)}") from None


def model_class_for(config):
    """The class named in the config's ``architectures`` (so the task head is kept), else ``AutoModel``."""
    import transformers

    for name in config.architectures or ():
        cls = getattr(transformers, name, None)
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            return cls
    return transformers.AutoModel


def load_model(source: str, config=None, trust_remote_code: bool = False):
    """Load a model (local directory or hub name) with ``model_class_for(config)``, in its saved dtype.

    Raises ``ConfigError`` when ``source`` cannot be loaded.
    """
    if config is None:
        config = load_config(source, trust_remote_code=trust_remote_code)
    model_cls = model_class_for(config)
    try:
        return model_cls.from_pretrained(source, config=config, dtype="auto", trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ConfigError(f"cannot load model {source!r} with {model_cls.__name__}: {_one_line(exc)}") from None


def load_tokenizer(source: str, trust_remote_code: bool = False):
    """The tokenizer saved with ``source``, or None when there is none."""
    import transformers

    try:
        return transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception:
        return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@app.command("drop")
def drop(
    model: str = typer.Argument(..., help="Model directory or Hugging Face hub name."),
    remove: str = typer.Option(..., "--remove", "-r", help="Comma separated 0-based layer indices, e.g. 3,1."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for the pruned model."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty output directory."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow custom modeling code."),
) -> None:
    """Remove layers from a model and save it (safetensors + tokenizer) so it loads with plain transformers."""
    import transformers
    from rich.console import Console
    from rich.table import Table

    from glp.layers import config_num_layers, drop_layers, find_layer_stack, validate_indices

    transformers.utils.logging.disable_progress_bar()
    indices = parse_indices(remove)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"output directory {str(out)!r} exists and is not empty; pass --overwrite to write into it")

    config = load_config(model, trust_remote_code=trust_remote_code)
    if (count := config_num_layers(config)) is not None:
        validate_indices(indices, count)  # fail before loading the weights
    net = load_model(model, config=config, trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code)
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
_DATA = "Data"
_SEARCH = "Search"


_Device = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 ... \\[default: cuda if available]")]

_PARALLEL = "Parallel trials"

# Parallel trials, shared by prune (candidates) and evaluate (rows x seeds); None = the default.
_Executor = Annotated[
    str | None, typer.Option("--executor", help="local | ray. \\[default: local]", rich_help_panel=_PARALLEL)
]
_Devices = Annotated[
    str | None,
    typer.Option(
        "--devices",
        help="One worker per entry, trials in parallel: GPU ids 0,1,2,3 (each worker pinned to its card) or "
        "cpu,cpu. \\[default: one in-process worker on --device]",
        rich_help_panel=_PARALLEL,
    ),
]
_WorkersPerDevice = Annotated[
    int | None,
    typer.Option(
        "--workers-per-device",
        help="Workers sharing each device (small models on a large GPU; --devices cpu --workers-per-device 4 "
        "for 4 CPU workers). \\[default: 1]",
        rich_help_panel=_PARALLEL,
    ),
]
_RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="With --executor ray: auto | HOST:PORT of a running cluster (ray start --head). "
        "\\[default: start a local Ray instance]",
        rich_help_panel=_PARALLEL,
    ),
]
_MaxRetries = Annotated[
    int | None,
    typer.Option(
        "--max-retries",
        help="Retry a trial whose worker died this many times, then record it as failed. \\[default: 2]",
        rich_help_panel=_PARALLEL,
    ),
]


@app.command("prune")
def prune_cmd(
    model: str | None = typer.Argument(
        None, help="Model directory or Hugging Face hub name (or `model:` in --config)."
    ),
    task: str | None = typer.Option(
        None,
        "--task",
        "-t",
        help="GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli) or a name for your own data.",
        rich_help_panel=_DATA,
    ),
    out: str | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Run directory (plan.json, trial journal). Re-running the same command resumes. \\[default: runs/glp]",
    ),
    max_remove: int | None = typer.Option(
        None, "--max-remove", "-n", help="Search removal sets up to this many layers.", rich_help_panel=_SEARCH
    ),
    strategy: str | None = typer.Option(
        None,
        "--strategy",
        "-s",
        help="greedy (GLP) | beam | optimal | top | bottom | "
        "even | odd | symmetric | random | proxy-bi | proxy-angular | proxy-loss. "
        "\\[default: greedy]",
        rich_help_panel=_SEARCH,
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="YAML file with any of these settings (flag names with _ or -); flags given on the command line win.",
    ),
    data_dir: str | None = typer.Option(
        None,
        "--data-dir",
        help="Local GLUE directory (<dir>/<TASK>/train.tsv, dev.tsv)"
        "; default $GLP_GLUE_DIR, else the hub's nyu-mll/glue.",
        rich_help_panel=_DATA,
    ),
    train_file: str | None = typer.Option(
        None, "--train-file", help="Your own train data (csv/tsv/json/jsonl/parquet).", rich_help_panel=_DATA
    ),
    dev_file: str | None = typer.Option(None, "--dev-file", help="Your own dev data.", rich_help_panel=_DATA),
    hub_dataset: str | None = typer.Option(
        None, "--hub-dataset", help="A hub dataset name, for datasets.load_dataset.", rich_help_panel=_DATA
    ),
    text_columns: str | None = typer.Option(
        None, "--text-columns", help="One or two text columns, e.g. a,b.", rich_help_panel=_DATA
    ),
    label_column: str | None = typer.Option(None, "--label-column", help="The label column.", rich_help_panel=_DATA),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="For your own data: accuracy | f1 | macro-f1 | mcc | spearman | pearson.",
        rich_help_panel=_DATA,
    ),
    eval_fraction: float | None = typer.Option(
        None,
        "--eval-fraction",
        help="Share of train held out to score candidates. \\[default: 0.15]",
        rich_help_panel=_DATA,
    ),
    keep: str | None = typer.Option(
        None, "--keep", help="Protected layers, never removed, e.g. 0,11.", rich_help_panel=_SEARCH
    ),
    search_seeds: int | None = typer.Option(
        None,
        "--search-seeds",
        help="Fine-tune each candidate with this many seeds and select on the mean. \\[default: 1]",
        rich_help_panel=_SEARCH,
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Base seed (split, first search seed). \\[default: 42]", rich_help_panel=_SEARCH
    ),
    beam_width: int | None = typer.Option(
        None, "--beam-width", help="For --strategy beam. \\[default: 2]", rich_help_panel=_SEARCH
    ),
    max_trials: int | None = typer.Option(
        None,
        "--max-trials",
        help="For --strategy optimal: refuse above this many removal sets. \\[default: 200]",
        rich_help_panel=_SEARCH,
    ),
    force: bool | None = typer.Option(
        None, "--force/--no-force", help="Run optimal above --max-trials.", rich_help_panel=_SEARCH
    ),
    baseline: bool | None = typer.Option(
        None, "--baseline/--no-baseline", help="Also score the unpruned model. \\[default: on]", rich_help_panel=_SEARCH
    ),
    halving: bool | None = typer.Option(
        None,
        "--halving/--no-halving",
        help="Early rejection by successive halving within each step. \\[default: off, as the paper]",
        rich_help_panel=_SEARCH,
    ),
    rungs: int | None = typer.Option(
        None, "--rungs", help="Successive-halving rungs. \\[default: 3]", rich_help_panel=_SEARCH
    ),
    eta: float | None = typer.Option(
        None, "--eta", help="Keep the best 1/eta after each rung. \\[default: 3]", rich_help_panel=_SEARCH
    ),
    min_budget: float | None = typer.Option(
        None,
        "--min-budget",
        help="First rung's budget as a fraction of the fine-tune. \\[default: eta^-(rungs-1)]",
        rich_help_panel=_SEARCH,
    ),
    proxy: str | None = typer.Option(
        None, "--proxy", help="Proxy for --prefilter-top: bi | angular | loss. \\[default: bi]", rich_help_panel=_SEARCH
    ),
    prefilter_top: int | None = typer.Option(
        None,
        "--prefilter-top",
        help="Fine-tune only the m candidates of each step that the proxy ranks most removable.",
        rich_help_panel=_SEARCH,
    ),
    proxy_examples: int | None = typer.Option(
        None,
        "--proxy-examples",
        help="Search-eval examples the proxies read. \\[default: 256]",
        rich_help_panel=_SEARCH,
    ),
    device: _Device = None,
    executor: _Executor = None,
    devices: _Devices = None,
    workers_per_device: _WorkersPerDevice = None,
    ray_address: _RayAddress = None,
    max_retries: _MaxRetries = None,
    num_train_epochs: float | None = typer.Option(
        None, "--num-train-epochs", help="\\[default: 3]", rich_help_panel=_HP
    ),
    learning_rate: float | None = typer.Option(None, "--learning-rate", help="\\[default: 2e-5]", rich_help_panel=_HP),
    per_device_train_batch_size: int | None = typer.Option(
        None, "--per-device-train-batch-size", help="\\[default: 32]", rich_help_panel=_HP
    ),
    max_seq_length: int | None = typer.Option(None, "--max-seq-length", help="\\[default: 128]", rich_help_panel=_HP),
    warmup_ratio: float | None = typer.Option(None, "--warmup-ratio", help="\\[default: 0]", rich_help_panel=_HP),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="\\[default: 0.01]", rich_help_panel=_HP),
    max_train_samples: int | None = typer.Option(
        None, "--max-train-samples", help="Seeded subsample of search-train.", rich_help_panel=_HP
    ),
    max_eval_samples: int | None = typer.Option(
        None, "--max-eval-samples", help="Seeded subsample of search-eval.", rich_help_panel=_HP
    ),
) -> None:
    """Search which layers to remove for your task (GLP by default) and write RUN_DIR/plan.json.

    Example: glp prune ./minilm --task rte --data-dir ../shared/data/glue --max-remove 3 --out runs/rte
    """
    flags = {k: v for k, v in locals().items() if k != "config" and v is not None}
    from glp.pruning import PruneConfig, load_yaml_config, prune

    settings = load_yaml_config(config) if config is not None else {}
    settings.update(flags)
    for k in ("model", "task"):
        if not settings.get(k):
            raise ConfigError(f"no {k} given: pass {'MODEL' if k == 'model' else '--task'} or set `{k}:` in --config")
    if isinstance(settings.get("keep"), str):
        settings["keep"] = parse_indices(settings["keep"])
    cfg = PruneConfig.from_dict(settings)
    with _SearchProgress(cfg) as progress:
        plan = prune(cfg, on_event=progress.event)
    print_plan(plan)
    typer.echo(f"plan written to {Path(cfg.out) / 'plan.json'}")


class _SearchProgress:
    """Live progress of a search: step k/N, trial i/m, current best, elapsed and ETA (rich)."""

    def __init__(self, cfg) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.cfg = cfg
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
        self.steps = self.progress.add_task("steps", total=cfg.max_remove, info="", visible=True)
        self.trials = self.progress.add_task("trials", total=1, info="", visible=False)
        self.best: float | None = None
        self.n = 0
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

    def _log(self, text: str) -> None:
        elapsed = time.time() - self.t0
        typer.echo(f"[{time.strftime('%H:%M:%S')} +{elapsed:.0f}s] {text}", err=True)

    def event(self, name: str, **info) -> None:
        if name == "warning":
            if self.plain:
                self._log(f"warning: {info['text']}")
            else:
                from rich.markup import escape

                self.progress.console.print(f"[yellow]warning:[/yellow] {escape(info['text'])}")
            return
        if self.plain:
            self._plain(name, **info)
            return
        p = self.progress
        if name == "step_start":
            self.n, self.best = info["n"], None
            p.update(
                self.steps, description=f"step {info['n']}/{info['total']}", info=f"{info['candidates']} candidates"
            )
        elif name == "batch_start":
            self.n, self.best = info["label"], None
            p.update(self.steps, description=info["label"], info=f"{info['candidates']} removal sets at once")
        elif name == "trials_start":
            p.reset(
                self.trials,
                total=max(info["total"], 1),
                completed=info["cached"],
                visible=True,
                info=f"{info['cached']} from journal" if info["cached"] else "",
            )
        elif name == "trial_done":
            self._note_best(info)
            best = f"best so far {self.best:.4f}" if self.best is not None else ""
            p.update(self.trials, advance=1, description=f"remove {sorted(info['request'].removed)}", info=best)
        elif name == "step_done":
            s = info["step"]
            p.update(self.steps, advance=1, info=f"kept removal {s.chosen} ({_fmt(s.chosen_mean)})")

    def _note_best(self, info: dict) -> None:
        """'best so far' is over the step's candidates; the unpruned model's trials (in the first batch) are not."""
        r = info["result"]
        if info["request"].removed and r.get("status") == "ok" and r.get("score") is not None:
            self.best = r["score"] if self.best is None else max(self.best, r["score"])

    def _plain(self, name: str, **info) -> None:
        if name == "step_start":
            self.n, self.best = info["n"], None
            self._log(f"step {info['n']}/{info['total']}: {info['candidates']} candidates")
        elif name == "batch_start":
            self.n, self.best = info["label"], None
            self._log(f"{info['label']}: {info['candidates']} removal sets of a fixed order, fine-tuned at once")
        elif name == "trials_start":
            self.batch_start, self.batch_done, self.batch_total = time.time(), info["cached"], info["total"]
            if info["cached"]:
                self._log(f"{info['cached']} of {info['total']} trials from the journal")
        elif name == "trial_done":
            r = info["result"]
            self.batch_done += 1
            self._note_best(info)
            per = (time.time() - self.batch_start) / max(self.batch_done, 1)
            eta = per * (self.batch_total - self.batch_done)
            score = f"{r['score']:.4f}" if r.get("score") is not None else f"failed ({r.get('reason')})"
            where = (
                "baseline (with the first batch)"
                if not info["request"].removed
                else f"step {self.n}/{self.cfg.max_remove}"
                if isinstance(self.n, int) and self.n
                else self.n or "search"
            )
            self._log(
                f"{where} trial {self.batch_done}/{self.batch_total}: remove "
                f"{sorted(info['request'].removed)} (seed {info['request'].seed}, budget {info['request'].budget:g}) "
                f"-> {score}; best so far {_fmt(self.best)}; ETA for this batch {eta:.0f}s"
            )
        elif name == "rung_done":
            self._log(f"step {info['n']}: rung {info['rung']} (budget {info['budget']:g}) kept {info['kept']}")
        elif name == "step_done":
            s = info["step"]
            self._log(f"step {s.n} done: remove {s.chosen} ({_fmt(s.chosen_mean)})")


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def print_plan(plan) -> None:
    """The plan as a table: one row per number of removed layers."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    metric = plan.task.get("metric", "score")
    title = (
        f"{plan.strategy.get('name')} on {plan.task.get('name')} ({metric}, search split) — "
        f"{plan.model.get('source')}, {plan.num_layers} layers" + ("" if plan.complete else " [partial]")
    )
    table = Table(title=title)
    for col in ("n", "remove (in order)", "layers left", f"{metric} mean", "± std", "seeds separate it?", "tried"):
        table.add_column(col, justify="right" if col not in ("remove (in order)",) else "left")
    if plan.baseline is not None:
        table.add_row("0", "-", str(plan.num_layers), _fmt(plan.baseline.get("mean")), "", "", "baseline")
    by_n = {s.n: s for s in plan.steps}
    for n in sorted(plan.removals):
        s = by_n.get(n)
        best = s.candidates[0] if s else None
        sep = "" if s is None or s.separated is None else ("yes" if s.separated else "[yellow]no[/]")
        table.add_row(
            str(n),
            ",".join(map(str, plan.removals[n])),
            str(plan.num_layers - n),
            _fmt(s.chosen_mean if s else None),
            _fmt(best.std if best else None),
            sep,
            str(len(s.candidates)) if s else "",
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


@app.command("show")
def show(
    run_dir: Path = typer.Argument(..., help="A run directory written by glp prune (or a plan .json file)."),
    strategy: str | None = typer.Option(
        None, "--strategy", help="Show plans/<strategy>.json of the run directory instead of its latest plan."
    ),
) -> None:
    """Print a finished or partial plan."""
    from glp.plan import Plan

    target = run_dir / "plans" / f"{strategy}.json" if strategy else run_dir
    print_plan(Plan.load(target))


# -------------------------------------------------------------------------- export / evaluate / profile / report

_FINAL = "Final fine-tune (run_glue names; default: the plan's)"

# The final fine-tune's flags, shared by export and evaluate (run_glue names; None = the plan's value).
_Epochs = Annotated[float | None, typer.Option("--num-train-epochs", rich_help_panel=_FINAL)]
_LearningRate = Annotated[float | None, typer.Option("--learning-rate", rich_help_panel=_FINAL)]
_BatchSize = Annotated[int | None, typer.Option("--per-device-train-batch-size", rich_help_panel=_FINAL)]
_MaxSeqLength = Annotated[int | None, typer.Option("--max-seq-length", rich_help_panel=_FINAL)]
_WarmupRatio = Annotated[float | None, typer.Option("--warmup-ratio", rich_help_panel=_FINAL)]
_WeightDecay = Annotated[float | None, typer.Option("--weight-decay", rich_help_panel=_FINAL)]
_MaxTrainSamples = Annotated[
    int | None, typer.Option("--max-train-samples", help="0 = the whole train set.", rich_help_panel=_FINAL)
]
_MaxEvalSamples = Annotated[
    int | None,
    typer.Option("--max-eval-samples", help="Dev subsample (default: the whole dev set).", rich_help_panel=_FINAL),
]


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
)


def _final_hparams(args: dict) -> dict:
    """The final fine-tune's flags (the aliases above) that were given, from a command's ``locals()``."""
    return _given(**{k: args[k] for k in _FINAL_HP})


@app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory written by glp prune (or a plan .json file)."),
    remove: int = typer.Option(..., "--remove", "-n", help="How many layers to remove: the plan's set for this n."),
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
) -> None:
    """Drop the plan's n layers from the pre-trained model and save a model that loads with plain transformers.

    Example: glp export runs/rte --remove 2 --finetune --out models/minilm-rte-4l
    """
    from glp.export import export

    hp = _final_hparams(locals())

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
    )
    m = res.manifest
    typer.echo(
        f"removed layers {m['removed_layers']}: {m['source']['num_layers']} → {m['num_layers']} layers, "
        f"{m['parameters']:,} parameters"
    )
    if m["metrics"]:
        typer.echo("dev: " + ", ".join(f"{k}={v:.4f}" for k, v in m["metrics"]["dev"].items()))
    else:
        typer.secho(
            "note: the classification head is untrained (no --finetune); fine-tune before use", fg=typer.colors.YELLOW
        )
    typer.echo(f"saved to {out} (pruning.json, README.md)")


@app.command("evaluate")
def evaluate_cmd(
    run_dirs: list[Path] = typer.Argument(None, help="Run directories; every plans/*.json of each is evaluated."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (tables, trial journal; re-run resumes)."),
    n: str | None = typer.Option(None, "--n", help="Numbers of removed layers, e.g. 1,2,3 (default: the plans')."),
    pattern: list[str] = typer.Option(
        None, "--pattern", help="Fixed pattern(s) too: top, bottom, even, odd, symmetric, random (repeat or a,b)."
    ),
    seeds: int = typer.Option(5, "--seeds", help="Fine-tune every row with this many seeds; report the median."),
    seed: int = typer.Option(42, "--seed", help="First seed."),
    model: str | None = typer.Option(None, "--model", help="Model, when no run directory is given."),
    task: list[str] = typer.Option(None, "--task", "-t", help="Task(s), when no run directory is given."),
    device: _Device = None,
    data_dir: str | None = typer.Option(None, "--data-dir", help="GLUE directory (default: the runs')."),
    train_file: str | None = typer.Option(None, "--train-file", help="Override the run's train file."),
    dev_file: str | None = typer.Option(None, "--dev-file", help="Override the run's dev file."),
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
) -> None:
    """The paper's Table 1: fine-tune on the full train set, score on dev, median of seeds, relative to baseline.

    Example: glp evaluate runs/rte --n 1,2 --pattern top --seeds 5 --out runs/rte-eval
    """
    from glp.evaluate import EvalConfig, evaluate

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
        out=str(out),
        ns=ns,
        patterns=patterns,
        seeds=seeds,
        seed=seed,
        model=model,
        tasks=tuple(task or ()),
        data_dir=data_dir,
        train_file=train_file,
        dev_file=dev_file,
        hparams=hp,
        device=device,
        **_given(
            executor=executor,
            devices=devices,
            workers_per_device=workers_per_device,
            ray_address=ray_address,
            max_retries=max_retries,
        ),
    )
    state = {"done": 0, "total": 0}

    def on_event(event: str, **info) -> None:
        if event == "trials_start":
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
    from glp.evaluate import markdown_table

    typer.echo(markdown_table(result["summary"]))
    typer.echo(f"written to {out}/table.md, evaluation.csv, evaluation.json")


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
    out: Path | None = typer.Option(
        None, "--out", "-o", help="JSON file (default: RUN_DIR/profile.json with a plan, else ./profile.json)."
    ),
) -> None:
    """Parameters, CPU latency (batch 1) and GPU latency (batch 32) and speed-ups, for every n of a plan at once.

    Example: glp profile runs/rte   (the run's model, unpruned and with each n of its plan removed)
    """
    from glp.profile import markdown_table, profile, save

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
    )
    run_dir = plan if plan is not None else (Path(model) if (Path(model) / "plan.json").exists() else None)
    path = out or (run_dir / "profile.json" if run_dir is not None else Path("profile.json"))
    save(result, path)
    typer.echo(markdown_table(result))
    typer.echo(f"written to {path}")


@app.command("report")
def report_cmd(
    run_dirs: list[Path] = typer.Argument(None, help="Run directories (their plans/*.json)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (report.md, PNGs, report.html)."),
    evaluation: Path | None = typer.Option(None, "--evaluation", help="A glp evaluate --out directory."),
    profile: Path | None = typer.Option(None, "--profile", help="A glp profile JSON file."),
    html: bool = typer.Option(False, "--html/--no-html", help="Also write a self-contained report.html."),
    speedup: str = typer.Option("auto", "--speedup", help="x axis of the trade-off: auto | cpu | gpu."),
    title: str | None = typer.Option(None, "--title", help="Report title."),
) -> None:
    """A report: the plans, candidate heat maps, the evaluation table and the performance vs speed-up plot.

    Example: glp report runs/rte --evaluation runs/rte-eval --profile runs/rte/profile.json --out report/
    """
    from glp.report import report

    rep = report(run_dirs or [], out, evaluation=evaluation, profile=profile, html=html, speedup=speedup, title=title)
    for f in [rep.markdown, *rep.figures, *([rep.html] if rep.html else [])]:
        typer.echo(f"wrote {f}")


def main(argv: list[str] | None = None) -> None:
    """Console script entry point: run the app; user errors become one red line on stderr and exit code 2."""
    try:
        app(args=argv, prog_name="glp")
    except GLPError as exc:
        typer.secho(f"error: {_one_line(exc)}", fg=typer.colors.RED, err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
