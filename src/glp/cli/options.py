"""The commands' options, built from the fields of the config dataclasses.

A flag's help is written once, on its field (``field(metadata={"help": ...})``) of `PruneConfig`, `HParams`,
`EvalConfig`, `ExecutionSettings` or `DistillSettings`; `option` turns the field into a ``typer.Option`` with that
help, the field's default and, for a registry, its choices. The options two commands share are ``Annotated`` aliases
here (the execution flags of prune and evaluate, the final fine-tune's flags and the targets of show and export).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from glp.commands.evaluate import EvalConfig
from glp.commands.prune import PruneConfig
from glp.run.executors import EXECUTORS, ExecutionSettings
from glp.search.base import settings_fields
from glp.trial.distill import DistillSettings
from glp.trial.hparams import HParams

# the help's panels
HP = "Fine-tuning (run_glue names)"
HEAL = "Healing and precision (decoder LLMs; any kind)"
DATA = "Data"
SEARCH = "Search"
PARALLEL = "Parallel trials"
FINAL = "Final fine-tune (run_glue names; default: the plan's)"
TARGETS = "Choose n by a target"


def show_default(value) -> str | None:
    """A default as the help shows it (None: not shown)."""
    if value is None or value == () or value is dataclasses.MISSING:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), f"{value:g}")
    return str(value)


def field_help(cls, name: str, choices=None, default: bool = True, extra: str = "") -> str:
    """A flag's help: the help on the field ``name`` of the dataclass ``cls``, then ``extra``, the choices of a
    registry and the field's default (``default=False``: not shown)."""
    f = {x.name: x for x in dataclasses.fields(cls)}[name]
    text = f.metadata.get("help", "")
    if extra:
        text = f"{text} {extra}".strip()
    if choices is not None:
        text = f"{text} {choices.help_text()}.".strip()
    shown = show_default(f.default) if default else None
    return f"{text} \\[default: {shown}]" if shown is not None else text


def option(
    cls,
    name: str,
    *flags: str,
    panel: str | None = None,
    choices=None,
    default: bool = True,
    extra: str = "",
    annotated: bool = False,
):
    """A ``typer.Option`` for the field ``name`` of the config dataclass ``cls``: its help is the field's
    (`field_help`), its default None (= not given: the config's default applies). ``annotated``: for
    ``Annotated[...]`` (the default then comes from the parameter's ``= None``)."""
    head = () if annotated else (None,)
    text = field_help(cls, name, choices, default, extra)
    return typer.Option(*head, *flags, help=text, rich_help_panel=panel)


# `option` bound to each config: prune's flags, the search's fine-tuning, evaluate's flags, distillation, where
# trials run, and the final fine-tune of export and evaluate (its default is the plan's value: not shown)
prune_opt = partial(option, PruneConfig)
hp_opt = partial(option, HParams, panel=HP)
eval_opt = partial(option, EvalConfig)
distill_opt = partial(option, DistillSettings)
exec_opt = partial(option, ExecutionSettings, annotated=True)
final_opt = partial(option, HParams, panel=FINAL, default=False, annotated=True)

Device = Annotated[str | None, exec_opt("device", "--device")]

# Parallel trials, shared by prune (candidates) and evaluate (rows x seeds); None = the default.
Executor = Annotated[str | None, exec_opt("executor", "--executor", panel=PARALLEL, choices=EXECUTORS)]
Devices = Annotated[str | None, exec_opt("devices", "--devices", panel=PARALLEL)]
WorkersPerDevice = Annotated[int | None, exec_opt("workers_per_device", "--workers-per-device", panel=PARALLEL)]
RayAddress = Annotated[str | None, exec_opt("ray_address", "--ray-address", panel=PARALLEL)]
MaxRetries = Annotated[int | None, exec_opt("max_retries", "--max-retries", panel=PARALLEL)]
DeviceMap = Annotated[str | None, exec_opt("device_map", "--device-map", panel=PARALLEL)]
MaxMemory = Annotated[str | None, exec_opt("max_memory", "--max-memory", panel=PARALLEL)]

# The final fine-tune's flags, shared by export and evaluate (run_glue names; None = the plan's value).
Epochs = Annotated[float | None, final_opt("num_train_epochs", "--num-train-epochs")]
LearningRate = Annotated[float | None, final_opt("learning_rate", "--learning-rate")]
BatchSize = Annotated[int | None, final_opt("per_device_train_batch_size", "--per-device-train-batch-size")]
MaxSeqLength = Annotated[int | None, final_opt("max_seq_length", "--max-seq-length")]
WarmupRatio = Annotated[float | None, final_opt("warmup_ratio", "--warmup-ratio")]
WeightDecay = Annotated[float | None, final_opt("weight_decay", "--weight-decay")]
MaxTrainSamples = Annotated[int | None, final_opt("max_train_samples", "--max-train-samples", extra="0 = all of it.")]
MaxEvalSamples = Annotated[
    int | None, final_opt("max_eval_samples", "--max-eval-samples", extra="Default: the whole dev set.")
]
Heal = Annotated[str | None, final_opt("heal", "--heal")]
HealSteps = Annotated[int | None, final_opt("heal_steps", "--heal-steps")]
LoraRank = Annotated[int | None, final_opt("lora_rank", "--lora-rank")]
LoraAlpha = Annotated[float | None, final_opt("lora_alpha", "--lora-alpha")]
LoraTargets = Annotated[str | None, final_opt("lora_targets", "--lora-targets")]
GradCkpt = Annotated[
    bool | None, final_opt("gradient_checkpointing", "--gradient-checkpointing/--no-gradient-checkpointing")
]
Dtype = Annotated[str | None, final_opt("dtype", "--dtype")]
TorchDtype = Annotated[str | None, final_opt("torch_dtype", "--torch-dtype")]
Quantize = Annotated[str | None, final_opt("quantize", "--quantize")]

