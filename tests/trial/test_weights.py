"""Weights in the precision they are stored in (--torch-dtype), one frozen base per process for --heal lora / none,
the --quantize 4bit flag (refused here: no bitsandbytes, no CUDA) and a candidate over several devices
(--device-map auto: here the CPU and the disk, accelerate's offload)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from glp import models
from glp.commands.prune import PruneConfig, open_session, prune
from glp.errors import ConfigError, GLPError
from glp.layers import find_layer_stack, shares_tensors
from glp.run.store import trial_key
from glp.trial.heal import merged, writable
from glp.trial.hparams import HParams

WORDS = "the quick brown fox jumps over lazy dog a man is playing guitar on stage and then".split()
SCALES = (0.1, 3.0, 1.0, 10.0)  # how much each block writes into the residual stream: removals differ a lot
HP = dict(learning_rate=3e-3, per_device_train_batch_size=8, per_device_eval_batch_size=8, max_seq_length=16,
          heal_steps=3, dtype="fp32")  # fmt: skip


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A 4-block Llama whose blocks write into the residual stream with very different weights (`SCALES`), its
    word-level tokenizer and a small corpus (train.txt)."""
    import transformers
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tm

    root = tmp_path_factory.mktemp("weights")
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", *WORDS])}
    tok = Tokenizer(tm.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    ).save_pretrained(str(root / "llama"))
    cfg = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   pad_token_id=0, bos_token_id=2, eos_token_id=3)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.LlamaForCausalLM(cfg)
        with torch.no_grad():
            model.lm_head.weight.mul_(20.0)  # sharp predictions: perplexity feels every block
            for s, block in zip(SCALES, model.model.layers, strict=True):
                block.self_attn.o_proj.weight.mul_(s)
                block.mlp.down_proj.weight.mul_(s)
        model.save_pretrained(str(root / "llama"))
    rng = np.random.default_rng(0)
    lines = [" ".join(WORDS[(int(rng.integers(len(WORDS))) + j) % len(WORDS)] for j in range(10)) for _ in range(60)]
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root


def _config(root, out, **hp) -> PruneConfig:
    return PruneConfig(model=str(root / "llama"), task="lm", train_file=str(root / "train.txt"),
                       dev_file=str(root / "train.txt"), max_remove=3, out=str(out),
                       hparams=HParams(**{**HP, **hp}))  # fmt: skip


def _storages(model: torch.nn.Module) -> dict[int, int]:
    """data pointer -> bytes of every storage the model's parameters and buffers live in."""
    tensors = [*model.parameters(), *model.buffers()]
    return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}


def _digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ the settings


def test_the_defaults_leave_journal_keys_alone_and_every_weights_setting_has_its_own():
    old = {k: v for k, v in HParams().to_dict().items()}
    assert "torch_dtype" not in old and "quantize" not in old
    assert HParams(torch_dtype="float32", quantize=None).to_dict() == old

    def key(**kw):
        return trial_key({"hparams": HParams(heal="lora", **kw).to_dict()}, (1,), 42, 1.0)

    keys = {key(), key(torch_dtype="bfloat16"), key(torch_dtype="float16"), key(torch_dtype="auto"),
            key(quantize="4bit"), key(quantize="4bit", torch_dtype="bfloat16")}  # fmt: skip
    assert len(keys) == 6
    assert HParams.from_dict(HParams(torch_dtype="bfloat16").to_dict()).torch_dtype == "bfloat16"


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(torch_dtype="bf16"), "torch_dtype must be one of auto, bfloat16, float16, float32"),
        (dict(torch_dtype="float16"), "--heal full would train float16 weights"),
        (dict(quantize="8bit", heal="lora"), "quantize must be one of 4bit"),
        (dict(quantize="4bit"), "--quantize 4bit keeps the base frozen: use --heal lora or none"),
    ],
)
def test_bad_weights_settings_are_one_line(kw, message):
    with pytest.raises(ConfigError, match=message) as e:
        HParams(**kw)
    assert "\n" not in str(e.value)


