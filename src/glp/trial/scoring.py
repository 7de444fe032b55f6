"""One trial: load the pre-trained model with a task head → drop layers → fine-tune → metric M.

`TrialSpec` is everything the trials of a run are built from (model, data, hyper-parameters, distillation);
``TrialSpec.trial(removed, seed)`` is the one constructor of a `Trial`, used by the search's executors, the
evaluation rows, export's final fine-tune, the teachers and the scoring without healing (`glp.trial.prefix`).
A `Trial` is resumable for early rejection: ``advance(1/9)`` trains the first ninth of the steps and scores,
``advance(1.0)`` later goes on from there; continuing always equals training straight through.
``finetune_and_score`` is a whole trial in one call (``TrialSpec(...).run(...)``).

Determinism: everything random is a function of ``seed``: the head's initialisation, dropout, the data order
and the ``max_*_samples`` subsets. The global RNG of the process is neither used nor changed.
Failures (a non-finite loss, running out of memory twice) are results with ``status="failed"``, not
exceptions; errors the user can fix (unknown model, bad layer index) raise ``GLPError``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from glp import models
from glp.errors import ConfigError
from glp.kinds import kind_of, load_data
from glp.models.placement import Placement
from glp.trial import lmeval
from glp.trial.distill import DistillKind, KeepingTeacher, student_from_teacher
from glp.trial.heal import prepare, writable
from glp.trial.hparams import HParams
from glp.trial.loop import Progress, TrainingFailed, TrainLoop, budget_steps, configure_threads
from glp.trial.parents import Parents
from glp.trial.types import TrialData, TrialResult

__all__ = [
    "HParams",
    "Trial",
    "TrialData",
    "TrialResult",
    "TrialSpec",
    "clear_model_cache",
    "finetune_and_score",
    "load_model",
]

ModelSource = Any  # str | os.PathLike | glp.models.ModelSource | Callable[[], nn.Module]


# -------------------------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial of a run is built from, as plain data (sent once to every worker process or Ray actor):
    the model source, the tokenized data and the hyper-parameters. `trial` is the one way to build a `Trial`."""

    model: Any  # a source `glp.models.resolve` takes (str, ModelSource) or a callable returning a model
    trial_data: TrialData
    hparams: HParams
    distill: Any = None  # glp.trial.distill.DistillSettings: removal sets learn from the teacher of their seed
    teachers: dict[int, Any] = field(default_factory=dict)  # seed -> its glp.trial.distill.Teacher (outputs, weights)
    lm_eval: Any = None  # glp.trial.lmeval.LMEvalSettings: a final fine-tune is also scored by lm-evaluation-harness
    keep_teachers: Any = None  # glp.trial.distill.TeacherFiles: the unpruned model's trials keep themselves as teachers
    parents: Parents | None = None  # --init parent: a candidate starts from its parent's trained weights
    placement: Placement | None = None  # --device-map auto: each candidate's blocks over the worker's devices

    def trial(
        self,
        removed: Sequence[int],
        seed: int,
        device: str | torch.device | None = None,
        *,
        threads: int | None = None,
        progress: Progress | None = None,
        bf16: bool | None = None,
        compile: bool = False,
    ) -> Trial:
        """The trial of removal set ``removed`` and ``seed`` (a removal set learns from its seed's teacher when
        distilling; the unpruned model keeps itself as the teacher when asked to). ``bf16`` overrides the
        precision ``--dtype`` chooses; ``compile`` runs the model through ``torch.compile``."""
        distill = None
        if self.distill is not None and tuple(removed):  # the unpruned model is the teacher: trained plainly
            if int(seed) not in self.teachers:
                raise ConfigError(f"no teacher for seed {seed}: the teacher is fine-tuned first")
            distill = (self.teachers[int(seed)], self.distill)
        hparams, base = self.hparams, None
        if self.parents is not None:
            if not tuple(removed):  # the first parent: the unpruned model fine-tuned with the whole schedule
                hparams = replace(hparams, heal_steps=None)
            else:
                build = lambda r: load_model(self.model, self.trial_data.task, r, seed, hparams)  # noqa: E731
                base = self.parents.model(build, removed, seed)
        trial = Trial(
            self.model,
            removed,
            self.trial_data,
            hparams,
            seed,
            device,
            threads=threads,
            progress=progress,
            bf16=bf16,
            compile=compile,
            distill=distill,
            lm_eval=self.lm_eval,
            base=base,
            placement=self.placement,
        )
        if self.parents is not None:
            trial = KeepingParent(trial, self.parents)
        keep = self.keep_teachers
        if keep is not None and not tuple(removed) and int(seed) in keep.stems:
            return KeepingTeacher(trial, keep.stems[int(seed)], keep.weights)  # type: ignore[return-value]
        return trial

    def run(
        self,
        removed: Sequence[int],
        seed: int,
        budget: float = 1.0,
        device: str | torch.device | None = None,
        **options: Any,
    ) -> TrialResult:
        """Build the trial, train ``budget`` of its schedule, score. Running out of memory while the model is
        loaded is a failed result, as it is in training (`Trial.advance`)."""
        t0 = time.perf_counter()
        try:
            trial = self.trial(removed, seed, device, **options)
        except torch.OutOfMemoryError:
            return TrialResult(
                removed=tuple(int(i) for i in removed),
                seed=int(seed),
                budget=float(budget),
                status="failed",
                score=None,
                reason="out of memory while loading the model",
                wall_time=time.perf_counter() - t0,
                device=_device_name(resolve_device(device)),
            )
        return trial.advance(budget)

    def warm_up(self) -> None:
        """Read the pre-trained weights and import what trials use, so a worker's first trial does not pay it."""
        if callable(self.model) or self.hparams.quantize:  # (a quantized base is read onto the trial's GPU)
            return
        with torch.random.fork_rng(devices=[]):
            models.pretrained(self.model, self.trial_data.task, self.hparams.torch_dtype)
        kind = kind_of(self.trial_data.task)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sample = self.trial_data.eval.subset(np.arange(min(2, len(self.trial_data.eval))))
            kind.collate(sample, np.arange(len(sample)), 0)


