"""Task data: load it, split it for the search, tokenize it once.

Modules, lowest first (each imports only from modules listed before it):

* `glp.data.examples`: `Examples` (one split: texts, labels, row ids), `TaskDataset` (a task's splits),
  `DataWarning`.
* `glp.data.tables`: reading a file (CSV, TSV, JSON, JSON Lines, parquet) into raw columns: `read_table`.
* `glp.data.labels`: raw columns → `Examples` (texts, class ids or regression targets, the label set of a custom
  task) and a source's tables → `TaskDataset`; what is skipped and what raises.
* `glp.data.glue`: a local GLUE directory (`GlueLayout`, `GLUE_LAYOUT`, `load_glue_dir`, ``$GLP_GLUE_DIR``).
* `glp.data.hub`: a Hugging Face hub dataset (`load_hub_dataset`, `load_hub`).
* `glp.data.conll`: tagged words for token classification: CoNLL column files (CoNLL-2003, CoNLL-U), rows with
  token and tag lists, hub datasets of that shape (`read_columns`, `read_lists`, `read_hub_columns`).
* `glp.data.spec`: where the data comes from (`DataSpec`) and `load_task_data`, which picks the source.
* `glp.data.split`: the seeded, stratified search split (`search_split`, `group_split`, `SearchSplit`).
* `glp.data.encode`: tokenized data (`Encoded`, `collate_inputs`) and the tokenize cache (`encode`).

Every public name is re-exported here (but `glp.data.conll`'s, which token classification alone reads): import
from ``glp.data``.
"""

from glp.data.encode import (
    ENCODE_STATS,
    Encoded,
    clear_encode_cache,
    collate_inputs,
    encode,
    tokenizer_fingerprint,
)
from glp.data.examples import DataWarning, Examples, TaskDataset
from glp.data.glue import GLUE_DIR_ENV, GLUE_HUB_NAME, GLUE_LAYOUT, GlueLayout, default_glue_dir, load_glue_dir
from glp.data.hub import load_hub, load_hub_dataset
from glp.data.spec import DataSpec, column_tuple, load_files, load_task_data
from glp.data.split import (
    SearchSplit,
    group_split,
    regression_strata,
    search_split,
    split_fingerprint,
    stratified_eval_indices,
)
from glp.data.tables import SUPPORTED_SUFFIXES, read_table

__all__ = [
    "ENCODE_STATS",
    "GLUE_DIR_ENV",
    "GLUE_HUB_NAME",
    "GLUE_LAYOUT",
    "SUPPORTED_SUFFIXES",
    "DataSpec",
    "DataWarning",
    "Encoded",
    "Examples",
    "GlueLayout",
    "SearchSplit",
    "TaskDataset",
    "clear_encode_cache",
    "collate_inputs",
    "column_tuple",
    "default_glue_dir",
    "encode",
    "group_split",
    "load_files",
    "load_glue_dir",
    "load_hub",
    "load_hub_dataset",
    "load_task_data",
    "read_table",
    "regression_strata",
    "search_split",
    "split_fingerprint",
    "stratified_eval_indices",
    "tokenizer_fingerprint",
]
