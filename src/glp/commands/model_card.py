"""The model card (``README.md``) of a model ``glp export`` writes: what was removed, how it scored, how it was made.

It is a function of the export's manifest (``pruning.json``) alone, section by section.
"""

from __future__ import annotations

import os
from typing import Any

from glp.results.manifest import MANIFEST
from glp.tasks import task_title

# A manifest written before the kind was recorded is of a sequence classifier.
_DEFAULT_KIND = {"auto_class": "AutoModelForSequenceClassification", "pipeline_tag": "text-classification"}


def model_card(m: dict[str, Any]) -> str:
    """README.md of an exported model: what was removed, how it scored, how it was made."""
    kind = m.get("kind") or _DEFAULT_KIND
    fresh = kind.get("fresh_head", True)
    lines = _front_matter(m, kind) + _title(m)
    if m.get("search_model"):
        lines += [_search_model_note(m), ""]
    elif not m["finetuned"]:
        lines += [_not_trained_warning(fresh), ""]
    lines += _removed_section(m) + _scores_section(m, fresh) + _made_section(m, fresh) + _usage_section(m, kind)
    if m.get("onnx"):
        lines += _onnx_section(m["onnx"])
    return "\n".join(lines)


def train_desc(max_train_samples: int | None) -> str:
    """What the final fine-tune trained on, in words."""
    if max_train_samples:
        return f"a seeded subsample of {max_train_samples} examples of the train set (--max-train-samples)"
    return "the full train set"


def _removed(m: dict[str, Any]) -> str:
    return ", ".join(map(str, m["removed_layers"])) or "none"


