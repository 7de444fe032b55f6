"""Layer surgery: physically remove whole transformer blocks from a Hugging Face model.

``drop_layers(model, [3, 1])`` deletes blocks 1 and 3 (0-based) from the model's block stack, renumbers the
per-layer indices of the kept blocks (``layer_idx`` & co., so a KV cache works after pruning) and updates the
config, so that the result saves with ``save_pretrained`` and reloads with plain ``AutoModel*.from_pretrained``:
no custom modeling code.

How the block stack is found (no per-architecture table): the layer count is read from the config
(``num_hidden_layers``, ``n_layer``, ``n_layers`` or ``num_layers``, following ``config.attribute_map``), and the
stack is the outermost ``nn.ModuleList`` whose length equals that count and whose elements all have the same
class (``bert.encoder.layer``, ``distilbert.transformer.layer``, ``model.layers``, ``transformer.h``,
``model.decoder.layers``, ...). Anything else is refused with ``UnsupportedModelError`` rather than guessed:
no such list or several (e.g. other per-layer modules outside the stack), shared weights between blocks (ALBERT),
encoder-decoder models (two stacks), heterogeneous ``per_layer_config`` configs.

Config rule (conservative):

* the layer count attribute is set to the number of kept layers;
* attributes named in ``INDEX_LIST_ATTRS`` are lists of layer *indices* (e.g. ``mlp_only_layers``): removed
  indices are dropped and the others renumbered;
* a list/tuple attribute whose length equals the old layer count is per-layer data, sliced to the kept layers,
  when its name says so: it contains ``layer`` or ``block`` (``layer_types``, ``mlp_layer_types``,
  ``no_rope_layers``, ``layer_rope_theta``, ``num_key_value_heads_per_layer``, ``block_types``, ...) and does not
  look like an index list (``idx``/``index``/``indices``/``ids``), or it is in ``PER_LAYER_ATTRS``
  (``attention_window``);
* every other list of that length (``architectures``, ``eos_token_id``, DeBERTa's ``pos_att_type``, ...) is left
  unchanged with a warning, and nothing else changes.

Then, as a safety net, a model is built from the new config on the ``meta`` device (no memory, no weights) and its
parameter names and shapes are compared with those of the pruned model; if they differ (e.g. an index-dependent
MoE/dense pattern such as ``decoder_sparse_step`` or ``first_k_dense_replace`` that the rule above cannot express),
the model is left untouched and ``UnsupportedModelError`` is raised. ``verify=False`` skips this check.

Note: blocks are removed, not the code around them. Models that apply something extra at a fixed position in the
stack (DeBERTa-v2 with ``conv_kernel_size > 0`` adds a convolution after block 0) keep applying it at that
position, i.e. after the new block 0.

``shared_copy(model)`` copies the modules and the config but not the tensors: ``drop_layers(shared_copy(base), R)``
is a pruned candidate that holds the kept blocks' weights of ``base`` itself (a frozen base shared by many
candidates; the copy's blocks are renumbered, wrapped or dropped without touching ``base``'s modules).

Tested families (tests/test_layers.py): BERT, RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA, DeBERTa-v2, MPNet,
ModernBERT (encoders; base and *ForSequenceClassification); Llama, Mistral, Qwen2, Qwen3, Gemma, Gemma2, SmolLM3,
Phi, GPT-NeoX, Falcon, GPT-2, OPT (decoders; base and *ForCausalLM, generate with KV cache), Qwen2-MoE
(``mlp_only_layers`` remapped). Refused with a clear message: ALBERT (shared layers), encoder-decoder models
(T5, BART), ModernBERT block 0 (it has no attention pre-norm, unlike the others: caught by the reload check),
Qwen2-MoE removals that shift its ``decoder_sparse_step`` pattern, GPT-2 with ``scale_attn_by_inverse_layer_idx``
unless only trailing layers are removed.
"""

from __future__ import annotations

import copy
import inspect
import logging
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain

import torch
from torch import nn

from glp.errors import LayerIndexError, UnsupportedModelError

logger = logging.getLogger(__name__)

__all__ = [
    "LayerStack",
    "find_layer_stack",
    "num_layers",
    "config_num_layers",
    "validate_indices",
    "drop_layers",
    "layer_parameter_count",
    "shared_copy",
    "shares_tensors",
]

# Config attributes that may hold the number of blocks (resolved through ``config.attribute_map``).
COUNT_ATTRS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers")

# Module attributes holding a block's own position in the stack; renumbered on the kept blocks.
LAYER_INDEX_ATTRS = ("layer_idx", "layer_id", "layer_index", "layer_number")

