"""`glp profile`: parameters and inference latency of a model and its pruned versions, in one call.

The paper's setup: random input ids of length 128, CPU latency at batch size 1 and (where CUDA exists) GPU
latency at batch size 32, warm-up forwards first, then the median of repeated forwards under
``torch.inference_mode``. CPU threads are torch's default. The speed-up of a row is the latency of the unpruned
model divided by the row's latency.

Rows are timed round-robin (repeat r times every model, then repeat r+1 ...) when they fit in memory together,
so that a burst of load on a shared machine hits every row alike instead of one row.

Decoders with a language-model head are also timed as their users time them: greedy ``generate`` with the KV cache
at batch 1 from a ``seq_len``-token prompt, the time to first token (``max_new_tokens=1``) and the decode speed in
tokens per second over ``new_tokens`` tokens, on the CPU.

Runtimes (``runtimes``, ``--runtime``): ``torch`` (the default), ``onnxruntime`` and ``onnxruntime-int8`` (``int8``).
For an ONNX runtime every model is exported to a temporary ONNX file (`glp.onnx`; int8: ONNX Runtime's dynamic
quantization of it) and an ONNX Runtime session is timed on the CPU with the same inputs, in the same round-robin,
with ``threads`` intra-op threads (the threads torch gets), one inter-op thread and thread spinning off. A row per
model and runtime; every speed-up is over the unpruned model in the first runtime listed, so ``n`` layers removed
and int8 read together. ``cpu_batched`` also times the CPU at that batch size; every CPU timing gives latency and
throughput (examples per second). GPU and ``generate`` timings are PyTorch's.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from glp import models
from glp import onnx as glp_onnx
from glp.errors import ConfigError, GLPError
from glp.layers import drop_layers, num_layers, parameter_count
from glp.results.manifest import read_manifest
from glp.results.profile import SCHEMA, parse_runtimes
from glp.results.profile import load as load  # re-exported for glp.cli
from glp.results.profile import markdown_table as markdown_table  # re-exported for glp.cli
from glp.results.profile import save as save  # re-exported for glp.cli
from glp.run.rundir import RunDir
from glp.tasks import Task

# torch (and glp.layers, which imports it) are imported where a model is built or timed: reading a profile through
# this module (glp show --profile) needs neither.

ROUND_ROBIN_MAX_BYTES = 4 << 30  # time rows round-robin while all models together take at most this much
REF = 0  # the row speed-ups are relative to: the unpruned model (or the exported model when its source is gone)


@dataclass
class Entry:
    label: str
    n: int
    removed: list[int]
    model: Any


def _load(source: Any, task: Any = None) -> Any:
    """The model with the plan's task head (a head of the task's kind: part of what ships), else as it was saved
    (its ``architectures`` class); float32, eval mode."""
    if task is not None:
        return models.build(source, task).eval()
    return models.load_saved(source, dtype=torch.float32).eval()  # (a GGUF-loaded model refuses .float())


def build_entries(
    model_source: str,
    removals: Sequence[Sequence[int]] = (),
    plan_dir: str | os.PathLike[str] | None = None,
    compare: Sequence[str] = (),
) -> tuple[list[Entry], dict[str, Any]]:
    """The rows to time: the unpruned model first, then every n of the plan, every ``removals`` set and every
    ``compare`` model (another model, with the plan's task head: a ready-made small model beside the pruned ones).

    ``model_source`` may be a run directory (its plan and the plan's model are used) or a directory written by
    ``glp export`` (its source model, when still there, is the unpruned reference).
    """
    run = RunDir.with_plan(model_source)
    if run is not None and plan_dir is None:
        plan_dir = run.path
    plan = RunDir.read_plan(plan_dir) if plan_dir is not None else None
    source = models.from_record(plan.model) if run is not None else models.resolve(model_source)
    info: dict[str, Any] = {"model": source.name}
    task = None
    if plan is not None:
        info["plan"] = str(plan_dir)
        info["strategy"] = plan.strategy.get("name")
        info["task"] = plan.task.get("name")
        task = Task.from_dict(plan.task)

    manifest = read_manifest(source.path) if source.is_local else None
    if manifest is not None:  # an exported model: time its unpruned source as the reference
        entries = _exported_entries(source, manifest)
        info["exported"] = True
        base, base_removed = entries[-1].model, entries[-1].removed
    else:
        base, base_removed = _load(source, task), []
        entries = [Entry("unpruned", 0, [], base)]

    total = num_layers(base)
    sets: list[tuple[str, list[int]]] = []
    if plan is not None:
        if plan.num_layers != total and not base_removed:
            raise ConfigError(f"the plan is for a {plan.num_layers}-layer model, {source.name} has {total} layers")
        for n in sorted(plan.removals):
            sets.append((f"{plan.strategy.get('name')} n={n}", plan.layers_to_remove(n)))
    for r in removals:
        sets.append((f"remove {','.join(map(str, r))}", list(r)))
    if base_removed and sets:
        raise ConfigError("--remove/--plan apply to an unpruned model, not to an exported (already pruned) one")
    for label, removed in sets:
        entries.append(Entry(label, len(removed), list(removed), drop_layers(base, removed, inplace=False)))
    for name in compare:  # at the n of as many layers fewer (the label says which model it is)
        other = _load(models.resolve(name), task)
        layers = num_layers(other)
        entries.append(Entry(f"{name} ({layers} layers)", max(0, total - layers), [], other))
    return entries, info


def _exported_entries(source: Any, manifest: dict[str, Any]) -> list[Entry]:
    """An exported model's rows: its unpruned source when that is on this machine, then the exported model."""
    entries: list[Entry] = []
    ref = str(manifest.get("source", {}).get("model", ""))
    try:
        ref_source = models.resolve(ref) if ref else None
    except GLPError:
        ref_source = None  # the source model is not on this machine: time the exported model alone
    if ref_source is not None:
        entries.append(Entry("unpruned source", 0, [], _load(ref_source, Task.from_dict(manifest["task"]))))
    removed = list(manifest.get("removed_layers", []))
    entries.append(Entry("exported", len(removed), removed, _load(source)))
    return entries


def _inputs(model: Any, batch: int, seq_len: int, device: Any, seed: int = 0) -> dict[str, Any]:
    vocab = int(getattr(model.config, "vocab_size", 1000) or 1000)
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos is not None and seq_len > int(max_pos):
        raise ConfigError(f"--seq-len {seq_len} is longer than the model's max_position_embeddings ({max_pos})")
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(5, vocab - 1), vocab, (batch, seq_len), generator=g)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def _sync(device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_models(
    models: Sequence[Any], batch: int, seq_len: int, repeats: int, warmup: int, device: Any, round_robin: bool = True
) -> list[list[float]]:
    """Per model, ``repeats`` forward latencies in milliseconds (after ``warmup`` forwards each)."""
    times: list[list[float]] = [[] for _ in models]
    inputs = [_inputs(m, batch, seq_len, device) for m in models]

    def once(i: int) -> float:
        _sync(device)
        t0 = time.perf_counter()
        models[i](**inputs[i])
        _sync(device)
        return 1000.0 * (time.perf_counter() - t0)

    with torch.inference_mode():
        for i in range(len(models)):
            for _ in range(warmup):
                models[i](**inputs[i])
        if round_robin:
            for _ in range(repeats):
                for i in range(len(models)):
                    times[i].append(once(i))
        else:
            for i in range(len(models)):
                times[i] = [once(i) for _ in range(repeats)]
    return times


def can_generate(model: Any) -> bool:
    """A decoder with a language-model head (``generate`` makes sense)."""
    check = getattr(model, "can_generate", None)
    return bool(callable(check) and check())


def time_generate(
    model: Any, prompt_len: int, new_tokens: int, repeats: int, warmup: int, device: Any
) -> tuple[list[float], list[float]]:
    """Greedy ``generate`` with the KV cache at batch 1, as users time a decoder: (time to first token, time of
    ``new_tokens`` tokens) in milliseconds, ``repeats`` each after ``warmup`` untimed runs. Every run makes exactly
    that many tokens (``min_new_tokens``), so an end-of-sequence token does not cut it short."""
    inputs = _inputs(model, 1, prompt_len, device)
    pad = getattr(model.config, "pad_token_id", None)
    eos = getattr(model.config, "eos_token_id", None)
    kw = {"do_sample": False, "use_cache": True, "pad_token_id": pad if pad is not None else eos}

    def once(k: int) -> float:
        _sync(device)
        t0 = time.perf_counter()
        model.generate(**inputs, max_new_tokens=k, min_new_tokens=k, **kw)
        _sync(device)
        return 1000.0 * (time.perf_counter() - t0)

    with torch.inference_mode():
        for _ in range(warmup):
            once(new_tokens)
        first = [once(1) for _ in range(repeats)]
        full = [once(new_tokens) for _ in range(repeats)]
    return first, full


def _fill_generate(rows: list[dict[str, Any]], timed: list[tuple[list[float], list[float]]], new_tokens: int) -> None:
    """Time to first token, decode tokens per second ((N - 1) tokens over the time after the first) and speed-ups."""
    for r, (first, full) in zip(rows, timed, strict=True):
        ttft, total = statistics.median(first), statistics.median(full)
        r["ttft_ms"] = ttft
        r["generate_ms"] = total
        r["tokens_per_s"] = (new_tokens - 1) / ((total - ttft) / 1000.0) if total > ttft and new_tokens > 1 else None
    base = rows[0]
    for r in rows:
        r["ttft_speedup"] = base["ttft_ms"] / r["ttft_ms"] if r["ttft_ms"] else None
        tps, tps0 = r.get("tokens_per_s"), base.get("tokens_per_s")
        r["tokens_per_s_speedup"] = tps / tps0 if tps and tps0 else None


def profile(
    model_source: str,
    removals: Sequence[Sequence[int]] = (),
    plan_dir: str | os.PathLike[str] | None = None,
    *,
    repeats: int = 20,
    warmup: int = 3,
    seq_len: int = 128,
    cpu_batch: int = 1,
    gpu_batch: int = 32,
    cpu: bool = True,
    gpu: bool | None = None,
    threads: int | None = None,
    on_row: Callable[[str], None] | None = None,
    new_tokens: int = 32,
    generate: bool | None = None,
    compare: Sequence[str] = (),
    runtimes: str | Sequence[str] = ("torch",),
    cpu_batched: int | None = None,
) -> dict[str, Any]:
    """Parameters, CPU and GPU latency and speed-ups of the unpruned model and each pruned version, in each runtime.

    ``threads``: CPU threads while timing (default: torch's default); restored afterwards.
    """
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"--repeats must be >= 1 and --warmup >= 0, got {repeats} and {warmup}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    if cpu_batched is not None and cpu_batched < 1:
        raise ConfigError(f"--cpu-batched must be at least 1, got {cpu_batched}")
    runtimes = parse_runtimes(runtimes)
    if any(r != "torch" for r in runtimes):
        glp_onnx.require()  # before the models are built
    entries, info = build_entries(model_source, removals, plan_dir, compare)
    with_torch = "torch" in runtimes
    use_gpu = torch.cuda.is_available() and with_torch if gpu is None else bool(gpu)
    if use_gpu and not torch.cuda.is_available():
        raise ConfigError("--gpu asked for, but CUDA is not available here")
    if use_gpu and not with_torch:
        raise ConfigError("--gpu times PyTorch: add torch to --runtime")
    nets = [e.model for e in entries]
    nbytes = sum(p.numel() * p.element_size() for m in nets for p in m.parameters())
    rr = nbytes * len(runtimes) <= ROUND_ROBIN_MAX_BYTES
    torch_rows = _size_rows(entries)
    used_threads = threads or torch.get_num_threads()
    generate_info = ort_info = None
    with tempfile.TemporaryDirectory(prefix="glp-onnx-") as tmp:
        timed, rows, ort_info = _runtime_models(entries, torch_rows, runtimes, used_threads, tmp, on_row)
        if cpu:
            _time_cpu(rows, timed, (cpu_batch, cpu_batched), seq_len, repeats, warmup, used_threads, rr, on_row)
    if cpu and with_torch:
        gen = all(can_generate(m) for m in nets) if generate is None else bool(generate)
        if gen:
            generate_info = _time_cpu_generate(torch_rows, nets, seq_len, new_tokens, repeats, used_threads, on_row)
    if use_gpu:
        _time_gpu(torch_rows, nets, gpu_batch, seq_len, repeats, warmup, rr, on_row)
    cpu_info = {"batch": cpu_batch, "threads": used_threads, "repeats": repeats, "warmup": warmup}
    return {
        "schema": SCHEMA,
        **info,
        "seq_len": seq_len,
        "cpu": {**cpu_info, **({"batched": cpu_batched} if cpu_batched else {})} if cpu else None,
        "gpu": {"batch": gpu_batch, "device": torch.cuda.get_device_name(0), "repeats": repeats, "warmup": warmup}
        if use_gpu
        else None,
        "generate": generate_info,
        "round_robin": rr,
        "dtype": "float32",
        "torch": torch.__version__,
        "runtimes": runtimes,
        **({"onnxruntime": ort_info} if ort_info else {}),
        "rows": rows,
    }


def _runtime_models(
    entries: Sequence[Entry],
    torch_rows: list[dict[str, Any]],
    runtimes: Sequence[str],
    threads: int,
    tmp: str,
    on_row: Callable[[str], None] | None,
) -> tuple[list[Any], list[dict[str, Any]], dict[str, Any] | None]:
    """What is timed in each runtime and its rows (a row per model and runtime, the runtimes in the order given;
    the torch rows are ``torch_rows`` themselves), and how ONNX Runtime ran (None without it). An ONNX runtime's
    models are exported into ``tmp``."""
    timed: list[Any] = []
    rows: list[dict[str, Any]] = []
    onnx_files: dict[str, list[Any]] = {}
    if any(r != "torch" for r in runtimes):
        if on_row:
            on_row(f"exporting {len(entries)} model(s) to ONNX for {', '.join(r for r in runtimes if r != 'torch')}")
        onnx_files = _onnx_files(entries, "onnxruntime-int8" in runtimes, tmp)
    for runtime in runtimes:
        if runtime == "torch":
            timed += [e.model for e in entries]
            rows += [dict(r, runtime="torch") for r in torch_rows]
            torch_rows[:] = rows[-len(entries) :]  # the same dicts: the GPU and generate timings fill them
            continue
        for e, r, path in zip(entries, torch_rows, onnx_files[runtime], strict=True):
            timed.append(glp_onnx.SessionModel(glp_onnx.session(path, threads), e.model.config))
            rows.append(dict(r, runtime=runtime, file_mb=os.path.getsize(path) / 1e6))
    if not onnx_files:
        return timed, rows, None
    ort_info = {
        **glp_onnx.versions(),
        "exporter": "torch.onnx.export (dynamo), a temporary file per model",
        "intra_op_threads": threads,
        "inter_op_threads": 1,
        "execution": "sequential, all graph optimizations, no thread spinning",
        **({"int8": glp_onnx.INT8} if "onnxruntime-int8" in runtimes else {}),
    }
    return timed, rows, ort_info


def _onnx_files(entries: Sequence[Entry], int8: bool, tmp: str) -> dict[str, list[Any]]:
    """Every entry's model exported to ONNX in ``tmp`` (and quantized to int8): the files by runtime."""
    files: dict[str, list[Any]] = {"onnxruntime": [], "onnxruntime-int8": []}
    for i, e in enumerate(entries):
        fp32 = glp_onnx.export_model(e.model, os.path.join(tmp, f"{i}.onnx"), glp_onnx.example_inputs(e.model))
        files["onnxruntime"].append(fp32)
        if int8:
            files["onnxruntime-int8"].append(glp_onnx.quantize_int8(fp32, os.path.join(tmp, f"{i}.int8.onnx")))
    return files


def _time_cpu(
    rows: list[dict[str, Any]],
    timed: Sequence[Any],
    batches: tuple[int, int | None],
    seq_len: int,
    repeats: int,
    warmup: int,
    threads: int,
    round_robin: bool,
    on_row: Callable[[str], None] | None,
) -> None:
    """Time every model (every runtime) on the CPU at the batch size, and at the batched size when given."""
    batch, batched = batches
    if on_row:
        on_row(
            f"timing {len(timed)} model(s) on the CPU (threads: {threads}), batch {batch}"
            + (f" and {batched}" if batched else "")
            + f", {repeats} repeats"
        )
    with _cpu_threads(threads):
        t = time_models(timed, batch, seq_len, repeats, warmup, torch.device("cpu"), round_robin)
        _fill(rows, t, "cpu", REF, batch)
        if batched:
            t = time_models(timed, batched, seq_len, repeats, warmup, torch.device("cpu"), round_robin)
            _fill(rows, t, "cpu_batched", REF, batched)


def _size_rows(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """One row per entry: its label, n, removed layers, layers and parameters (and their share of the first row's)."""
    rows = [
        {
            "label": e.label,
            "n": e.n,
            "removed": e.removed,
            "layers": _num_layers(e.model),
            "params": parameter_count(e.model),
        }
        for e in entries
    ]
    for r in rows:
        r["params_ratio"] = r["params"] / rows[REF]["params"]
    return rows


@contextlib.contextmanager
def _cpu_threads(threads: int) -> Iterator[None]:
    """torch's CPU threads set to ``threads`` inside, restored after."""
    default = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(default)


def _time_cpu_generate(
    rows: list[dict[str, Any]],
    nets: Sequence[Any],
    seq_len: int,
    new_tokens: int,
    repeats: int,
    threads: int,
    on_row: Callable[[str], None] | None,
) -> dict[str, Any]:
    """Time ``generate`` of every model on the CPU into ``rows``; what was timed (the profile's ``generate``)."""
    if new_tokens < 2:
        raise ConfigError(f"--new-tokens must be at least 2, got {new_tokens}")
    reps = max(3, repeats // 4)
    if on_row:
        on_row(f"timing generate on the CPU: a {seq_len}-token prompt, {new_tokens} new tokens, {reps} repeats")
    with _cpu_threads(threads):
        timed = [time_generate(m, seq_len, new_tokens, reps, 1, torch.device("cpu")) for m in nets]
    _fill_generate(rows, timed, new_tokens)
    return {"prompt_len": seq_len, "new_tokens": new_tokens, "repeats": reps, "batch": 1}


def _time_gpu(
    rows: list[dict[str, Any]],
    nets: Sequence[Any],
    batch: int,
    seq_len: int,
    repeats: int,
    warmup: int,
    round_robin: bool,
    on_row: Callable[[str], None] | None,
) -> None:
    """Time every model's forward on CUDA into ``rows`` (the models go back to the CPU after)."""
    dev = torch.device("cuda")
    if on_row:
        on_row(f"timing on {torch.cuda.get_device_name(dev)}, batch {batch}")
    gpu_models = [m.to(dev) for m in nets]
    t = time_models(gpu_models, batch, seq_len, repeats, warmup, dev, round_robin)
    for m in gpu_models:
        m.to("cpu")
    _fill(rows, t, "gpu", REF)


def _num_layers(model: Any) -> int | None:
    try:
        return num_layers(model)
    except Exception:
        return None


def _fill(rows: list[dict[str, Any]], times: list[list[float]], kind: str, ref: int, batch: int | None = None) -> None:
    """The median, min and max latency and the speed-up of every row (and with ``batch``, examples per second)."""
    meds = [statistics.median(t) for t in times]
    for r, t, m in zip(rows, times, meds, strict=True):
        r[f"{kind}_ms"] = m
        r[f"{kind}_ms_min"] = min(t)
        r[f"{kind}_ms_max"] = max(t)
        r[f"{kind}_speedup"] = meds[ref] / m if m > 0 else None
        if batch is not None:
            r[f"{kind}_per_s"] = 1000.0 * batch / m if m > 0 else None
