"""Decoder LLMs: the causal-LM kind, healing (none / full / LoRA), prefix sharing, the LLM baselines, export."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from glp.errors import GLPError

WORDS = "the quick brown fox jumps over lazy dog a man is playing guitar on stage and then".split()


def _corpus(n_lines: int, seed: int) -> str:
    """Articles of lines with a learnable pattern (each word is followed by the next one of WORDS, mostly)."""
    rng = np.random.default_rng(seed)
    out = []
    for a in range(max(1, n_lines // 6)):
        out.append(f" = Article {a} = \n")
        for _ in range(6):
            start = int(rng.integers(len(WORDS)))
            k = int(rng.integers(6, 14))
            out.append(" ".join(WORDS[(start + j) % len(WORDS)] for j in range(k)) + " \n")
    return "".join(out)


def _tokenizer(model_dir: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    vocab = {
        w: i for i, w in enumerate(specials + WORDS + ["=", "Article", "\n", "Q:", "A:"] + [str(i) for i in range(40)])
    }
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    fast.chat_template = (
        "{% for m in messages %}Q: {{ m['content'] }} {% endfor %}{% if add_generation_prompt %}A: {% endif %}"
    )
    fast.save_pretrained(str(model_dir))
    return fast


def _make(arch: str, model_dir: Path, layers: int = 4):
    import transformers

    tok = _tokenizer(model_dir)
    common = dict(vocab_size=len(tok), pad_token_id=0, bos_token_id=2, eos_token_id=3)
    # GQA (4 query heads, 2 key/value heads); Qwen3 adds q/k norms
    gqa = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=128, **common)  # fmt: skip
    if arch == "llama":
        cfg, cls = transformers.LlamaConfig(**gqa), transformers.LlamaForCausalLM
    elif arch == "qwen3":
        cfg, cls = transformers.Qwen3Config(head_dim=8, **gqa), transformers.Qwen3ForCausalLM
    else:
        cfg = transformers.GPT2Config(n_embd=32, n_layer=layers, n_head=4, n_positions=128, **common)
        cls = transformers.GPT2LMHeadModel
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cls(cfg).save_pretrained(str(model_dir))
    return model_dir


@pytest.fixture(scope="module")
def lm_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    for arch in ("llama", "qwen3", "gpt2"):
        _make(arch, root / arch)
    (root / "train.txt").write_text(_corpus(120, 0))
    (root / "dev.txt").write_text(_corpus(30, 1))
    rows = [
        {"prompt": f"{WORDS[i % 10]} {WORDS[(i + 1) % 10]}", "response": " ".join(WORDS[(i + 2) % 10 :][:4])}
        for i in range(60)
    ]
    (root / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def _config(root, out, arch="llama", **kw):
    from glp.commands.prune import PruneConfig
    from glp.trial.hparams import HParams

    hp = dict(
        learning_rate=3e-3,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        max_seq_length=16,
        heal="full",
        heal_steps=4,
        dtype="fp32",
    )
    hp.update(kw.pop("hparams", {}))
    base = dict(
        model=str(root / arch),
        task="lm",
        train_file=str(root / "train.txt"),
        dev_file=str(root / "dev.txt"),
        max_remove=2,
        out=str(out),
        hparams=HParams(**hp),
    )
    base.update(kw)
    return PruneConfig(**base)


def _session(root, out, **kw):
    from glp.commands.prune import open_session

    return open_session(_config(root, out, **kw))


# ------------------------------------------------------------------------------------------- the kind


def test_text_is_packed_into_blocks_and_scored_by_perplexity(lm_root, tmp_path):
    s = _session(lm_root, tmp_path / "r", block_size=12)
    assert s.task.kind == "causal-lm" and s.task.metric == "perplexity"
    assert {len(x) for x in s.trial_data.train.input_ids} == {12}
    assert s.trial_data.train.labels[0].tolist() == s.trial_data.train.input_ids[0].tolist()
    from glp.kinds import kind_of

    kind = kind_of(s.task)
    assert kind.higher_is_better() is False
    # the perplexity of uniform logits is the vocabulary size
    table = s.trial_data.eval
    batch = kind.collate(table, np.arange(3), 0)
    logits = torch.zeros(3, 12, 50)
    pred = kind.reduce(logits, {k: torch.from_numpy(v) for k, v in batch.items()}).numpy()
    metrics, loss = kind.score(pred, table.subset(np.arange(3)))
    assert metrics["perplexity"] == pytest.approx(50.0) and loss == pytest.approx(math.log(50))
    assert pred[:, 1].sum() == 3 * 11  # every token after the first of a block counts


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_evaluation_loss_in_pieces_is_the_training_loss_per_token(monkeypatch, dtype):
    """reduce() scores the batch's logits in float32 pieces (bf16 logits are never copied whole): every token's NLL
    equals the one-piece float32 computation's, masked tokens and piece edges included."""
    from glp.kinds import causal_lm

    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 7, 11, generator=g) * 4).to(dtype)
    labels = torch.randint(0, 11, (3, 7), generator=g)
    labels[0, :3] = causal_lm.IGNORE  # a prompt: not counted
    labels[2, 5:] = causal_lm.IGNORE  # padding
    want, want_mask = causal_lm.CausalLM._token_nll(logits.float(), labels)
    for piece in (11, 2 * 11, 5 * 11, 1 << 22):  # 1, 2 and 5 rows per piece (across rows' ends), and one piece
        monkeypatch.setattr(causal_lm, "EVAL_PIECE", piece)
        got, mask = causal_lm.CausalLM._token_nll_pieces(logits, labels)
        assert torch.equal(got, want) and torch.equal(mask, want_mask)
    assert (got[0, :2] == 0).all() and (got[0, 2:] > 0).all() and (got[2, 4:] == 0).all()

    # and evaluation goes through them: reduce() casts no more than a piece (2 rows) to float32 at a time
    calls, cross_entropy = [], causal_lm.F.cross_entropy

    def spy(x, *args, **kwargs):
        calls.append((x.dtype, x.shape[0]))
        return cross_entropy(x, *args, **kwargs)

    monkeypatch.setattr(causal_lm, "EVAL_PIECE", 2 * 11)
    monkeypatch.setattr(causal_lm.F, "cross_entropy", spy)
    sums = causal_lm.CausalLM(None).reduce(logits, {"labels": labels})
    assert calls and {d for d, _ in calls} == {torch.float32} and max(r for _, r in calls) == 2
    assert torch.equal(sums, torch.stack([want.double().sum(1), want_mask.double().sum(1)], dim=1))