def test_quantize_without_bitsandbytes_or_cuda_is_one_line(lm, tmp_path, monkeypatch):
    r = subprocess.run([sys.executable, "-m", "glp.cli", "prune", str(lm / "llama"), "--task", "lm", "--train-file",
                        str(lm / "train.txt"), "--dev-file", str(lm / "train.txt"), "--heal", "lora", "--quantize",
                        "4bit", "--out", str(tmp_path / "o")], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--quantize 4bit needs bitsandbytes and a CUDA GPU" in lines[0], r.stderr
    assert not (tmp_path / "o" / "plan.json").exists()
    # with bitsandbytes installed but no GPU: the other half of the message; a trial says the same
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "bitsandbytes" else real(n, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GLPError, match="need a CUDA GPU and no CUDA GPU is available"):
        models.quantization("4bit")
    session = open_session(_config(lm, tmp_path / "r", heal="none"))
    with pytest.raises(GLPError, match="need a CUDA GPU"):
        from dataclasses import replace

        replace(session.spec, hparams=HParams(**{**HP, "heal": "lora", "quantize": "4bit"})).trial((1,), 42)


def test_the_flags_reach_prune_export_and_evaluate():
    from typer.testing import CliRunner

    from glp.cli.app import app

    for command in ("prune", "export", "evaluate"):
        out = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"}).output
        assert "--torch-dtype" in out, command
        # export's --quantize is ONNX's int8: its final fine-tune quantizes as the plan's search did
        assert ("QLoRA" in out) == (command != "export"), command
    cfg = PruneConfig.from_dict({"model": "m", "task": "lm", "torch_dtype": "bfloat16", "heal": "lora"})
    assert cfg.hparams.torch_dtype == "bfloat16" and cfg.to_dict()["hparams"]["torch_dtype"] == "bfloat16"
    assert HParams.final(cfg.hparams.to_dict(), {"torch_dtype": "float32"}).torch_dtype == "float32"


# ------------------------------------------------------------------------------------------ precision


def test_bfloat16_weights_rank_the_candidates_as_float32_does(lm, tmp_path):
    """A greedy search without healing (SLEB) on bf16 weights gives the plan of fp32 weights where the candidates
    are far apart, with scores close to fp32's."""
    plans = {dt: prune(_config(lm, tmp_path / dt, heal="none", torch_dtype=dt)) for dt in ("float32", "bfloat16")}
    fp32, bf16 = plans["float32"], plans["bfloat16"]
    for step in fp32.steps:  # the fixture is what the test needs: neighbours at least 5% apart
        scores = [c.mean for c in step.candidates]
        assert all(b > a * 1.05 for a, b in zip(scores, scores[1:], strict=False)), scores
    assert bf16.order == fp32.order and bf16.removals == fp32.removals
    for a, b in zip(fp32.steps, bf16.steps, strict=True):
        assert [c.removed for c in b.candidates] == [c.removed for c in a.candidates]
        assert [c.mean for c in b.candidates] == pytest.approx([c.mean for c in a.candidates], rel=0.01)
    assert fp32.hparams.get("torch_dtype") is None and bf16.hparams["torch_dtype"] == "bfloat16"


def test_bfloat16_weights_heal_in_their_precision(lm, tmp_path):
    """--heal lora: the base stays bf16, adapters and AdamW's state float32; --heal full trains bf16 weights."""
    spec = open_session(_config(lm, tmp_path / "a", heal="lora", torch_dtype="bfloat16")).spec
    trial = spec.trial((1,), 42)
    dtypes = {n: p.dtype for n, p in trial.model.named_parameters()}
    assert {d for n, d in dtypes.items() if "lora_" in n} == {torch.float32}
    assert {d for n, d in dtypes.items() if "lora_" not in n} == {torch.bfloat16}
    assert trial.advance(1.0).ok
    assert {s["exp_avg"].dtype for s in trial.loop.optimizer.state.values()} == {torch.float32}
    full = open_session(_config(lm, tmp_path / "b", heal="full", torch_dtype="bfloat16")).spec.trial((1,), 42)
    assert {p.dtype for p in full.model.parameters()} == {torch.bfloat16}
    res = full.advance(1.0)
    assert res.ok and res.steps == 3
    fp16 = open_session(_config(lm, tmp_path / "c", heal="lora", torch_dtype="float16")).spec.trial((1,), 42)
    assert fp16.advance(1.0).ok  # float32 adapters over a float16 base: nothing float16 is trained


# ------------------------------------------------------------------------------------------ shared base


def test_lora_candidates_share_one_frozen_base(lm, tmp_path):
    spec = open_session(_config(lm, tmp_path / "r", heal="lora", lora_rank=4)).spec
    base = models.pretrained(spec.model, spec.trial_data.task).model
    held = _storages(base)
    first, second = spec.trial((1,), 42), spec.trial((2,), 42)
    extra = {k: v for k, v in _storages(second.model).items() if k not in held}
    adapters = {p.untyped_storage().data_ptr() for n, p in second.model.named_parameters() if "lora_" in n}
    assert set(extra) == adapters, "a second candidate allocates its adapters and nothing else"
    kept = [b for i, b in enumerate(base.model.layers) if i != 2]
    for block, own in zip(kept, second.model.get_base_model().model.layers, strict=True):
        assert own is not block and own.mlp.gate_proj.base_layer.weight is block.mlp.gate_proj.weight
    own = set(_storages(first.model)) - set(held)
    assert own == {p.untyped_storage().data_ptr() for n, p in first.model.named_parameters() if "lora_" in n}
    rank, h, inter, blocks = 4, 32, 64, 3  # q k v o gate up down of 3 blocks, float32 A and B
    shapes = [(h, h), (h, 16), (h, 16), (h, h), (h, inter), (h, inter), (inter, h)]
    assert sum(extra.values()) == blocks * sum(rank * (a + b) * 4 for a, b in shapes)


def test_a_lora_candidate_leaves_the_base_as_it_was(lm, tmp_path):
    spec = open_session(_config(lm, tmp_path / "r", heal="lora")).spec
    base = models.pretrained(spec.model, spec.trial_data.task).model
    before = _digest(base)
    index = [b.self_attn.layer_idx for b in base.model.layers]
    trial = spec.trial((0, 2), 42)
    assert shares_tensors(trial.model.get_base_model())
    assert trial.advance(1.0).ok and trial.step == 3
    assert any(p.abs().sum() > 0 for n, p in trial.model.named_parameters() if "lora_B" in n), "the adapters trained"
    plain = merged(trial.model)  # the adapters folded into a copy of the weights
    assert not shares_tensors(plain) and not set(_storages(plain)) & set(_storages(base))
    assert writable(trial.model) is not trial.model
    assert _digest(base) == before, "the frozen base was written to"
    assert [b.self_attn.layer_idx for b in base.model.layers] == index == [0, 1, 2, 3]
    assert base.config.num_hidden_layers == 4 and len(find_layer_stack(base).layers) == 4
    assert not any("lora" in n for n, _ in base.named_modules())
    assert not any(p.requires_grad for p in base.parameters())
    # the next candidate starts from the pre-trained weights: the same as one built on its own
    again = spec.trial((0, 2), 42)
    x = torch.from_numpy(np.stack(spec.trial_data.eval.input_ids[:2]))
    own = models.build(spec.model, spec.trial_data.task, (0, 2), 42).eval()
    with torch.no_grad():
        torch.testing.assert_close(again.model.eval()(input_ids=x).logits, own(input_ids=x).logits, rtol=0, atol=0)
    assert again.model.get_base_model().config.num_hidden_layers == 2


def test_a_shared_candidate_with_a_new_head_equals_one_of_its_own(tiny_setup):
    """Kinds that draw a head (classification) draw the same one over the shared base as on their own."""
    from glp.tasks import Task

    # three labels: the saved two-label head does not fit, so the head is new
    task = Task("toy", ("text",), "label", num_labels=3, is_regression=False, metric="accuracy")
    src = str(tiny_setup / "model")
    own = models.build(src, task, (1,), 5).eval()
    shared = models.build(src, task, (1,), 5, shared=True).eval()
    assert shares_tensors(shared) and not shares_tensors(own)
    assert torch.equal(own.classifier.weight, shared.classifier.weight) and shared.classifier.weight.requires_grad
    held = _storages(models.pretrained(src, task).model)
    assert {k for k in _storages(shared) if k not in held} == {
        shared.classifier.weight.untyped_storage().data_ptr(), shared.classifier.bias.untyped_storage().data_ptr()
    }
    x = torch.tensor([[2, 7, 9, 11, 3]])
    with torch.no_grad():
        assert torch.equal(own(input_ids=x).logits, shared(input_ids=x).logits)
    assert json.dumps(own.config.to_dict(), sort_keys=True, default=str) == json.dumps(
        shared.config.to_dict(), sort_keys=True, default=str
    )


def test_a_copy_of_the_base_for_another_device_holds_weights_of_its_own(lm):
    """`Pretrained.on` copies the base once per other device (`shared_copy` with a conversion); here the conversion
    is a clone on the CPU, which no GPU is needed for."""
    from glp.layers import shared_copy

    base = models.pretrained(str(lm / "llama"), open_task()).model
    assert models.pretrained(str(lm / "llama"), open_task()).on("cpu") is base
    twin = shared_copy(base, lambda t: t.clone())
    assert not shares_tensors(twin) and not set(_storages(twin)) & set(_storages(base))
    assert twin.lm_head.weight is not base.lm_head.weight and not twin.lm_head.weight.requires_grad
    assert _digest(twin) == _digest(base)
    candidate = shared_copy(twin)
    assert shares_tensors(candidate) and set(_storages(candidate)) == set(_storages(twin))


# ------------------------------------------------------------------------------------------ over several devices


def test_a_candidate_offloaded_to_the_disk_scores_as_the_model_in_one_piece(lm, tmp_path, monkeypatch):
    """--device-map auto with too little memory for the candidate: accelerate keeps what fits on the CPU and reads the
    rest from the disk for each forward pass; the perplexity is that of the model in one piece, the frozen base is
    untouched, and the candidate's offload folder goes with it."""
    import gc
    import tempfile

    from glp.models.placement import Placement, is_dispatched

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    spec = open_session(_config(lm, tmp_path / "r", heal="none")).spec
    base = models.pretrained(spec.model, spec.trial_data.task).model
    before = _digest(base)
    placed = dataclasses.replace(spec, placement=Placement("auto", {"cpu": "40KB"}))
    for removed in [(), (1,), (0, 2)]:
        trial = placed.trial(removed, 42)
        assert is_dispatched(trial.model) and "disk" in trial.model.hf_device_map.values()
        folders = list(scratch.glob("glp-offload-*"))
        assert len(folders) == 1 and any(folders[0].iterdir()), "the offloaded weights are on the disk"
        result, whole = trial.advance(1.0), spec.trial(removed, 42).advance(1.0)
        assert result.ok and result.score == pytest.approx(whole.score, rel=1e-6)
        del trial
        gc.collect()
        assert not list(scratch.iterdir()), "the candidate's offload folder outlived it"
    assert _digest(base) == before


def test_training_an_offloaded_candidate_is_refused_in_one_line(lm, tmp_path):
    from glp.models.placement import Placement

    spec = open_session(_config(lm, tmp_path / "r", heal="lora")).spec
    placed = dataclasses.replace(spec, placement=Placement("auto", {"cpu": "40KB"}))
    with pytest.raises(ConfigError, match="offloaded weights cannot be trained: give it more devices"):
        placed.trial((1,), 42)


def test_a_search_over_the_cpu_and_the_disk_finds_the_plan_of_one_device(lm, tmp_path, monkeypatch):
    """The whole path: ``--device-map auto --max-memory`` reaches every candidate through the executor (and turns
    off the shared-prefix scoring, which reads the blocks' inputs off one device)."""
    from glp.models.placement import Placement

    placed, place = [], Placement.place

    def spy(self, model, *, training):
        model, main = place(self, model, training=training)
        placed.append(sorted(set(model.hf_device_map.values())))
        return model, main

    monkeypatch.setattr(Placement, "place", spy)
    one = prune(_config(lm, tmp_path / "one", heal="none"))
    spread = prune(dataclasses.replace(_config(lm, tmp_path / "two", heal="none"), device_map="auto",
                                       max_memory="cpu=40KB"))  # fmt: skip
    assert spread.removals == one.removals
    assert len(placed) == 1 + 4 + 3 + 2 and all(where == ["cpu", "disk"] for where in placed)  # baseline, 3 steps
    scores = [[c.mean for c in s.candidates] for s in one.steps]
    assert [[c.mean for c in s.candidates] for s in spread.steps] == [pytest.approx(x, rel=1e-6) for x in scores]


def open_task():
    from glp.tasks import Task

    return Task("lm", ("text",), "text", num_labels=0, is_regression=False, metric="perplexity",
                metrics=("perplexity",), kind="causal-lm")  # fmt: skip
