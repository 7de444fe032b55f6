"""`glp export`: from a plan to a model you can ship.

``export(run_dir, n, out)`` looks the ``n`` layers up in the plan (O(1)), drops them from the pre-trained model
the plan was searched on, optionally fine-tunes the pruned model on the task's full train set and scores it on
dev (the paper's last step), and writes a standard ``save_pretrained`` directory: safetensors weights, config,
tokenizer, ``pruning.json`` (how it was made) and ``README.md`` (a model card). The directory loads with the plain
transformers class of the task's kind (``AutoModelForSequenceClassification.from_pretrained(DIR)`` for sequence
classification); glp is not needed to use it. It is written whole or not at all (`glp.atomic.write_dir_atomic`): a
killed export leaves no ``out`` that looks finished.

Without fine-tuning the task head is freshly initialised (untrained): the model card and the manifest say so.

``onnx=True`` also writes ``model.onnx`` (`glp.onnx`: dynamic batch and sequence axes, the tokenizer's inputs,
``logits``), checked against the PyTorch model's logits on two example sentences; ``quantize="int8"`` adds
``model.int8.onnx``, ONNX Runtime's dynamic int8 quantization of it. Sequence and token classifiers only.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from glp import __version__, models
from glp import onnx as glp_onnx
from glp.atomic import check_out_dir, write_dir_atomic
from glp.commands.model_card import model_card, train_desc
from glp.data import DataSpec
from glp.errors import ConfigError, GLPError
from glp.kinds import kind_of
from glp.layers import parameter_count
from glp.plan import Plan, sha256_file
from glp.results.manifest import SCHEMA, write_manifest
from glp.run.rundir import RunDir
from glp.run.store import trial_key
from glp.tasks import Task
from glp.trial.distill import check_kind, fit_teacher
from glp.trial.heal import merged
from glp.trial.hparams import HParams
from glp.trial.parents import Parents
from glp.trial.scoring import TrialSpec, final_context, final_data

MERGEKIT = "mergekit.yaml"
MODEL_CARD = "README.md"


@dataclass
class Exported:
    out: Path
    model: Any  # the pruned (and fine-tuned) model, on the CPU, in eval mode
    manifest: dict[str, Any]


@dataclass
class _FineTuned:
    """The final fine-tune: the model (LoRA adapters merged) and what the manifest records of it."""

    model: Any
    task: Task  # the task as the data gave it (its labels)
    data: dict[str, Any]  # the data's fingerprint
    metrics: dict[str, Any]
    training: dict[str, Any]


def export(
    run_dir: str | os.PathLike[str],
    n: int,
    out: str | os.PathLike[str],
    *,
    finetune: bool = False,
    strategy: str | None = None,
    seed: int = 42,
    hparams: dict[str, Any] | None = None,
    data_dir: str | None = None,
    train_file: str | None = None,
    dev_file: str | None = None,
    device: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int, float], None] | None = None,
    distill: Any = None,
    onnx: bool = False,
    quantize: str | None = None,
) -> Exported:
    """Write the plan's ``n``-layers-removed model to ``out``; see the module docstring."""
    out = Path(out)
    check_out_dir(out, overwrite)  # before the work: write_dir_atomic checks it again when it writes
    if distill is not None and not finetune:
        raise ConfigError("--distill distils the final fine-tune: it needs --finetune")
    plan_file = RunDir.plan_at(run_dir, strategy)
    plan = Plan.load(plan_file)
    removed = plan.layers_to_remove(int(n))
    source = models.from_record(plan.model)
    task = Task.from_dict(plan.task)
    _check_task(task, distill, onnx, quantize)  # before the fine-tune: a refusal costs nothing
    hp = HParams.final(plan.final_hparams(), hparams)

    tuned = None
    trained = plan.strategy.get("parents", {}).get(str(int(n))) if plan.strategy.get("init") == "parent" else None
    searched = RunDir.of(plan_file).path / trained if trained and not finetune else None
    if finetune:
        spec, _ = RunDir.plan_data(plan_file, plan)
        spec = spec.override(data_dir=data_dir, train_file=train_file, dev_file=dev_file)
        tuned = _finetune(spec, source, hp, removed, int(seed), device, progress, distill, RunDir.of(plan_file))
        task, model = tuned.task, tuned.model
    elif searched is not None:  # a warm-started search trained this n's model: ship it
        model = Parents.trained(models.build(source, task, removed, seed), searched)
    else:
        model = models.build(source, task, removed, seed)
    model = model.to("cpu").float().eval()

    with torch.random.fork_rng(devices=[]):  # a fresh full-size model only to count its parameters
        counts = models.count_parameters(source, task)
        params_before = counts[0] if counts else None
    kind = kind_of(task)

    def write(folder: Path) -> dict[str, Any]:  # into a hidden sibling of out, renamed to out when complete
        tok_note = _save_model(model, source, folder, kind.pre_split_words)
        mergekit = None
        if kind.mergekit:
            mergekit = MERGEKIT
            (folder / mergekit).write_text(mergekit_yaml(source.name, plan.num_layers, removed))
        manifest = {
            "schema": SCHEMA,
            "glp_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source": _source_record(source, plan, params_before),
            "removed_layers": list(removed),
            "kept_layers": plan.kept_layers(int(n)),
            "num_layers": plan.num_layers - len(removed),
            "parameters": parameter_count(model),
            "plan": _plan_record(plan, plan_file, int(n)),
            "task": task.to_dict(),
            "kind": _kind_record(kind),
            "mergekit": mergekit,
            "split_fingerprint": plan.data.get("split_fingerprint"),
            **_training_record(tuned, plan, hp, kind, distill, int(seed), searched),
            "notes": [tok_note] if tok_note else [],
            **({"onnx": _write_onnx(model, source, folder, quantize, kind.name)} if onnx else {}),
        }
        write_manifest(folder, manifest)
        (folder / MODEL_CARD).write_text(model_card(manifest))
        return manifest

    return Exported(out, model, write_dir_atomic(out, write, overwrite))


