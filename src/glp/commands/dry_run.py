"""``glp prune --dry-run``: what a search would need and do, before anything is trained.

Reads the model's config (no weights), the task's data and the tokenizer (to count the search split's examples and
their longest row), and answers: the predicted peak memory of one candidate (`glp.memory`) for the unpruned model and
the first and last step's candidates, whether that fits each device of ``--device`` / ``--devices`` (CPU: the
memory available now; CUDA: the card's memory, times the workers sharing it; a group 0+1: the sum of its cards'),
and how many candidates, fine-tunes, optimizer steps and tokens the search will train (`glp.search.count`), with
their FLOPs. Nothing is written: no run directory, no cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from glp import memory, models
from glp.kinds import kind_of, load_data
from glp.layers import config_num_layers
from glp.memory import Estimate, ModelShape, Setting, gib
from glp.run.executors.devices import parse_devices
from glp.search import SearchContext
from glp.search.count import SearchCount, count_search, step_summary
from glp.trial.loop import cpu_has_bf16, num_steps

#: forward FLOPs multiples of one training token: forward + backward (LoRA: input gradients only), + recompute
_TRAIN_FLOPS = {"full": 3, "lora": 2, "none": 0}


@dataclass
class DeviceFit:
    device: str
    workers: int
    capacity: int | None  # bytes: available RAM (CPU) or the card's memory (CUDA); None when not visible here
    need: int  # bytes: workers × the largest candidate's peak

    @property
    def fits(self) -> bool | None:
        return None if self.capacity is None else self.need <= self.capacity


@dataclass
class DryRun:
    model: str
    kind: str
    num_layers: int
    setting: Setting | None  # None: no memory model for this kind
    rows: list[tuple[str, int, int, Estimate]]  # (label, layers kept, parameters, estimate)
    fits: list[DeviceFit]
    count: SearchCount
    train_rows: int
    eval_rows: int
    seq_len: int
    flops: float | None
    batch: int = 0  # training rows per optimizer step
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        s, c = self.setting, self.count
        out = ["dry run: nothing is trained or written", f"model {self.model}: {self.num_layers} layers (config only)"]
        if s is not None:
            out.append(
                f"heal {s.heal}, weights {s.weights_dtype}{', bf16 autocast' if s.autocast else ''}, batch "
                f"{s.batch} x {s.seq_len} tokens, eval batch {s.eval_batch}, gradient checkpointing "
                f"{'on' if s.gradient_checkpointing else 'off'}" + (f", LoRA rank {s.lora_rank}" * (s.heal == "lora"))
            )
            out.append("predicted peak memory of one candidate:")
            for label, kept, params, est in self.rows:
                parts = ", ".join(f"{k} {gib(v)}" for k, v in est.parts.items() if v)
                out.append(f"  {label:<10} {kept:>3} layers, {params / 1e6:,.1f}M parameters: {gib(est.peak)}")
                out.append(f"             ({parts})")
        if self.fits:
            out.append("devices (the largest candidate, times the workers on each):")
        for f in self.fits:
            where = f"{f.device}" + (f" x {f.workers} workers" if f.workers > 1 else "")
            if "+" in f.device:  # a device group: the candidate's blocks spread over its GPUs (--device-map auto)
                where += " (a group: the sum of its GPUs' memory, as --device-map auto spreads the blocks)"
            if f.capacity is None:
                out.append(f"  {where}: needs {gib(f.need)}; its memory is not visible on this machine")
            else:
                verdict = "fits" if f.fits else "does NOT fit"
                share = f.need / f.capacity if f.capacity else float("inf")
                out.append(f"  {where}: needs {gib(f.need)} of {gib(f.capacity)} ({share:.0%}): {verdict}")
        trials = "?" if c.trials is None else f"{'' if c.exact else '≤ '}{c.trials:,}"
        out.append(
            f"search {c.strategy}, n = 1..{len(c.steps)}: candidates per step {step_summary(c.steps)}; {trials} "
            f"fine-tunes ({c.seeds} seed(s){', baseline included' if c.baseline_trials else ''})"
        )
        if len(c.budgets) > 1:
            out.append(f"  successive halving: rungs at {', '.join(f'{b:g}' for b in c.budgets)} of a fine-tune")
        if c.train_steps is not None:
            tokens = c.train_steps * self.batch * self.seq_len
            out.append(
                f"  {c.steps_per_trial:,} optimizer steps per fine-tune ({self.train_rows:,} search-train rows), "
                f"{c.train_steps:,} in all; at most {tokens:,} training tokens and {c.evaluations:,} scorings of "
                f"{self.eval_rows:,} search-eval rows"
            )
        if self.flops:
            out.append(f"  about {self.flops:.2e} FLOPs (2 per weight and token for each forward, backward and "
                       "recomputing pass; at most)")
        out.extend(f"note: {n}" for n in self.notes)
        return "\n".join(out)


def _autocast(dtype: str, device: str, kind: Any) -> bool:
    """Does ``--dtype`` mean bf16 autocast on ``device`` (`glp.trial.loop.use_bf16`, assuming a GPU has bf16)?"""
    if dtype != "auto":
        return dtype == "bf16"
    return device.startswith("cuda") or (cpu_has_bf16() and bool(getattr(kind, "bf16_on_cpu", False)))


def _weights_dtype(hp: Any, conf: Any) -> str:
    """The weights' precision: ``--torch-dtype`` (``auto``: the checkpoint's, as its config names it)."""
    name = str(getattr(hp, "torch_dtype", None) or "float32")
    if name == "auto":
        name = str(getattr(conf, "dtype", None) or getattr(conf, "torch_dtype", None) or "float32")
    name = name.lower().removeprefix("torch.")
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(name, "fp32")


def _slots(config: Any) -> list[tuple[str, int]]:
    """(device, workers on it) for ``--devices`` (or the one in-process ``--device``)."""
    import torch  # deferred: only to see which devices exist

    slots = parse_devices(config.devices, config.workers_per_device)
    if not slots:
        slots = [config.device or ("cuda" if torch.cuda.is_available() else "cpu")]
    slots = ["cuda:0" if d == "cuda" else d for d in slots]
    return [(d, slots.count(d)) for d in dict.fromkeys(slots)]


def _capacity(device: str) -> int | None:
    import torch  # deferred

    if device == "cpu":
        import psutil  # deferred: accelerate's dependency

        return int(psutil.virtual_memory().available)
    ids = [int(i) for i in device.split(":")[1].split("+")]  # a group (cuda:0+1, --device-map auto): their sum
    if not torch.cuda.is_available() or max(ids) >= torch.cuda.device_count():
        return None
    return sum(int(torch.cuda.get_device_properties(i).total_memory) for i in ids)


def _flops(shape: ModelShape, s: Setting, count: SearchCount, eval_rows: int, seq: int) -> float | None:
    """Training and scoring FLOPs of the search, each step's candidates at their kept layers."""
    if count.train_steps is None:
        return None
    mult = _TRAIN_FLOPS[s.heal] + (s.gradient_checkpointing and s.heal != "none")
    total = 0.0
    runs = [(shape.layers, count.baseline_trials * count.steps_per_trial, count.baseline_trials)]
    runs += [(shape.layers - st.n, st.train_steps * count.seeds, st.evaluations * count.seeds) for st in count.steps]
    for kept, steps, evals in runs:
        fwd = shape.kept(kept).flops_per_token(seq)
        total += fwd * (mult * steps * s.batch * seq + evals * eval_rows * seq)
    return total


