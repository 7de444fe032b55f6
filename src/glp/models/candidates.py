"""Candidates for a task, built from the pre-trained weights kept in memory (`pretrained`), so a search reads the
checkpoint once per process: `build` = config with the kind's head → fresh head (a function of the seed) → layers
dropped.

The weights stay in the precision they are loaded in (``--torch-dtype``: float32 by default, bfloat16, float16 or the
checkpoint's own) or quantized to 4 bits (``--quantize 4bit``: bitsandbytes' NF4, a CUDA GPU). A candidate either
holds weights of its own (``shared=False``: what ``--heal full`` trains) or is a copy of the modules over the one
frozen base of the process (``shared=True``, `glp.layers.shared_copy`): its blocks are the kept blocks of the base,
renumbered in the copy, so a candidate costs its new head and its adapters, not a copy of the model.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from glp.errors import ConfigError, GLPError
from glp.kinds import kind_of
from glp.layers import drop_layers, parameter_count, shared_copy
from glp.models.loader import ModelSource, load_config, load_weights, resolve

# ------------------------------------------------------------------------------- candidates for a task

_CACHE_SIZE = 2
_PRETRAINED: OrderedDict[tuple, Pretrained] = OrderedDict()


def clear_cache() -> None:
    """Forget the pre-trained weights kept in memory (they are read again on the next trial)."""
    _PRETRAINED.clear()


@dataclass
class Pretrained:
    """The pre-trained model with the task kind's head, read once per process and never written to: ``model``
    (frozen; on the CPU, or quantized on its GPU), ``state`` (views of its weights but the new head's, which ``fresh``
    names) and ``devices`` (its weights on each other device a candidate asked for, copied once)."""

    config: Any
    model: Any
    state: dict[str, torch.Tensor]
    fresh: frozenset[str]
    devices: dict[str, Any] = dataclasses.field(default_factory=dict)

    def on(self, device: Any = None) -> Any:
        """The frozen base on ``device`` (None: where it was read)."""
        here = next(self.model.parameters()).device
        where = here if device is None else torch.device(device)
        if where == here:
            return self.model
        if str(where) not in self.devices:
            self.devices[str(where)] = shared_copy(self.model, lambda t: t.to(where))
        return self.devices[str(where)]


def weights_dtype(torch_dtype: str = "float32") -> Any:
    """``--torch-dtype`` as ``from_pretrained`` takes it: a torch dtype, or ``"auto"`` (the checkpoint's)."""
    return "auto" if torch_dtype == "auto" else getattr(torch, torch_dtype)


def quantization(quantize: str | None, torch_dtype: str = "float32", device: Any = None) -> Any:
    """transformers' ``BitsAndBytesConfig`` of ``--quantize 4bit`` (NF4 with double quantization, computing in the
    weights' dtype, bfloat16 for auto); None without it. `ConfigError` where bitsandbytes or a CUDA GPU is missing."""
    if quantize is None:
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"--quantize {quantize} needs bitsandbytes and a CUDA GPU: pip install 'glp[quant]' on a "
                          "machine with one, or leave --quantize out")  # fmt: skip
    if not torch.cuda.is_available() or (device is not None and torch.device(device).type != "cuda"):
        where = "no CUDA GPU is available" if not torch.cuda.is_available() else f"the device is {device}"
        raise ConfigError(f"--quantize {quantize}: bitsandbytes' 4-bit weights need a CUDA GPU and {where}; leave "
                          "--quantize out, or run on a GPU (--device cuda)")  # fmt: skip
    from transformers import BitsAndBytesConfig  # deferred: transformers is slow to import

    dt = weights_dtype(torch_dtype)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dt if isinstance(dt, torch.dtype) else torch.bfloat16,
    )


