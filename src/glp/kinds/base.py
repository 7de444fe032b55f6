"""The task-kind seam: what a candidate learns and what it is scored on.

A kind is a subclass of `TaskKind` registered in `glp.kinds.KINDS`. One instance is bound to one
`glp.tasks.Task` (``kind_of(task)``); everything the rest of glp needs to know about a kind of task goes
through it:

==================  ================================================================================
data                ``load(spec)`` (classmethod: the task is known once its data is read),
                    ``split``, ``encode``, ``collate`` (labels padded as the kind needs)
model               ``auto_class`` (the ``AutoModelFor…`` it loads), ``head_config``, ``head_key``
training            ``loss_sum`` over the units ``units`` counts (rows, labelled tokens …)
scoring             ``gather`` (per-batch outputs → predictions), ``score`` (→ metrics, mean loss),
                    ``higher_is_better`` (ranking, ties, relative performance, plots, the warning),
                    ``constant_score`` (what predicting one thing everywhere scores; None = no meaning)
export              ``pipeline_tag``, ``description``
==================  ================================================================================

`docs/extending.md` adds a kind in one module; `tests/kinds/test_kinds.py` runs that example.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from glp.data import DataSpec, Encoded, Examples, SearchSplit, TaskDataset, collate_inputs
from glp.tasks import Task

#: the attribute ``glp.models.load_tokenizer`` sets on a tokenizer it loaded with ``add_prefix_space=True`` (its
#: pre-split words read as after a space; the tokenizer's own ``add_prefix_space`` is True for many that glp left alone)
WORDS_SPACED = "glp_words_spaced"


class TaskKind(ABC):
    """One kind of task, bound to one `Task`. Subclass, set the class attributes, register in `glp.kinds.KINDS`."""

    #: registry name, also ``Task.kind``
    name: ClassVar[str]
    #: the transformers class a candidate is loaded with (its head is this kind's head)
    auto_class: ClassVar[str]
    #: the model card's ``pipeline_tag`` and a few words on what the model does
    pipeline_tag: ClassVar[str]
    description: ClassVar[str]
    #: is the head new (trained from scratch by the fine-tune)? A causal LM keeps its pre-trained output head
    fresh_head: ClassVar[bool] = True
    #: further splits of `load`'s ``extra_dev`` that a final fine-tune is scored on too (``glp evaluate``)
    extra_splits: ClassVar[tuple[str, ...]] = ()
    #: can the unpruned model's outputs be cached as a teacher (``--distill``)? Not a vocabulary per token
    distillable: ClassVar[bool] = True
    #: is the model a generative LM that lm-evaluation-harness's zero-shot tasks score (``--lm-eval-tasks``)?
    lm_eval: ClassVar[bool] = False
    #: does an export describe its kept layers as mergekit slices (``mergekit.yaml``, a decoder's layer stack)?
    mergekit: ClassVar[bool] = False
    #: does `encode` tokenize sentences already split into words? Their tokenizer is then loaded so that every word
    #: reads as after a space (``glp.models.load_tokenizer(..., pre_split_words=True)``)
    pre_split_words: ClassVar[bool] = False

    def __init__(self, task: Task):
        self.task = task

    # -- data -----------------------------------------------------------------------------------------
    @classmethod
    def claims(cls, spec: DataSpec) -> bool:
        """Whether settings that name no kind mean this one (``--tag-column`` means token classification)."""
        return False

    @classmethod
    @abstractmethod
    def load(cls, spec: DataSpec) -> TaskDataset:
        """Read the train and dev examples the settings name; ``TaskDataset.task`` is the resolved task."""

    @abstractmethod
    def split(self, train: Examples, eval_fraction: float, seed: int) -> SearchSplit:
        """The seeded, fingerprinted search split of the train examples."""

    @abstractmethod
    def encode(self, examples: Examples, tokenizer: Any, max_length: int, cache_dir: Any = None) -> Encoded:
        """Tokenize once (cached); labels in the shape `collate` reads."""

    def tokenizer_context(self, tokenizer: Any) -> dict[str, Any]:
        """What a journal key notes of the tokenizer beyond the model's files: that glp spaced its pre-split words
        (`WORDS_SPACED`), so that trials of a run whose tokenizer read them glued together are not reused."""
        if self.pre_split_words and getattr(tokenizer, WORDS_SPACED, False):
            return {"add_prefix_space": True}
        return {}

    # -- model ----------------------------------------------------------------------------------------
    def model_class(self) -> type:
        import transformers  # deferred: transformers is slow to import; `glp --help` needs none of it

        return getattr(transformers, self.auto_class)

    @abstractmethod
    def head_config(self, config: Any) -> Any:
        """The pre-trained config with this task's head settings (number of labels, label names …)."""

    def head_key(self) -> tuple:
        """What the pre-trained weights with this head depend on besides the model (a cache key)."""
        return (self.name,)

    # -- training -------------------------------------------------------------------------------------
    def collate(self, table: Encoded, idx: np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
        """The inputs of rows ``idx`` padded to their longest row, plus ``labels``."""
        return {**collate_inputs(table, idx, pad_id), "labels": table.labels[idx]}

    @abstractmethod
    def loss_sum(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss summed over the units of a batch (the training loop divides by the batch's `units`)."""

    def batch_loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The training loss of a batch (the loop divides by `units`): `loss_sum` on the labels. Distillation
        (`glp.trial.distill.DistillKind`) adds the teacher's term here."""
        return self.loss_sum(logits, batch["labels"])

    def units(self, batch: dict[str, np.ndarray]) -> int:
        """How many units ``loss_sum`` sums over (rows, by default)."""
        return len(batch["labels"])

    # -- scoring --------------------------------------------------------------------------------------
    #: does bf16 autocast on a CPU with native bf16 match fp32 for this kind (``--dtype auto`` then uses it)?
    bf16_on_cpu: ClassVar[bool] = False

    def reduce(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """One evaluation batch's logits (in the model's dtype: bf16 under autocast) → what `gather` collects (on
        the device). The default keeps them as float32; a kind whose logits are too large to keep for a whole split
        (a vocabulary per token) sums here."""
        return logits.float()

    def gather(self, outputs: Sequence[torch.Tensor], order: Sequence[np.ndarray], table: Encoded) -> Any:
        """Per-batch outputs on the device (batches of the rows of ``table`` in ``order``) → predictions of the rows
        in their original order. The default: (rows, …) logits, moved to the host in one transfer."""
        if not outputs:
            return np.zeros((0,), dtype=np.float32)
        logits = torch.cat(list(outputs)).cpu().numpy()
        out = np.empty_like(logits)
        out[np.concatenate(list(order))] = logits
        return out

    @abstractmethod
    def score(self, predictions: Any, table: Encoded) -> tuple[dict[str, float], float | None]:
        """Every metric of the task (main metric included) and the mean loss on ``table``."""

    def higher_is_better(self) -> bool:
        return True

    def constant_score(self, labels: Any) -> float | None:
        """The main metric of predicting one thing for every example; None where that means nothing."""
        return None
