"""How much memory one candidate's heal needs, predicted from the model's config: weights + adapters + gradients +
optimizer state + activations, before anything is loaded (``glp prune --dry-run``).

A candidate is the pre-trained model with some layers removed, healed by glp's training loop (`glp.trial.loop`):
AdamW (two moments per trained weight, in the weight's dtype), gradients in the weight's dtype, LoRA adapters in
float32 (PEFT upcasts them over bf16 weights), and the tensors autograd saves for the backward pass, counted per
token and per layer from what a Llama-style decoder layer saves (`_layer_saved`; SDPA's flash/efficient kernels, so
nothing quadratic in the sequence length). The loss adds about 12 bytes per token and vocabulary entry (logits, their
float32 copy, log-softmax and its gradient). Evaluation (`TrainLoop.predict`, also every heal's last act and all of
``--heal none``) holds the eval batch's logits once, in the compute dtype, and scores them in float32 pieces of
`EVAL_PIECE` logits; it builds no KV cache (``use_cache=False``).

Checked against peak resident memory measured on a CPU for SmolLM2-135M and random 0.5B / 1B Llama configs
(``benchmarks/bench_memory.py``; docs/parallel.md has the table and the tolerance). On CUDA, add the CUDA context
and the caching allocator's slack (``Setting.device="cuda"``: `CUDA_OVERHEAD`, an assumption, not a measurement).

Plain arithmetic on config fields: no torch, no weights. Llama, Mistral, Qwen2/3, Gemma and GPT-2 shapes are exact
(parameters match transformers' models; tests/test_memory.py); other architectures read the same field names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from glp.errors import ConfigError

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
#: logits per float32 piece of the evaluation loss (16 MB): evaluation holds the batch's logits once, not 3x
EVAL_PIECE = 1 << 22
#: bitsandbytes NF4 with double quantization: 4 bits + an 8-bit scale per 64 weights + a float32 per 256 scales
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
GiB = 2**30
#: CUDA context + caching allocator slack on top of what tensors hold (an assumption: ~1 GiB, 5%)
CUDA_OVERHEAD = (1 * GiB, 0.05)
#: what a CPU process holds besides tensors once a trial is built (modules imported on the way, Python objects;
#: measured 24-35 MiB above the weights after building SmolLM2 candidates)
CPU_RUNTIME = 32 * 2**20
_GPT2_NAMES = {"c_attn": ("q_proj", "k_proj", "v_proj"), "c_proj": ("o_proj", "down_proj"), "c_fc": ("up_proj",)}


def _get(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        v = config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)
        if v is not None:
            return v
    return default


@dataclass(frozen=True)
class ModelShape:
    """The shape of a decoder: what its parameter count and activations follow from."""

    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool = False  # input embedding and output head share one matrix
    gated: bool = True  # gate/up/down MLP (Llama) or up/down (GPT-2)
    qkv_bias: bool = False
    out_bias: bool = False  # o_proj's bias
    mlp_bias: bool = False
    norm_bias: bool = False  # LayerNorm (GPT-2) rather than RMSNorm
    positions: int = 0  # learned position embeddings (GPT-2); 0 with rotary embeddings
    extra_layer_params: int = 0  # per layer, besides linears and norms (Qwen3's q/k norms)

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        """The shape of a transformers config (or a dict of its fields)."""
        model_type = str(_get(config, "model_type", default="llama"))
        hidden = _get(config, "hidden_size", "n_embd", "d_model")
        layers = _get(config, "num_hidden_layers", "n_layer", "num_layers")
        heads = _get(config, "num_attention_heads", "n_head")
        vocab = _get(config, "vocab_size")
        if None in (hidden, layers, heads, vocab):
            raise ConfigError(
                f"cannot predict memory for model type {model_type!r}: its config names no hidden size, layer count, "
                "attention heads or vocabulary size that glp knows"
            )
        head_dim = int(_get(config, "head_dim", default=0) or hidden // heads)
        gpt2 = model_type == "gpt2"
        bias = bool(_get(config, "attention_bias", default=False))
        return cls(
            layers=int(layers),
            hidden=int(hidden),
            intermediate=int(_get(config, "intermediate_size", "n_inner", default=0) or 4 * hidden),
            vocab=int(vocab),
            heads=int(heads),
            kv_heads=int(_get(config, "num_key_value_heads", default=heads)),
            head_dim=head_dim,
            tied=bool(_get(config, "tie_word_embeddings", default=gpt2)),
            gated=not gpt2,
            qkv_bias=gpt2 or bias or model_type == "qwen2",
            out_bias=gpt2 or bias,
            mlp_bias=gpt2 or bool(_get(config, "mlp_bias", default=False)),
            norm_bias=gpt2,
            positions=int(_get(config, "n_positions", default=0)) if gpt2 else 0,
            extra_layer_params=2 * head_dim if model_type == "qwen3" else 0,
        )

    def kept(self, layers: int) -> ModelShape:
        """The shape with ``layers`` decoder layers (a candidate with the others removed)."""
        return replace(self, layers=int(layers))

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one decoder layer, by its Llama name."""
        h, i = self.hidden, self.intermediate
        out = {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
               "o_proj": (self.q_dim, h), "up_proj": (h, i), "down_proj": (i, h)}  # fmt: skip
        if self.gated:
            out["gate_proj"] = (h, i)
        return out

    @property
    def linear_params(self) -> int:
        """Weights of the decoder layers' linear layers (the matmuls)."""
        return self.layers * sum(a * b for a, b in self.linears().values())

    @property
    def layer_params(self) -> int:
        lin = sum(a * b for a, b in self.linears().values())
        bias = (self.q_dim + 2 * self.kv_dim) * self.qkv_bias + self.hidden * self.out_bias
        bias += (self.intermediate * (1 + self.gated) + self.hidden) * self.mlp_bias
        norms = 2 * self.hidden * (1 + self.norm_bias)
        return lin + bias + norms + self.extra_layer_params

    @property
    def other_params(self) -> int:
        """Parameters outside the decoder layers: embeddings, output head, final norm."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.positions * self.hidden + self.hidden * (
            1 + self.norm_bias
        )

    @property
    def params(self) -> int:
        return self.other_params + self.layers * self.layer_params

    def lora_params(self, rank: int, targets: tuple[str, ...] | None = None) -> int:
        """LoRA adapter parameters, r × (in + out) per adapted linear of every layer."""
        names = _lora_names(self, targets)
        return self.layers * sum(rank * (a + b) for n, (a, b) in self.linears().items() if n in names)

    def flops_per_token(self, seq_len: int) -> int:
        """Forward FLOPs per token: 2 per weight of every matmul (output head included) plus causal attention (QK^T
        and AV over half the positions on average)."""
        return 2 * (self.linear_params + self.vocab * self.hidden) + 2 * self.layers * seq_len * self.q_dim


def _lora_names(shape: ModelShape, targets: tuple[str, ...] | None) -> set[str]:
    if not targets:
        return set(shape.linears())
    names: set[str] = set()
    for t in targets:
        names.update(_GPT2_NAMES.get(t, (t,)))
    return names & set(shape.linears())


@dataclass(frozen=True)
class Setting:
    """How a candidate is healed and scored (the fields of `glp.trial.hparams.HParams` that cost memory)."""

    heal: str = "full"  # none | full | lora
    weights_dtype: str = "fp32"  # the weights' precision (``--torch-dtype``)
    quantized: bool = False  # ``--quantize 4bit``: the frozen base's block linears in NF4 (on a CUDA GPU)
    autocast: bool = False  # bf16 autocast (``--dtype bf16``; ``auto`` on GPUs)
    seq_len: int = 128
    batch: int = 32
    eval_batch: int = 64
    lora_rank: int = 8
    lora_targets: tuple[str, ...] | None = None  # None: PEFT's all-linear
    gradient_checkpointing: bool = False
    device: str = "cpu"  # cpu | cuda
    cached_weights: bool = True  # the weights are read from files: the process keeps the pre-trained model

    def __post_init__(self) -> None:
        if self.heal not in ("none", "full", "lora"):
            raise ConfigError(f"heal must be none, full or lora, got {self.heal!r}")
        if self.weights_dtype not in BYTES:
            raise ConfigError(f"weights dtype must be one of {', '.join(BYTES)}, got {self.weights_dtype!r}")

    @property
    def compute_bytes(self) -> int:
        return 2 if self.autocast else BYTES[self.weights_dtype]

    @property
    def shared(self) -> bool:
        """Is the candidate a view of the process's frozen pre-trained model (``none``, ``lora``), holding no weights
        of its own? (``full`` trains a copy.)"""
        return self.cached_weights and self.heal in ("none", "lora")


@dataclass(frozen=True)
class Estimate:
    """Predicted bytes of one candidate, by part: ``peak`` is what its device must hold, ``host`` what the process
    also keeps in host memory on a GPU run (the pre-trained weights; 0 on the CPU, where ``peak`` counts them).
    ``train_peak`` is not the sum of the parts: gradients and saved activations do not peak together
    (`_backward_peak`); ``eval_peak`` is the weights, optimizer state and ``eval``."""

    parts: dict[str, int]
    train_peak: int
    eval_peak: int
    peak: int
    host: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _layer_saved(shape: ModelShape, s: Setting) -> float:
    """Bytes autograd saves per token for one decoder layer (Llama layout, SDPA with flash/efficient kernels).

    RMSNorm keeps its float32 input, and its output when its weight trains; rotary q and k, v, the attention output
    and its log-sum-exp; the MLP its gate, activation and up projection; each linear the input it needs for its
    weight's gradient (`_inputs_saved`).
    """
    h, i, q, kv = shape.hidden, shape.intermediate, shape.q_dim, shape.kv_dim
    wb, c = BYTES[s.weights_dtype], s.compute_bytes
    total = 2 * h * (4 + wb * (s.heal == "full"))
    total += c * (2 * q + 2 * kv) + 4 * shape.heads + c * i * (3 if shape.gated else 1)
    lora = _lora_names(shape, s.lora_targets) if s.heal == "lora" else set()
    mlp_in = ("gate_proj", "up_proj") if shape.gated else ("up_proj",)
    # (the linears reading one input, its features, its dtype: the norms' outputs are in the weights' dtype)
    for names, d, xb, held in ((("q_proj", "k_proj", "v_proj"), h, wb, False), (("o_proj",), q, c, True),
                               (mlp_in, h, wb, False), (("down_proj",), i, c, False)):  # fmt: skip
        total += _inputs_saved(names, d, xb, s, lora, held)
    return float(total)


def _inputs_saved(names: tuple[str, ...], d: int, xb: int, s: Setting, lora: set[str], held: bool = False) -> int:
    """Bytes per token the linears ``names`` save of their one input (``d`` features, ``xb`` bytes each).

    ``full``: the input, once; under autocast a float32 input is cast to bf16 by each linear, which keeps its own
    copy. ``lora``: only the adapters need it: PEFT casts it to their float32 (a copy each when it is not float32
    already), and autocast casts that to bf16 again (a copy each). ``held``: the input itself is saved anyway (the
    attention output, which SDPA keeps), so only copies count.
    """
    if s.heal == "full":
        return len(names) * 2 * d if s.autocast and xb == 4 else d * xb * (not held)
    k = sum(n in lora for n in names)
    if not k:
        return 0
    if s.autocast:
        return k * 2 * d
    return k * 4 * d if xb != 4 else 4 * d * (not held)


def _logits_bytes(vocab: int, tokens: int) -> int:
    """The loss's peak over the logits: logits, their float32 (contiguous) copy, log-softmax, its gradient."""
    return 12 * vocab * tokens