# Config attributes that are lists of layer indices (not one entry per layer): remapped, never sliced.
INDEX_LIST_ATTRS = frozenset(
    {
        "mlp_only_layers",
        "moe_layers",
        "cross_attention_layers",
        "full_attn_idxs",
        "attn_layer_indices",
        "rope_scaling_layers",
    }
)

# Per-layer config lists whose name does not contain "layer" or "block".
PER_LAYER_ATTRS = frozenset({"attention_window"})

_INDEX_NAME_PARTS = frozenset({"id", "ids", "idx", "idxs", "index", "indexes", "indices"})

# Config flags that make a block's computation depend on its position (so renumbering would change it on reload).
_INDEX_DEPENDENT_FLAGS = ("scale_attn_by_inverse_layer_idx",)


@dataclass
class LayerStack:
    """The model's stack of blocks.

    ``path``: dotted module path of the ``nn.ModuleList`` (e.g. ``"bert.encoder.layer"``);
    ``layers``: the list itself; ``count_attr``: the config attribute holding the layer count (e.g. ``"n_layer"``).
    """

    path: str
    layers: nn.ModuleList
    count_attr: str


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    return f"{type(model).__name__}" + (f" (model_type={model_type!r})" if model_type else "")


def _count_attr(config) -> str | None:
    attribute_map = getattr(config, "attribute_map", None) or {}
    for name in COUNT_ATTRS:
        real = attribute_map.get(name, name)
        try:
            value = getattr(config, real, None)
        except Exception:  # e.g. an ambiguous per-layer attribute on a heterogeneous config
            value = None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return real
    return None


def config_num_layers(config) -> int | None:
    """The layer count a config declares (``num_hidden_layers`` or an alias), or None."""
    attr = _count_attr(config)
    return None if attr is None else getattr(config, attr)


def find_layer_stack(model: nn.Module) -> LayerStack:
    """Find the model's flat stack of transformer blocks; raise ``UnsupportedModelError`` if there is none."""
    name = _model_name(model)
    config = getattr(model, "config", None)
    if config is None:
        raise UnsupportedModelError(f"{name} has no `config`; expected a Hugging Face transformers model.")
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedModelError(
            f"{name} is an encoder-decoder model with two layer stacks; only encoder-only and decoder-only "
            "models are supported."
        )
    if getattr(config, "num_hidden_groups", None) is not None:
        raise UnsupportedModelError(
            f"{name} shares layer weights across its blocks (ALBERT-style `num_hidden_groups`): there are no "
            "independent layers to remove."
        )
    if getattr(config, "is_heterogeneous", False):
        raise UnsupportedModelError(
            f"{name} has a heterogeneous `per_layer_config`; removing layers from such configs is not supported."
        )
    count_attr = _count_attr(config)
    if count_attr is None:
        raise UnsupportedModelError(
            f"{name}: its config has no layer count ({', '.join(COUNT_ATTRS)}); composite models (multimodal, "
            "encoder-decoder) are not supported, prune the text model instead."
        )
    count = getattr(config, count_attr)

    candidates = []
    for path, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) != count:
            continue
        if len({type(block) for block in module}) != 1:
            continue
        if any(path.startswith(outer + ".") for outer, _ in candidates):
            continue  # nested inside a stack found earlier (named_modules is pre-order)
        candidates.append((path, module))

    if not candidates:
        raise UnsupportedModelError(
            f"{name}: no flat stack of {count} identical blocks (config.{count_attr}={count}) was found in the "
            "module tree; this architecture is not supported."
        )
    if len(candidates) > 1:
        paths = ", ".join(p for p, _ in candidates)
        raise UnsupportedModelError(
            f"{name}: several module lists have one entry per layer ({paths}); removing blocks from only one of "
            "them would break the model, so this architecture is not supported."
        )
    path, layers = candidates[0]

    owner: dict[int, int] = {}
    for i, block in enumerate(layers):
        for p in block.parameters():
            j = owner.setdefault(id(p), i)
            if j != i:
                raise UnsupportedModelError(
                    f"{name}: blocks {j} and {i} share weights, so they cannot be removed independently."
                )
    return LayerStack(path=path, layers=layers, count_attr=count_attr)


def num_layers(model: nn.Module) -> int:
    """Number of blocks in the model's layer stack."""
    return len(find_layer_stack(model).layers)