FINAL_PROTOCOL = "full-train/dev"  # fine-tuned on the whole train set, scored on dev


@dataclass
class FinalData:
    """A task's whole train set (fine-tune) and its dev set (score), tokenized: what a final fine-tune reads."""

    task: Any
    dataset: Any
    trial_data: TrialData  # train = the whole train set, eval = dev
    fingerprint: dict[str, Any]
    tokenizer_context: dict[str, Any]  # what the journal keys note of the tokenizer (`TaskKind.tokenizer_context`)


def final_data(spec: Any, tokenizer_source: Any, max_seq_length: int, cache_dir: Any = None) -> FinalData:
    """Load the task of ``spec`` (a `glp.data.DataSpec`) as ``glp prune`` does, but keep train whole and score on
    dev (``glp export --finetune`` and ``glp evaluate``)."""
    ds = load_data(spec)
    kind = kind_of(ds.task)
    tokenizer = models.load_tokenizer(tokenizer_source, pre_split_words=kind.pre_split_words)
    tokenizer_context = kind.tokenizer_context(tokenizer)
    extra = {k: ds.extra_dev[k] for k in kind.extra_splits if k in ds.extra_dev}
    td = TrialData(
        ds.task,
        kind.encode(ds.train, tokenizer, max_seq_length, cache_dir=cache_dir),
        kind.encode(ds.dev, tokenizer, max_seq_length, cache_dir=cache_dir),
        {k: kind.encode(v, tokenizer, max_seq_length, cache_dir=cache_dir) for k, v in extra.items()},
    )
    fp = {
        "source": ds.source,
        "train_rows": len(ds.train),
        "dev_rows": len(ds.dev),
        "train_sha256": ds.train.content_hash(),
        "dev_sha256": ds.dev.content_hash(),
        **tokenizer_context,  # recorded with the data (evaluation.json, the export's manifest)
    }
    for k, v in extra.items():  # (sequence tasks score dev only: their fingerprints, and journal keys, are as before)
        fp[f"{k}_rows"], fp[f"{k}_sha256"] = len(v), v.content_hash()
    return FinalData(ds.task, ds, td, fp, tokenizer_context)


def final_context(model_name: str, source: Any, data: FinalData, hparams: HParams) -> dict[str, Any]:
    """What a final fine-tune's journal key hashes (``glp evaluate``; a distilled export's teacher)."""
    return {
        "protocol": FINAL_PROTOCOL,
        "model": model_name,
        "revision": models.weights_revision(source),
        "task": data.task.to_dict(),
        "data": {k: v for k, v in data.fingerprint.items() if k.endswith("_sha256")},
        "hparams": hparams.to_dict(),
        **data.tokenizer_context,  # as glp prune's context notes it
    }


def clear_model_cache() -> None:
    """Forget the pre-trained weights kept in memory (they are re-read on the next trial)."""
    models.clear_cache()


def load_model(
    model_source: ModelSource,
    task: Any,
    removed: Sequence[int] = (),
    seed: int = 0,
    hparams: HParams | None = None,
    *,
    shared: bool = False,
    device: Any = None,
) -> nn.Module:
    """The pre-trained model with a freshly initialised head of the task's kind (a function of ``seed``), layers
    dropped, its weights in ``hparams.torch_dtype`` (`glp.models.build`; ``shared``: over the process's frozen base on
    ``device``, no copy of its weights)."""
    hp = hparams or HParams()
    weights = {"torch_dtype": hp.torch_dtype, "quantize": hp.quantize}
    return models.build(model_source, task, removed, seed, **weights, shared=shared, device=device)


