"""Tokens per training example of each GLUE task under a model's tokenizer: what sizes a fine-tune's cost on a CPU
(glp pads each batch to its own longest example, so the cost follows the examples' lengths, not --max-seq-length).

    .venv/bin/python benchmarks/token_lengths.py models/all-mpnet-base-v2 --data-dir ../shared/data/glue

prints, per task, the mean, median and 90th percentile of the tokens of the whole training split (each example
truncated at that task's max length, as the study fine-tunes it) and the share that is truncated, as markdown.
"""

from __future__ import annotations

import argparse
import statistics

# the depth study's max length per task (benchmarks/mpnet_study.sh)
MAX_LEN = {"sst2": 64, "stsb": 64, "cola": 64, "mrpc": 128, "rte": 128}


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a model path, pkg:NAME or hub name (its tokenizer is read)")
    ap.add_argument("--data-dir", default="../shared/data/glue")
    ap.add_argument("--tasks", default="sst2,stsb,cola,mrpc,rte")
    args = ap.parse_args(argv)
    from glp.data.glue import load_glue_dir
    from glp.models.loader import load_tokenizer

    tok = load_tokenizer(args.model)
    lines = ["| task | train examples | max length | tokens: mean | median | 90th percentile | truncated |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for task in args.tasks.split(","):
        train = load_glue_dir(task, args.data_dir).train
        full = tok(train.text_a, train.text_b)["input_ids"] if train.text_b else tok(train.text_a)["input_ids"]
        n = [len(x) for x in full]
        cut = [min(x, MAX_LEN[task]) for x in n]
        lines.append(f"| {task} | {len(n):,} | {MAX_LEN[task]} | {statistics.fmean(cut):.1f} | "
                     f"{statistics.median(cut):g} | {sorted(cut)[int(0.9 * len(cut))]} | "
                     f"{sum(x > MAX_LEN[task] for x in n) / len(n):.1%} |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
