"""Distilling the pruned model from the unpruned one (``glp export --finetune --distill``, ``glp evaluate --distill``).

The teacher is the unpruned model fine-tuned on the same training set with the same settings and seed: the
baseline row's own fine-tune, so one teacher per seed serves every row. Its outputs on the training set are
computed once (eval mode, so they do not depend on the epoch order) and kept in memory and in
``RUN/cache/teachers/`` (npz). The student is the pruned model; its loss is

    alpha * task loss + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

on the logits (``--distill-alpha``, default 0.5; ``--distill-temperature``, default 2), summed over the kind's units
(rows; labelled tokens for token classification, masked like the labels), and MSE to the teacher's output for a
regression. At ``alpha = 1`` it is the plain task loss.

Where the student starts (``--distill-init``): ``teacher`` (the default) is the fine-tuned teacher with the same
layers removed, its head included (the weights are kept next to the outputs,
``RUN/cache/teachers/<key>.safetensors``), so the fine-tune starts from a model that already knows the task;
``pretrained`` is the pruned pre-trained model with a fresh head, like every plain row. On MiniLM (docs/results.md,
"Distillation") the teacher init recovered most of the pruned model's gap on SST-2 and CoLA, where the pretrained
init recovered none of it."""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from glp.atomic import write_atomic
from glp.errors import ConfigError
from glp.kinds import kind_of
from glp.layers import drop_layers
from glp.trial.heal import merged
from glp.trial.loop import eval_batches, to_device

TEACHER_KEY = "_teacher"
INITS = ("pretrained", "teacher")


@dataclass(frozen=True)
class DistillSettings:
    alpha: float = field(default=0.5, metadata={"help": "Weight of the task loss; the teacher's term gets 1 - alpha."})
    temperature: float = field(default=2.0, metadata={"help": "Softmax temperature of the distillation."})
    init: str = field(
        default="teacher",
        metadata={
            "help": "Where the student starts: teacher (the fine-tuned teacher with the same layers removed, its head "
            "included) or pretrained (the pruned pre-trained model, fresh head, as a plain row)."
        },
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"--distill-alpha must be in [0, 1], got {self.alpha}")
        if not self.temperature > 0:
            raise ConfigError(f"--distill-temperature must be positive, got {self.temperature}")
        if self.init not in INITS:
            raise ConfigError(f"--distill-init must be one of {', '.join(INITS)}, got {self.init!r}")

    def to_dict(self) -> dict[str, Any]:
        # init only for the teacher init: the pretrained init's keys are those it had before --distill-init existed
        return {
            "alpha": self.alpha,
            "temperature": self.temperature,
            **({"init": self.init} if self.init != "pretrained" else {}),
        }


@dataclass(frozen=True)
class Teacher:
    """One seed's teacher: its outputs on the student's training rows and, for ``init="teacher"``, its fine-tuned
    weights (the path of a saved state dict, or the state dict itself where there is no cache directory)."""

    outputs: list[np.ndarray]
    weights: Any = None

    def state_dict(self) -> dict[str, Any]:
        if self.weights is None:
            raise ConfigError("the teacher's weights were not kept (--distill-init teacher keeps them)")
        if isinstance(self.weights, dict):
            return self.weights
        from safetensors.torch import load_file  # deferred: only distillation's teacher weights need it

        return load_file(self.weights, device="cpu")


def check_kind(task: Any) -> None:
    """Refuse ``--distill`` where the teacher's outputs cannot be kept: a causal LM's are a vocabulary per token."""
    if not kind_of(task).distillable:
        raise ConfigError(
            "--distill is for classification kinds: a causal LM teacher's outputs (a vocabulary per token) are too "
            "large to cache; heal with --heal lora or --heal full instead"
        )


