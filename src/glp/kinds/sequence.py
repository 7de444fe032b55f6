"""Sequence classification and regression: one or two texts → a class or a number (GLUE, your own CSVs).

The paper's kind. ``AutoModelForSequenceClassification`` with ``num_labels`` outputs (1 for regression);
cross-entropy or MSE; the task's metric from scikit-learn / scipy (`glp.tasks.compute_metrics`). A constant
predictor scores the majority class's accuracy, the positive class's F1 or Matthews correlation 0.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from glp.data import encode, load_task_data, search_split
from glp.errors import TaskError
from glp.kinds.base import TaskKind
from glp.kinds.registry import register_kind
from glp.tasks import compute_metrics, constant_score


@register_kind
class SequenceClassification(TaskKind):
    name = "sequence-classification"
    auto_class = "AutoModelForSequenceClassification"
    pipeline_tag = "text-classification"
    description = "one or two texts -> a class or a number (GLUE, your own CSV/JSON files)"

    @classmethod
    def load(cls, spec: Any):
        return load_task_data(
            spec.task,
            data_dir=spec.data_dir,
            train_file=spec.train_file,
            dev_file=spec.dev_file,
            hub_name=spec.hub_dataset,
            text_columns=spec.text_columns,
            label_column=spec.label_column,
            metric=spec.metric,
        )

    def split(self, train, eval_fraction: float, seed: int):
        return search_split(train, eval_fraction=eval_fraction, seed=seed, regression=self.task.is_regression)

    def encode(self, examples, tokenizer, max_length: int, cache_dir=None):
        return encode(examples, tokenizer, max_length, cache_dir=cache_dir)

    def head_config(self, config: Any) -> Any:
        task = self.task
        config.num_labels = self.num_labels()
        config.problem_type = "regression" if task.is_regression else "single_label_classification"
        if getattr(config, "pad_token_id", None) is None:  # decoder heads find the last token by the pad id
            eos = getattr(config, "eos_token_id", None)
            config.pad_token_id = int((eos[0] if isinstance(eos, list | tuple) else eos) or 0)
        names = task.label_names
        if not task.is_regression and names and len(names) == config.num_labels:
            config.id2label = {i: str(n) for i, n in enumerate(names)}
            config.label2id = {str(n): i for i, n in enumerate(names)}
        return config

    def num_labels(self) -> int:
        task = self.task
        if task.is_regression:
            return 1
        if not task.num_labels or task.num_labels < 2:
            raise TaskError(
                f"task {task.name!r} has num_labels={task.num_labels}; load its data first "
                "(glp.data.load_task_data fills the labels in)"
            )
        return int(task.num_labels)

    def head_key(self) -> tuple:
        return (self.num_labels(), self.task.is_regression)

    def loss_sum(self, logits, labels):
        logits = logits.float()
        if self.task.is_regression:
            return F.mse_loss(logits.view(-1), labels.view(-1).float(), reduction="sum")
        return F.cross_entropy(logits, labels.view(-1), reduction="sum")

    def score(self, predictions: np.ndarray, table) -> tuple[dict[str, float], float | None]:

        labels = table.labels
        metrics = {k: float(v) for k, v in compute_metrics(self.task, predictions, labels).items()}
        loss = float(self.loss_sum(torch.from_numpy(predictions), torch.from_numpy(labels))) / len(labels)
        return metrics, (loss if math.isfinite(loss) else None)

    def constant_score(self, labels) -> float | None:
        return constant_score(self.task, labels)