def _finetune(
    spec: DataSpec,
    source: Any,
    hp: HParams,
    removed: list[int],
    seed: int,
    device: str | None,
    progress: Callable[[int, int, float], None] | None,
    distill: Any,
    run: RunDir,
) -> _FineTuned:
    """The pruned model fine-tuned on the task's full train set and scored on dev (the paper's last step); with
    ``distill``, distilled from the unpruned model fine-tuned the same way (the teacher, cached in ``run``'s cache)."""
    data = final_data(spec, source, hp.max_seq_length)
    trial_spec = TrialSpec(source, data.trial_data, hp)
    if distill is not None:
        key = trial_key(final_context(source.name, source, data, hp), (), seed, 1.0)
        teacher, _ = fit_teacher(trial_spec, seed, device, run.cache_dir, key, weights=distill.init == "teacher")
        trial_spec = dataclasses.replace(trial_spec, distill=distill, teachers={seed: teacher})
    trial = trial_spec.trial(removed, seed, device, progress=progress)
    result = trial.advance(1.0)
    if not result.ok:
        raise GLPError(f"the final fine-tune failed ({result.reason}); try a lower --learning-rate or another --seed")
    training = {
        "steps": result.steps,
        "examples_seen": result.examples_seen,
        "wall_time": result.wall_time,
        "device": result.device,
        "precision": result.precision,
        "loss_first": result.loss_first,
        "loss_last": result.loss_last,
        "train_examples": len(trial.train_table),
        "dev_examples": len(trial.eval_table),
    }
    # LoRA adapters folded into the weights: a plain transformers model
    return _FineTuned(merged(trial.model), data.task, data.fingerprint, dict(result.metrics), training)