def _advise(result: DryRun, est: Estimate, s: Setting) -> None:
    """Notes on what dominates the largest candidate's peak, once per kind of note."""
    notes = []
    if est.eval_peak > est.train_peak and est.parts.get("eval", 0) > est.peak / 2:
        notes.append(f"scoring a batch of {s.eval_batch} x {s.seq_len} tokens takes {gib(est.parts['eval'])} (its "
                     "logits over the vocabulary): a smaller --per-device-eval-batch-size lowers the peak")  # fmt: skip
    if s.quantized and s.device == "cpu":
        notes.append("--quantize 4bit needs a CUDA GPU (bitsandbytes): on the CPU the search would stop at its first "
                     "candidate")  # fmt: skip
    if s.device == "cpu":
        notes.append("on the CPU glibc's malloc may keep freed memory resident: peaks measured up to 45% higher "
                     "with LoRA (MALLOC_MMAP_THRESHOLD_=65536 returns it; docs/parallel.md)")  # fmt: skip
    result.notes.extend(n for n in notes if n not in result.notes)


def dry_run(config: Any) -> DryRun:
    """What ``glp prune`` with ``config`` (a `glp.commands.prune.PruneConfig`) would need and run."""
    source = models.resolve(config.model, gguf_file=config.gguf_file, trust_remote_code=config.trust_remote_code)
    conf = models.load_config(source)
    num_layers = int(config_num_layers(conf) or 0)
    strategy = config.make_strategy()
    SearchContext(num_layers, config.max_remove, lambda r: [], config.seeds, frozenset(config.keep))  # -n, --keep
    ds = load_data(config)
    kind = kind_of(ds.task)
    split = kind.split(ds.train, config.eval_fraction, config.seed)
    tokenizer = models.load_tokenizer(source, pre_split_words=kind.pre_split_words)
    hp = config.hparams
    train = kind.encode(split.train, tokenizer, hp.max_seq_length)
    evals = kind.encode(split.eval, tokenizer, hp.max_seq_length)
    train_rows = min(len(train), hp.max_train_samples or len(train))
    eval_rows = min(len(evals), hp.max_eval_samples or len(evals))
    seq = int(max(train.lengths.max(initial=1), evals.lengths.max(initial=1)))
    steps = 0 if hp.heal == "none" else num_steps(train_rows, hp.per_device_train_batch_size, hp.num_train_epochs,
                                                  hp.heal_steps)[1]  # fmt: skip
    count = count_search(
        strategy, num_layers - len(config.keep), config.max_remove, seeds=len(config.seeds), baseline=config.baseline,
        prefilter_top=config.prefilter_top, schedule=config.schedule, steps_per_trial=steps,
    )  # fmt: skip
    slots = _slots(config)
    result = DryRun(config.model, kind.name, num_layers, None, [], [], count, train_rows, eval_rows, seq, None)
    result.batch = min(hp.per_device_train_batch_size, train_rows)
    if kind.name != "causal-lm":
        result.notes.append(f"memory is predicted for decoder LLMs (causal-lm tasks), not for {kind.name}")
        return result
    shape = ModelShape.from_config(conf)
    for device, workers in slots:
        setting = Setting(
            heal=hp.heal, weights_dtype=_weights_dtype(hp, conf), quantized=bool(getattr(hp, "quantize", None)),
            autocast=_autocast(hp.dtype, device, kind), seq_len=seq,
            batch=min(hp.per_device_train_batch_size, train_rows), lora_rank=hp.lora_rank,
            eval_batch=min(hp.per_device_eval_batch_size, eval_rows),
            lora_targets=hp.lora_targets, gradient_checkpointing=hp.gradient_checkpointing,
            device="cpu" if device == "cpu" else "cuda",
        )  # fmt: skip
        kept = [("unpruned", num_layers)] * bool(config.baseline) + [("step 1", num_layers - 1)]
        kept += [(f"step {config.max_remove}", num_layers - config.max_remove)] * (config.max_remove > 1)
        rows = [(label, k, shape.kept(k).params, memory.estimate(shape.kept(k), setting, shape)) for label, k in kept]
        if result.setting is None:
            result.setting, result.rows = setting, rows
            result.flops = _flops(shape, setting, count, eval_rows, seq)
        result.fits.append(DeviceFit(device, workers, _capacity(device), workers * max(r[3].peak for r in rows)))
        _advise(result, rows[0][3], setting)
        host = max(r[3].host for r in rows)
        if host and not any("host memory" in n for n in result.notes):
            result.notes.append(f"each GPU worker also keeps the pre-trained weights in host memory: {gib(host)}")
    return result
