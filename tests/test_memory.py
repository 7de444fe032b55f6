"""The memory model (`glp.memory`): parameter and adapter counts exact, the parts' arithmetic, and the predictions
against the peaks measured by benchmarks/bench_memory.py (docs/results/memory/bench_memory.json)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from glp.errors import ConfigError
from glp.memory import ModelShape, Setting, estimate

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "docs" / "results" / "memory" / "bench_memory.json"
#: how far a measured peak may be from the prediction (relative); docs/parallel.md states it
TOLERANCE = 0.05

GQA = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
           vocab_size=120)  # fmt: skip


def _configs():
    import transformers

    return {
        "llama": transformers.LlamaConfig(**GQA),
        "llama-tied-bias": transformers.LlamaConfig(
            **GQA, tie_word_embeddings=True, attention_bias=True, mlp_bias=True
        ),
        "qwen2": transformers.Qwen2Config(**GQA),
        "qwen3": transformers.Qwen3Config(**GQA, head_dim=8),
        "mistral": transformers.MistralConfig(**GQA),
        "gemma": transformers.GemmaConfig(**GQA, head_dim=16),
        "gpt2": transformers.GPT2Config(n_embd=64, n_layer=3, n_head=4, vocab_size=120, n_positions=32),
    }


def _meta_model(config):
    import transformers

    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("name", list(_configs()))
def test_parameters_are_exact_with_and_without_layers(name):
    from glp.layers import drop_layers, parameter_count

    config = _configs()[name]
    model = _meta_model(config)
    shape = ModelShape.from_config(config)
    assert shape.params == parameter_count(model)
    pruned = drop_layers(model, [1], inplace=False)
    assert shape.kept(2).params == parameter_count(pruned)
    assert estimate(shape, Setting(heal="full", cached_weights=False)).parts["weights"] == 4 * parameter_count(model)


@pytest.mark.parametrize("targets", [None, ("q_proj", "v_proj")])
def test_lora_adapters_match_peft(targets):
    import peft
    import transformers

    config = _configs()["llama"]
    model = transformers.LlamaForCausalLM(config)
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=list(targets) if targets else "all-linear")
    wrapped = peft.get_peft_model(model, lora)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    assert ModelShape.from_config(config).lora_params(4, targets) == trainable


def test_the_parts_add_up():
    shape = ModelShape.from_config(dict(GQA, model_type="llama"))
    p = shape.params
    full = estimate(shape, Setting(heal="full", cached_weights=False))
    assert full.parts["gradients"] == 4 * p and full.parts["optimizer"] == 8 * p
    static = full.parts["weights"] + full.parts["runtime"] + full.parts["optimizer"]
    head = 4 * shape.vocab * shape.hidden  # the backward pass peaks at its start or at its end
    start = full.parts["activations"] + full.parts["logits"] + head
    assert full.train_peak == static + max(start, full.parts["gradients"])
    bf16 = estimate(shape, Setting(heal="full", weights_dtype="bf16", cached_weights=False))
    assert bf16.parts["weights"] == 2 * p and bf16.parts["optimizer"] == 4 * p  # AdamW in the weights' dtype
    lora = estimate(shape, Setting(heal="lora", weights_dtype="bf16", lora_rank=4))
    a = shape.lora_params(4)
    assert lora.parts["adapters"] == 4 * a and lora.parts["optimizer"] == 8 * a  # float32 adapters
    assert lora.parts["weights"] == 2 * p and "pretrained" not in lora.parts  # a view of the kept pre-trained model
    own = estimate(shape.kept(2), Setting(heal="full"), shape)  # a copy of its own, beside the whole pre-trained model
    assert own.parts["weights"] == 4 * shape.kept(2).params and own.parts["pretrained"] == 4 * p
    on_gpu = estimate(shape, Setting(heal="full", device="cuda"))
    assert "pretrained" not in on_gpu.parts and on_gpu.host == 4 * p and on_gpu.parts["cuda_overhead"] > 0
    none = estimate(shape, Setting(heal="none"))
    assert none.train_peak == 0 and "gradients" not in none.parts and none.peak == none.eval_peak


def test_activations_follow_tokens_and_checkpointing():
    shape = ModelShape.from_config(dict(GQA, model_type="llama"))
    base = Setting(heal="full", seq_len=128, batch=2, cached_weights=False)
    act = lambda s: estimate(shape, s).parts["activations"]  # noqa: E731
    assert act(replace(base, seq_len=256)) == 2 * act(base) == act(replace(base, batch=4))
    assert act(replace(base, gradient_checkpointing=True)) < act(base) / 2
    assert estimate(shape.kept(1), base).parts["activations"] < act(base)
    assert estimate(shape, replace(base, autocast=True)).parts["autocast_weights"] > 0


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="heal"):
        Setting(heal="half")
    with pytest.raises(ConfigError, match="dtype"):
        Setting(weights_dtype="int3")
    with pytest.raises(ConfigError, match="hidden size"):
        ModelShape.from_config({"model_type": "mystery"})


def _measured_rows():
    if not MEASURED.exists():
        return []
    return [r for r in json.loads(MEASURED.read_text())["rows"] if "measured" in r]


@pytest.mark.skipif(not _measured_rows(), reason="no measurements in docs/results/memory")
def test_predictions_match_the_measured_peaks():
    """Every configuration benchmarks/bench_memory.py measured is predicted within TOLERANCE (the shape and setting
    of each are stored beside the measurement, so this recomputes the prediction with today's formula)."""
    for row in _measured_rows():
        shape = ModelShape(**row["shape"])
        setting = Setting(**{**row["setting"], "lora_targets": None})
        predicted = estimate(shape, setting).peak
        m = row["measured"]
        peak = max(m.get("train_peak", 0), m.get("eval_peak", 0))
        assert abs(peak - predicted) <= TOLERANCE * peak, (row["key"], peak, predicted)