def _save_model(model: Any, source: Any, out: Path, pre_split_words: bool = False) -> str | None:
    """Weights and config (``save_pretrained``, without transformers' progress bar) and the tokenizer into ``out``
    (loaded as the model was trained: ``pre_split_words``, `glp.models.load_tokenizer`); a note when no tokenizer
    could be loaded."""
    from transformers.utils import logging as hf_logging  # transformers only when a model is written

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(str(out))
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    tokenizer = models.load_tokenizer(source, required=False, pre_split_words=pre_split_words)
    if tokenizer is None:
        return f"no tokenizer saved: none could be loaded from {source.name!r}"
    tokenizer.save_pretrained(str(out))
    return None


def _check_task(task: Task, distill: Any, onnx: bool, quantize: str | None) -> None:
    """Refuse what the task's kind cannot do (--distill), and an ONNX export that cannot be made: --quantize without
    --onnx, an unknown quantization, a decoder LLM, or the ONNX extra not installed."""
    if distill is not None:
        check_kind(task)
    if quantize is not None and quantize not in glp_onnx.QUANTIZATIONS:
        raise ConfigError(f"--quantize must be one of {', '.join(glp_onnx.QUANTIZATIONS)}, got {quantize!r}")
    if quantize is not None and not onnx:
        raise ConfigError("--quantize int8 quantizes the ONNX export: add --onnx")
    if onnx:
        glp_onnx.check_kind(kind_of(task).name)
        glp_onnx.require()


def _write_onnx(model: Any, source: Any, folder: Path, quantize: str | None, kind: str) -> dict[str, Any]:
    """``model.onnx`` (and ``model.int8.onnx``) into ``folder``, each checked against the PyTorch model on the
    example sentences; the manifest's ``onnx``."""
    inputs = glp_onnx.example_inputs(model, models.load_tokenizer(source, required=False))
    with torch.inference_mode():
        expected = model(**inputs).logits.numpy()
    files = {"fp32": glp_onnx.export_model(model, folder / glp_onnx.ONNX_FILE, inputs)}
    if quantize == "int8":
        files["int8"] = glp_onnx.quantize_int8(files["fp32"], folder / glp_onnx.INT8_FILE)
    diffs = {k: float(abs(glp_onnx.run(glp_onnx.session(f), inputs) - expected).max()) for k, f in files.items()}
    return {
        "file": glp_onnx.ONNX_FILE,
        "int8_file": glp_onnx.INT8_FILE if quantize == "int8" else None,
        "inputs": list(inputs),
        "outputs": [glp_onnx.OUTPUT],
        "dynamic_axes": {"0": "batch", "1": "sequence"},
        "exporter": "torch.onnx.export (dynamo)",
        "quantization": glp_onnx.INT8 if quantize == "int8" else None,
        "ort_class": glp_onnx.ORT_CLASSES.get(kind),
        "check": {"inputs": glp_onnx.EXAMPLE, "max_abs_diff": diffs},
        "versions": glp_onnx.versions(),
    }


def _source_record(source: Any, plan: Plan, parameters: int | None) -> dict[str, Any]:
    """The manifest's ``source``: the model the layers were removed from."""
    return {
        "model": source.name,
        "revision": plan.model.get("revision"),
        "model_type": plan.model.get("model_type"),
        "num_layers": plan.num_layers,
        "parameters": parameters,
    }


def _kind_record(kind: Any) -> dict[str, Any]:
    """The manifest's ``kind``: the task kind, and the transformers class and pipeline that load the model."""
    return {
        "name": kind.name,
        "auto_class": kind.auto_class,
        "pipeline_tag": kind.pipeline_tag,
        "fresh_head": kind.fresh_head,
    }