def validate_indices(
    indices: Iterable[int] | int,
    num_layers: int,
    protected: Iterable[int] = (),
    *,
    allow_all: bool = False,
) -> tuple[int, ...]:
    """Check 0-based layer indices against a stack of ``num_layers`` blocks; return them sorted.

    Raises ``LayerIndexError`` for non-integers, negative or out-of-range indices, duplicates, protected indices
    and (unless ``allow_all``) removing every layer. An empty selection is valid and returns ``()``.
    """
    if isinstance(indices, (str, bytes)) or not (isinstance(indices, Iterable) or _is_int(indices)):
        raise LayerIndexError(f"layer indices must be integers, got {indices!r}")
    items = [indices] if _is_int(indices) else list(indices)
    values = []
    for item in items:
        if not _is_int(item):
            raise LayerIndexError(f"layer indices must be integers, got {item!r} in {items!r}")
        values.append(operator.index(item))
    valid = f"valid indices are 0..{num_layers - 1}" if num_layers > 0 else "the model has no layers"
    bad = sorted({v for v in values if v < 0 or v >= num_layers})
    if bad:
        raise LayerIndexError(
            f"layer index {', '.join(map(str, bad))} out of range: the model has {num_layers} layers "
            f"({valid}; indices are 0-based, negative indices are not allowed)"
        )
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise LayerIndexError(f"duplicate layer index {', '.join(map(str, dupes))} in {values}")
    hit = sorted(set(values) & {operator.index(p) for p in protected})
    if hit:
        raise LayerIndexError(f"layer {', '.join(map(str, hit))} is protected and cannot be removed")
    if not allow_all and len(values) >= num_layers:
        raise LayerIndexError(f"cannot remove all {num_layers} layers; at least one must remain (got {sorted(values)})")
    return tuple(sorted(values))


def _is_int(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, torch.Tensor):
        return value.ndim == 0 and not value.is_floating_point() and value.dtype != torch.bool
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def parameter_count(model: nn.Module) -> int:
    """Number of parameters of ``model`` (what ``glp drop``, ``glp profile`` and the export's manifest report)."""
    return sum(p.numel() for p in model.parameters())


def layer_parameter_count(model: nn.Module, indices: Iterable[int] | int) -> int:
    """Number of parameters in the given blocks (each shared tensor counted once)."""
    layers = find_layer_stack(model).layers
    seen: dict[int, int] = {}
    for i in validate_indices(indices, len(layers), allow_all=True):
        for p in layers[i].parameters():
            seen[id(p)] = p.numel()
    return sum(seen.values())


def _new_config(config, count_attr: str, old_count: int, kept: Sequence[int]):
    """A copy of ``config`` updated for a stack that keeps the blocks ``kept`` (old indices, sorted)."""
    new = copy.deepcopy(config)
    remap = {old: new_idx for new_idx, old in enumerate(kept)}
    updates: dict[str, object] = {}
    for key, value in list(vars(config).items()):
        if key.startswith("_") or not isinstance(value, (list, tuple)):
            continue
        if key in INDEX_LIST_ATTRS:
            updates[key] = type(value)(remap[v] for v in value if _is_int(v) and v in remap)
        elif len(value) == old_count:
            if _is_per_layer_name(key):
                updates[key] = type(value)(value[i] for i in kept)
            else:
                logger.warning(
                    "config.%s has one entry per layer (%d) but is not known to be per-layer data; left unchanged",
                    key,
                    old_count,
                )
    for key, value in updates.items():
        setattr(new, key, value)
    setattr(new, count_attr, len(kept))
    return new, sorted(updates)


def _is_per_layer_name(key: str) -> bool:
    if key in PER_LAYER_ATTRS:
        return True
    parts = key.lower().split("_")
    return any("layer" in p or "block" in p for p in parts) and not _INDEX_NAME_PARTS.intersection(parts)


def _meta_shapes(model_cls, config) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        fresh = model_cls(copy.deepcopy(config))
    return {k: tuple(t.shape) for k, t in fresh.state_dict().items()}


def _check_reloadable(model: nn.Module, stack: LayerStack, new_config, kept: Sequence[int]) -> None:
    """Build the model class from ``new_config`` on the meta device and compare parameter names and shapes.

    Skipped (with a log message) when the model's own config does not rebuild the model as it is (adapters,
    quantized or otherwise modified modules), since the comparison would then say nothing.
    """
    current = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    prefix = stack.path + "."
    remap = {old: new_idx for new_idx, old in enumerate(kept)}
    expected = {}
    for key, shape in current.items():
        if key.startswith(prefix):
            idx, _, rest = key[len(prefix) :].partition(".")
            if int(idx) not in remap:
                continue
            key = f"{prefix}{remap[int(idx)]}.{rest}"
        expected[key] = shape
    try:
        if _meta_shapes(type(model), model.config) != current:
            logger.info("%s differs from what its config builds; reload check skipped", type(model).__name__)
            return
        got = _meta_shapes(type(model), new_config)
    except Exception as exc:  # the safety net itself failed: do not block the user, but say so
        logger.warning("could not verify that the pruned %s reloads: %s", type(model).__name__, exc)
        return
    if got != expected:
        diff = sorted(set(got.items()) ^ set(expected.items()))[:4]
        raise UnsupportedModelError(
            f"{_model_name(model)}: after removing layers, the updated config would not rebuild the same "
            f"architecture (its per-layer structure depends on the layer position; e.g. {diff}); not supported."
        )


