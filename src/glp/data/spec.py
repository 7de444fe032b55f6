"""Where a task's data comes from (`DataSpec`) and loading it (`load_task_data`).

Sources, in the order ``load_task_data`` tries them:

* your files (``train_file`` / ``dev_file``: CSV, TSV, JSON, JSON Lines or parquet),
* a Hugging Face hub dataset by name (``hub_name``, through ``datasets.load_dataset``),
* a local GLUE directory in the standard layout (``<dir>/RTE/train.tsv``, ``dev.tsv``, MNLI
  ``dev_matched.tsv``), given as ``data_dir`` or by the environment variable ``GLP_GLUE_DIR``,
* for GLUE tasks without any of these: the hub dataset ``nyu-mll/glue``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from glp.data.examples import TaskDataset
from glp.data.glue import GLUE_HUB_NAME, default_glue_dir, load_glue_dir
from glp.data.hub import load_hub
from glp.data.labels import _build
from glp.data.tables import read_table
from glp.errors import DataError
from glp.tasks import Task, resolve_task

#: the recorded sources that name a local folder: does ``data_dir`` name that folder itself (True) or its parent
#: (GLUE's ``<dir>/SST-2``, CoNLL's ``<dir>/conll2003``)?
_LOCAL_SOURCES = {"glue-dir": False, "conll2003-dir": False, "wikitext-2-dir": True}


def load_files(
    task: Task, train_file: str | os.PathLike, dev_file: str | os.PathLike, **extra_dev_files
) -> TaskDataset:
    """A task from your own train and dev files (CSV, TSV, JSON, JSON Lines or parquet)."""
    tables = {"train": read_table(train_file, "train"), "dev": read_table(dev_file, "dev")}
    for split, path in extra_dev_files.items():
        tables[split] = read_table(path, split)
    return _build(task, tables, f"files:train={train_file},dev={dev_file}")


def load_task_data(
    task: str | Task,
    data_dir: str | os.PathLike | None = None,
    train_file: str | os.PathLike | None = None,
    dev_file: str | os.PathLike | None = None,
    hub_name: str | None = None,
    *,
    hub_config: str | None = None,
    text_columns: str | Sequence[str] | None = None,
    label_column: str | None = None,
    metric: str | None = None,
    label_names: Sequence | None = None,
    train_split: str = "train",
    dev_split: str | None = None,
) -> TaskDataset:
    """Load a task's train and dev examples.

    ``task`` is a GLUE task name, a :class:`~glp.tasks.Task`, or any other name together with
    ``text_columns`` and ``label_column`` (a custom task scored with ``metric``, default accuracy).
    Sources: ``train_file`` + ``dev_file``; else ``hub_name`` (+ ``hub_config``); else, for GLUE
    tasks, ``data_dir`` or ``$GLP_GLUE_DIR`` (standard GLUE layout); else the hub's ``nyu-mll/glue``.
    The returned ``TaskDataset.task`` has its label set filled in (custom classification: the sorted
    unique train labels).
    """
    task = resolve_task(task, text_columns, label_column, metric, label_names)
    if train_file is not None or dev_file is not None:
        if train_file is None or dev_file is None:
            raise DataError(
                f"give both train_file and dev_file (got train_file={train_file}, dev_file={dev_file})"
            )
        return load_files(task, train_file, dev_file)
    if hub_name is not None:
        if task.is_glue and hub_config is None and hub_name in (GLUE_HUB_NAME, "glue"):
            hub_config = task.name
        return load_hub(task, hub_name, hub_config, train_split=train_split, dev_split=dev_split)
    if not task.is_glue:
        raise DataError(f"task {task.name!r}: give train_file and dev_file, or hub_name, to load its data")
    glue_dir = Path(data_dir) if data_dir is not None else default_glue_dir()
    if glue_dir is not None:
        return load_glue_dir(task, glue_dir)
    return load_hub(task, GLUE_HUB_NAME, task.name)


def column_tuple(v: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``a,b`` or ``["a", "b"]`` → ``("a", "b")`` (YAML, flags and journaled settings all read this way)."""
    if v is None:
        return None
    if isinstance(v, str):
        return tuple(x.strip() for x in v.split(",") if x.strip())
    return tuple(v)


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """Where a task's data comes from. `glp.commands.prune.PruneConfig` is a DataSpec (these are its data settings);
    ``glp evaluate`` and ``glp export`` read one back from a run's journaled settings."""

    task: str = field(metadata={"help": "GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli) or a name "
                                        "for your own data."})
    kind: str | None = field(default=None, metadata={"help": "What the task is (default: implied by the data "
                                                              "settings; sequence-classification)."})
    data_dir: str | None = field(default=None, metadata={"help": "Local data: the GLUE directory (<dir>/<TASK>/"
                                                                  "train.tsv, dev.tsv), or the folder holding "
                                                                  "conll2003/ or wikitext-2/; default "
                                                                  "$GLP_GLUE_DIR for GLUE, else the hub."})
    train_file: str | None = field(default=None, metadata={"help": "Your own train data (csv/tsv/json/jsonl/parquet)."})
    dev_file: str | None = field(default=None, metadata={"help": "Your own dev data."})
    hub_dataset: str | None = field(default=None, metadata={"help": "A hub dataset name, for datasets.load_dataset."})
    text_columns: tuple[str, ...] | None = field(default=None, metadata={"help": "One or two text columns, e.g. a,b."})
    label_column: str | None = field(default=None, metadata={"help": "The label column."})
    metric: str | None = field(default=None, metadata={"help": "For your own data: accuracy | f1 | macro-f1 | mcc | "
                                                                "spearman | pearson."})
    test_file: str | None = field(default=None, metadata={"help": "Your own test data (token classification: "
                                                                   "scored by glp evaluate next to dev)."})
    token_column: str | None = field(default=None, metadata={"help": "Token classification: the words' column (0-based "
                                                                      "number in a column file; a list column's name "
                                                                      "in JSON/parquet, default tokens)."})
    tag_column: str | None = field(default=None, metadata={"help": "Token classification: the tags' column (number, "
                                                                    "default the last; or name, default ner_tags)."})
    label_names: tuple[str, ...] | None = field(default=None, metadata={"help": "Names of integer tags, in id order, "
                                                                                 "e.g. O,B-PER,I-PER."})
    label_all_tokens: bool = field(default=False, metadata={"help": "Token classification: tag every sub-token, not "
                                                                     "only a word's first (run_ner.py's flag)."})
    tag_scheme: str | None = field(default=None, metadata={"help": "IOB1 | IOB2 | IOBES | none (token accuracy); "
                                                                    "default: detected from train."})
    text_column: str | None = field(default=None, metadata={"help": "Causal LM: the text column of a JSON/JSONL/"
                                                                     "parquet/CSV corpus (default text)."})
    prompt_column: str | None = field(default=None, metadata={"help": "Causal LM: prompt/response pairs, the "
                                                                       "prompts' column (loss on responses only)."})
    response_column: str | None = field(default=None, metadata={"help": "Causal LM: the responses' column."})
    chat_template: bool = field(default=False, metadata={"help": "Causal LM pairs: wrap each prompt in the "
                                                                  "tokenizer's chat template."})
    block_size: int | None = field(default=None, metadata={"help": "Causal LM: tokens per block the text is packed "
                                                                    "into (run_clm's flag; default --max-seq-length)."})

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        """The data fields of a settings dict (a journaled `PruneConfig`; other keys are ignored)."""
        kw = {f.name: d.get(f.name) for f in dataclasses.fields(DataSpec)}
        kw["text_columns"] = column_tuple(kw["text_columns"])
        kw["label_names"] = column_tuple(kw["label_names"])
        kw["label_all_tokens"] = bool(kw["label_all_tokens"])
        kw["chat_template"] = bool(kw["chat_template"])
        kw["block_size"] = None if kw["block_size"] is None else int(kw["block_size"])
        for k in ("token_column", "tag_column"):
            kw[k] = None if kw[k] is None else str(kw[k])
        return DataSpec(**kw)

    @classmethod
    def from_source(cls, task: str, source: str | None) -> DataSpec | None:
        """The settings that read a plan's recorded data ``source`` (``TaskDataset.source``) back, where it names a
        local folder that is still there: ``glue-dir:../shared/data/glue/SST-2`` gives ``data_dir``
        ``../shared/data/glue``. None for any other source (files, the hub) or a folder that is gone."""
        kind, _, path = (source or "").partition(":")
        folder = Path(path).expanduser()
        if kind not in _LOCAL_SOURCES or not path or not folder.is_dir():
            return None
        return cls(task=task, data_dir=str(folder if _LOCAL_SOURCES[kind] else folder.parent))

    def data_spec(self) -> DataSpec:
        """Only the data settings (of a `PruneConfig`, say)."""
        return DataSpec(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DataSpec)})

    def override(self, **kw) -> DataSpec:
        """These data settings with the given ones (None = keep); a train or dev file replaces ``data_dir``."""
        kw = {k: v for k, v in kw.items() if v is not None}
        if kw.get("train_file") or kw.get("dev_file"):
            kw.setdefault("data_dir", None)
            kw.setdefault("test_file", None)
        spec = self.data_spec()
        return dataclasses.replace(spec, **kw) if kw else spec