# the final fine-tune's flags, by parameter name (a command gets them with `final_flags`)
FINAL_FLAGS = {
    "num_train_epochs": Epochs,
    "learning_rate": LearningRate,
    "per_device_train_batch_size": BatchSize,
    "max_seq_length": MaxSeqLength,
    "warmup_ratio": WarmupRatio,
    "weight_decay": WeightDecay,
    "max_train_samples": MaxTrainSamples,
    "max_eval_samples": MaxEvalSamples,
    "heal": Heal,
    "heal_steps": HealSteps,
    "lora_rank": LoraRank,
    "lora_alpha": LoraAlpha,
    "lora_targets": LoraTargets,
    "gradient_checkpointing": GradCkpt,
    "dtype": Dtype,
    "torch_dtype": TorchDtype,
    "quantize": Quantize,
}

# Choosing n by a target, shared by show and export (`glp.results.targets`).
MaxDrop = Annotated[
    str | None,
    typer.Option(
        "--max-drop",
        help="The smallest model whose search-eval score is within this of the unpruned model's: 1% (relative) or "
        "0.01 (absolute), in the metric's direction.",
        rich_help_panel=TARGETS,
    ),
]
MinSpeedup = Annotated[
    float | None,
    typer.Option(
        "--min-speedup",
        help="At least this speed-up: from --profile, else estimated as layers / kept layers.",
        rich_help_panel=TARGETS,
    ),
]
MaxParams = Annotated[
    str | None,
    typer.Option("--max-params", help="At most this many parameters: 15M, 800K ...", rich_help_panel=TARGETS),
]
Profile = Annotated[
    Path | None, typer.Option("--profile", help="A glp profile JSON for --min-speedup.", rich_help_panel=TARGETS)
]

# glp prune --dry-run (`glp.commands.dry_run`)
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print the predicted memory of a candidate, whether it fits the devices, and the candidates and "
        "training steps the search would run; read no weights, train and write nothing.",
    ),
]


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def inject_flags(into: str, after: str, params: list[inspect.Parameter]):
    """Decorator of a command: the options ``params`` join its signature after the parameter ``after`` (typer reads
    the signature, so they are flags in ``--help``, in that order), and the command receives the ones given as one
    dict, its parameter ``into``. One list of flags so serves several commands, or comes from a registry."""
    names = [q.name for q in params]

    def deco(fn):
        sig = inspect.signature(fn, eval_str=True)  # real annotations: typer reads the Annotated options
        kept = [q for q in sig.parameters.values() if q.name != into]
        at = next(i for i, q in enumerate(kept) if q.name == after) + 1

        @functools.wraps(fn)
        def wrapper(*args, **kw):
            given = {n: kw.pop(n) for n in names if n in kw}
            return fn(*args, **{into: {k: v for k, v in given.items() if v is not None}}, **kw)

        wrapper.__signature__ = sig.replace(parameters=kept[:at] + params + kept[at:])
        return wrapper

    return deco


def _flag(name: str, default, annotation) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)


def final_flags(after: str, skip: tuple[str, ...] = ()):
    """Decorator of ``glp export`` and ``glp evaluate``: the final fine-tune's flags (`FINAL_FLAGS`, but ``skip``: a
    command's own flag of that name wins, and the plan's value stands), received as the dict ``final_hp`` (the ones
    given; the plan's values stand for the others)."""
    flags = [_flag(n, None, alias) for n, alias in FINAL_FLAGS.items() if n not in skip]
    return inject_flags("final_hp", after, flags)


def strategy_flags(after: str):
    """Decorator of ``glp prune``: a flag for every setting of the registered strategies (their ``settings_class``
    fields: ``beam_width`` → ``--beam-width``, a bool ``force`` → ``--force/--no-force``) in the Search panel, received
    as the dict ``strategy_settings``. A plug-in strategy's settings get their flags this way, with no edit here."""
    params = []
    for f, cls, _ in settings_fields():
        kind = _TYPES.get(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""), str)
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            flag = f"{flag}/--no-{f.name.replace('_', '-')}"
        params.append(_flag(f.name, option(cls, f.name, flag, panel=SEARCH), kind | None))
    return inject_flags("strategy_settings", after, params)