def test_every_forward_pass_asks_for_no_kv_cache_and_a_proxy_loss_is_the_training_loss(lm_root, tmp_path, monkeypatch):
    """Scoring needs no KV cache (transformers builds one in eval mode and keeps it to the end of the pass): the
    training loop's passes, the proxies' and the loss proxy's all say use_cache=False, and the proxies' batches are
    no larger than --per-device-eval-batch-size; the loss proxy's sum without a gradient (in float32 pieces) is the
    training loss's, exactly."""
    from types import SimpleNamespace

    from glp.kinds import causal_lm, kind_of
    from glp.search import proxies

    session = _session(lm_root, tmp_path / "r")
    kind, table = kind_of(session.task), session.trial_data.eval
    trial = session.spec.trial((), 42)
    seen, rows, heads = [], [], []

    def head(module, args, kwargs):
        heads.append(1)

    def record(module, args, kwargs):
        seen.append(kwargs.get("use_cache"))
        rows.append(len(kwargs["input_ids"]))

    hook = trial.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        trial.loop.predict(table)
        trial.advance(1.0)
    finally:
        hook.remove()
    assert seen and set(seen) == {False}

    small = SimpleNamespace(per_device_eval_batch_size=3)
    config = SimpleNamespace(device=None, proxy_examples=64, seed=42, hparams=small)
    scorers = [proxies.make_proxy(name, config, session) for name in ("bi", "angular", "loss")]
    scorers.append(proxies.make_block_angular(config, session))
    for scorer in scorers:
        seen.clear()
        rows.clear()
        heads.clear()
        hooks = [proxies._body(scorer.model).register_forward_pre_hook(record, with_kwargs=True),
                 scorer.model.register_forward_pre_hook(head, with_kwargs=True)]
        try:
            scorer(1, [0, 1, 2, 3]) if isinstance(scorer, proxies.BlockAngular) else scorer((), [0, 1])
        finally:
            for h in hooks:
                h.remove()
        assert seen and set(seen) == {False}
        assert len(table) > 3 and max(rows) == 3
        assert bool(heads) == isinstance(scorer, proxies.LossProxy)  # only the loss proxy needs the logits

    batch = {k: torch.from_numpy(v) for k, v in kind.collate(table, np.arange(4), 0).items()}
    logits = torch.randn(*batch["input_ids"].shape, 50, requires_grad=True)
    monkeypatch.setattr(causal_lm, "EVAL_PIECE", 3 * 50)  # pieces of 3 rows
    with torch.no_grad():
        pieces = kind.loss_sum(logits, batch["labels"])
    assert torch.equal(pieces, kind.loss_sum(logits, batch["labels"]).detach())


