"""Training-free proxies: a block made an exact identity is the most removable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glp.data import Encoded
from glp.kinds import kind_of
from glp.search.proxies import LossProxy, SimilarityProxy, rank_layers
from glp.tasks import custom_task

KIND = kind_of(custom_task("toy", ("text",), "label", num_labels=2))


def _table(n=24, vocab=100, seed=0):
    rng = np.random.default_rng(seed)
    ids = [rng.integers(3, vocab, size=int(rng.integers(5, 16))).astype(np.int64) for _ in range(n)]
    labels = rng.integers(0, 2, size=n).astype(np.int64)
    return Encoded(ids, None, labels)


def _llama_with_identity_block(identity: int):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=5,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        num_labels=2,
        pad_token_id=0,
    )
    model = LlamaForSequenceClassification(cfg).eval()
    block = model.model.layers[identity]
    with torch.no_grad():  # pre-norm residual block: zero both output projections -> output == input exactly
        block.self_attn.o_proj.weight.zero_()
        block.mlp.down_proj.weight.zero_()
    return model


@pytest.mark.parametrize("kind", ["bi", "angular"])
def test_similarity_proxies_rank_identity_block_first(kind):
    model = _llama_with_identity_block(2)
    scores = SimilarityProxy(kind, model, _table())((), range(5))
    assert scores[2] == pytest.approx(0.0, abs=1e-6)
    assert rank_layers(scores)[0] == 2
    assert all(v > 1e-4 for i, v in scores.items() if i != 2)
    # with layer 4 already removed, scores are still keyed by the original layer indices
    after = SimilarityProxy(kind, model, _table())((4,), [0, 1, 2, 3])
    assert sorted(after) == [0, 1, 2, 3] and rank_layers(after)[0] == 2


def test_loss_proxy_gives_zero_increase_for_identity_block():
    model = _llama_with_identity_block(1)
    scores = LossProxy(model, _table(), KIND)((), range(5))
    assert scores[1] == pytest.approx(0.0, abs=1e-6)
    assert all(abs(v) > 1e-6 for i, v in scores.items() if i != 1)
    after = LossProxy(model, _table(), KIND)((3,), [0, 1, 2, 4])
    assert after[1] == pytest.approx(0.0, abs=1e-6)
