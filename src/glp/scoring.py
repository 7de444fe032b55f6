"""One trial: load the pre-trained model with a task head → drop layers → fine-tune → metric M.

``finetune_and_score`` is the whole trial in one call; it scores a candidate on the search split and,
pointed at the full train and dev sets, gives the final evaluation of a pruned model. ``Trial`` is the
same thing in resumable form for early rejection: ``advance(1/9)`` trains the first ninth of the steps
and scores, ``advance(1.0)`` later goes on from there, and ``save`` / ``load`` move a stopped trial
through disk (safetensors + JSON, no pickle). Continuing always equals training straight through.

Determinism: everything random is a function of ``seed``: the head's initialisation, dropout, the data order
and the ``max_*_samples`` subsets. The global RNG of the process is neither used nor changed.
Failures (a non-finite loss, running out of memory twice) are results with ``status="failed"``, not
exceptions; errors the user can fix (unknown model, bad layer index) raise ``GLPError``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from glp.errors import ConfigError, GLPError, RunDirError, TaskError
from glp.train import (
    HParams,
    Progress,
    TokenTable,
    TrainingFailed,
    TrainLoop,
    TrialResult,
    budget_steps,
    configure_threads,
    loss_sum,
)

__all__ = [
    "HParams",
    "Trial",
    "TrialData",
    "TrialResult",
    "clear_model_cache",
    "finetune_and_score",
    "load_model",
]

CHECKPOINT_FORMAT = "glp-trial"
CHECKPOINT_VERSION = 1

ModelSource = str | os.PathLike | Callable[[], nn.Module]


@dataclass(frozen=True)
class TrialData:
    """What a trial trains and scores on: ``train`` and ``eval`` are ``glp.data.Encoded``."""

    task: Any  # glp.tasks.Task
    train: Any  # glp.data.Encoded
    eval: Any  # glp.data.Encoded


# --------------------------------------------------------------------------------------------- models

_CACHE_SIZE = 2
_PRETRAINED: OrderedDict[tuple, tuple[Any, dict[str, torch.Tensor]]] = OrderedDict()


def clear_model_cache() -> None:
    """Forget the pre-trained weights kept in memory (they are re-read on the next trial)."""
    _PRETRAINED.clear()


def _num_labels(task: Any) -> int:
    if task.is_regression:
        return 1
    if not task.num_labels or task.num_labels < 2:
        raise TaskError(
            f"task {task.name!r} has num_labels={task.num_labels}; load its data first "
            "(glp.data.load_task_data fills the labels in)"
        )
    return int(task.num_labels)


def _head_config(config: Any, task: Any) -> Any:
    config.num_labels = _num_labels(task)
    config.problem_type = "regression" if task.is_regression else "single_label_classification"
    if getattr(config, "pad_token_id", None) is None:  # decoder heads find the last token by the pad id
        eos = getattr(config, "eos_token_id", None)
        config.pad_token_id = int((eos[0] if isinstance(eos, list | tuple) else eos) or 0)
    names = getattr(task, "label_names", None)
    if not task.is_regression and names and len(names) == config.num_labels:
        config.id2label = {i: str(n) for i, n in enumerate(names)}
        config.label2id = {str(n): i for i, n in enumerate(names)}
    return config


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' warnings and progress bars off inside the block, as they were after it."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def _pretrained(source: str, task: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """(config with the task head, pre-trained weights without the new head), kept in memory per source."""
    key = (
        os.path.abspath(source) if os.path.isdir(source) else source,
        _num_labels(task),
        task.is_regression,
    )
    if key in _PRETRAINED:
        _PRETRAINED.move_to_end(key)
        return _PRETRAINED[key]
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        config = _head_config(AutoConfig.from_pretrained(source), task)
    except (OSError, ValueError) as exc:
        raise GLPError(
            f"cannot load model {source!r}: {exc}. Give a local model directory or a hub name "
            "(the hub needs network access)."
        ) from exc
    try:
        with quiet_transformers():
            model, info = AutoModelForSequenceClassification.from_pretrained(
                source, config=config, dtype=torch.float32, ignore_mismatched_sizes=True, output_loading_info=True
            )
    except (OSError, ValueError) as exc:
        raise GLPError(f"cannot load model {source!r} for sequence classification: {exc}") from exc
    mismatched = {k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or ()}
    fresh = set(info.get("missing_keys") or ()) | mismatched
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if k not in fresh}
    _PRETRAINED[key] = (model.config, state)
    while len(_PRETRAINED) > _CACHE_SIZE:
        _PRETRAINED.popitem(last=False)
    return _PRETRAINED[key]


def load_model(model_source: ModelSource, task: Any, removed: Sequence[int] = (), seed: int = 0) -> nn.Module:
    """The pre-trained model with a freshly initialised task head (a function of ``seed``), layers dropped.

    ``model_source`` is a local directory or hub name, or a callable returning a model that already has its
    sequence-classification head (called under the seeded RNG).
    """
    from transformers import AutoModelForSequenceClassification

    if not callable(model_source):
        with torch.random.fork_rng(devices=[]):  # from_pretrained draws a head we throw away
            config, state = _pretrained(str(model_source), task)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if callable(model_source):
            model = model_source()
        else:
            # a copy: drop_layers edits the config, and this one is cached
            model = AutoModelForSequenceClassification.from_config(copy.deepcopy(config))
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected:  # pragma: no cover - the state comes from the same class
                raise GLPError(f"unexpected weights for {type(model).__name__}: {unexpected[:5]}")
    model = model.float()
    if removed:
        from glp.layers import drop_layers

        drop_layers(model, list(removed))
    return model


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
        _model: nn.Module | None = None,
    ) -> None:
        t0 = time.perf_counter()
        self.removed = tuple(int(i) for i in removed)
        self.task = task_data.task
        self.hparams = hparams
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.progress = progress
        self.model_source = model_source if isinstance(model_source, str | os.PathLike) else None
        if self.device.type == "cpu":
            configure_threads(threads)
        regression = bool(self.task.is_regression)
        max_len = int(hparams.max_seq_length)
        self.train_table = TokenTable.from_encoded(task_data.train, max_len, regression).subsample(
            hparams.max_train_samples, self.seed, stream=1
        )
        self.eval_table = TokenTable.from_encoded(task_data.eval, max_len, regression).subsample(
            hparams.max_eval_samples, self.seed, stream=2
        )
        if len(self.eval_table) == 0:
            raise ConfigError("no evaluation examples")
        model = _model if _model is not None else load_model(model_source, self.task, self.removed, self.seed)
        self.loop = TrainLoop(
            model,
            self.train_table,
            hparams,
            self.seed,
            self.device,
            regression,
            bf16=bf16,
            compile_model=compile,
        )
        self.compile = compile
        self.budget = 0.0  # the largest budget trained to so far
        self.failure: str | None = None
        # (step, metrics, mean eval loss) of the last evaluation
        self._metrics: tuple[int, dict[str, float], float | None] | None = None
        self.wall_time = time.perf_counter() - t0

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
        from glp.tasks import compute_metrics

        logits = self.loop.predict(self.eval_table)
        if not np.isfinite(logits).all():
            raise TrainingFailed(f"non-finite predictions on the evaluation set after step {self.step}")
        labels = self.eval_table.labels
        metrics = {k: float(v) for k, v in compute_metrics(self.task, logits, labels).items()}
        regression = self.task.is_regression
        loss = float(loss_sum(torch.from_numpy(logits), torch.from_numpy(labels), regression)) / len(labels)
        self._metrics = (self.step, metrics, loss if math.isfinite(loss) else None)
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
        )

    # -- checkpoints

    def save(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint directory: config.json, model.safetensors, state.safetensors, trial.json."""
        from safetensors.torch import save_file, save_model

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        (out / "trial.json").unlink(missing_ok=True)  # written last: its presence marks a complete checkpoint
        self.model.config.to_json_file(str(out / "config.json"))
        save_model(self.model, str(out / "model.safetensors"))
        save_file(self.loop.state_tensors(), str(out / "state.safetensors"))
        meta = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "removed": list(self.removed),
            "seed": self.seed,
            "task": self.task.to_dict() if hasattr(self.task, "to_dict") else {"name": self.task.name},
            "hparams": self.hparams.to_dict(),
            "model_source": None if self.model_source is None else str(self.model_source),
            "budget": self.budget,
            "failure": self.failure,
            "metrics": None
            if self._metrics is None
            else {"step": self._metrics[0], "values": self._metrics[1], "eval_loss": self._metrics[2]},
            "wall_time": self.wall_time,
            "data": {"train": self.train_table.fingerprint(), "eval": self.eval_table.fingerprint()},
            "loop": self.loop.state_json(),
        }
        tmp = out / "trial.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, out / "trial.json")
        return out

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        task_data: TrialData,
        device: str | torch.device | None = None,
        *,
        progress: Progress | None = None,
        bf16: bool | None = None,
        compile: bool = False,
        threads: int | None = None,
    ) -> Trial:
        """Restore a trial saved with ``save``; ``task_data`` must be the data it was trained on."""
        from safetensors.torch import load_file
        from safetensors.torch import load_model as st_load_model
        from transformers import AutoConfig, AutoModelForSequenceClassification

        src = Path(path)
        try:
            meta = json.loads((src / "trial.json").read_text())
            if meta.get("format") != CHECKPOINT_FORMAT or int(meta.get("version", 0)) > CHECKPOINT_VERSION:
                raise RunDirError(f"{src} is not a glp trial checkpoint (version {CHECKPOINT_VERSION})")
            hparams = HParams.from_dict(meta["hparams"])
            seed = int(meta["seed"])
            config = AutoConfig.from_pretrained(str(src))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = AutoModelForSequenceClassification.from_config(config)
            st_load_model(model, str(src / "model.safetensors"))
            tensors = load_file(str(src / "state.safetensors"))
        except GLPError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError) as exc:
            raise RunDirError(f"cannot read trial checkpoint {src}: {exc}") from exc
        if meta["task"].get("name") != task_data.task.name:
            raise RunDirError(
                f"checkpoint {src} is for task {meta['task'].get('name')!r}, not {task_data.task.name!r}"
            )
        trial = cls(
            meta["model_source"],
            meta["removed"],
            task_data,
            hparams,
            seed,
            device,
            progress=progress,
            bf16=bf16,
            compile=compile,
            threads=threads,
            _model=model,
        )
        fp = {"train": trial.train_table.fingerprint(), "eval": trial.eval_table.fingerprint()}
        if fp != meta["data"]:
            raise RunDirError(f"checkpoint {src} was trained on other data than the data given now")
        trial.loop.load_state(tensors, meta["loop"])
        trial.budget = float(meta["budget"])
        trial.failure = meta["failure"]
        if meta.get("metrics"):
            m = meta["metrics"]
            trial._metrics = (int(m["step"]), dict(m["values"]), m.get("eval_loss"))
        trial.wall_time += float(meta["wall_time"])
        return trial


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
    t0 = time.perf_counter()
    try:
        trial = Trial(
            model_source,
            removed_layers,
            task_data,
            hparams,
            seed,
            device,
            progress=progress,
            bf16=bf16,
            compile=compile,
            threads=threads,
        )
    except torch.OutOfMemoryError:
        return TrialResult(
            removed=tuple(int(i) for i in removed_layers),
            seed=int(seed),
            budget=float(budget),
            status="failed",
            score=None,
            reason="out of memory while loading the model",
            wall_time=time.perf_counter() - t0,
            device=_device_name(resolve_device(device)),
        )
    return trial.advance(budget)
