"""A small fixed run whose numbers are pinned in tests/data/reference_run.json.

Recorded before the task-kind refactor (issue 14) with the code of that time; `test_reference_run.py` runs it again
and asserts that every journal key, chosen set and count is exactly the same and that the plans' scores, search-eval
losses and every trial's numbers are the same up to another CPU's float noise (see that file). The numbers depend
on the thread setup (tests/conftest.py: OMP_NUM_THREADS=1, which the script sets too).
Regenerate (only when a change is *meant* to alter results, and say so in the commit):

    .venv/bin/python tests/reference_run.py tests/data/reference_run.json
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
from pathlib import Path

WORDS = "the quick brown fox jumps over lazy dog a man is playing guitar on stage".split()


def write_data(root: Path) -> None:
    """Toy sentiment (pos/neg) and toy similarity (a float target) train/dev CSVs, fixed by their seeds."""
    import numpy as np

    for name, n, seed in (("train", 200, 0), ("dev", 50, 1)):
        rng = np.random.default_rng(seed)
        cls, reg = ["text,label"], ["text,score"]
        for _ in range(n):
            label = int(rng.integers(2))
            words = list(rng.choice(WORDS, size=int(rng.integers(4, 12))))
            cue = label if rng.random() < 0.9 else 1 - label  # a noisy cue: no candidate scores 1.0
            words.insert(int(rng.integers(len(words))), "good" if cue else "bad")
            cls.append(f"{' '.join(words)},{'pos' if label else 'neg'}")
            k = int(rng.integers(0, 4))
            reg.append(f"{' '.join(words[:4] + ['good'] * k)},{k + float(rng.normal(0, 0.3)):.3f}")
        (root / f"{name}.csv").write_text("\n".join(cls) + "\n")
        (root / f"{name}_reg.csv").write_text("\n".join(reg) + "\n")


def make_tokenizer(model_dir: Path):
    """A word-level tokenizer over a fixed vocabulary (a trained WordPiece vocabulary can order tied merges
    differently from one process to the next, which changes every number below)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(WORDS) | {"good", "bad"}))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )  # fmt: skip
    fast.save_pretrained(str(model_dir))
    return fast


def make_model(root: Path) -> Path:
    """A random 4-layer BERT (hidden 32) with its tokenizer, the same bytes on every call."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    model_dir = root / "model"
    tok = make_tokenizer(model_dir)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertForSequenceClassification(cfg).save_pretrained(model_dir)
    return model_dir


def _journal(run: Path) -> dict[str, dict]:
    con = sqlite3.connect(run / "trials.sqlite")
    try:
        rows = con.execute("SELECT key, result FROM trials").fetchall()
    finally:
        con.close()
    keep = ("removed", "seed", "budget", "status", "score", "metrics", "steps", "eval_loss", "loss_first", "loss_last")
    return {k: {f: json.loads(r)[f] for f in keep} for k, r in sorted(rows)}


def _plan(run: Path, name: str) -> dict:
    d = json.loads((run / "plans" / f"{name}.json").read_text())
    steps = [
        {
            "n": s["n"],
            "chosen": s["chosen"],
            "candidates": [
                {k: c[k] for k in ("removed", "scores", "mean", "eval_loss", "status", "budget")}
                for c in s["candidates"]
            ],
        }
        for s in d["steps"]
    ]
    base = d.get("baseline") or {}
    return {
        "removals": d["removals"],
        "baseline": {k: base.get(k) for k in ("scores", "mean", "constant")},
        "split": d["data"]["split_fingerprint"],
        "steps": steps,
    }


def run_reference(root: Path) -> dict:
    """Run the fixed searches and evaluation under ``root``; their numbers and journal keys."""
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(root):  # relative paths: the journal keys name the model as given, "model"
        return _run(Path("."))


def _run(root: Path) -> dict:
    import torch

    from glp.commands.evaluate import EvalConfig, evaluate
    from glp.commands.prune import PruneConfig, prune
    from glp.trial.hparams import HParams

    write_data(root)
    model = "model"
    make_model(root)
    hp = HParams(learning_rate=3e-3, num_train_epochs=6.0, per_device_train_batch_size=16, max_seq_length=32)
    common = dict(model=model, train_file=str(root / "train.csv"), dev_file=str(root / "dev.csv"),
                  text_columns=("text",), label_column="label", max_remove=2, hparams=hp)  # fmt: skip
    cls_run, reg_run = root / "cls", root / "reg"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        prune(PruneConfig(task="toy", metric="accuracy", out=str(cls_run), **common))
        prune(PruneConfig(task="toy", metric="accuracy", out=str(cls_run), halving=True, rungs=2, eta=2,
                          strategy="beam", strategy_settings={"beam_width": 2}, **common))  # fmt: skip
        reg = {**common, "train_file": str(root / "train_reg.csv"), "dev_file": str(root / "dev_reg.csv"),
               "label_column": "score"}  # fmt: skip
        prune(PruneConfig(task="toyreg", metric="spearman", out=str(reg_run), strategy="top", search_seeds=2, **reg))
        ev = evaluate(EvalConfig(run_dirs=(str(cls_run),), out=str(root / "eval"), ns=(1,), seeds=1,
                                 patterns=("top",)))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    records = [
        {k: r[k] for k in ("strategy", "n", "removed", "seed", "score", "metrics")} for r in ev["records"]
    ]
    return {
        "plans": {
            "cls/greedy": _plan(cls_run, "greedy"),
            "cls/beam": _plan(cls_run, "beam"),
            "reg/top": _plan(reg_run, "top"),
        },
        "journals": {"cls": _journal(cls_run), "reg": _journal(reg_run), "eval": _journal(root / "eval")},
        "evaluation": records,
    }


if __name__ == "__main__":
    import os
    import tempfile

    os.environ["OMP_NUM_THREADS"] = "1"  # as tests/conftest.py runs the suite: the arithmetic depends on it

    with tempfile.TemporaryDirectory() as tmp:
        result = run_reference(Path(tmp) / "ref")
    Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
    Path(sys.argv[1]).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {sys.argv[1]}: {sum(len(j) for j in result['journals'].values())} journaled trials")