class DistillKind:
    """A task kind whose training loss also pulls the student towards the teacher's outputs (``teacher[row]``).

    It wraps the task's own kind: everything but `collate` (which adds the teacher's outputs of the rows) and
    `batch_loss` is the wrapped kind's, so scoring and the eval loss stay the task's."""

    def __init__(self, kind: Any, teacher: list[np.ndarray], settings: DistillSettings):
        self.kind, self.teacher, self.settings = kind, teacher, settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kind, name)

    def collate(self, table: Any, idx: np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
        batch = self.kind.collate(table, idx, pad_id)
        rows = [self.teacher[int(j)] for j in idx]
        if rows and rows[0].ndim == 2:  # one output per token: pad to the batch's width
            width = batch["labels"].shape[1]
            out = np.zeros((len(rows), width, rows[0].shape[1]), dtype=np.float32)
            for r, t in enumerate(rows):
                out[r, : len(t)] = t
            batch[TEACHER_KEY] = out
        else:
            batch[TEACHER_KEY] = np.stack(rows).astype(np.float32)
        return batch

    def batch_loss(self, logits: Any, batch: dict[str, Any]) -> Any:
        a, t = self.settings.alpha, self.settings.temperature
        task = self.kind.loss_sum(logits, batch["labels"])
        if a == 1.0:
            return task
        teacher = batch[TEACHER_KEY].float()
        student = logits.float()
        if getattr(self.kind.task, "is_regression", False):
            soft = F.mse_loss(student.view(-1), teacher.view(-1), reduction="sum")
        else:
            if student.ndim == 3:  # per token, where the labels are
                mask = batch["labels"] != -100
                student, teacher = student[mask], teacher[mask]
            log_s = F.log_softmax(student / t, dim=-1)
            log_t = F.log_softmax(teacher / t, dim=-1)
            soft = (t * t) * F.kl_div(log_s, log_t, log_target=True, reduction="sum")
        return a * task + (1.0 - a) * soft


def row_outputs(trial: Any, table: Any) -> list[np.ndarray]:
    """The model's float32 outputs for every row of ``table`` in eval mode: (labels,) per row, or (tokens, labels)
    per row for per-token heads, cut to the row's length."""

    loop = trial.loop
    out: list[np.ndarray | None] = [None] * len(table)
    loop.model.eval()
    try:
        with torch.inference_mode():
            for idx in eval_batches(table.lengths, loop.hp.per_device_eval_batch_size):
                batch = to_device(trial.kind.collate(table, idx, loop.pad_id), loop.device)
                logits = loop._logits(batch).float().cpu().numpy()
                for r, j in enumerate(idx):
                    out[int(j)] = logits[r, : table.lengths[j]] if logits.ndim == 3 else logits[r]
    finally:
        loop.model.train()
    return out  # type: ignore[return-value]


_TEACHERS: dict[str, Teacher] = {}


def teacher_stem(cache_dir: str | os.PathLike[str] | None, key: str) -> Path | None:
    """``cache_dir/teachers/<hash of key>``: the teacher's ``.npz`` (outputs) and ``.safetensors`` (weights)."""
    return Path(cache_dir) / "teachers" / hashlib.sha256(key.encode()).hexdigest()[:40] if cache_dir else None


def cached_teacher(key: str, cache_dir: str | os.PathLike[str] | None, *, weights: bool = False) -> Teacher | None:
    """The teacher of ``key`` from memory or ``cache_dir``, or None where it is not kept (or not with the
    ``weights`` asked for)."""
    cached = _TEACHERS.get(key)
    if cached is not None and (cached.weights is not None or not weights):
        return cached
    stem = teacher_stem(cache_dir, key)
    if stem is None:
        return None
    npz, st = stem.with_suffix(".npz"), stem.with_suffix(".safetensors")
    if not npz.exists() or (weights and not st.exists()):
        return None
    with np.load(npz, allow_pickle=False) as z:
        outputs = [z[f"r{i}"] for i in range(int(z["n"]))]
    _TEACHERS[key] = Teacher(outputs, str(st) if st.exists() else None)
    return _TEACHERS[key]


def keep_teacher(trial: Any, stem: str | os.PathLike[str] | None, *, weights: bool = False) -> Teacher:
    """The `Teacher` of a finished fine-tune of the unpruned model: its outputs on its training rows (and, with
    ``weights``, its fine-tuned state dict), written to ``stem`` (``.npz``, ``.safetensors``) when one is given,
    else kept in memory."""
    outputs = row_outputs(trial, trial.train_table)
    state = None
    if weights:
        # copies, contiguous: tied weights become two tensors, which safetensors can write
        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in merged(trial.model).state_dict().items()}
    if stem is None:
        return Teacher(outputs, state)
    stem = Path(stem)
    write_atomic(
        stem.with_suffix(".npz"),
        lambda tmp: np.savez(tmp, n=np.array(len(outputs)), **{f"r{i}": o for i, o in enumerate(outputs)}),
    )
    if state is None:
        return Teacher(outputs, None)
    from safetensors.torch import save_file  # deferred: only distillation's teacher weights need it

    st = write_atomic(stem.with_suffix(".safetensors"), lambda tmp: save_file(state, str(tmp)))
    return Teacher(outputs, str(st))