def pretrained(
    source: str | ModelSource, task: Any, torch_dtype: str = "float32", quantize: str | None = None, device: Any = None
) -> Pretrained:
    """The pre-trained model with the task kind's head, its weights in ``torch_dtype`` (``quantize``: quantized, on
    the GPU ``device``), kept in memory per source."""
    src = resolve(source)
    kind = kind_of(task)
    bnb = quantization(quantize, torch_dtype, device)
    gpu = None
    if bnb is not None:
        d = torch.device(device or "cuda")
        gpu = str(d if d.index is not None else torch.device("cuda", torch.cuda.current_device()))
    key = (src.path, src.gguf_file, *kind.head_key(), torch_dtype, quantize, gpu)
    if key in _PRETRAINED:
        _PRETRAINED.move_to_end(key)
        return _PRETRAINED[key]
    config = kind.head_config(load_config(src))
    cls = kind.model_class()
    dtype = weights_dtype(torch_dtype)
    placed = {} if bnb is None else {"quantization_config": bnb, "device_map": {"": gpu}}

    model, info = load_weights(
        src,
        cls,
        f"weights (as {kind.auto_class})",
        dtype,
        config=config,
        ignore_mismatched_sizes=True,
        output_loading_info=True,
        **placed,
    )
    mismatched = {k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or ()}
    fresh = set(info.get("missing_keys") or ()) | mismatched
    model.requires_grad_(False)
    state = model.state_dict()  # (views of the model's tensors)
    loaded = {v.data_ptr() for k, v in state.items() if k not in fresh}
    fresh = {k for k in fresh if k not in state or state[k].data_ptr() not in loaded}  # (not one tied to a loaded one)
    state = {k: v for k, v in state.items() if k not in fresh}
    _PRETRAINED[key] = Pretrained(model.config, model, state, frozenset(fresh))
    while len(_PRETRAINED) > _CACHE_SIZE:
        _PRETRAINED.popitem(last=False)
    return _PRETRAINED[key]


ModelFactory = Callable[[], Any]


def build(
    source: str | ModelSource | ModelFactory,
    task: Any,
    removed: Sequence[int] = (),
    seed: int = 0,
    *,
    torch_dtype: str = "float32",
    quantize: str | None = None,
    shared: bool = False,
    device: Any = None,
) -> Any:
    """The pre-trained model with a freshly initialised head of the task's kind (a function of ``seed``), its weights
    in ``torch_dtype``, with ``removed`` layers dropped. ``shared``: a candidate over the frozen pre-trained weights
    kept in memory (on ``device``), holding no copy of them (`glp.layers.shared_copy`: nothing may write into its
    base tensors); else a model of its own (``quantize`` needs ``shared``). ``source`` may also be a callable that
    returns a model with its head (called under the seeded RNG)."""
    if callable(source):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = source()
        model = model if torch_dtype == "auto" else model.to(weights_dtype(torch_dtype))
    else:
        if quantize is not None and not shared:
            raise ConfigError(
                f"--quantize {quantize} keeps one frozen base for every candidate: it cannot be used where a "
                "candidate's own weights are loaded (--init parent, --distill-init teacher)"
            )
        with torch.random.fork_rng(devices=[]):  # from_pretrained draws a head we throw away
            base = pretrained(source, task, torch_dtype, quantize, device)
        model = _candidate(base, task, seed, shared, device)
    if removed:
        drop_layers(model, list(removed))
    return model


def _candidate(base: Pretrained, task: Any, seed: int, shared: bool, device: Any) -> Any:
    """The model of `build` before its layers are dropped. The head a kind draws afresh is drawn as a model of its
    own draws it (`from_config` under the seed), so a shared and an own candidate get the same numbers."""
    model = None
    if base.fresh or not shared:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            # a copy: drop_layers edits the config, and this one is cached (from_config: in the weights' dtype)
            model = kind_of(task).model_class().from_config(copy.deepcopy(base.config))
    if not shared:
        missing, unexpected = model.load_state_dict(base.state, strict=False)
        if unexpected:  # pragma: no cover - the state comes from the same class
            raise GLPError(f"unexpected weights for {type(model).__name__}: {unexpected[:5]}")
        return model.to(base.model.dtype)
    own = shared_copy(base.on(device))
    fresh = {**dict(model.named_parameters()), **dict(model.named_buffers())} if model is not None else {}
    for name in sorted(base.fresh & set(fresh)):
        owner, _, leaf = name.rpartition(".")
        t = fresh[name].detach().to(device=base.on(device).device, dtype=base.model.dtype)
        setattr(own.get_submodule(owner), leaf, nn.Parameter(t) if isinstance(fresh[name], nn.Parameter) else t)
    return own


def count_parameters(
    source: str | ModelSource, task: Any, removals: Sequence[Sequence[int]] = ((),)
) -> list[int] | None:
    """Parameters of the model with the task's head, one count per removal set (``()``: the unpruned model);
    built on the meta device, so no weights are read. None when the model cannot be built here."""
    try:
        kind = kind_of(task)
        conf = kind.head_config(load_config(source))
        with torch.device("meta"):
            full = kind.model_class().from_config(conf)
        counts = []
        for removed in removals:
            m = drop_layers(full, list(removed), inplace=False) if removed else full
            counts.append(parameter_count(m))
        return counts
    except GLPError:
        raise
    except Exception:  # a model's own code is not ours; the count is only informative
        return None