def _fmt_metric(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _metric_table(values: dict[str, Any]) -> list[str]:
    return ["| metric | value |", "|---|---:|"] + [f"| {k} | {_fmt_metric(v)} |" for k, v in values.items()]


def _front_matter(m: dict[str, Any], kind: dict[str, Any]) -> list[str]:
    """The Hugging Face metadata block; ``base_model`` only for a model on the hub (not a local path)."""
    src = m["source"]
    local = os.path.exists(str(src["model"])) or str(src["model"]).startswith("pkg:")
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
    return front + ["---"]


def _title(m: dict[str, Any]) -> list[str]:
    src = m["source"]
    return [
        "",
        f"# {src.get('model_type') or 'model'} pruned to {m['num_layers']} of {src['num_layers']} layers "
        f"for {task_title(m['task']['name'])}",
        "",
        f"Made with glp {m['glp_version']} (greedy layer pruning) from `{src['model']}`"
        + (f" (weights {src['revision']})" if src.get("revision") else "")
        + ".",
        "",
    ]


def _not_trained_warning(fresh: bool) -> str:
    if fresh:
        return (
            "> **The task head is untrained** (freshly initialised): this export was made without "
            "`--finetune`. Fine-tune it on your task before use, or re-export with `glp export ... --finetune`."
        )
    return (
        "> **Not healed**: the layers were dropped from the pre-trained model and nothing was trained "
        "after. Re-export with `glp export ... --finetune` to heal it on your data."
    )


def _removed_section(m: dict[str, Any]) -> list[str]:
    src = m["source"]
    lines = [
        "## What was removed",
        "",
        f"- Removed layers (0-based, in the order the search chose them): **{_removed(m)}**",
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
    return lines


def _scores_section(m: dict[str, Any], fresh: bool) -> list[str]:
    """The final fine-tune's scores (dev, then any other set), and the removal set's score during the search."""
    task = m["task"]
    lines = ["", "## How it scored", ""]
    if m.get("metrics") and m["metrics"].get("dev"):
        scored = (m.get("training") or {}).get("dev_examples")
        rows = (m.get("data") or {}).get("dev_rows")
        size = f"{scored} of {rows} examples" if scored and rows and scored < rows else f"{scored or rows} examples"
        lines.append(
            f"Dev set of {task_title(task['name'])} ({size}) after fine-tuning on "
            f"{train_desc(m['hparams'].get('max_train_samples'))} (seed {m['seed']}):"
        )
        lines.append("")
        lines += _metric_table(m["metrics"]["dev"])
        for split, values in m["metrics"].items():
            if split != "dev":
                rows_n = (m.get("data") or {}).get(f"{split}_rows")
                lines += ["", f"{split.capitalize()} set ({rows_n} examples), the same model:", ""]
                lines += _metric_table(values)
    elif m.get("search_model"):
        lines.append("Not evaluated on dev: the warm-started search trained and scored it on parts of the train set.")
    else:
        lines.append(
            "Not evaluated: no fine-tune was run" + (" (the head is untrained)." if fresh else " (not healed).")
        )
    plan = m["plan"]
    if plan.get("search_score") is not None:
        base = plan.get("search_baseline")
        lines += [
            "",
            f"During the search ({plan['strategy']}), this removal set scored {task['metric']} = "
            f"{plan['search_score']:.4f} on the search split"
            + (f" (unpruned model: {base:.4f})" if base is not None else "")
            + ".",
        ]
    return lines


def _made_section(m: dict[str, Any], fresh: bool) -> list[str]:
    """The two commands that made the model: the search, then the export (and its fine-tune)."""
    plan = m["plan"]
    return [
        "",
        "## How it was made",
        "",
        f"1. `glp prune` searched the layers to remove ({plan['strategy']}) on a held-out part of the train set "
        f"(split {m.get('split_fingerprint')}); plan `{plan['path']}` (sha256 `{plan['sha256'][:16]}…`).",
        f"2. `glp export --remove {plan['n']}` dropped layers {_removed(m)} from the pre-trained model"
        + _after_dropping(m, fresh),
    ]


def _search_model_note(m: dict[str, Any]) -> str:
    """A warm-started search's own model: trained on the search split, scored on search-eval only."""
    steps = (m.get("hparams") or {}).get("heal_steps")
    return (
        f"> This is the model the warm-started search (`glp prune --init parent`) trained for this n: the previous "
        f"step's trained winner with one more layer removed, trained {steps} steps on the search's training split. "
        "Its score above is the search's (held-out part of the train set), not a dev score: `glp export --finetune` "
        "or `glp evaluate` give the paper's protocol."
    )


def _after_dropping(m: dict[str, Any], fresh: bool) -> str:
    """What the export did after dropping the layers: the fine-tune and its settings, or nothing."""
    if m.get("search_model"):
        return "; the weights are those the warm-started search trained for this n (`" + m["search_model"] + "`)."
    if not m["finetuned"]:
        return "; the task head was initialised and not trained." if fresh else "; nothing was trained after."
    hp = m["hparams"]
    return (
        f" and fine-tuned it on {train_desc(hp.get('max_train_samples'))}"
        + _distilled(m)
        + (f" ({hp['heal_steps']} steps" if hp.get("heal_steps") else f" ({hp['num_train_epochs']} epochs")
        + (f", LoRA rank {hp.get('lora_rank', 8)} merged into the weights" if hp.get("heal") == "lora" else "")
        + f", learning rate {hp['learning_rate']}, batch {hp['per_device_train_batch_size']}, max length "
        f"{hp['max_seq_length']})."
    )


def _distilled(m: dict[str, Any]) -> str:
    d = m.get("distilled")
    if not d:
        return ""
    init = (
        ", starting from the teacher's own weights"
        if d.get("init") == "teacher"
        else ", starting from the pruned pre-trained model"
    )
    return (
        f", distilled from the unpruned model fine-tuned the same way (alpha {d['alpha']}, "
        f"temperature {d['temperature']}" + init + ")"
    )


def _usage_section(m: dict[str, Any], kind: dict[str, Any]) -> list[str]:
    """How to load it with plain transformers, and where the rest is written down."""
    return [
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


def _onnx_section(o: dict[str, Any]) -> list[str]:
    """How to run the ONNX export with onnxruntime (and optimum), and what the int8 file is."""
    names = ", ".join(f'"{n}"' for n in o["inputs"])
    diffs = o.get("check", {}).get("max_abs_diff", {})
    lines = [
        "## ONNX Runtime",
        "",
        f"`{o['file']}` is this model in ONNX ({o['exporter']}; batch and sequence axes dynamic; inputs "
        f"{', '.join(f'`{n}`' for n in o['inputs'])}; output `logits`). Its logits matched PyTorch's on two example "
        f"sentences within {diffs.get('fp32', 0.0):.1e} (max abs).",
    ]
    if o.get("int8_file"):
        q = o["quantization"]
        lines += [
            "",
            f"`{o['int8_file']}` is its int8 version: ONNX Runtime dynamic quantization (`{q['method']}`; weights "
            f"{q['weights']}, activations {q['activations']}; {q['ops']}). Its logits differed from "
            f"float32 by up to {diffs.get('int8', 0.0):.2f} on the example sentences: where the model is unsure, "
            "int8 can change its prediction, so check it on your dev set before you ship it.",
        ]
    lines += [
        "",
        "```python",
        "import onnxruntime as ort",
        "from transformers import AutoTokenizer",
        'tokenizer = AutoTokenizer.from_pretrained("PATH")',
        f'session = ort.InferenceSession("PATH/{o.get("int8_file") or o["file"]}", providers=["CPUExecutionProvider"])',
        'enc = tokenizer(["a sentence"], return_tensors="np")',
        f'logits = session.run(["logits"], {{k: enc[k] for k in [{names}]}})[0]',
        "```",
    ]
    if o.get("ort_class"):
        lines += [
            "",
            "With optimum's ONNX Runtime classes (`pip install optimum-onnx`, where it supports your transformers):",
            "",
            "```python",
            f"from optimum.onnxruntime import {o['ort_class']}",
            f'model = {o["ort_class"]}.from_pretrained("PATH", file_name="{o.get("int8_file") or o["file"]}")',
            "```",
        ]
    return lines + [""]