def fit_teacher(
    spec: Any,
    seed: int,
    device: Any,
    cache_dir: str | os.PathLike[str] | None,
    key: str,
    *,
    weights: bool = False,
) -> tuple[Teacher, Any]:
    """(the `Teacher` of ``seed``, its TrialResult or None when it came from the cache).

    ``key`` identifies the teacher (the journal key of the unpruned model's trial); its outputs (and, with
    ``weights``, its fine-tuned state dict) are kept in memory and in ``cache_dir/teachers/<hash>.npz``
    (``.safetensors``). A cached teacher without the weights asked for is fine-tuned again."""
    cached = cached_teacher(key, cache_dir, weights=weights)
    if cached is not None:
        return cached, None
    trial = spec.trial((), seed, device)
    result = trial.advance(1.0)
    if not result.ok:
        raise ConfigError(f"the teacher's fine-tune (the unpruned model, seed {seed}) failed: {result.reason}")
    _TEACHERS[key] = keep_teacher(trial, teacher_stem(cache_dir, key), weights=weights)
    return _TEACHERS[key], result


@dataclass(frozen=True)
class TeacherFiles:
    """Where the unpruned model's fine-tune of each seed keeps itself as that seed's teacher (``TrialSpec.
    keep_teachers``): so the teachers are fine-tuned by the executor's workers, side by side, like any trial, and
    `fit_teacher` then finds them in the cache."""

    stems: dict[int, str]
    weights: bool = False


class KeepingTeacher:
    """A trial of the unpruned model that, once fine-tuned to the full budget, writes its outputs (and weights)
    to ``stem`` by `keep_teacher`; everything else is the trial's."""

    def __init__(self, trial: Any, stem: str, weights: bool):
        self._trial, self._stem, self._weights, self._kept = trial, stem, weights, False

    def advance(self, budget: float, progress: Any = None) -> Any:
        result = self._trial.advance(budget, progress)
        if result.ok and budget >= 1.0 and not self._kept:
            self._kept = True
            try:
                keep_teacher(self._trial, self._stem, weights=self._weights)
            except OSError as e:  # a worker that cannot write there (a Ray node elsewhere): the driver fits it
                warnings.warn(
                    f"the teacher could not be kept at {self._stem} ({e}); it is fine-tuned again", stacklevel=2
                )
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)


def student_from_teacher(model: Any, teacher: Teacher, removed: Any) -> Any:
    """``model`` (the unpruned architecture with the task's head) given the teacher's fine-tuned weights, then
    ``removed`` dropped: the student of ``--distill-init teacher``."""
    missing, unexpected = model.load_state_dict(teacher.state_dict(), strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"the teacher's weights do not fit the student: missing {list(missing)[:3]}, unexpected "
            f"{list(unexpected)[:3]}"
        )
    return drop_layers(model, list(removed))
