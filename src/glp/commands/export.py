"""`glp export`: from a plan to a model you can ship.

``export(run_dir, n, out)`` looks the ``n`` layers up in the plan (O(1)), drops them from the pre-trained model
the plan was searched on, optionally fine-tunes the pruned model on the task's full train set and scores it on
dev (the paper's last step), and writes a standard ``save_pretrained`` directory: safetensors weights, config,
tokenizer, ``pruning.json`` (how it was made) and ``README.md`` (a model card). The directory loads with the plain
transformers class of the task's kind (``AutoModelForSequenceClassification.from_pretrained(DIR)`` for sequence
classification); glp is not needed to use it.

Without fine-tuning the task head is freshly initialised (untrained): the model card and the manifest say so.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glp.errors import ConfigError, GLPError
from glp.plan import Plan

MANIFEST = "pruning.json"
SCHEMA = "glp.export/1"


@dataclass
class Exported:
    out: Path
    model: Any  # the pruned (and fine-tuned) model, on the CPU, in eval mode
    manifest: dict[str, Any]


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"output directory {out} exists and is not empty; pass --overwrite to write into it")


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
) -> Exported:
    """Write the plan's ``n``-layers-removed model to ``out``; see the module docstring."""
    import torch

    from glp import __version__, models
    from glp.data import DataSpec
    from glp.kinds import kind_of
    from glp.plan import sha256_file
    from glp.run.rundir import RunDir
    from glp.tasks import Task
    from glp.trial.hparams import HParams
    from glp.trial.scoring import TrialSpec, final_context, final_data

    out = Path(out)
    _check_out(out, overwrite)
    if distill is not None and not finetune:
        raise ConfigError("--distill distils the final fine-tune: it needs --finetune")
    from glp.trial.heal import merged

    plan_file = Path(run_dir) if Path(run_dir).is_file() else RunDir(run_dir).plan_file(strategy)
    plan = Plan.load(plan_file)
    removed = plan.layers_to_remove(int(n))
    source = models.from_record(plan.model)
    task = Task.from_dict(plan.task)
    if distill is not None:
        from glp.trial.distill import check_kind

        check_kind(task)
    hp = HParams.final(plan.hparams, hparams)

    metrics: dict[str, Any] | None = None
    data_fp: dict[str, Any] | None = None
    train_info: dict[str, Any] | None = None
    if finetune:
        spec = RunDir.of(plan_file).data_spec(str(plan.strategy.get("name"))) or DataSpec(task=task.name)
        spec = spec.override(data_dir=data_dir, train_file=train_file, dev_file=dev_file)
        data = final_data(spec, source, hp.max_seq_length)
        task, data_fp = data.task, data.fingerprint
        spec = TrialSpec(source, data.trial_data, hp)
        if distill is not None:  # the teacher: the unpruned model fine-tuned the same way (cached in RUN/cache)
            import dataclasses

            from glp.run.store import trial_key
            from glp.trial.distill import fit_teacher

            key = trial_key(final_context(source.name, source, data, hp), (), int(seed), 1.0)
            teacher, _ = fit_teacher(
                spec, int(seed), device, RunDir.of(plan_file).cache_dir, key, weights=distill.init == "teacher"
            )
            spec = dataclasses.replace(spec, distill=distill, teachers={int(seed): teacher})
        trial = spec.trial(removed, seed, device, progress=progress)
        result = trial.advance(1.0)
        if not result.ok:
            raise GLPError(
                f"the final fine-tune failed ({result.reason}); try a lower --learning-rate or another --seed"
            )
        metrics = dict(result.metrics)
        train_info = {
            "steps": result.steps,
            "examples_seen": result.examples_seen,
            "wall_time": result.wall_time,
            "device": result.device,
            "loss_first": result.loss_first,
            "loss_last": result.loss_last,
            "train_examples": len(trial.train_table),
            "dev_examples": len(trial.eval_table),
        }
        model = merged(trial.model)  # LoRA adapters folded into the weights: a plain transformers model
    else:
        model = models.build(source, task, removed, seed)
    model = model.to("cpu").float().eval()

    with torch.random.fork_rng(devices=[]):  # a fresh full-size model only to count its parameters
        counts = models.count_parameters(source, task)
        params_before = counts[0] if counts else None
    params_after = sum(p.numel() for p in model.parameters())
    out.mkdir(parents=True, exist_ok=True)
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(str(out))
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    tok_note = None
    tokenizer = models.load_tokenizer(source, required=False)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    else:
        tok_note = f"no tokenizer saved: none could be loaded from {source.name!r}"
    kind = kind_of(task)
    mergekit = None
    if kind.mergekit:
        mergekit = "mergekit.yaml"
        (out / mergekit).write_text(mergekit_yaml(source.name, plan.num_layers, removed))

    step = next((s for s in plan.steps if s.n == int(n)), None)
    manifest = {
        "schema": SCHEMA,
        "glp_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {
            "model": source.name,
            "revision": plan.model.get("revision"),
            "model_type": plan.model.get("model_type"),
            "num_layers": plan.num_layers,
            "parameters": params_before,
        },
        "removed_layers": list(removed),
        "kept_layers": plan.kept_layers(int(n)),
        "num_layers": plan.num_layers - len(removed),
        "parameters": params_after,
        "plan": {
            "path": _relative(plan_file),
            "sha256": sha256_file(plan_file),
            "strategy": plan.strategy.get("name"),
            "complete": plan.complete,
            "n": int(n),
            "search_score": None if step is None else step.chosen_mean,
            "search_baseline": None if plan.baseline is None else plan.baseline.get("mean"),
        },
        "task": task.to_dict(),
        "kind": {
            "name": kind.name,
            "auto_class": kind.auto_class,
            "pipeline_tag": kind.pipeline_tag,
            "fresh_head": kind.fresh_head,
        },
        "mergekit": mergekit,
        "split_fingerprint": plan.data.get("split_fingerprint"),
        "data": data_fp or {"source": plan.data.get("source")},
        "finetuned": bool(finetune),
        "distilled": distill.to_dict() if distill is not None and finetune else None,
        "head": f"fine-tuned on {_train_desc(hp.max_train_samples)}"
        if finetune
        else "untrained (freshly initialised)"
        if kind.fresh_head
        else "pre-trained (the model's own), not healed after pruning",
        "seed": int(seed),
        "hparams": hp.to_dict(),
        "hparams_role": "final fine-tune" if finetune else "search (the plan's); no fine-tune was run",
        "metrics": _by_split(metrics) if metrics is not None else None,
        "training": train_info,
        "notes": [tok_note] if tok_note else [],
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    (out / "README.md").write_text(model_card(manifest))
    return Exported(out, model, manifest)


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