def test_articles_stay_on_one_side_of_the_search_split(lm_root, tmp_path):
    s = _session(lm_root, tmp_path / "r")
    train_groups, eval_groups = set(s.split.train.groups.tolist()), set(s.split.eval.groups.tolist())
    assert train_groups and eval_groups and not train_groups & eval_groups


def test_pairs_count_response_tokens_only(lm_root, tmp_path):
    s = _session(
        lm_root,
        tmp_path / "r",
        train_file=str(lm_root / "pairs.jsonl"),
        dev_file=str(lm_root / "pairs.jsonl"),
        prompt_column="prompt",
        response_column="response",
        chat_template=True,
    )
    ids, labels = s.trial_data.train.input_ids[0], s.trial_data.train.labels[0]
    from glp.models import load_tokenizer

    tok = load_tokenizer(str(lm_root / "llama"))
    text = tok.decode(ids)
    assert text.startswith("Q:") and "A:" in text and text.endswith("</s>")
    counted = labels[labels != -100]
    assert tok.decode(counted).endswith("</s>") and "Q:" not in tok.decode(counted)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(block_size=100000), "fewer than one block"),
        (dict(prompt_column="prompt"), "both --prompt-column and --response-column"),
    ],
)
def test_bad_lm_data_is_one_line(lm_root, tmp_path, kw, message):
    with pytest.raises(GLPError, match=message):
        _session(lm_root, tmp_path / "r", **kw)


def _prune_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glp.cli", "prune", *args], capture_output=True, text=True)


def test_empty_response_column_through_the_cli(lm_root, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"p": "the quick", "r": "brown"}) + "\n" + json.dumps({"p": "a man", "r": " "}) + "\n")
    r = _prune_cli(str(lm_root / "llama"), "--task", "lm", "--train-file", str(bad), "--dev-file", str(bad),
                   "--prompt-column", "p", "--response-column", "r", "--out", str(tmp_path / "o"))  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "response column 'r' is empty in 1 row(s)" in r.stderr and "Traceback" not in r.stderr