def drop_layers(
    model: nn.Module, indices: Iterable[int] | int, inplace: bool = True, *, verify: bool = True
) -> nn.Module:
    """Remove the blocks ``indices`` (0-based) from ``model``; return the pruned model.

    With ``inplace=False`` the original is left untouched and a pruned deep copy is returned. The config is
    updated (layer count, per-layer lists) and per-layer indices of the kept blocks are renumbered, so the model
    saves and reloads with plain ``from_pretrained`` and generates with a KV cache.
    """
    stack = find_layer_stack(model)
    old_count = len(stack.layers)
    removed = validate_indices(indices, old_count)
    if not removed:
        return model if inplace else copy.deepcopy(model)
    kept = [i for i in range(old_count) if i not in set(removed)]
    config = model.config
    shifted = any(new_idx != old for new_idx, old in enumerate(kept))
    for flag in _INDEX_DEPENDENT_FLAGS:
        if shifted and getattr(config, flag, False):
            raise UnsupportedModelError(
                f"{_model_name(model)} has config.{flag}=True: a block's computation depends on its position, so "
                f"removing layers {list(removed)} would change the kept blocks. Only trailing layers can be removed."
            )
    new_config, sliced = _new_config(config, stack.count_attr, old_count, kept)
    if verify:
        _check_reloadable(model, stack, new_config, kept)

    if not inplace:
        model = copy.deepcopy(model)
        stack = find_layer_stack(model)
        config = model.config
    for i in reversed(removed):
        del stack.layers[i]
    for new_idx, (old, block) in enumerate(zip(kept, stack.layers, strict=True)):
        if new_idx == old:
            continue
        for module in block.modules():
            for attr in LAYER_INDEX_ATTRS:
                value = module.__dict__.get(attr)
                if isinstance(value, int) and not isinstance(value, bool):
                    setattr(module, attr, value - (old - new_idx))
    # update the live config object in place: submodules (base model, head) share it
    for key in sliced:
        setattr(config, key, getattr(new_config, key))
    setattr(config, stack.count_attr, len(kept))
    logger.info("removed layers %s from %s: %d -> %d", list(removed), stack.path, old_count, len(kept))
    return model


#: set on a `shared_copy` that holds another model's tensors (`shares_tensors`)
SHARES_TENSORS = "glp_shares_tensors"


def shared_copy(model: nn.Module, convert: Callable[[torch.Tensor], torch.Tensor] | None = None) -> nn.Module:
    """A copy of ``model``'s modules (and of its config) that holds ``model``'s own parameter and buffer tensors: no
    tensor is copied, so the copy costs the module objects only. Its structure is its own (`drop_layers` on it,
    PEFT wrapping its linear layers, ``train()``/``eval()`` leave ``model`` as it was); writing into its tensors,
    or moving it with ``.to()``, changes ``model``'s (`shares_tensors` says so). ``convert``: each tensor is replaced
    by ``convert(tensor)`` (parameters keep their ``requires_grad``), e.g. the same weights on another device."""
    memo: dict[int, object] = {}
    for t in chain(model.parameters(), model.buffers()):
        if convert is None:
            memo[id(t)] = t
            continue
        new = convert(t.detach())
        memo[id(t)] = nn.Parameter(new, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else new
    out = copy.deepcopy(model, memo)
    setattr(out, SHARES_TENSORS, convert is None)
    return out


def shares_tensors(model: nn.Module) -> bool:
    """Does ``model`` hold tensors of another model (a `shared_copy`), so that writing into them changes that one?"""
    return bool(getattr(model, SHARES_TENSORS, False))


def no_cache(model: nn.Module) -> dict[str, bool]:
    """``{"use_cache": False}`` where the model's forward takes ``use_cache`` (a decoder, with any head; PEFT's and
    torch.compile's wrappers looked through), else ``{}``: scoring and fine-tuning need no KV cache, which
    transformers builds in eval mode and keeps to the end of the pass."""
    inner = model
    for _ in range(4):
        if hasattr(inner, "get_base_model"):
            inner = inner.get_base_model()
        elif isinstance(getattr(inner, "_orig_mod", None), nn.Module):
            inner = inner._orig_mod
        else:
            break
    return {"use_cache": False} if "use_cache" in inspect.signature(type(inner).forward).parameters else {}
