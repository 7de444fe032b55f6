"""train.py / scoring.py: a tiny random BERT fine-tuned on a trivially separable synthetic task."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

from glp.data import Encoded, collate_inputs
from glp.errors import ConfigError
from glp.tasks import Task
from glp.trial.hparams import HParams
from glp.trial.loop import budget_steps, eval_batches, length_grouped_batches, num_steps
from glp.trial.scoring import Trial, clear_model_cache, finetune_and_score, load_model
from glp.trial.types import TrialData, TrialResult

CLS, SEP, MARK = 2, 3, 5
CLASSIFY = Task("toy", ("sentence",), "label", num_labels=2, is_regression=False, metric="accuracy")
REGRESS = Task("toyreg", ("sentence",), "label", num_labels=1, is_regression=True, metric="pearson")
FAST = HParams(learning_rate=1e-3, per_device_train_batch_size=8, num_train_epochs=3, max_seq_length=32)


def tiny_config(layers: int = 4) -> BertConfig:
    return BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
        pad_token_id=0,
    )


def synthetic(n: int, seed: int, regression: bool = False) -> Encoded:
    """Random token sequences; label 1 iff token 5 occurs (regression: the number of 5s)."""
    rng = np.random.default_rng(seed)
    ids, tts, labels = [], [], []
    for _ in range(n):
        body = rng.integers(10, 100, size=int(rng.integers(3, 20)))
        if regression:
            k = int(rng.integers(0, 4))
            body[rng.choice(len(body), size=min(k, len(body)), replace=False)] = MARK
            label = float((body == MARK).sum())
        else:
            label = int(rng.random() < 0.5)
            if label:
                body[rng.integers(len(body))] = MARK
        seq = np.concatenate([[CLS], body, [SEP]]).astype(np.int64)
        ids.append(seq)
        tts.append(np.zeros_like(seq))
        labels.append(label)
    return Encoded(ids, tts, np.asarray(labels, dtype=np.float32 if regression else np.int64))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tinybert")
    torch.manual_seed(0)
    BertModel(tiny_config()).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def data():
    return TrialData(CLASSIFY, synthetic(256, 1), synthetic(128, 2))


@pytest.fixture(scope="module")
def reg_data():
    return TrialData(REGRESS, synthetic(256, 3, regression=True), synthetic(128, 4, regression=True))


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-6, atol=1e-7, msg=k)


# ---------------------------------------------------------------------------------------------- learning


def test_learns_separable_task_and_reports(model_dir, data):
    seen = []
    r = finetune_and_score(model_dir, (), data, FAST, seed=0, progress=lambda *a: seen.append(a))
    assert r.ok and r.status == "ok" and r.reason is None
    assert r.score == r.metrics["accuracy"] > 0.9  # chance is 0.5
    per_epoch, total = num_steps(256, 8, 3)
    assert (r.steps, r.examples_seen, r.budget) == (total, 3 * 256, 1.0)
    assert r.loss_last < r.loss_first
    assert r.device == "cpu" and r.precision == "fp32" and r.wall_time > 0 and r.removed == ()
    assert TrialResult.from_dict({k: v for k, v in r.to_dict().items() if k != "precision"}).precision is None
    bf16 = finetune_and_score(model_dir, (), data, dataclasses.replace(FAST, num_train_epochs=0.1), seed=0, bf16=True)
    assert bf16.ok and bf16.precision == "bf16"  # under bf16 autocast (emulated where the CPU has no bf16)
    assert seen[-1][:2] == (total, total) and all(math.isfinite(s[2]) for s in seen)
    again = TrialResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again == r


def test_eval_loss_is_the_mean_loss_on_the_eval_set(model_dir, data, reg_data):
    import torch.nn.functional as F

    t = Trial(model_dir, (), data, FAST, seed=0)
    r = t.advance(1.0)
    logits = torch.from_numpy(t.loop.predict(t.eval_table))
    ce = F.cross_entropy(logits, torch.from_numpy(t.eval_table.labels)).item()
    assert r.eval_loss == pytest.approx(ce, rel=1e-5) and r.eval_loss < math.log(2)  # learned: below chance
    assert t.advance(1.0).eval_loss == r.eval_loss  # evaluated once per step
    t = Trial(model_dir, (), reg_data, FAST, seed=0)
    r = t.advance(1.0)
    pred = torch.from_numpy(t.loop.predict(t.eval_table)).view(-1)
    mse = F.mse_loss(pred, torch.from_numpy(t.eval_table.labels)).item()
    assert r.eval_loss == pytest.approx(mse, rel=1e-5)


def test_deterministic_for_a_seed_and_leaves_global_rng_alone(model_dir, data):
    hp = dataclasses.replace(FAST, num_train_epochs=1)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = finetune_and_score(model_dir, (), data, hp, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(999)  # other global state must not matter
    clear_model_cache()  # nor whether the pre-trained weights come from the cache
    b = finetune_and_score(model_dir, (), data, hp, seed=7)
    c = finetune_and_score(model_dir, (), data, hp, seed=8)
    assert (a.metrics, a.loss_first, a.loss_last) == (b.metrics, b.loss_first, b.loss_last)
    assert (a.loss_first, a.loss_last) != (c.loss_first, c.loss_last)


def test_head_init_is_a_function_of_the_seed(model_dir):
    a, b, c = (load_model(model_dir, CLASSIFY, (), seed=s) for s in (1, 1, 2))
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    assert torch.equal(a.bert.embeddings.word_embeddings.weight, c.bert.embeddings.word_embeddings.weight)
    assert a.config.num_labels == 2 and a.config.problem_type == "single_label_classification"


def test_regression(model_dir, reg_data):
    hp = dataclasses.replace(FAST, num_train_epochs=4)
    r = finetune_and_score(model_dir, (), reg_data, hp, seed=0)
    assert r.ok and "pearson" in r.metrics
    assert r.score == r.metrics["pearson"] > 0.5
    model = load_model(model_dir, REGRESS, (), seed=0)
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"


def test_removed_layers_and_callable_source(data):

    def factory():
        return BertForSequenceClassification(tiny_config(layers=3))

    hp = dataclasses.replace(FAST, num_train_epochs=1)
    trial = Trial(factory, (0, 2), data, hp, seed=0)
    assert len(trial.model.bert.encoder.layer) == 1 and trial.model.config.num_hidden_layers == 1
    r = trial.advance(1.0)
    assert r.ok and r.removed == (0, 2)


def test_dropping_layers_leaves_the_cached_model_intact(model_dir):
    pruned = load_model(model_dir, CLASSIFY, (0, 3), seed=0)
    full = load_model(model_dir, CLASSIFY, (), seed=0)
    assert pruned.config.num_hidden_layers == 2 and len(pruned.bert.encoder.layer) == 2
    assert full.config.num_hidden_layers == 4 and len(full.bert.encoder.layer) == 4
    kept, orig = pruned.bert.encoder.layer[0], full.bert.encoder.layer[1]
    assert torch.equal(kept.output.dense.weight, orig.output.dense.weight)


def test_decoder_model_without_pad_token(data, tmp_path):
    from transformers import GPT2Config, GPT2Model

    cfg = GPT2Config(vocab_size=100, n_positions=64, n_embd=32, n_layer=2, n_head=2, eos_token_id=1)
    GPT2Model(cfg).save_pretrained(tmp_path / "gpt2")
    hp = dataclasses.replace(FAST, num_train_epochs=1)
    trial = Trial(str(tmp_path / "gpt2"), (), data, hp, seed=0)
    assert trial.model.config.pad_token_id == 1
    assert trial.advance(1.0).ok


def test_max_samples_subsample_with_the_seed(model_dir, data):
    hp = dataclasses.replace(FAST, num_train_epochs=1, max_train_samples=50, max_eval_samples=40)
    t1, t2 = Trial(model_dir, (), data, hp, seed=0), Trial(model_dir, (), data, hp, seed=0)
    assert len(t1.train_table) == 50 and len(t1.eval_table) == 40
    assert t1.train_table.fingerprint() == t2.train_table.fingerprint()
    other = Trial(model_dir, (), data, hp, seed=1)  # another seed, another subsample
    assert other.train_table.fingerprint() != t1.train_table.fingerprint() and len(other.train_table) == 50
    r = t1.advance(1.0)
    assert (r.steps, r.examples_seen) == (7, 50)


# ---------------------------------------------------------------------------------------- budgets / resume


def test_continued_trial_equals_straight_through(model_dir, data):
    hp = dataclasses.replace(
        FAST, num_train_epochs=1.5, warmup_ratio=0.1
    )  # fractional epochs: stop mid-epoch
    straight = Trial(model_dir, (), data, hp, seed=3)
    full = straight.advance(1.0)

    resumed = Trial(model_dir, (), data, hp, seed=3)
    half = resumed.advance(0.5)
    assert half.steps == budget_steps(0.5, full.steps) < full.steps and half.budget == 0.5
    torch.manual_seed(42)
    torch.rand(100)  # whatever happens in between must not matter
    cont = resumed.advance(1.0)
    assert cont.metrics == full.metrics
    assert (cont.steps, cont.examples_seen, cont.loss_first, cont.loss_last) == (
        full.steps,
        full.examples_seen,
        full.loss_first,
        full.loss_last,
    )
    assert_same_weights(resumed.model, straight.model)


# ------------------------------------------------------------------------------------------------ failures


def test_nan_loss_is_a_failed_result(model_dir, data):
    hp = dataclasses.replace(FAST, learning_rate=1e30, max_grad_norm=None)
    r = finetune_and_score(model_dir, (), data, hp, seed=0)
    assert r.status == "failed" and not r.ok and r.score is None and r.metrics == {}
    assert "non-finite" in r.reason


def test_injected_nan_is_caught_without_per_step_sync(model_dir, data, monkeypatch):
    import glp.trial.loop
    from glp.kinds.sequence import SequenceClassification

    calls = {"n": 0}
    real = SequenceClassification.loss_sum

    def poisoned(self, logits, labels):
        calls["n"] += 1
        out = real(self, logits, labels)
        return out * float("nan") if calls["n"] == 3 else out

    monkeypatch.setattr(SequenceClassification, "loss_sum", poisoned)
    trial = Trial(model_dir, (), data, FAST, seed=0)
    r = trial.advance(1.0)
    assert r.status == "failed" and "step 3" in r.reason
    assert r.steps <= glp.trial.loop.SYNC_EVERY  # stopped at the first check, not at the end
    assert trial.advance(1.0).status == "failed"  # stays failed


def _oom_forward(monkeypatch, times: int):
    real = BertForSequenceClassification.forward
    calls = {"n": 0}

    def forward(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= times:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(BertForSequenceClassification, "forward", forward)


def test_oom_once_retries_with_half_batches(model_dir, data, monkeypatch):
    _oom_forward(monkeypatch, times=1)
    trial = Trial(model_dir, (), data, FAST, seed=0)
    r = trial.advance(1.0)
    assert r.ok and trial.grad_accum == 2
    assert (r.steps, r.examples_seen) == (96, 3 * 256)  # same effective batch
    assert r.score > 0.9


def test_oom_always_is_a_failed_result(model_dir, data, monkeypatch):
    _oom_forward(monkeypatch, times=10**9)
    r = finetune_and_score(model_dir, (), data, FAST, seed=0)
    assert r.status == "failed" and "out of memory" in r.reason and r.steps == 0


def test_oom_in_evaluation_halves_the_batch_then_fails(model_dir, data, monkeypatch):
    real = BertForSequenceClassification.forward
    seen = []

    def forward(self, input_ids=None, **kwargs):
        if not self.training:
            seen.append(len(input_ids))
            if len(input_ids) > limit:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(BertForSequenceClassification, "forward", forward)
    hp = dataclasses.replace(FAST, num_train_epochs=0.1, per_device_eval_batch_size=64)
    limit = 32
    assert finetune_and_score(model_dir, (), data, hp, seed=0).ok
    assert max(seen) == 64 and seen[-1] <= 32
    limit = 8
    r = finetune_and_score(model_dir, (), data, hp, seed=0)
    assert r.status == "failed" and "evaluation" in r.reason


# ------------------------------------------------------------------------------------------------- pieces


def test_length_grouped_batches():
    lengths = np.random.default_rng(0).integers(1, 128, size=1000)
    batches = length_grouped_batches(lengths, 32, seed=5, epoch=0)
    assert len(batches) == math.ceil(1000 / 32)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    assert sum(len(b) < 32 for b in batches) == 1
    assert lengths[batches[0]].max() == lengths.max()
    again = length_grouped_batches(lengths, 32, seed=5, epoch=0)
    assert all(np.array_equal(x, y) for x, y in zip(batches, again, strict=True))
    other = length_grouped_batches(lengths, 32, seed=5, epoch=1)
    assert not all(np.array_equal(x, y) for x, y in zip(batches, other, strict=True))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded < 1.1 * lengths.sum()  # almost no padding (random batches: ~1.9x)


def test_collate_and_eval_batches():
    from glp.kinds import kind_of

    table = Encoded(
        [np.array([2, 7, 3]), np.array([2, 8, 9, 3])],
        [np.zeros(3, np.int64), np.ones(4, np.int64)],
        np.array([0, 1]),
    )
    assert table.lengths.tolist() == [3, 4]
    b = collate_inputs(table, np.array([0, 1]), pad_id=0)
    assert b["input_ids"].tolist() == [[2, 7, 3, 0], [2, 8, 9, 3]] and "labels" not in b
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert b["token_type_ids"].tolist() == [[0, 0, 0, 0], [1, 1, 1, 1]]
    assert kind_of(CLASSIFY).collate(table, np.array([1, 0]), 0)["labels"].tolist() == [1, 0]
    assert [x.tolist() for x in eval_batches(table.lengths, 1)] == [[1], [0]]


def test_hparams_and_budget_validation():
    hp = HParams(learning_rate=3e-5, max_train_samples=100)
    assert HParams.from_dict(json.loads(json.dumps(hp.to_dict()))) == hp
    assert HParams().to_dict()["per_device_train_batch_size"] == 32
    with pytest.raises(ConfigError):
        HParams.from_dict({"learning_rat": 1e-5})
    with pytest.raises(ConfigError):
        HParams(num_train_epochs=0)
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ConfigError):
            budget_steps(bad, 10)
    assert budget_steps(round(1 / 9, 9), 90) == 10 and budget_steps(1e-6, 90) == 1
    assert num_steps(100, 32, 1.5) == (4, 6)
