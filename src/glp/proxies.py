"""Training-free proxy scores: how removable is each layer, judged without fine-tuning it away?

Each scorer answers, for a model that already has ``removed`` layers taken out, a score per remaining layer;
lower means more removable. They run a few hundred examples of the search-eval split (``--proxy-examples``)
through the model in eval mode, so a whole step costs a handful of forward passes instead of d fine-tunes.

- ``bi``: block influence (ShortGPT, Men et al. 2024): 1 - cos(block input, block output), averaged over
  the non-padding tokens. A block that is an exact identity scores 0.
- ``angular``: angular distance (Gromov et al. 2024) between a block's input and output, arccos(cos) / pi,
  averaged over the non-padding tokens.
- ``loss``: the increase of the task loss when the block is skipped (SLEB, Song et al. 2024), measured on
  the model fine-tuned on search-train with nothing removed (trained once per run and kept in
  ``RUN_DIR/proxy_model/`` so a resumed run does not train it again).

``bi`` and ``angular`` read the pre-trained model (its task head plays no part); ``loss`` needs a trained
head and so one fine-tune.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from glp.errors import ConfigError
from glp.layers import drop_layers, find_layer_stack
from glp.train import TokenTable, collate, eval_batches, loss_sum, to_device


def _proxy_table(trial_data: Any, n: int, max_length: int, regression: bool) -> TokenTable:
    table = TokenTable.from_encoded(trial_data.eval, max_length, regression)
    return table.subsample(n, seed=0, stream=7)


def _batches(table: TokenTable, pad_id: int, device: torch.device, batch_size: int = 32):
    for idx in eval_batches(table.lengths, batch_size):
        yield to_device(collate(table, idx, pad_id), device)


def _pad_id(model: torch.nn.Module) -> int:
    pad = getattr(model.config, "pad_token_id", None)
    return int(pad) if pad is not None else 0


@torch.inference_mode()
def block_similarity(
    model: torch.nn.Module, table: TokenTable, kind: str, device: torch.device | None = None
) -> list[float]:
    """Per block of ``model``'s stack: 1 - cos (``bi``) or arccos(cos)/pi (``angular``) of input vs output."""
    device = device or torch.device("cpu")
    stack = find_layer_stack(model)
    sums = [0.0] * len(stack.layers)
    count = 0
    mask_holder: dict[str, torch.Tensor] = {}

    def hook(i: int):
        def fn(module, args, kwargs, output):
            x = args[0] if args else kwargs.get("hidden_states")
            y = output[0] if isinstance(output, tuple) else output
            cos = torch.nn.functional.cosine_similarity(x.double(), y.double(), dim=-1).clamp(
                -1.0, 1.0
            )  # float64: arccos is steep at 1
            val = (1.0 - cos) if kind == "bi" else torch.arccos(cos) / math.pi
            m = mask_holder["mask"].to(val.dtype)
            sums[i] += float((val * m).sum())

        return fn

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(stack.layers)]
    model.eval().to(device)
    try:
        for batch in _batches(table, _pad_id(model), device):
            batch.pop("labels")
            mask_holder["mask"] = batch["attention_mask"]
            count += int(batch["attention_mask"].sum())
            model(**batch)
    finally:
        for h in handles:
            h.remove()
    return [s / max(count, 1) for s in sums]


@torch.inference_mode()
def task_loss(model: torch.nn.Module, table: TokenTable, regression: bool, device: torch.device | None = None) -> float:
    device = device or torch.device("cpu")
    model.eval().to(device)
    total = 0.0
    for batch in _batches(table, _pad_id(model), device):
        labels = batch.pop("labels")
        logits = model(**batch).logits
        total += float(loss_sum(logits.float(), labels, regression))
    return total / max(len(table), 1)


class SimilarityProxy:
    """``bi`` / ``angular`` on the pre-trained model with ``removed`` layers taken out."""

    def __init__(self, kind: str, model: torch.nn.Module, table: TokenTable, device: torch.device | None = None):
        self.kind, self.model, self.table, self.device = kind, model, table, device

    def __call__(self, removed: Sequence[int], layers: Sequence[int]) -> dict[int, float]:
        model = drop_layers(self.model, list(removed), inplace=False) if removed else self.model
        scores = block_similarity(model, self.table, self.kind, self.device)
        kept = [i for i in range(len(scores) + len(removed)) if i not in set(removed)]
        by_layer = dict(zip(kept, scores, strict=True))
        return {i: by_layer[i] for i in layers}


class LossProxy:
    """Task-loss increase when each layer is skipped, on a fine-tuned model with ``removed`` taken out."""

    def __init__(self, model: torch.nn.Module, table: TokenTable, regression: bool, device=None):
        self.model, self.table, self.regression, self.device = model, table, regression, device

    def __call__(self, removed: Sequence[int], layers: Sequence[int]) -> dict[int, float]:
        base = drop_layers(self.model, list(removed), inplace=False) if removed else self.model
        ref = task_loss(base, self.table, self.regression, self.device)
        kept = [i for i in range(len(find_layer_stack(self.model).layers)) if i not in set(removed)]
        out = {}
        for i in layers:
            skipped = drop_layers(base, [kept.index(i)], inplace=False)
            out[i] = task_loss(skipped, self.table, self.regression, self.device) - ref
        return out


def make_proxy(kind: str, config: Any, session: Any, run_trials: Any = None, run_dir: Path | None = None):
    """Build the proxy scorer ``kind`` for a prune session (see glp.pruning)."""
    from glp.scoring import Trial, load_model

    task = session.task
    device = torch.device(config.device) if config.device else None
    table = _proxy_table(session.trial_data, config.proxy_examples, config.hparams.max_seq_length, task.is_regression)
    if kind in ("bi", "angular"):
        return SimilarityProxy(kind, load_model(config.model, task, seed=config.seed), table, device)
    if kind == "loss":
        saved = Path(run_dir) / "proxy_model" if run_dir is not None else None
        if saved is not None and (saved / "config.json").exists():
            from transformers import AutoModelForSequenceClassification

            model = AutoModelForSequenceClassification.from_pretrained(saved)
        else:
            trial = Trial(config.model, (), session.trial_data, config.hparams, config.seed, device=config.device)
            result = trial.advance(1.0)
            if not result.ok:
                raise ConfigError(f"the loss proxy's fine-tune of the full model failed: {result.reason}")
            model = trial.model
            if saved is not None:
                model.save_pretrained(saved)
        return LossProxy(model.cpu() if device is None else model, table, task.is_regression, device)
    raise ConfigError(f"unknown proxy {kind!r}; known: bi, angular, loss")


def rank_layers(scores: dict[int, float]) -> list[int]:
    """Most removable first (lowest score; ties to the higher index, as in glp.search)."""
    return sorted(scores, key=lambda i: (scores[i], -i))
