"""One fine-tune, read top to bottom: batches → forward → loss → AdamW step, then evaluate.

The maths is that of transformers' ``run_glue.py`` / ``Trainer`` (the paper's setup): AdamW with
weight decay on every weight except biases and LayerNorm, a linear schedule with optional warmup,
gradient clipping at 1.0, ``ceil(epochs × batches per epoch)`` optimizer steps, the mean loss of each
batch. What differs is only how fast it gets there:

- dynamic padding: each batch is padded to its own longest sequence, not to ``max_seq_length``;
- length-grouped batches (as transformers' ``LengthGroupedSampler``): shuffle, cut into mega-batches of
  50 batches, sort each by length, cut into batches, shuffle the batch order, longest batch first (so an
  out-of-memory shows up at step 1);
- tokenized data comes in once (``glp.data.Encoded``) and is never touched again;
- no host synchronisation per step: the loss of every step is written into a tensor on the device and read
  back every ``SYNC_EVERY`` steps (for the NaN check and the progress callback) and at the end (on CPU,
  where reading it costs nothing, after every step);
- bf16 autocast on GPUs (and on CPUs with native bf16, for causal LMs; ``--dtype``), pinned host memory,
  non-blocking copies; optionally ``torch.compile``. The weights' own precision is ``--torch-dtype``: AdamW works in
  the precision of what it trains (float32 LoRA adapters; bfloat16 weights under ``--heal full``, less exact than
  float32 master weights), and nothing is trained in float16;
- evaluation in ``inference_mode``, batches sorted by length.

`TrainLoop` holds the whole state of one fine-tune (model, optimizer, step, RNG, loss curve), so a fine-tune
can stop at any step and go on later exactly as if it had never stopped; `glp.trial.scoring.Trial` builds on it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from glp.data import Encoded
from glp.errors import ConfigError, RunDirError
from glp.layers import no_cache
from glp.models.placement import is_dispatched
from glp.trial.heal import enable_checkpointing
from glp.trial.hparams import HParams

SYNC_EVERY = 25  # steps between host reads of the loss on an accelerator (NaN check, progress)
MEGABATCH_MULT = 50  # mega-batch = 50 batches, as transformers' get_length_grouped_indices

Progress = Callable[[int, int, float], None]  # (step, total_steps, mean loss since the last call)


# ------------------------------------------------------------------------------------------ settings


class TrainingFailed(Exception):
    """A fine-tune that cannot go on (non-finite loss, out of memory). Reported as a failed TrialResult."""


# ----------------------------------------------------------------------------------------------- data


def length_grouped_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches of one epoch: a function of (seed, epoch) only, so a stopped run can find its place.

    Shuffle, split into mega-batches of ``50 × batch_size``, sort each by length (longest first), cut into
    batches, shuffle the batch order, then put the batch holding the longest example first. Mega-batches are a
    multiple of the batch size, so only the last batch of the epoch can be short: ``ceil(n / batch_size)``
    batches, as with a plain shuffled DataLoader.
    """
    n = len(lengths)
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    mega = MEGABATCH_MULT * batch_size
    batches: list[np.ndarray] = []
    for start in range(0, n, mega):
        chunk = perm[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    batches = [batches[i] for i in order]
    longest = int(np.argmax([lengths[b].max() for b in batches])) if batches else 0
    if longest:
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Evaluation batches: every example once, sorted by length (longest first) so padding is minimal."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """What of a collated batch goes into the model: all but ``labels`` and the ``_x`` entries a kind adds."""
    return {k: v for k, v in batch.items() if k != "labels" and not k.startswith("_")}


def to_device(batch: Mapping[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    if device.type == "cuda":
        return {k: torch.from_numpy(v).pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
    return {k: torch.from_numpy(v).to(device) for k, v in batch.items()}


# --------------------------------------------------------------------------------------- optimisation


def num_steps(n_examples: int, batch_size: int, epochs: float, max_steps: int | None = None) -> tuple[int, int]:
    """(batches per epoch, total optimizer steps = ceil(epochs × batches per epoch)), as the Trainer; ``max_steps``
    (``--heal-steps``, the Trainer's ``max_steps``) replaces the epochs, cycling through the data as often as it
    takes."""
    per_epoch = math.ceil(n_examples / batch_size)
    if max_steps is not None:
        return per_epoch, int(max_steps)
    return per_epoch, max(1, math.ceil(round(epochs * per_epoch, 6)))


def cpu_has_bf16() -> bool:
    """Does this CPU compute bf16 natively (AMX or AVX512-BF16)? Without it bf16 autocast is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - a torch build without oneDNN
        return False


def use_bf16(dtype: str, device: torch.device, kind: Any = None) -> bool:
    """Whether a fine-tune runs under bf16 autocast. ``auto``: on GPUs that support it, and on CPUs with native bf16
    for the kinds that measured it to match fp32 (``kind.bf16_on_cpu``: causal LMs; docs/benchmarks.md); ``bf16`` /
    ``fp32``: as asked (bf16 on a device without it is refused)."""
    if dtype == "fp32":
        return False
    supported = torch.cuda.is_bf16_supported() if device.type == "cuda" else device.type == "cpu" and cpu_has_bf16()
    if dtype == "bf16":
        if not supported:
            raise ConfigError(f"--dtype bf16: {device} has no native bf16 (CPU: AMX or AVX512-BF16); use --dtype fp32")
        return True
    if device.type == "cuda":
        return supported
    return supported and bool(getattr(kind, "bf16_on_cpu", False))


def budget_steps(budget: float, total_steps: int) -> int:
    """Steps trained after a ``budget`` fraction of the fine-tune (at least one)."""
    if not 0 < budget <= 1:
        raise ConfigError(f"budget must be in (0, 1], got {budget}")
    return min(total_steps, max(1, math.ceil(round(budget * total_steps, 6))))


_NO_DECAY = re.compile(r"bias|layernorm|layer_norm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)")


def decay_parameter_names(model: nn.Module) -> set[str]:
    """Parameters that get weight decay: all but biases and norm weights (the Trainer's rule)."""
    no_decay_modules = {
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.LayerNorm) or "norm" in type(m).__name__.lower()
    }
    out = set()
    for name, _ in model.named_parameters():
        owner = name.rpartition(".")[0]
        if owner in no_decay_modules or _NO_DECAY.search(name.lower()):
            continue
        out.add(name)
    return out


def make_optimizer(model: nn.Module, hp: HParams, device: torch.device) -> torch.optim.AdamW:
    decay = decay_parameter_names(model)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if n in decay], "weight_decay": hp.weight_decay},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]
    # fused AdamW (the Trainer's default optimizer since torch 2.8) on CPU and CUDA
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(
        groups,
        lr=hp.learning_rate,
        betas=(hp.adam_beta1, hp.adam_beta2),
        eps=hp.adam_epsilon,
        fused=fused or None,
    )