def test_short_corpus_through_the_cli(lm_root, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("the quick brown fox\n" * 6)
    r = _prune_cli(str(lm_root / "llama"), "--task", "lm", "--train-file", str(short), "--dev-file", str(short),
                   "--block-size", "64", "--out", str(tmp_path / "o"))  # fmt: skip
    assert r.returncode == 2 and "fewer than one block of 64" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------------------ healing


@pytest.mark.parametrize("arch", ["llama", "qwen3", "gpt2"])
def test_prefix_sharing_gives_the_scores_of_scoring_from_scratch(lm_root, tmp_path, arch):
    from glp.search import TrialRequest
    from glp.trial.prefix import score_unhealed

    s = _session(lm_root, tmp_path / "r", arch=arch, hparams={"heal": "none"})
    reqs = [TrialRequest((2,), 42, 1.0)] + [TrialRequest((2, i), 42, 1.0) for i in (0, 1, 3)]
    shared = score_unhealed(s.spec, reqs)
    for req, res in zip(reqs, shared, strict=True):
        alone = s.spec.trial(req.removed, 42).advance(1.0)
        assert res["status"] == "ok" and alone.ok
        assert res["score"] == pytest.approx(alone.score, rel=1e-9), (arch, req.removed)
        assert res["eval_loss"] == pytest.approx(alone.eval_loss, rel=1e-9)
        assert alone.steps == 0


def test_lora_heal_trains_only_adapters_and_the_merge_equals_the_peft_model(lm_root, tmp_path):
    from glp.trial.heal import merged

    s = _session(lm_root, tmp_path / "r", hparams={"heal": "lora", "lora_rank": 4})
    trial = s.spec.trial((1,), 42)
    trainable = {n for n, p in trial.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    res = trial.advance(1.0)
    assert res.ok and res.steps == 4
    x = torch.from_numpy(np.stack(s.trial_data.eval.input_ids[:2]))
    trial.model.eval()
    with torch.no_grad():
        before = trial.model(input_ids=x).logits
        plain = merged(trial.model)
        after = plain(input_ids=x).logits
    assert not any("lora" in n for n, _ in plain.named_parameters())
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_a_continued_lora_heal_equals_one_straight_through(lm_root, tmp_path):
    """Successive halving continues a trial (half the steps, then the rest): the same heal as one straight run."""
    s = _session(lm_root, tmp_path / "r", hparams={"heal": "lora", "heal_steps": 6})
    straight = s.spec.trial((3,), 7).advance(1.0)
    t = s.spec.trial((3,), 7)
    half = t.advance(0.5)
    resumed = t.advance(1.0)
    assert half.steps == 3 and resumed.steps == straight.steps == 6
    assert resumed.score == pytest.approx(straight.score, rel=1e-6)
    assert resumed.loss_last == pytest.approx(straight.loss_last, rel=1e-6)


def test_heal_steps_set_the_schedule_and_none_trains_nothing(lm_root, tmp_path):
    s = _session(lm_root, tmp_path / "r", hparams={"heal_steps": 3})
    assert s.spec.trial((), 42).total_steps == 3
    s = _session(lm_root, tmp_path / "r2", hparams={"heal": "none"})
    t = s.spec.trial((0,), 42)
    assert t.total_steps == 0 and t.advance(1.0).steps == 0


# ------------------------------------------------------------------------------------------ searches


def _boundary_states(model_dir: Path, table) -> torch.Tensor:
    """The hidden states of every row of ``table`` at each block boundary of the Llama in ``model_dir``: the input of
    block 0, ..., the input of block L-1 and the raw output of block L-1 (``hidden_states[-1]`` has the final norm
    applied, so that one is taken with a hook), in plain transformers and torch; float64, (L + 1, rows, tokens, h)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    last: list[torch.Tensor] = []
    hook = model.model.layers[-1].register_forward_hook(
        lambda m, i, out: last.append(out[0] if isinstance(out, tuple) else out)
    )
    rows = []
    try:
        with torch.no_grad():
            for ids in table.input_ids:
                out = model(input_ids=torch.tensor(ids)[None], output_hidden_states=True)
                rows.append(torch.cat([torch.cat(out.hidden_states[:-1]), last.pop()]).double())
    finally:
        hook.remove()
    return torch.stack(rows, 1)  # packed blocks: every row is as long


@pytest.mark.parametrize(
    "strategy, heal, keep",
    [
        ("greedy", "lora", ()),
        ("greedy", "none", ()),
        ("shortgpt", "full", ()),
        ("block-angular", "full", ()),
        ("top", "full", (3,)),
    ],
)
def test_each_llm_strategy_runs_and_perplexity_ranks_lowest_first(lm_root, tmp_path, strategy, heal, keep):
    from glp.commands.prune import open_session, prune

    cfg = _config(lm_root, tmp_path / "r", strategy=strategy, keep=keep, hparams={"heal": heal})
    plan = prune(cfg)
    assert plan.complete and sorted(plan.removals) == [1, 2]
    assert plan.baseline["mean"] > 1
    assert [s.chosen for s in plan.steps] == [plan.removals[1], plan.removals[2]]
    cos = torch.nn.functional.cosine_similarity
    if strategy in ("shortgpt", "block-angular"):  # the proxies read every search-eval row: so does the expectation
        table = open_session(cfg).trial_data.eval
        assert len(table) < cfg.proxy_examples
        x = _boundary_states(lm_root / "llama", table)
    if strategy == "greedy":
        for step in plan.steps:
            scores = [c.mean for c in step.candidates]
            assert scores == sorted(scores), "lowest perplexity first"
            assert step.chosen == step.candidates[0].removed and step.chosen_mean == min(scores)
        assert plan.order == plan.removals[2] and plan.removals[2][:1] == plan.removals[1], "nested"
        assert (plan.cost["train_steps"] == 0) == (heal == "none")
    if strategy == "shortgpt":
        # block influence, once on the unpruned model: 1 - cos(block input, block output), over all tokens
        bi = (1 - cos(x[:-1], x[1:], dim=-1)).mean(dim=(1, 2)).tolist()
        lowest = sorted(range(4), key=lambda i: (bi[i], -i))
        assert plan.removals == {1: lowest[:1], 2: lowest[:2]}
        assert [s.candidates[0].proxy for s in plan.steps] == pytest.approx([bi[i] for i in lowest[:2]], rel=1e-3)
    if strategy == "block-angular":
        # for each n, the contiguous n-layer block of smallest angular distance of the last token's states
        for n in (1, 2):
            angle = torch.arccos(cos(x[: 5 - n, :, -1], x[n:, :, -1], dim=-1).clamp(-1, 1)) / math.pi
            dist = angle.mean(1).tolist()  # by the block's first layer
            start = min(range(5 - n), key=lambda s: (dist[s], -s))
            assert sorted(plan.removals[n]) == list(range(start, start + n)), "a contiguous block"
            assert plan.steps[n - 1].candidates[0].proxy == pytest.approx(dist[start], rel=1e-3)
    if keep:
        assert plan.removals == {1: [2], 2: [2, 1]}, "top, keeping the last layer"


def test_resume_after_a_kill_during_a_heal(lm_root, tmp_path):
    """A search killed in the middle of a candidate's heal goes on from the journal with the same plan."""
    out = tmp_path / "r"
    cfg = _config(lm_root, out, max_remove=1, hparams={"heal": "lora", "heal_steps": 40})
    code = (
        "import sys, glp.commands.prune as p, glp.trial.scoring as s\n"
        "n = {'k': 0}\n"
        "orig = s.Trial.advance\n"
        "def advance(self, budget, progress=None):\n"
        "    n['k'] += 1\n"
        "    if n['k'] == 4:\n"
        "        def die(step, total, loss):\n"
        "            if step >= 5: import os; os._exit(9)\n"
        "        progress = die\n"
        "        self.loop.sync_every = 1\n"
        "    return orig(self, budget, progress)\n"
        "s.Trial.advance = advance\n"
        f"p.prune(p.PruneConfig.from_dict({cfg.to_dict()!r}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 9, r.stderr[-2000:]
    from glp.commands.prune import prune

    plan = prune(cfg)
    fresh = prune(_config(lm_root, tmp_path / "fresh", max_remove=1, hparams={"heal": "lora", "heal_steps": 40}))
    assert plan.cost["trials_reused"] == 3, "the baseline and two candidates finished before the kill"
    assert plan.removals == fresh.removals
    assert [c.mean for c in plan.steps[0].candidates] == pytest.approx([c.mean for c in fresh.steps[0].candidates])


# ------------------------------------------------------------------------------------------- export


def test_export_merges_lora_and_reloads_with_plain_transformers(lm_root, tmp_path):
    from glp.commands.export import export
    from glp.commands.prune import prune

    run = tmp_path / "r"
    prune(_config(lm_root, run, max_remove=1, hparams={"heal": "lora"}))
    out = tmp_path / "m"
    res = export(run, 1, out, finetune=True, hparams={"heal_steps": 3})
    assert res.manifest["metrics"]["dev"]["perplexity"] > 1
    assert (out / "mergekit.yaml").is_file()
    code = (
        "import sys, torch, transformers\n"
        f"m = transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})\n"
        f"t = transformers.AutoTokenizer.from_pretrained({str(out)!r})\n"
        "assert m.config.num_hidden_layers == 3, m.config.num_hidden_layers\n"
        "assert not any('lora' in n for n, _ in m.named_parameters())\n"
        "x = t('the quick brown', return_tensors='pt')\n"
        "a = m.generate(**x, max_new_tokens=8, do_sample=False, use_cache=True)\n"
        "b = m.generate(**x, max_new_tokens=8, do_sample=False, use_cache=False)\n"
        "assert torch.equal(a, b), (a, b)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)  # transformers only, no glp
    assert r.returncode == 0, r.stderr[-2000:]
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card


# ------------------------------------------------------------------------------------ evaluate, profile

ZEROSHOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "zeroshot"
LOCAL_TASKS = Path(__file__).resolve().parents[2] / "benchmarks" / "lm_eval_tasks"


def test_evaluate_heals_each_row_and_reports_test_perplexity(lm_root, tmp_path):
    from glp.commands.evaluate import EvalConfig, evaluate
    from glp.commands.prune import prune

    run = tmp_path / "r"
    prune(_config(lm_root, run, max_remove=1, hparams={"heal": "none"}))
    res = evaluate(
        EvalConfig(run_dirs=(str(run),), out=str(tmp_path / "e"), seeds=1, patterns=("top",),
                   hparams={"heal": "lora", "heal_steps": 3})
    )
    rows = {(r["strategy"], r["n"]): r for r in res["records"]}
    assert set(rows) == {("baseline", 0), ("greedy", 1), ("top", 1)}
    assert all(r["metric"] == "perplexity" and r["higher_is_better"] is False for r in rows.values())
    assert all(r["score"] > 1 for r in rows.values())
    from glp.commands.evaluate import markdown_table

    table = markdown_table(res["summary"])  # perplexity as it is, not ×100
    assert f"| {rows[('baseline', 0)]['score']:.2f} |" in table


@pytest.mark.skipif(not ZEROSHOT.is_dir(), reason="needs ../shared/data/zeroshot")
def test_lm_eval_scores_the_healed_rows_offline(lm_root, tmp_path):
    pytest.importorskip("lm_eval")
    from glp.commands.evaluate import EvalConfig, evaluate
    from glp.commands.prune import prune

    run = tmp_path / "r"
    prune(_config(lm_root, run, max_remove=1, strategy="top", hparams={"heal": "none"}))
    res = evaluate(
        EvalConfig(run_dirs=(str(run),), out=str(tmp_path / "e"), seeds=1, lm_eval_tasks="arc_easy_local,piqa_local",
                   lm_eval_include_path=str(LOCAL_TASKS), lm_eval_limit=4, hparams={"heal": "lora", "heal_steps": 2})
    )
    assert [(r["strategy"], r["n"]) for r in res["records"]] == [("baseline", 0), ("top", 1)]
    for r in res["records"]:
        for key in ("arc_easy_local:acc", "arc_easy_local:acc_norm", "piqa_local:acc"):
            assert 0.0 <= r["metrics"][key] <= 1.0


def test_unknown_lm_eval_task_is_one_line(lm_root, tmp_path):
    pytest.importorskip("lm_eval")
    from glp.commands.evaluate import EvalConfig, evaluate
    from glp.commands.prune import prune

    run = tmp_path / "r"
    prune(_config(lm_root, run, max_remove=1, strategy="top", hparams={"heal": "none"}))
    with pytest.raises(GLPError, match="unknown lm-eval task"):
        evaluate(EvalConfig(run_dirs=(str(run),), out=str(tmp_path / "e"), seeds=1, lm_eval_tasks="no_such_task"))


def test_profile_times_generate_for_decoders(lm_root):
    from glp.commands.profile import markdown_table, profile

    # 16 new tokens: their time stays clearly above one token's even on a loaded machine (4 did not, under load)
    res = profile(str(lm_root / "llama"), [[1, 2]], repeats=4, warmup=0, seq_len=8, new_tokens=16, gpu=False)
    assert res["generate"] == {"prompt_len": 8, "new_tokens": 16, "repeats": 3, "batch": 1}
    for row in res["rows"]:
        assert row["ttft_ms"] > 0 and row["tokens_per_s"] > 0
        assert row["tokens_per_s"] == pytest.approx(15 / ((row["generate_ms"] - row["ttft_ms"]) / 1000))
    assert "TTFT ms" in markdown_table(res)


def test_mergekit_slices_name_the_kept_layers():
    import yaml

    from glp.commands.export import kept_ranges, mergekit_yaml

    assert kept_ranges(30, [29, 5, 6]) == [(0, 5), (7, 29)]
    cfg = yaml.safe_load(mergekit_yaml("HuggingFaceTB/SmolLM2-135M", 30, [29, 5, 6]))
    assert cfg["merge_method"] == "passthrough"
    assert [s["sources"][0]["layer_range"] for s in cfg["slices"]] == [[0, 5], [7, 29]]


def test_distill_is_refused_for_causal_lms(lm_root, tmp_path):
    from glp.commands.export import export
    from glp.commands.prune import prune
    from glp.trial.distill import DistillSettings

    run = tmp_path / "r"
    prune(_config(lm_root, run, max_remove=1, strategy="top", hparams={"heal": "none"}))
    with pytest.raises(GLPError, match="--distill is for classification"):
        export(run, 1, tmp_path / "m", finetune=True, distill=DistillSettings())


@pytest.mark.parametrize("arch", ["qwen3", "gpt2"])
def test_lora_heal_search_on_other_architectures(lm_root, tmp_path, arch):
    from glp.commands.prune import prune

    plan = prune(_config(lm_root, tmp_path / "r", arch=arch, max_remove=1, hparams={"heal": "lora"}))
    assert plan.complete and len(plan.steps[0].candidates) == 4
    assert all(c.status == "ok" for c in plan.steps[0].candidates)


def test_gradient_checkpointing_heals_to_the_same_model(lm_root, tmp_path):
    plain = _session(lm_root, tmp_path / "a", hparams={"heal": "lora"}).spec.trial((1,), 3).advance(1.0)
    ckpt = _session(lm_root, tmp_path / "b", hparams={"heal": "lora", "gradient_checkpointing": True})
    trial = ckpt.spec.trial((1,), 3)
    assert any(getattr(m, "gradient_checkpointing", False) for m in trial.model.get_base_model().modules())
    res = trial.advance(1.0)
    assert res.loss_last == pytest.approx(plain.loss_last, rel=1e-5)
    assert res.score == pytest.approx(plain.score, rel=1e-5)


def test_halving_and_search_seeds_treat_a_heal_as_the_budget(lm_root, tmp_path):
    from glp.commands.prune import prune

    plan = prune(_config(lm_root, tmp_path / "r", max_remove=1, halving=True, rungs=2, eta=2.0, search_seeds=2,
                         hparams={"heal": "lora", "heal_steps": 4}))  # fmt: skip
    step = plan.steps[0]
    rejected = [c for c in step.candidates if c.status == "rejected"]
    finished = [c for c in step.candidates if c.status == "ok"]
    assert len(rejected) == 2 and len(finished) == 2, "4 candidates, half stopped after the first rung"
    assert all(c.budget == 0.5 for c in rejected) and all(c.budget == 1.0 for c in finished)
    assert all(len(c.scores) == 2 for c in step.candidates), "every candidate healed with both seeds"
    assert step.separated is not None  # measured: the step had 2 search seeds


def test_a_warm_started_lora_search_starts_each_candidate_from_the_merged_healed_parent(lm_root, tmp_path):
    """--init parent on a decoder healed with LoRA: the parent kept for the next step is the merged model (no
    adapter left in it), and a candidate of the next step is that model with one more layer removed."""
    from safetensors.torch import load_file

    from glp.commands.prune import open_session, prune
    from glp.run.rundir import RunDir

    cfg = _config(lm_root, tmp_path / "run", init="parent", hparams={"heal": "lora", "heal_steps": 3})
    plan = prune(cfg)
    assert plan.complete and plan.strategy["init"] == "parent" and sorted(plan.removals) == [1, 2]
    first = plan.removals[1][0]
    assert all(c.removed[0] == first for c in plan.steps[1].candidates)  # step 2 extends step 1's winner
    parent = load_file(str(tmp_path / "run" / plan.strategy["parents"]["1"]))
    assert parent and not any("lora" in k for k in parent)
    layers = {int(k.split(".")[2]) for k in parent if k.startswith("model.layers.")}
    assert layers == {0, 1, 2}  # 4 layers less the one removed
    session = open_session(cfg, cache_dir=RunDir(tmp_path / "run").cache_dir)
    added = next(i for i in range(4) if i != first)
    child = session.spec.trial((first, added), 42)
    state = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
             for k, v in child.model.state_dict().items() if "lora_" not in k}
    kept = [i for i in range(4) if i != first]  # the parent's layer j is original layer kept[j]
    for j, original in enumerate(kept):
        if original == added:
            continue
        new_j = [i for i in range(4) if i not in (first, added)].index(original)
        key = "model.layers.{}.self_attn.q_proj.weight"
        assert torch.equal(state[key.format(new_j)], parent[key.format(j)])
    assert torch.equal(state["model.embed_tokens.weight"], parent["model.embed_tokens.weight"])
    # the heal moved the weights the candidate inherits: the parent is not the pre-trained model
    pretrained = load_file(str(lm_root / "llama" / "model.safetensors"))
    q = "model.layers.{}.self_attn.q_proj.weight"
    assert not torch.equal(parent[q.format(0)], pretrained[q.format(kept[0])])
