"""Scoring without healing, sharing the hidden states below each removed layer (``--heal none``).

A greedy step with ``R`` removed tries ``R ∪ {l}`` for every remaining layer ``l``. Unhealed, the candidates agree
with the model ``R`` up to the input of layer ``l``: so each evaluation batch goes through the model ``R`` once,
keeping the input of every layer, and candidate ``l`` only runs the layers above ``l`` on that kept input. A step
over ``L`` layers costs about ``L²/2`` layer forwards (plus one pass) instead of ``L·(L−1)``, and the scores are those
of scoring each candidate from scratch (the same operations on the same inputs; `tests/kinds/test_causal_lm.py`).

`score_unhealed` is what the in-process executor runs for a batch of ``--heal none`` requests. Requests that do not
share a prefix that way (the fixed patterns' sets of different sizes, say) are scored one by one, from scratch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from glp.layers import find_layer_stack, no_cache
from glp.trial.loop import TrainingFailed, eval_batches, model_inputs, to_device
from glp.trial.scoring import _all_finite, _device_name
from glp.trial.types import TrialResult


class _Replay(nn.Module):
    """Stands for the first block above a removed one: runs ``block`` (None: nothing) on the kept hidden states
    instead of what the stack hands it (the embeddings, as no block runs before it)."""

    def __init__(self, block: nn.Module | None, attention_type: Any = None):
        super().__init__()
        self.block = block
        self.hidden: torch.Tensor | None = None
        if attention_type is not None:  # models with per-layer attention kinds (sliding windows) read it
            self.attention_type = attention_type

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self.block is None:
            return self.hidden
        return self.block(self.hidden, *args, **kwargs)


def _shared_base(sets: Sequence[tuple[int, ...]]) -> frozenset[int] | None:
    """The set ``R`` that every set is, or extends by one layer; None when there is none."""
    common = frozenset.intersection(*(frozenset(s) for s in sets))
    if all(len(frozenset(s) - common) <= 1 for s in sets) and len(sets) > 1:
        return common
    return None


def score_unhealed(spec: Any, requests: Sequence[Any], device: str | torch.device | None = None) -> list[dict]:
    """TrialResult dicts of unhealed requests (``removed``, ``seed``, ``budget``), in their order."""
    out: list[dict | None] = [None] * len(requests)
    by_seed: dict[int, list[int]] = {}
    for i, r in enumerate(requests):
        by_seed.setdefault(int(r.seed), []).append(i)
    for seed, idx in by_seed.items():
        sets = [tuple(requests[i].removed) for i in idx]
        base = _shared_base(sets)
        if base is None:
            for i in idx:
                r = requests[i]
                out[i] = spec.trial(r.removed, r.seed, device).advance(r.budget).to_dict()
            continue
        for i, res in zip(idx, _score_group(spec, [requests[i] for i in idx], base, seed, device), strict=True):
            out[i] = res
    return out  # type: ignore[return-value]


def _score_group(spec: Any, requests: Sequence[Any], base: frozenset[int], seed: int, device: Any) -> list[dict]:
    t0 = time.perf_counter()
    trial = spec.trial(sorted(base, reverse=True), seed, device)  # the model R, its scored rows, its precision
    dev, kind, table = trial.device, trial.kind, trial.eval_table
    model = trial.model.eval()
    stack = find_layer_stack(model)
    parent_path, _, attr = stack.path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    blocks = list(stack.layers)
    num = len(blocks) + len(base)
    kept = [i for i in range(num) if i not in base]
    added = {}
    for r in requests:
        extra = frozenset(r.removed) - base
        added[tuple(r.removed)] = kept.index(next(iter(extra))) if extra else None
    bf16 = trial.loop.bf16
    pad = int(getattr(model.config, "pad_token_id", None) or 0)
    outs: dict[tuple[int, ...], list[torch.Tensor]] = {s: [] for s in added}
    order: list[np.ndarray] = []
    inputs: list[torch.Tensor | None] = [None] * len(blocks)

    def keep_input(p: int):
        def hook(module, args, kwargs):
            inputs[p] = args[0] if args else kwargs["hidden_states"]

        return hook

    args = no_cache(model)

    def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            return model(**model_inputs(batch), **args).logits

    failure = None
    try:
        with torch.inference_mode():
            for idx in eval_batches(table.lengths, int(trial.hparams.per_device_eval_batch_size)):
                batch = to_device(kind.collate(table, idx, pad), dev)
                handles = [b.register_forward_pre_hook(keep_input(p), with_kwargs=True) for p, b in enumerate(blocks)]
                try:
                    full = forward(batch)
                finally:
                    for h in handles:
                        h.remove()
                order.append(idx)
                for s, p in added.items():
                    if p is None:
                        outs[s].append(kind.reduce(full, batch))
                        continue
                    above = blocks[p + 1 :]
                    replay = _Replay(above[0] if above else None, getattr(blocks[p], "attention_type", None))
                    replay.hidden = inputs[p]
                    setattr(parent, attr, nn.ModuleList([replay, *above[1:]]))
                    try:
                        outs[s].append(kind.reduce(forward(batch), batch))
                    finally:
                        setattr(parent, attr, stack.layers)
                inputs = [None] * len(blocks)
    except torch.OutOfMemoryError:
        failure = "out of memory while scoring without healing"
    seconds = (time.perf_counter() - t0) / max(1, len(requests))
    return [_result(r, seed, trial, outs[tuple(r.removed)], order, failure, seconds) for r in requests]


def _result(r: Any, seed: int, trial: Any, outs: list, order: list, failure: str | None, seconds: float) -> dict:
    """The TrialResult dict of request ``r`` from its per-batch outputs (in ``order``)."""
    kind, table = trial.kind, trial.eval_table
    s = tuple(r.removed)
    res = TrialResult(
        removed=s,
        seed=seed,
        budget=float(r.budget),
        status="ok",
        score=None,
        wall_time=seconds,
        device=_device_name(trial.device),
        precision=trial.loop.precision,
    )
    try:
        if failure:
            raise TrainingFailed(failure)
        predictions = kind.gather(outs, order, table)
        if not _all_finite(predictions):
            raise TrainingFailed("non-finite predictions on the evaluation set")
        metrics, loss = kind.score(predictions, table)
        res.metrics, res.eval_loss, res.score = metrics, loss, metrics.get(trial.task.metric)
    except TrainingFailed as exc:
        res.status, res.reason = "failed", str(exc)
    return res.to_dict()