def linear_lr(step: int, total: int, warmup: int, base: float) -> float:
    """Learning rate of optimizer step ``step`` (0-based): transformers' get_linear_schedule_with_warmup."""
    if step < warmup:
        return base * step / max(1, warmup)
    return base * max(0.0, (total - step) / max(1, total - warmup))


def configure_threads(threads: int | None = None) -> None:
    """Use ``threads`` CPU threads, or cap torch's default at the cores this process may run on."""
    if threads:
        torch.set_num_threads(int(threads))
        return
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        avail = os.cpu_count() or 1
    if torch.get_num_threads() > avail:
        torch.set_num_threads(avail)


# ------------------------------------------------------------------------------------------ the loop


def _seeded_rng_state(seed: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator()
    g.manual_seed(seed)
    state = {"cpu": g.get_state()}
    if device.type == "cuda":
        gc = torch.Generator(device=device)
        gc.manual_seed(seed)
        state["cuda"] = gc.get_state()
    return state


class TrainLoop:
    """The state of one fine-tune: model, optimizer, step, data order, RNG, loss of every step.

    ``train_to(step)`` trains up to optimizer step ``step``; calling it again goes on from there, exactly as
    one uninterrupted call would (the data order is a function of (seed, epoch), the RNG state used by dropout
    is kept here and swapped in only while training, so nothing else in the process disturbs it).
    """

    def __init__(
        self,
        model: nn.Module,
        train: Encoded,
        hparams: HParams,
        seed: int,
        device: torch.device,
        kind: Any,
        *,
        bf16: bool | None = None,
        compile_model: bool = False,
    ) -> None:
        if len(train) == 0:
            raise ConfigError("no training examples")
        self.hp = hparams
        self.seed = int(seed)
        self.device = device
        self.kind = kind  # the task's bound glp.kinds.TaskKind: collate, loss, how outputs gather
        self.model = model if is_dispatched(model) else model.to(device)  # (placed over devices: stays there)
        self.model.train()
        self.train_data = train
        self.pad_id = int(getattr(model.config, "pad_token_id", None) or 0)
        self.batch_size = int(hparams.per_device_train_batch_size)
        self.batches_per_epoch, self.total_steps = num_steps(
            len(train), self.batch_size, hparams.num_train_epochs, hparams.heal_steps
        )
        if hparams.heal == "none":  # scored as it is: no step is trained
            self.total_steps = 0
        self.warmup_steps = math.ceil(self.total_steps * hparams.warmup_ratio)
        self.optimizer = make_optimizer(self.model, hparams, device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if self.total_steps and any(p.dtype == torch.float16 for p in self.params):  # (no loss scaling here)
            raise ConfigError(
                "float16 weights would be trained without loss scaling (--heal full, or a new task head): use "
                "--torch-dtype bfloat16 or float32"
            )
        self.bf16 = use_bf16(hparams.dtype, device, kind) if bf16 is None else bf16
        self.forward = torch.compile(self.model, dynamic=True) if compile_model else self.model
        self.forward_args = no_cache(self.model)  # a decoder's use_cache=False
        self.step = 0
        self.examples_seen = 0
        self.sync_every = 1 if device.type == "cpu" else SYNC_EVERY
        self.grad_accum = 1  # 2 after an out-of-memory retry: half batches, same effective batch
        self.losses = torch.zeros(self.total_steps, dtype=torch.float32, device=device)
        if hparams.gradient_checkpointing and self.total_steps:
            enable_checkpointing(self.model)
        self.rng_state = _seeded_rng_state(self.seed, device)
        self._epoch_batches: tuple[int, list[np.ndarray]] | None = None

    # -- pieces

    @property
    def precision(self) -> str:
        """What a trial records as its compute precision: ``bf16`` under bf16 autocast, else ``fp32``."""
        return "bf16" if self.bf16 else "fp32"

    def autocast(self):
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def batch_indices(self, step: int) -> np.ndarray:
        epoch, k = divmod(step, self.batches_per_epoch)
        if self._epoch_batches is None or self._epoch_batches[0] != epoch:
            batches = length_grouped_batches(self.train_data.lengths, self.batch_size, self.seed, epoch)
            self._epoch_batches = (epoch, batches)
        return self._epoch_batches[1][k]

    def _logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        with self.autocast():
            return self.forward(**model_inputs(batch), **self.forward_args).logits

    def _train_step(self, idx: np.ndarray) -> torch.Tensor:
        """Forward + backward of one batch (in ``grad_accum`` micro-batches); the batch's mean loss."""
        total = torch.zeros((), device=self.device)
        parts = [self.kind.collate(self.train_data, part, self.pad_id) for part in np.array_split(idx, self.grad_accum)]
        units = sum(self.kind.units(p) for p in parts)  # the batch's mean loss: over rows, or labelled tokens
        for part in parts:
            batch = to_device(part, self.device)
            loss = self.kind.batch_loss(self._logits(batch), batch) / units
            loss.backward()
            total += loss.detach()
        return total

    def _check_finite(self, start: int, end: int, progress: Progress | None) -> None:
        window = self.losses[start:end]
        values = window.tolist()  # the one host sync of the window
        if not all(math.isfinite(v) for v in values):
            bad = start + next(i for i, v in enumerate(values) if not math.isfinite(v))
            raise TrainingFailed(f"non-finite training loss ({values[bad - start]}) at step {bad + 1}")
        if progress is not None and values:
            progress(end, self.total_steps, float(sum(values) / len(values)))

    # -- training

    def train_to(self, target: int, progress: Progress | None = None) -> None:
        target = min(int(target), self.total_steps)
        if target <= self.step:
            return
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type="cuda"):
            torch.set_rng_state(self.rng_state["cpu"])
            if "cuda" in self.rng_state:
                torch.cuda.set_rng_state(self.rng_state["cuda"], self.device)
            try:
                self._train_loop(target, progress)
            finally:
                self.rng_state = {"cpu": torch.get_rng_state()}
                if self.device.type == "cuda":
                    self.rng_state["cuda"] = torch.cuda.get_rng_state(self.device)

    def _train_loop(self, target: int, progress: Progress | None) -> None:
        self.model.train()
        last_check = self.step
        while self.step < target:
            idx = self.batch_indices(self.step)
            try:
                loss = self._train_step(idx)
            except torch.OutOfMemoryError:
                loss = None  # handled outside the except block, once the failed step's tensors are freed
            if loss is None:
                self.optimizer.zero_grad(set_to_none=True)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if self.grad_accum > 1 or len(idx) < 2:
                    raise TrainingFailed(
                        f"out of memory at step {self.step + 1} with batch {self.batch_size} "
                        f"(also with half batches and gradient accumulation {self.grad_accum})"
                    )
                self.grad_accum = 2
                continue  # redo this step with half batches
            if self.hp.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.params, self.hp.max_grad_norm)
            lr = linear_lr(self.step, self.total_steps, self.warmup_steps, self.hp.learning_rate)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.losses[self.step] = loss
            self.step += 1
            self.examples_seen += len(idx)
            if self.step - last_check >= self.sync_every:
                self._check_finite(last_check, self.step, progress)
                last_check = self.step
        if self.step > last_check:
            self._check_finite(last_check, self.step, progress)

    def loss_summary(self, k: int = 10) -> tuple[float | None, float | None]:
        """Mean loss of the first and of the last ``k`` steps trained so far."""
        if self.step == 0:
            return None, None
        done = self.losses[: self.step].double().cpu()
        return float(done[:k].mean()), float(done[-k:].mean())

    # -- evaluation

    def predict(self, table: Encoded, batch_size: int | None = None) -> Any:
        """Predictions of every example of ``table`` in the rows' original order (the kind gathers the float32
        logits of the batches: for sequence classification an array of rows × labels).

        Out of memory: retried once with half the batch size, then TrainingFailed.
        """
        bs = int(batch_size or self.hp.per_device_eval_batch_size)
        logits = self._predict(table, bs)
        if logits is None and bs > 1:
            bs //= 2
            logits = self._predict(table, bs)
        if logits is None:
            raise TrainingFailed(f"out of memory in evaluation (batch {bs})")
        return logits

    @torch.inference_mode()
    def _predict(self, table: Encoded, bs: int) -> Any:
        self.model.eval()
        try:
            outs, order = [], []
            for idx in eval_batches(table.lengths, bs):
                batch = to_device(self.kind.collate(table, idx, self.pad_id), self.device)
                outs.append(self.kind.reduce(self._logits(batch), batch))  # per batch, on the device
                order.append(idx)
            predictions = self.kind.gather(outs, order, table)  # one transfer at the end
        except torch.OutOfMemoryError:
            predictions = None
        finally:
            self.model.train()
        if predictions is None and self.device.type == "cuda":
            torch.cuda.empty_cache()
        return predictions

    # -- state for checkpoints (tensors; the rest is plain JSON)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {}
        opt = self.optimizer.state_dict()
        for pid, st in opt["state"].items():
            for key, value in st.items():
                t = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"optimizer.{pid}.{key}"] = t.detach().cpu().contiguous()
        tensors["losses"] = self.losses.cpu().contiguous()
        for k, v in self.rng_state.items():
            tensors[f"rng.{k}"] = v.cpu().contiguous()
        return tensors

    def state_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "examples_seen": self.examples_seen,
            "grad_accum": self.grad_accum,
            "total_steps": self.total_steps,
        }

    def load_state(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        if int(meta["total_steps"]) != self.total_steps:
            raise RunDirError(
                f"checkpoint made for {meta['total_steps']} total steps; this setup has {self.total_steps}"
            )
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name, t in tensors.items():
            if name.startswith("optimizer."):
                _, pid, key = name.split(".", 2)
                state.setdefault(int(pid), {})[key] = t
        sd = self.optimizer.state_dict()
        sd["state"] = state
        self.optimizer.load_state_dict(sd)
        self.losses.copy_(tensors["losses"].to(self.device))
        self.rng_state = {k[len("rng.") :]: v for k, v in tensors.items() if k.startswith("rng.")}
        if self.device.type != "cuda":
            self.rng_state.pop("cuda", None)
        elif "cuda" not in self.rng_state:  # saved on CPU, continued on CUDA: a fresh, still seeded stream
            self.rng_state["cuda"] = _seeded_rng_state(self.seed + self.step, self.device)["cuda"]
        self.step = int(meta["step"])
        self.examples_seen = int(meta["examples_seen"])
        self.grad_accum = int(meta["grad_accum"])
