"""``glp prune --dry-run``: the predicted memory of a candidate, the devices, the candidates and steps the search will
run; no weights read, nothing trained or written. And the counts (`glp.search.count`) against real runs."""

from __future__ import annotations

import pytest
from conftest import tiny_prune_config
from typer.testing import CliRunner

from glp import models
from glp.cli import app
from glp.commands.prune import PruneConfig, dry_run, prune
from glp.search import make_strategy
from glp.search.count import count_search, halving_cost
from glp.search.schedule import Halving
from glp.trial.hparams import HParams

WORDS = "the quick brown fox jumps over lazy dog a man is playing guitar on stage and then".split()


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A random 6-layer Llama (hidden 32) with a word-level tokenizer, and a small text corpus."""
    import torch
    import transformers
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models

    root = tmp_path_factory.mktemp("dry")
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", *WORDS])}
    tok = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    fast.save_pretrained(str(root / "model"))
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=len(vocab), pad_token_id=0)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        transformers.LlamaForCausalLM(cfg).save_pretrained(str(root / "model"))
    text = "".join(" ".join(WORDS[(i + j) % len(WORDS)] for j in range(12)) + " \n" for i in range(200))
    (root / "train.txt").write_text(text)
    (root / "dev.txt").write_text(text[:2000])
    return root


def _config(root, **kw) -> PruneConfig:
    hp = dict(per_device_train_batch_size=4, max_seq_length=16, heal="lora", heal_steps=5)
    hp.update(kw.pop("hparams", {}))
    base = dict(model=str(root / "model"), task="lm", train_file=str(root / "train.txt"),
                dev_file=str(root / "dev.txt"), max_remove=2, out=str(root / "run"), device="cpu")  # fmt: skip
    return PruneConfig(**{**base, **kw}, hparams=HParams(**hp))


def test_dry_run_prints_a_prediction_and_writes_nothing(lm, monkeypatch, tmp_path):
    def no_weights(*a, **k):
        raise AssertionError("a dry run must not read weights")

    monkeypatch.setattr(models, "pretrained", no_weights)
    monkeypatch.setattr(models, "build", no_weights)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["prune", str(lm / "model"), "--task", "lm", "--train-file", str(lm / "train.txt"), "--dev-file",
         str(lm / "dev.txt"), "--max-remove", "2", "--heal", "lora", "--heal-steps", "5", "--max-seq-length", "16",
         "--per-device-train-batch-size", "4", "--device", "cpu", "--out", str(out), "--dry-run"],
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    text = result.output
    assert "dry run" in text and "predicted peak memory" in text and "6 layers" in text
    assert "cpu: needs" in text and "fits" in text
    assert "candidates per step 6, 5" in text and "12 fine-tunes" in text  # 6 + 5 + the baseline
    assert "5 optimizer steps per fine-tune" in text and "60 in all" in text
    assert not out.exists()


def test_dry_run_counts_and_memory(lm):
    d = dry_run(_config(lm, keep=(0,), search_seeds=2))
    assert [s.candidates for s in d.count.steps] == [5, 4]  # layer 0 protected
    assert d.count.trials == (5 + 4) * 2 + 2 and d.count.train_steps == d.count.trials * 5
    assert d.seq_len == 16 and d.setting.heal == "lora" and d.setting.batch == 4
    unpruned, step1, step2 = d.rows
    assert unpruned[1] == 6 and step1[1] == 5 and step2[1] == 4
    assert unpruned[3].peak >= step1[3].peak >= step2[3].peak > 0
    assert d.fits[0].device == "cpu" and d.fits[0].fits
    assert d.flops and d.flops > 0
    gpus = dry_run(_config(lm, devices="0,1", workers_per_device=2))
    assert [(f.device, f.workers) for f in gpus.fits] == [("cuda:0", 2), ("cuda:1", 2)]
    assert "host memory" in gpus.render()
    groups = dry_run(_config(lm, devices="0+1,2+3", device_map="auto"))  # a candidate over each group's two GPUs
    assert [(f.device, f.workers, f.capacity) for f in groups.fits] == [("cuda:0+1", 1, None), ("cuda:2+3", 1, None)]


def test_counts_of_the_strategies():
    greedy = make_strategy("greedy")
    c = count_search(greedy, 10, 3, seeds=2, steps_per_trial=7)
    assert [s.candidates for s in c.steps] == [10, 9, 8] and c.trials == 27 * 2 + 2 and c.exact
    assert c.train_steps == c.trials * 7
    assert [s.candidates for s in count_search(greedy, 10, 3, prefilter_top=4).steps] == [4, 4, 4]
    assert [s.candidates for s in count_search(make_strategy("optimal"), 5, 2).steps] == [5, 10]
    beam = count_search(make_strategy("beam", {"beam_width": 3}), 10, 3)
    assert [s.candidates for s in beam.steps] == [10, 27, 24] and not beam.exact  # duplicates merge: at most
    for name in ("top", "random", "proxy-bi", "shortgpt", "block-angular"):
        s = count_search(make_strategy(name), 10, 3, schedule=Halving(3, 3.0), steps_per_trial=9)
        assert [x.candidates for x in s.steps] == [1, 1, 1] and s.budgets == [1.0]  # never halved
        assert s.train_steps == 4 * 9
    # halving: 9 candidates to 1/9 (1 step), 3 on to 1/3 (3 steps), 1 on to the end (9 steps)
    assert halving_cost(9, Halving(3, 3.0), 9) == (9 * 1 + 3 * 2 + 1 * 6, 9 + 3 + 1)


def test_counts_match_a_real_run(tiny_run, tiny_setup, tmp_path):
    """The dry run's trials and optimizer steps are the ones the search then journals (greedy; and with halving)."""
    from glp.run.rundir import RunDir

    plan = RunDir(tiny_run).load_plan()
    d = dry_run(tiny_prune_config(tiny_setup, tmp_path / "a"))
    assert d.setting is None and "decoder LLMs" in d.render()  # a classification task: counts, no memory model
    tokens = plan.cost["train_steps"] * d.batch * d.seq_len  # its token bound counts its batches, memory model or not
    assert d.batch > 0 and f"at most {tokens:,} training tokens" in d.render()
    assert (d.count.trials, d.count.train_steps) == (plan.cost["trials"], plan.cost["train_steps"])
    config = tiny_prune_config(tiny_setup, tmp_path / "h", halving=True, rungs=2, eta=2.0)
    halved = prune(config)
    d = dry_run(config)
    assert (d.count.trials, d.count.train_steps) == (halved.cost["trials"], halved.cost["train_steps"])
