"""The hyper-parameters of a fine-tune (`HParams`): run_glue's names, healing and precision. What a trial produced is
`glp.trial.types.TrialResult`.

No torch here: the CLI reads the fields' help and defaults from these dataclasses without importing the training
code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from glp.errors import ConfigError

HEAL_MODES = ("none", "full", "lora")
DTYPES = ("auto", "bf16", "fp32")
TORCH_DTYPES = ("auto", "bfloat16", "float16", "float32")  # run_clm's --torch_dtype
QUANTIZE = ("4bit",)


@dataclass(frozen=True)
class HParams:
    """Fine-tuning hyper-parameters; names and defaults follow ``run_glue.py`` with the paper's values.

    ``max_grad_norm`` (1.0, the ``Trainer`` default that run_glue used) is here so the maths match.
    ``max_train_samples`` / ``max_eval_samples`` subsample (seeded) before training.
    """

    learning_rate: float = field(default=2e-5, metadata={"help": "AdamW learning rate."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Training batch size."})
    per_device_eval_batch_size: int = field(
        default=64, metadata={"help": "Evaluation batch size (also caps the proxies' batches of 32)."}
    )
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs of each fine-tune (fractions allowed)."})
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per example (longer ones are cut)."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Share of the steps with a linear warmup."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases and norms)."})
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_train_samples: int | None = field(default=None, metadata={"help": "Seeded subsample of the training set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Seeded subsample of the scoring set."})
    max_grad_norm: float | None = 1.0
    # healing (decoder LLMs; every kind can use them) and precision
    heal: str = field(
        default="full",
        metadata={"help": "How a candidate is trained before it is scored: none (scored as it is; greedy + none is "
                  "SLEB), full (every weight) or lora (PEFT adapters, merged into the weights on export)."},
    )
    heal_steps: int | None = field(
        default=None,
        metadata={"help": "Optimizer steps of each heal/fine-tune (run_clm's max_steps); replaces the epochs."},
    )
    lora_rank: int = field(default=8, metadata={"help": "--heal lora: the adapters' rank r."})
    lora_alpha: float = field(default=16.0, metadata={"help": "--heal lora: the adapters' scaling alpha."})
    lora_targets: tuple[str, ...] | None = field(
        default=None,
        metadata={"help": "--heal lora: module names to adapt, e.g. q_proj,v_proj (default: every linear layer of "
                  "the blocks, PEFT's all-linear, which works for Llama, Mistral, Qwen, Gemma, Phi and GPT-2)."},
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in the backward pass: less memory, slower steps."}
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "Compute precision (autocast; the weights' precision is --torch-dtype): auto (bf16 "
                  "autocast on GPUs, and for causal LMs on CPUs with AMX/AVX512-BF16; else fp32), bf16, or fp32 "
                  "(no autocast: the weights' precision)."},
    )
    torch_dtype: str = field(
        default="float32",
        metadata={"help": "Precision the weights are loaded and kept in (run_clm's name): float32, bfloat16, "
                  "float16, or auto (the checkpoint's, from its config or safetensors). LoRA adapters stay "
                  "float32; --heal full trains bfloat16 weights in bfloat16 (AdamW in the weights' precision: "
                  "less exact); nothing is trained in float16 (no loss scaling)."},
    )
    quantize: str | None = field(
        default=None,
        metadata={"help": "4bit: the frozen base in NF4 through bitsandbytes (glp's quant extra; CUDA GPUs only), "
                  "LoRA adapters on top (QLoRA); only with --heal lora or none."},
    )

    def __post_init__(self) -> None:
        if self.lora_targets is not None and not isinstance(self.lora_targets, tuple):
            targets = self.lora_targets
            if isinstance(targets, str):
                targets = [t.strip() for t in targets.split(",") if t.strip()]
            object.__setattr__(self, "lora_targets", tuple(str(t) for t in targets))
        problems = []
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "max_seq_length"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.num_train_epochs > 0:
            problems.append(f"num_train_epochs must be > 0, got {self.num_train_epochs}")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("max_train_samples", "max_eval_samples"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                problems.append(f"{name} must be at least 1 (or unset), got {v}")
        if self.heal not in HEAL_MODES:
            problems.append(f"heal must be one of {', '.join(HEAL_MODES)}, got {self.heal!r}")
        if self.heal_steps is not None and int(self.heal_steps) < 1:
            problems.append(f"heal_steps must be at least 1 (or unset), got {self.heal_steps}")
        if int(self.lora_rank) < 1:
            problems.append(f"lora_rank must be at least 1, got {self.lora_rank}")
        if not self.lora_alpha > 0:
            problems.append(f"lora_alpha must be > 0, got {self.lora_alpha}")
        if self.dtype not in DTYPES:
            problems.append(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.torch_dtype not in TORCH_DTYPES:
            problems.append(f"torch_dtype must be one of {', '.join(TORCH_DTYPES)}, got {self.torch_dtype!r}")
        elif self.torch_dtype == "float16" and self.heal == "full":
            problems.append("--heal full would train float16 weights without loss scaling: use --torch-dtype "
                            "bfloat16 or float32, or --heal lora")  # fmt: skip
        if self.quantize is not None and self.quantize not in QUANTIZE:
            problems.append(f"quantize must be one of {', '.join(QUANTIZE)} (or unset), got {self.quantize!r}")
        elif self.quantize is not None and self.heal == "full":
            problems.append(f"--quantize {self.quantize} keeps the base frozen: use --heal lora or none, not full")
        if problems:
            raise ConfigError("invalid hyper-parameters: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain data. The healing and precision fields are left out while they hold their defaults, so journal keys
        (which hash this dict) of runs made before they existed stay valid."""
        d = dataclasses.asdict(self)
        for name, default in _LATER_DEFAULTS.items():
            if d[name] == default:
                del d[name]
        if d.get("lora_targets") is not None:
            d["lora_targets"] = list(d["lora_targets"])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HParams:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown hyper-parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(d))

    @classmethod
    def final(cls, base: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None) -> HParams:
        """The settings of a final fine-tune (export, evaluate): the plan's hyper-parameters, then the flags given.

        The plan's ``max_eval_samples`` subsampled its search-eval split; a final score is on the whole dev set
        unless ``max_eval_samples`` is given here. ``max_*_samples = 0`` means "no limit".
        """
        d = dict(base or {})
        d.pop("max_eval_samples", None)
        for k, v in (overrides or {}).items():
            if v is None:
                continue
            d[k] = None if k in ("max_train_samples", "max_eval_samples") and int(v) == 0 else v
        return cls.from_dict(d)


#: fields added after journals existed, omitted from `HParams.to_dict` at these defaults
_LATER_DEFAULTS = {
    "heal": "full",
    "heal_steps": None,
    "lora_rank": 8,
    "lora_alpha": 16.0,
    "lora_targets": None,
    "gradient_checkpointing": False,
    "dtype": "auto",
    "torch_dtype": "float32",
    "quantize": None,
}
