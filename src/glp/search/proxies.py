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
head and so one fine-tune. On a causal LM they read the search-eval blocks of text, as ShortGPT and Gromov et al.
read theirs. `BlockAngular` scores contiguous blocks instead of single layers (``--strategy block-angular``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from glp.atomic import write_dir_atomic
from glp.data import collate_inputs
from glp.errors import ConfigError
from glp.kinds import kind_of
from glp.layers import drop_layers, find_layer_stack, no_cache
from glp.models import build as build_model
from glp.registry import Registry
from glp.trial.heal import merged
from glp.trial.loop import eval_batches, to_device

if TYPE_CHECKING:  # pragma: no cover
    from glp.data import Encoded


class Proxy(ABC):
    """A training-free layer scorer: for a model with ``removed`` layers taken out, a score per remaining layer in
    ``layers``; lower means more removable. Subclass, implement `build` and `__call__`, register in ``PROXIES``."""

    @classmethod
    @abstractmethod
    def build(cls, config: Any, session: Any, run_dir: Any = None) -> Proxy:
        """The scorer for a prune session.

        Args:
            config: the search's `glp.commands.prune.PruneConfig` (``device``, ``proxy_examples``, ``seed``,
                ``hparams.per_device_eval_batch_size``).
            session: the opened session (``spec``: the trial spec, ``task``, ``trial_data``).
            run_dir: the `glp.run.rundir.RunDir`, where a proxy may keep what it trained (None: keep nothing).
        """

    @abstractmethod
    def __call__(self, removed: Sequence[int], layers: Sequence[int]) -> dict[int, float]:
        """The score of each layer of ``layers`` (original indices) once removed on top of ``removed``."""


#: ``--proxy`` choices (and the ``proxy-<name>`` strategies): name → `Proxy` subclass.
PROXIES: Registry[type[Proxy]] = Registry("proxy", flag="--proxy", base_cls=Proxy)


def _proxy_table(trial_data: Any, n: int) -> Encoded:
    return trial_data.eval.check().subsample(n, seed=0, stream=7)


def _batch_size(config: Any) -> int:
    """Rows per batch of the proxies' passes: 32, fewer where ``--per-device-eval-batch-size`` asks for fewer (a
    large model's memory)."""
    hparams = getattr(config, "hparams", None)
    return min(32, int(getattr(hparams, "per_device_eval_batch_size", 32) or 32))


def _batches(table: Encoded, kind: Any, pad_id: int, device: torch.device, batch_size: int = 32):
    """Batches of ``table`` sorted by length; with labels collated by the task ``kind``, or inputs only (None)."""
    for idx in eval_batches(table.lengths, batch_size):
        batch = kind.collate(table, idx, pad_id) if kind is not None else collate_inputs(table, idx, pad_id)
        yield to_device(batch, device)


def _body(model: torch.nn.Module) -> torch.nn.Module:
    """The model without its task head (transformers' ``base_model``): the proxies that read the blocks' states need
    no logits, and a causal LM's are a vocabulary per token."""
    return getattr(model, "base_model", model)


def _pad_id(model: torch.nn.Module) -> int:
    pad = getattr(model.config, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def block_similarity(
    model: torch.nn.Module,
    table: Encoded,
    kind: str,
    device: torch.device | None = None,
    batch_size: int = 32,
) -> list[float]:
    """Per block of ``model``'s stack: 1 - cos (``bi``) or arccos(cos)/pi (``angular``) of input vs output, over
    the non-padding tokens (labels play no part)."""

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
    body, args = _body(model), no_cache(model)
    try:
        with torch.inference_mode():
            for batch in _batches(table, None, _pad_id(model), device, batch_size):
                mask_holder["mask"] = batch["attention_mask"]
                count += int(batch["attention_mask"].sum())
                body(**batch, **args)
    finally:
        for h in handles:
            h.remove()
    return [s / max(count, 1) for s in sums]


def task_loss(
    model: torch.nn.Module, table: Encoded, task_kind: Any, device: torch.device | None = None, batch_size: int = 32
) -> float:
    """Mean task loss of ``model`` on ``table`` (summed by the task kind, over its units)."""
    device = device or torch.device("cpu")
    model.eval().to(device)
    total, units, args = 0.0, 0, no_cache(model)
    with torch.inference_mode():
        for batch in _batches(table, task_kind, _pad_id(model), device, batch_size):
            labels = batch.pop("labels")
            logits = model(**batch, **args).logits
            total += float(task_kind.loss_sum(logits, labels))  # no gradient: a causal LM's in float32 pieces
            units += task_kind.units({"labels": labels})
    return total / max(units, 1)


def boundary_states(
    model: torch.nn.Module,
    table: Encoded,
    device: torch.device | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """The hidden state of each sequence's last token at every block boundary of ``model``'s stack: the input of
    block 0, ..., the input of block L-1 and the output of block L-1; float64, shape (L + 1, rows, hidden)."""

    device = device or torch.device("cpu")
    stack = find_layer_stack(model)
    n = len(stack.layers)
    parts: list[list[torch.Tensor]] = [[] for _ in range(n + 1)]
    last: dict[str, torch.Tensor] = {}

    def take(x: torch.Tensor) -> torch.Tensor:
        return x[torch.arange(x.shape[0], device=x.device), last["pos"]].double().cpu()

    def pre(i: int):
        def fn(module, args, kwargs):
            parts[i].append(take(args[0] if args else kwargs["hidden_states"]))

        return fn

    def post(module, args, kwargs, output):
        parts[n].append(take(output[0] if isinstance(output, tuple) else output))

    handles = [layer.register_forward_pre_hook(pre(i), with_kwargs=True) for i, layer in enumerate(stack.layers)]
    handles.append(stack.layers[-1].register_forward_hook(post, with_kwargs=True))
    model.eval().to(device)
    body, args = _body(model), no_cache(model)
    try:
        with torch.inference_mode():
            for batch in _batches(table, None, _pad_id(model), device, batch_size):
                last["pos"] = batch["attention_mask"].sum(1) - 1  # right padding: the last real token
                body(**batch, **args)
    finally:
        for h in handles:
            h.remove()
    return torch.stack([torch.cat(p) for p in parts])


class BlockAngular:
    """Gromov et al. 2024 ("The Unreasonable Ineffectiveness of the Deeper Layers"), eq. 7: for n layers, the
    distance of the block starting at layer l is the angular distance arccos(cos(x_l, x_{l+n})) / π between the
    last token's hidden state at the block's input (x_l) and at its output (x_{l+n}), averaged over the examples;
    the block with the smallest distance is removed. Computed once, on the unpruned model."""

    def __init__(self, model: Any, table: Encoded, device: Any = None, batch_size: int = 32):
        self.model, self.table, self.device, self.batch_size = model, table, device, batch_size
        self._states: Any = None

    def __call__(self, n: int, removable: Sequence[int]) -> dict[int, float]:
        """Distance of every block [l, l + n) whose layers may all be removed, by its first layer l."""
        if self._states is None:
            self._states = boundary_states(self.model, self.table, self.device, self.batch_size)
        x = self._states
        allowed = set(removable)
        out = {}
        for start in range(0, x.shape[0] - n):
            if all(i in allowed for i in range(start, start + n)):
                cos = torch.nn.functional.cosine_similarity(x[start], x[start + n], dim=-1).clamp(-1.0, 1.0)
                out[start] = float((torch.arccos(cos) / math.pi).mean())
        return out


def make_block_angular(config: Any, session: Any) -> BlockAngular:
    """`BlockAngular` on the pre-trained model and ``--proxy-examples`` rows of search-eval."""

    device = torch.device(config.device) if config.device else None
    table = _proxy_table(session.trial_data, config.proxy_examples)
    model = build_model(session.spec.model, session.task, seed=config.seed)
    return BlockAngular(model, table, device, _batch_size(config))


class SimilarityProxy(Proxy):
    """``bi`` / ``angular`` on the pre-trained model with ``removed`` layers taken out."""

    measure = "bi"  # the registered subclasses fix it

    def __init__(self, kind: str, model: Any, table: Encoded, device: Any = None, batch_size: int = 32):
        self.kind, self.model, self.table, self.device, self.batch_size = kind, model, table, device, batch_size

    @classmethod
    def build(cls, config: Any, session: Any, run_dir: Any = None) -> SimilarityProxy:

        device = torch.device(config.device) if config.device else None
        table = _proxy_table(session.trial_data, config.proxy_examples)
        model = build_model(session.spec.model, session.task, seed=config.seed)
        return cls(cls.measure, model, table, device, _batch_size(config))

    def __call__(self, removed: Sequence[int], layers: Sequence[int]) -> dict[int, float]:
        model = drop_layers(self.model, list(removed), inplace=False) if removed else self.model
        scores = block_similarity(model, self.table, self.kind, self.device, self.batch_size)
        kept = [i for i in range(len(scores) + len(removed)) if i not in set(removed)]
        by_layer = dict(zip(kept, scores, strict=True))
        return {i: by_layer[i] for i in layers}


@PROXIES.register("bi", help="block influence, 1 - cos(block input, output) (ShortGPT)")
class BlockInfluence(SimilarityProxy):
    measure = "bi"


@PROXIES.register("angular", help="angular distance of block input and output (Gromov et al.)")
class AngularDistance(SimilarityProxy):
    measure = "angular"


@PROXIES.register("loss", help="task-loss increase when the block is skipped, on the fine-tuned model (SLEB-style)")
class LossProxy(Proxy):
    """Task-loss increase when each layer is skipped, on a fine-tuned model with ``removed`` taken out."""

    def __init__(self, model: Any, table: Encoded, task_kind: Any, device: Any = None, batch_size: int = 32):
        self.model, self.table, self.task_kind, self.device = model, table, task_kind, device
        self.batch_size = batch_size

    @classmethod
    def build(cls, config: Any, session: Any, run_dir: Any = None) -> LossProxy:
        """The unpruned model fine-tuned on search-train (kept in ``RUN_DIR/proxy_model/``: a resumed run does not
        train it again)."""

        device = torch.device(config.device) if config.device else None
        table = _proxy_table(session.trial_data, config.proxy_examples)
        kind = kind_of(session.task)
        saved = run_dir.proxy_model_dir if run_dir is not None else None
        if saved is not None and (saved / "config.json").exists():
            model = kind.model_class().from_pretrained(saved)
        else:
            trial = session.spec.trial((), config.seed, config.device)
            result = trial.advance(1.0)
            if not result.ok:
                raise ConfigError(f"the loss proxy's fine-tune of the full model failed: {result.reason}")
            model = merged(trial.model)  # healed with LoRA: the adapters folded in, a plain model to drop layers from
            if saved is not None:  # whole or not at all: a later run trusts a proxy model it finds
                write_dir_atomic(saved, model.save_pretrained, overwrite=True)
        return cls(model.cpu() if device is None else model, table, kind, device, _batch_size(config))

    def __call__(self, removed: Sequence[int], layers: Sequence[int]) -> dict[int, float]:
        base = drop_layers(self.model, list(removed), inplace=False) if removed else self.model
        ref = task_loss(base, self.table, self.task_kind, self.device, self.batch_size)
        kept = [i for i in range(len(find_layer_stack(self.model).layers)) if i not in set(removed)]
        out = {}
        for i in layers:
            skipped = drop_layers(base, [kept.index(i)], inplace=False)
            out[i] = task_loss(skipped, self.table, self.task_kind, self.device, self.batch_size) - ref
        return out


def make_proxy(name: str, config: Any, session: Any, run_dir: Any = None) -> Any:
    """The proxy scorer ``name`` (`PROXIES`) for a prune session (see glp.commands.prune)."""
    return PROXIES.get(name).build(config, session, run_dir)


def rank_layers(scores: dict[int, float]) -> list[int]:
    """Most removable first (lowest score; ties to the higher index, as in glp.search.context)."""
    return sorted(scores, key=lambda i: (scores[i], -i))