def _train_desc(max_train_samples: int | None) -> str:
    if max_train_samples:
        return f"a seeded subsample of {max_train_samples} examples of the train set (--max-train-samples)"
    return "the full train set"


def _fmt_metric(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def model_card(m: dict[str, Any]) -> str:
    """README.md of an exported model: what was removed, how it scored, how it was made."""
    src = m["source"]
    task = m["task"]
    removed = ", ".join(map(str, m["removed_layers"])) or "none"
    local = os.path.exists(str(src["model"])) or str(src["model"]).startswith("pkg:")
    kind = m.get("kind") or {"auto_class": "AutoModelForSequenceClassification", "pipeline_tag": "text-classification"}
    front = [
        "---",
        "library_name: transformers",
        f"pipeline_tag: {kind['pipeline_tag']}",
        "tags:",
        "- glp",
        "- layer-pruning",
    ]
    if not local:
        front.append(f"base_model: {src['model']}")
    front.append("---")
    lines = front + [
        "",
        f"# {src.get('model_type') or 'model'} pruned to {m['num_layers']} of {src['num_layers']} layers "
        f"for {str(task['name']).upper()}",
        "",
        f"Made with glp {m['glp_version']} (greedy layer pruning) from `{src['model']}`"
        + (f" (weights {src['revision']})" if src.get("revision") else "")
        + ".",
        "",
    ]
    fresh = kind.get("fresh_head", True)
    if not m["finetuned"]:
        lines += [
            "> **The task head is untrained** (freshly initialised): this export was made without "
            "`--finetune`. Fine-tune it on your task before use, or re-export with `glp export ... --finetune`."
            if fresh
            else "> **Not healed**: the layers were dropped from the pre-trained model and nothing was trained "
            "after. Re-export with `glp export ... --finetune` to heal it on your data.",
            "",
        ]
    lines += [
        "## What was removed",
        "",
        f"- Removed layers (0-based, in the order the search chose them): **{removed}**",
        f"- Kept layers: {', '.join(map(str, m['kept_layers']))}",
        f"- Layers: {src['num_layers']} → {m['num_layers']}",
    ]
    if src.get("parameters"):
        lines.append(
            f"- Parameters: {src['parameters']:,} → {m['parameters']:,} "
            f"({100 * m['parameters'] / src['parameters']:.1f}%)"
        )
    else:
        lines.append(f"- Parameters: {m['parameters']:,}")
    plan = m["plan"]
    lines += [
        "",
        "## How it scored",
        "",
    ]
    if m.get("metrics") and m["metrics"].get("dev"):
        dev = m["metrics"]["dev"]
        scored = (m.get("training") or {}).get("dev_examples")
        rows = (m.get("data") or {}).get("dev_rows")
        size = f"{scored} of {rows} examples" if scored and rows and scored < rows else f"{scored or rows} examples"
        lines.append(
            f"Dev set of {str(task['name']).upper()} ({size}) after fine-tuning on "
            f"{_train_desc(m['hparams'].get('max_train_samples'))} (seed {m['seed']}):"
        )
        lines.append("")
        lines += ["| metric | value |", "|---|---:|"] + [f"| {k} | {_fmt_metric(v)} |" for k, v in dev.items()]
        for split, values in m["metrics"].items():
            if split != "dev":
                rows_n = (m.get("data") or {}).get(f"{split}_rows")
                lines += ["", f"{split.capitalize()} set ({rows_n} examples), the same model:", ""]
                lines += ["| metric | value |", "|---|---:|"]
                lines += [f"| {k} | {_fmt_metric(v)} |" for k, v in values.items()]
    else:
        lines.append(
            "Not evaluated: no fine-tune was run" + (" (the head is untrained)." if fresh else " (not healed).")
        )
    if plan.get("search_score") is not None:
        base = plan.get("search_baseline")
        lines += [
            "",
            f"During the search ({plan['strategy']}), this removal set scored {task['metric']} = "
            f"{plan['search_score']:.4f} on the search split"
            + (f" (unpruned model: {base:.4f})" if base is not None else "")
            + ".",
        ]
    hp = m["hparams"]
    lines += [
        "",
        "## How it was made",
        "",
        f"1. `glp prune` searched the layers to remove ({plan['strategy']}) on a held-out part of the train set "
        f"(split {m.get('split_fingerprint')}); plan `{plan['path']}` (sha256 `{plan['sha256'][:16]}…`).",
        f"2. `glp export --remove {plan['n']}` dropped layers {removed} from the pre-trained model"
        + (
            f" and fine-tuned it on {_train_desc(hp.get('max_train_samples'))}"
            + (
                f", distilled from the unpruned model fine-tuned the same way (alpha {m['distilled']['alpha']}, "
                f"temperature {m['distilled']['temperature']}"
                + (
                    ", starting from the teacher's own weights"
                    if m["distilled"].get("init") == "teacher"
                    else ", starting from the pruned pre-trained model"
                )
                + ")"
                if m.get("distilled")
                else ""
            )
            + (f" ({hp['heal_steps']} steps" if hp.get("heal_steps") else f" ({hp['num_train_epochs']} epochs")
            + (f", LoRA rank {hp.get('lora_rank', 8)} merged into the weights" if hp.get("heal") == "lora" else "")
            + f", learning rate {hp['learning_rate']}, batch {hp['per_device_train_batch_size']}, max length "
            f"{hp['max_seq_length']})."
            if m["finetuned"]
            else "; the task head was initialised and not trained."
            if fresh
            else "; nothing was trained after."
        ),
        "",
        "Load it with plain transformers:",
        "",
        "```python",
        f"from transformers import {kind['auto_class']}, AutoTokenizer",
        f'model = {kind["auto_class"]}.from_pretrained("PATH")',
        'tokenizer = AutoTokenizer.from_pretrained("PATH")',
        "```",
        "",
        f"Everything about how it was made is in `{MANIFEST}`."
        + (
            f" `{m['mergekit']}` names the kept layers as mergekit passthrough slices of the original checkpoint "
            "(the unhealed pruned model)."
            if m.get("mergekit")
            else ""
        ),
        "",
    ]
    return "\n".join(lines)


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
    import yaml

    slices = [{"sources": [{"model": model, "layer_range": [a, b]}]} for a, b in kept_ranges(num_layers, removed)]
    head = (
        f"# glp: the {num_layers - len(removed)} kept layers of {model} (removed: {sorted(removed)}) as mergekit\n"
        "# passthrough slices (layer_range is [start, end)); run: mergekit-yaml mergekit.yaml OUT_DIR\n"
    )
    if model.startswith("pkg:") or model.lower().endswith(".gguf"):
        head += "# mergekit reads safetensors checkpoints: replace `model` with the original's hub name or directory\n"
    config = {"slices": slices, "merge_method": "passthrough", "dtype": "bfloat16"}
    return head + yaml.safe_dump(config, sort_keys=False)
