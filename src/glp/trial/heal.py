"""Healing: what a pruned candidate is trained with before it is scored (``--heal none|full|lora``).

- ``none``: the pruned model is scored as it is (no step is trained; `glp.trial.loop.TrainLoop` sees 0 steps). Greedy
  search with ``--heal none`` is SLEB (Song et al. 2024).
- ``full``: every weight is trained (the paper's fine-tune).
- ``lora``: low-rank adapters (Hu et al. 2022) through PEFT, on every linear layer of the blocks by default
  (PEFT's ``all-linear``, which leaves the output head alone and works for Llama, Mistral, Qwen2/3, Gemma, Phi and
  GPT-2 alike), rank ``--lora-rank``, scaling ``--lora-alpha``, no dropout. `merged` folds the adapters into the
  weights, so an exported model is a plain ``save_pretrained`` directory that loads without PEFT.

The adapters' initialisation is a function of the trial's seed (as the task head's is). They are float32 whatever
the weights' precision (``--torch-dtype bfloat16``, a 4-bit base of ``--quantize 4bit``): PEFT's
``autocast_adapter_dtype``, so AdamW and its state work in float32 while the frozen base stays as it was loaded.

With ``none`` and ``lora`` a candidate is a copy of the modules over the one frozen base of the process
(`glp.layers.shared_copy`): PEFT wraps the candidate's own copies of the linear layers, so the base's modules are
never touched, and `merged` / `writable` copy the weights before anything would write into them.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from glp.errors import ConfigError
from glp.layers import SHARES_TENSORS, shares_tensors

#: PEFT task types by the kind's model class (the adapters do not depend on it; PEFT's wrapper class does)
_TASK_TYPES = {
    "AutoModelForCausalLM": "CAUSAL_LM",
    "AutoModelForSequenceClassification": "SEQ_CLS",
    "AutoModelForTokenClassification": "TOKEN_CLS",
}


def _peft():
    try:
        import peft  # deferred: peft is slow to import; only LoRA healing needs it
    except ImportError:  # pragma: no cover - peft is a dependency; a broken install
        raise ConfigError("--heal lora needs PEFT: pip install peft") from None
    return peft


def prepare(model: Any, hparams: Any, seed: int, kind: Any = None) -> Any:
    """The model a trial trains: ``model`` itself (``none``, ``full``) or wrapped with LoRA adapters (``lora``)."""
    if hparams.heal != "lora":
        return model

    peft = _peft()
    targets = list(hparams.lora_targets) if hparams.lora_targets else "all-linear"
    task_type = _TASK_TYPES.get(getattr(kind, "auto_class", ""), None)
    config = peft.LoraConfig(
        r=int(hparams.lora_rank),
        lora_alpha=float(hparams.lora_alpha),
        lora_dropout=0.0,
        target_modules=targets,
        task_type=task_type,
        # a classification head is new: it is trained in full next to the adapters (PEFT's modules_to_save)
        modules_to_save=_new_head(model, kind),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) + 7919)
        try:
            wrapped = peft.get_peft_model(model, config, autocast_adapter_dtype=True)
        except ValueError as exc:  # no such target module
            raise ConfigError(f"--lora-targets {','.join(hparams.lora_targets or ['all-linear'])}: {exc}") from exc
    return wrapped


def _new_head(model: Any, kind: Any) -> list[str] | None:
    if getattr(kind, "auto_class", "") == "AutoModelForCausalLM":
        return None
    names = [n for n in ("classifier", "score") if hasattr(model, n)]
    return names or None


def is_adapted(model: Any) -> bool:
    try:
        from peft import PeftModel  # deferred: peft is slow to import; only LoRA healing needs it
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)


def merged(model: Any) -> Any:
    """The plain transformers model, the caller's to change: LoRA adapters folded into the weights
    (``merge_and_unload``); else ``model``. A candidate over the shared frozen base is copied first (weights and all),
    so the base is never written to."""
    shared = shares_tensors(model.get_base_model() if is_adapted(model) else model)
    if shared:
        model = copy.deepcopy(model)  # (its tensors too: the copy holds weights of its own)
    out = model.merge_and_unload() if is_adapted(model) else model
    if shared:
        setattr(out, SHARES_TENSORS, False)
    return out


def writable(model: Any) -> Any:
    """``model`` where something may write into its weights (lm-evaluation-harness merges the adapters in and out):
    itself when it owns them, else a merged copy (`merged`)."""
    return merged(model) if shares_tensors(model.get_base_model() if is_adapted(model) else model) else model


def enable_checkpointing(model: Any) -> None:
    """Gradient checkpointing (``--gradient-checkpointing``): recompute each block's activations in the backward
    pass. With adapters, the inputs need gradients for the recomputed blocks to pass them on."""
    base = model.get_base_model() if is_adapted(model) else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise ConfigError(f"{type(base).__name__} does not support --gradient-checkpointing")
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers v5's name; the old one warns
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # pragma: no cover - transformers before v5
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if is_adapted(model):
        base.enable_input_require_grads()