def eval_rows(task_data: TrialData, hparams: HParams, seed: int) -> Any:
    """The rows a trial of ``seed`` is scored on: its seeded ``max_eval_samples`` subsample of ``task_data.eval``."""
    return task_data.eval.check().subsample(hparams.max_eval_samples, int(seed), stream=2)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        d = torch.device("cuda", torch.cuda.current_device())
    return d


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


# ---------------------------------------------------------------------------------------------- trial


class Trial:
    """A resumable fine-tune of one candidate: ``advance(budget)`` trains up to that fraction and scores."""

    def __init__(
        self,
        model_source: ModelSource,
        removed: Sequence[int],
        task_data: TrialData,
        hparams: HParams,
        seed: int,
        device: str | torch.device | None = None,
        *,
        progress: Progress | None = None,
        bf16: bool | None = None,
        compile: bool = False,
        threads: int | None = None,
        distill: tuple[Any, Any] | None = None,
        lm_eval: Any = None,
        base: nn.Module | None = None,
        placement: Placement | None = None,
    ) -> None:
        """``base``: the model to train instead of the pre-trained one with ``removed`` dropped (a warm start's
        parent with a layer taken out, `glp.trial.parents`). ``placement``: the candidate's blocks spread over the
        devices it names (``--device-map auto``), its main device replacing ``device``."""
        t0 = time.perf_counter()
        self.removed = tuple(int(i) for i in removed)
        self.task = task_data.task
        self.hparams = hparams
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.progress = progress
        self.model_source = None if callable(model_source) else model_source
        self.kind = kind_of(self.task)
        if self.device.type == "cpu":
            configure_threads(threads)
        self.train_table = task_data.train.check().subsample(hparams.max_train_samples, self.seed, stream=1)
        self.eval_table = eval_rows(task_data, hparams, self.seed)
        self.extra_tables = {k: v.check() for k, v in getattr(task_data, "extra", {}).items()}
        if len(self.eval_table) == 0:
            raise ConfigError("no evaluation examples")
        self.placement = placement
        if base is None:
            base = self._candidate(model_source, distill)
        if placement is not None:
            if hparams.quantize is not None:
                raise ConfigError(f"--quantize {hparams.quantize} with --device-map: not supported; leave one out")
            training = hparams.heal != "none" or distill is not None
            base, self.device = placement.place(base, training=training)
        model = prepare(base, hparams, self.seed, self.kind)
        loop_kind = self.kind
        if distill is not None:  # the loss also pulls towards the teacher's outputs on these training rows
            teacher, settings = distill
            if len(teacher.outputs) != len(self.train_table):
                raise ConfigError(
                    f"the teacher has outputs for {len(teacher.outputs)} rows, the training set {len(self.train_table)}"
                )
            loop_kind = DistillKind(self.kind, teacher.outputs, settings)
        self.loop = TrainLoop(
            model,
            self.train_table,
            hparams,
            self.seed,
            self.device,
            loop_kind,
            bf16=bf16,
            compile_model=compile,
        )
        self.compile = compile
        self.lm_eval = lm_eval
        self.budget = 0.0  # the largest budget trained to so far
        self.failure: str | None = None
        # (step, metrics, mean eval loss) of the last evaluation
        self._metrics: tuple[int, dict[str, float], float | None] | None = None
        self.wall_time = time.perf_counter() - t0

    def _candidate(self, model_source: ModelSource, distill: tuple[Any, Any] | None) -> nn.Module:
        """The model of the removal set before healing: the fine-tuned teacher pruned (``--distill-init teacher``),
        else the pre-trained one, over the process's frozen base when it is healed with adapters or not at all
        (``--heal full`` trains weights of its own)."""
        hp = self.hparams
        if distill is not None and distill[1].init == "teacher":
            own = load_model(model_source, self.task, (), self.seed, hp)
            return student_from_teacher(own, distill[0], self.removed)
        shared = hp.heal in ("lora", "none")
        device = "cpu" if self.placement is not None else self.device  # (placed from the CPU)
        return load_model(model_source, self.task, self.removed, self.seed, hp, shared=shared, device=device)

    # -- properties

    @property
    def model(self) -> nn.Module:
        return self.loop.model

    @property
    def step(self) -> int:
        return self.loop.step

    @property
    def total_steps(self) -> int:
        return self.loop.total_steps

    @property
    def grad_accum(self) -> int:
        return self.loop.grad_accum

    # -- work

    def train(self, budget: float, progress: Progress | None = None) -> None:
        """Train up to ``budget`` (fraction of the full fine-tune); raises TrainingFailed."""
        target = budget_steps(budget, self.total_steps)
        self.budget = max(self.budget, float(budget))
        self.loop.train_to(target, progress or self.progress)

    def evaluate(self) -> dict[str, float]:
        """Every metric of the task on the eval set at the current step; raises TrainingFailed."""
        if self._metrics is not None and self._metrics[0] == self.step:
            return self._metrics[1]
        predictions = self.loop.predict(self.eval_table)
        if not _all_finite(predictions):
            raise TrainingFailed(f"non-finite predictions on the evaluation set after step {self.step}")
        metrics, loss = self.kind.score(predictions, self.eval_table)
        if self.step >= self.total_steps:  # a final fine-tune is also scored on the extra sets (test), by name
            for name, table in self.extra_tables.items():
                more, _ = self.kind.score(self.loop.predict(table), table)
                metrics.update({f"{name}:{k}": v for k, v in more.items()})
            if self.lm_eval is not None:  # zero-shot accuracy of the healed model (glp evaluate --lm-eval-tasks)
                tokenizer = models.load_tokenizer(self.model_source)
                metrics.update(lmeval.run(writable(self.model), tokenizer, self.lm_eval, self.device))
        self._metrics = (self.step, metrics, loss)
        return metrics

    def advance(self, budget: float, progress: Progress | None = None) -> TrialResult:
        """Train until ``budget`` of the total steps (no-op if already there), evaluate, report."""
        t0 = time.perf_counter()
        if self.failure is None:
            try:
                self.train(budget, progress)
                score = self.evaluate().get(self.task.metric)
                if score is None or not math.isfinite(score):
                    self.failure = f"metric {self.task.metric!r} is {score}"
            except TrainingFailed as exc:
                self.failure = str(exc)
            except torch.OutOfMemoryError:
                self.failure = "out of memory"
        else:
            self.budget = max(self.budget, float(budget))
        self.wall_time += time.perf_counter() - t0
        return self.result()

    def result(self) -> TrialResult:
        """The trial's state as a result: the metrics of the last evaluation if it was at the current step."""
        loss_first, loss_last = self.loop.loss_summary()
        failed = self.failure is not None
        current = self._metrics is not None and self._metrics[0] == self.step
        metrics = self._metrics[1] if current else {}
        eval_loss = self._metrics[2] if current else None
        return TrialResult(
            removed=self.removed,
            seed=self.seed,
            budget=self.budget,
            status="failed" if failed else "ok",
            score=None if failed else metrics.get(self.task.metric),
            metrics={} if failed else dict(metrics),
            reason=self.failure,
            steps=self.step,
            examples_seen=self.loop.examples_seen,
            loss_first=_finite_or_none(loss_first),
            loss_last=_finite_or_none(loss_last),
            eval_loss=None if failed else eval_loss,
            wall_time=self.wall_time,
            device=_device_name(self.device),
            precision=self.loop.precision,
        )


