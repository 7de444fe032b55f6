"""The FLOP count of benchmarks/bench_peak.py: against a hand computation and against torch's FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
from helpers import load_benchmark
from torch.utils.flop_counter import FlopCounterMode

bench_peak = load_benchmark("bench_peak")
Shape, step_flops = bench_peak.Shape, bench_peak.step_flops


def test_hand_count_encoder():
    # h 8, i 16, 2 layers, 2 heads (= kv heads), classifier with 3 labels, two sequences of 4 and 2 tokens
    shape = Shape("tiny", hidden=8, intermediate=16, layers=2, heads=2, kv_heads=2, vocab=50, lm_head=False,
                  num_labels=3)
    f = step_flops(shape, [4, 2])
    per_layer = 4 * 8 * 8 + 2 * 8 * 16  # Q K V O + two MLP matrices = 512
    assert shape.layer_params() == per_layer
    assert f["linear"] == 2 * 512 * 2 * 6
    assert f["attention"] == 4 * 2 * 8 * (16 + 4)
    assert f["head"] == 2 * (64 + 24) * 2
    assert f["forward"] == 12288 + 1280 + 352
    assert f["total"] == 3 * f["forward"] and f["tokens"] == 6


def test_hand_count_gqa_lm():
    # h 8, 4 heads of 2, 1 kv head (K, V: 8×2), gated MLP, LM head over a vocab of 10, one sequence of 3
    shape = Shape("lm", hidden=8, intermediate=4, layers=1, heads=4, kv_heads=1, vocab=10, lm_head=True,
                  gated_mlp=True)
    assert shape.layer_params() == 2 * 64 + 2 * 16 + 3 * 32
    f = step_flops(shape, [3])
    assert f["head"] == 2 * 8 * 10 * 3
    assert f["forward"] == 2 * 256 * 3 + 4 * 8 * 9 + 480


def _counted(model, batch: int, seq: int, vocab: int) -> int:
    ids = torch.randint(3, vocab, (batch, seq), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
        out.logits.float().sum().backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_against_flop_counter(kind):
    from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    common = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=200)
    if kind == "bert":
        cfg = BertConfig(**common, num_labels=2, attn_implementation="eager")
        model = BertForSequenceClassification(cfg)
        shape = Shape.from_config(cfg.to_dict(), "bert", lm_head=False)
    else:
        cfg = LlamaConfig(**common, num_key_value_heads=2, attn_implementation="eager")
        model = LlamaForCausalLM(cfg)
        shape = Shape.from_config(cfg.to_dict(), "llama")
        assert shape.lm_head and shape.gated_mlp and shape.kv_heads == 2
    batch, seq = 2, 24
    expected = step_flops(shape, [seq] * batch)["total"]
    counted = _counted(model, batch, seq, 200)
    assert counted == pytest.approx(expected, rel=0.10)


def test_exact_batches_cover_every_example():
    import numpy as np

    lengths = np.array([5, 9, 3, 7, 7, 2, 11])
    batches = bench_peak.exact_batches(lengths, 3, 2.0, seed=0, grouped_seed=True)
    assert len(batches) == 6 and sum(len(b) for b in batches) == 14
    assert max(b[0] for b in batches) == 11
    assert sum(sum(b) for b in batches) >= 2 * lengths.sum()