def _activations(shape: ModelShape, s: Setting) -> tuple[int, int]:
    """(saved activations of one training batch, the loss's transient over the logits)."""
    tokens = s.batch * s.seq_len
    per_layer = _layer_saved(shape, s)
    if s.gradient_checkpointing:  # each layer keeps its input; one layer's activations live again in backward
        resid = 4 if s.weights_dtype == "fp32" else BYTES[s.weights_dtype]
        saved = shape.layers * shape.hidden * resid + per_layer
    else:
        saved = shape.layers * per_layer
    final = shape.hidden * (4 + s.compute_bytes * (1 + (s.heal == "full")))  # final norm + the head's input
    return int(tokens * (saved + final)), _logits_bytes(shape.vocab, tokens)


def _eval_bytes(shape: ModelShape, s: Setting) -> int:
    """Evaluation's transient (no KV cache: glp's forward passes ask for none): at the end of the forward pass one
    layer's working set and the logits; then the logits and one piece of them through the loss in float32 (its copy
    and log-softmax; `glp.kinds.causal_lm` scores `EVAL_PIECE` logits at a time)."""
    tokens = s.eval_batch * s.seq_len
    c = s.compute_bytes
    working = (6 * shape.hidden + 3 * shape.intermediate) * c + 4 * shape.hidden
    forward = tokens * (working + shape.vocab * c)
    piece = min(tokens, max(1, EVAL_PIECE // shape.vocab)) * shape.vocab
    return int(max(forward, tokens * shape.vocab * c + 8 * piece))


def _weights(shape: ModelShape, full: ModelShape, s: Setting) -> tuple[dict[str, int], int]:
    """(the weights on the device, by part; the pre-trained weights the process keeps in host memory)."""
    wb = BYTES[s.weights_dtype]
    kept = full.params * wb if s.cached_weights else 0  # the pre-trained model, read once, all its layers
    if s.quantized:  # read straight onto the GPU: block linears 4 bits + block scales, the rest in their dtype
        linear = full.linear_params
        return {"weights": int(linear * NF4_BYTES + (full.params - linear) * wb)}, 0
    if s.shared:  # the candidate is a view of it (on a GPU: of its one copy there)
        return {"weights": kept}, kept * (s.device != "cpu")
    parts = {"weights": shape.params * wb}
    if kept and s.device == "cpu":
        parts["pretrained"] = kept
    return parts, kept * (s.device != "cpu")


def _backward_peak(shape: ModelShape, s: Setting, grads: int, saved: int) -> int:
    """The most a training step holds beyond weights and optimizer state. The backward pass frees each layer's saved
    tensors as it makes that layer's gradients, so with ``full`` the peak is at its start (everything saved, the
    loss's transient, the output head's gradient) or at its end (every gradient; a tied embedding's two gradients and
    their sum for a moment); LoRA's gradients are small beside what is saved."""
    if s.heal != "full":
        return saved + grads
    head = shape.vocab * shape.hidden * BYTES[s.weights_dtype]
    return max(saved + head, grads + 2 * head * shape.tied)


def estimate(shape: ModelShape, setting: Setting, full_shape: ModelShape | None = None) -> Estimate:
    """Predicted peak memory of one candidate of ``shape`` (its kept layers) healed and scored as ``setting`` says.

    ``full_shape``: the unpruned model (default ``shape``), which the process keeps in memory to build candidates from.
    """
    s = setting
    parts, host = _weights(shape, full_shape or shape, s)
    if s.device == "cpu":
        parts["runtime"] = CPU_RUNTIME
    trained, tb = 0, BYTES[s.weights_dtype]
    if s.heal == "lora":
        trained, tb = shape.lora_params(s.lora_rank, s.lora_targets), 4
        parts["adapters"] = trained * tb
    elif s.heal == "full":
        trained = shape.params
    static = sum(parts.values())
    autocast_copies = 0
    if s.autocast and BYTES[s.weights_dtype] == 4:  # bf16 copies of the linear weights, kept for the backward pass
        autocast_copies = 2 * (shape.linear_params + shape.vocab * shape.hidden)
    parts["optimizer"] = 2 * trained * tb
    train = 0
    if s.heal != "none":
        parts["gradients"] = trained * tb
        parts["autocast_weights"] = autocast_copies
        parts["activations"], parts["logits"] = _activations(shape, s)
        transient = parts["activations"] + parts["logits"] + autocast_copies
        train = static + parts["optimizer"] + _backward_peak(shape, s, parts["gradients"], transient)
    parts["eval"] = _eval_bytes(shape, s) + autocast_copies * (s.heal == "full")  # (autocast caches trained weights)
    evaluation = static + parts["optimizer"] + parts["eval"]
    peak = max(train, evaluation)
    if s.device == "cuda":
        fixed, slack = CUDA_OVERHEAD
        parts["cuda_overhead"] = int(fixed + slack * peak)
        peak += parts["cuda_overhead"]
    return Estimate({k: v for k, v in parts.items() if v}, train, evaluation, peak, host)


def gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB / 10 else f"{math.ceil(n / 2**20)} MiB"