class KeepingParent:
    """A trial of a warm-started run that keeps its trained model as a parent once it reaches its full budget (a
    step's losers are deleted by the search once the step is recorded)."""

    def __init__(self, trial: Trial, parents: Parents):
        self._trial, self._parents = trial, parents

    def advance(self, budget: float, progress: Progress | None = None) -> TrialResult:
        result = self._trial.advance(budget, progress)
        if result.ok and budget >= 1.0:
            self._parents.save(self._trial.model, self._trial.removed, self._trial.seed)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)


def _all_finite(predictions: Any) -> bool:
    """Are the predictions finite? Arrays, lists of them, or an object that says so (``.finite``)."""
    if isinstance(predictions, np.ndarray):
        return bool(np.isfinite(predictions).all()) if predictions.dtype.kind == "f" else True
    if hasattr(predictions, "finite"):
        return bool(predictions.finite)
    return all(_all_finite(p) for p in predictions)


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def finetune_and_score(
    model_source: ModelSource,
    removed_layers: Sequence[int],
    task_data: TrialData,
    hparams: HParams,
    seed: int,
    budget: float = 1.0,
    device: str | torch.device | None = None,
    *,
    progress: Progress | None = None,
    bf16: bool | None = None,
    compile: bool = False,
    threads: int | None = None,
) -> TrialResult:
    """Drop ``removed_layers`` from the pre-trained model, fine-tune ``budget`` of the schedule, score.

    Returns a failed TrialResult (``status="failed"``, ``reason``) when the fine-tune diverges or runs out of
    memory; raises GLPError for mistakes the user can fix.
    """
    spec = TrialSpec(model_source, task_data, hparams)
    return spec.run(
        removed_layers, seed, budget, device, progress=progress, bf16=bf16, compile=compile, threads=threads
    )