def _plan_record(plan: Plan, plan_file: Path, n: int) -> dict[str, Any]:
    """The manifest's ``plan``: which plan file (and its hash), which n, and how that n scored in the search."""
    step = next((s for s in plan.steps if s.n == n), None)
    return {
        "path": _relative(plan_file),
        "sha256": sha256_file(plan_file),
        "strategy": plan.strategy.get("name"),
        "complete": plan.complete,
        "n": n,
        "search_score": None if step is None else step.chosen_mean,
        "search_baseline": None if plan.baseline is None else plan.baseline.get("mean"),
    }


def _training_record(
    tuned: _FineTuned | None, plan: Plan, hp: HParams, kind: Any, distill: Any, seed: int, searched: Path | None
) -> dict[str, Any]:
    """The manifest's account of the training: data, whether and how it was fine-tuned, its head, its scores."""
    finetune = tuned is not None
    if finetune:
        head, role = f"fine-tuned on {train_desc(hp.max_train_samples)}", "final fine-tune"
    elif searched is not None:
        head = "trained by the warm-started search (--init parent) on its search-train split"
        role = "search (the plan's): the model this n's step trained, from its parent; no fine-tune after"
    else:
        head = "untrained (freshly initialised)" if kind.fresh_head else "pre-trained (the model's own), not healed"
        head += "" if kind.fresh_head else " after pruning"
        role = "search (the plan's); no fine-tune was run"
    return {
        "data": (tuned.data if tuned else None) or {"source": plan.data.get("source")},
        "finetuned": finetune,
        **({} if searched is None else {"search_model": _relative(searched)}),
        "distilled": distill.to_dict() if distill is not None and finetune else None,
        "head": head,
        "seed": seed,
        "hparams": hp.to_dict(),
        "hparams_role": role,
        "metrics": _by_split(tuned.metrics) if tuned else None,
        "training": tuned.training if tuned else None,
    }


def _relative(path: Path) -> str:
    """A path as the manifest names it: relative to the working directory when it lies below it."""
    rel = os.path.relpath(path.resolve())
    return str(path.resolve()) if rel.startswith("..") else rel


def _by_split(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"dev": {...}, "test": {...}}: the final fine-tune's metrics by the set they were measured on ("test:x")."""
    out: dict[str, dict[str, Any]] = {"dev": {}}
    for k, v in metrics.items():
        split, sep, name = k.partition(":")
        if sep:
            out.setdefault(split, {})[name] = v
        else:
            out["dev"][k] = v
    return out


def kept_ranges(num_layers: int, removed: list[int]) -> list[tuple[int, int]]:
    """The kept layers as half-open ranges [start, end) of consecutive layers."""
    gone = set(removed)
    ranges: list[tuple[int, int]] = []
    for i in range(num_layers):
        if i in gone:
            continue
        if ranges and ranges[-1][1] == i:
            ranges[-1] = (ranges[-1][0], i + 1)
        else:
            ranges.append((i, i + 1))
    return ranges


def mergekit_yaml(model: str, num_layers: int, removed: list[int]) -> str:
    """A mergekit passthrough config that slices the kept layers out of the original checkpoint (as PruneMe writes
    for Gromov et al.'s block removal): ``mergekit-yaml mergekit.yaml OUT``. It rebuilds the pruned model before
    healing; the healed weights are this directory's safetensors."""
    slices = [{"sources": [{"model": model, "layer_range": [a, b]}]} for a, b in kept_ranges(num_layers, removed)]
    head = (
        f"# glp: the {num_layers - len(removed)} kept layers of {model} (removed: {sorted(removed)}) as mergekit\n"
        "# passthrough slices (layer_range is [start, end)); run: mergekit-yaml mergekit.yaml OUT_DIR\n"
    )
    if model.startswith("pkg:") or model.lower().endswith(".gguf"):
        head += "# mergekit reads safetensors checkpoints: replace `model` with the original's hub name or directory\n"
    config = {"slices": slices, "merge_method": "passthrough", "dtype": "bfloat16"}
    return head + yaml.safe_dump(config, sort_keys=False)
