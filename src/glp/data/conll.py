"""Reading tagged words: CoNLL-style column files (CoNLL-2003, CoNLL-U), JSON/JSONL/parquet rows with a list of tokens
and a list of tags, and hub datasets of that shape. `glp.kinds.token` turns the sentences into examples."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glp.data.hub import load_hub_dataset
from glp.data.tables import read_table
from glp.errors import DataError, reading

COLUMN_SUFFIXES = (".txt", ".conll", ".conllu", ".tsv", ".iob", ".bio")
_CONLLU_SKIP = re.compile(r"^\d+(-\d+|\.\d+)$")  # multiword-token ranges (1-2) and empty nodes (8.1)


@dataclass
class Sentences:
    """Sentences read from one file or hub split, before they become Examples."""

    path: str
    words: list[list[str]]
    tags: list[list[Any]]  # strings, or ints to be named
    docs: list[int]
    where: list[str]  # "file, line N" of each sentence, for messages


# --------------------------------------------------------------------------------------------- readers


def _is_conllu(path: Path) -> bool:
    """CoNLL-U: a .conllu file, or one whose first token line has 10 tab-separated fields and an integer ID."""
    if path.suffix.lower() == ".conllu":
        return True
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip() and not line.startswith(("#", "-DOCSTART-")):
                fields = line.rstrip("\n").split("\t")
                return len(fields) == 10 and fields[0].isdigit()
    return False


def read_columns(path: str | Path, token_column: int, tag_column: int) -> Sentences:
    """A CoNLL-style column file: one token a line, blank lines between sentences; ``-DOCSTART-`` lines start a
    document. In CoNLL-U files (`_is_conllu`) ``#`` comment lines, multiword-token ranges (``1-2``) and empty nodes
    (``8.1``) are skipped; elsewhere such lines are tokens (CoNLL-2003 has "#", "1-0" and "3.5"). Columns are split
    on tabs when a line has them, else on white space; every token line must have the same number of columns."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"file not found: {p}")
    with reading(p, DataError):
        return _read_columns(p, token_column, tag_column)


def _read_columns(p: Path, token_column: int, tag_column: int) -> Sentences:
    out = Sentences(str(p), [], [], [], [])
    words: list[str] = []
    tags: list[str] = []
    doc, first, ncols = 0, 0, None
    conllu = _is_conllu(p)

    def flush() -> None:
        if words:
            out.words.append(list(words))
            out.tags.append(list(tags))
            out.docs.append(doc)
            out.where.append(f"{p}, line {first}")
        words.clear()
        tags.clear()

    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                flush()
                continue
            if line.startswith("-DOCSTART-"):
                flush()
                doc += 1
                continue
            if conllu and line.startswith("#"):
                continue
            fields = line.split("\t") if "\t" in line else line.split()
            if conllu and _CONLLU_SKIP.match(fields[0]):
                continue
            ncols = ncols or len(fields)
            if len(fields) != ncols:
                raise DataError(f"{p}, line {lineno}: {len(fields)} columns, but the file's token lines have {ncols}")
            need = max(token_column, tag_column)
            if need >= len(fields) or min(token_column, tag_column) < -len(fields):
                raise DataError(
                    f"{p}, line {lineno}: {len(fields)} columns; --token-column {token_column} and --tag-column "
                    f"{tag_column} (0-based) must lie within them"
                )
            if not words:
                first = lineno
            words.append(fields[token_column])
            tags.append(fields[tag_column])
    flush()
    if not out.words:
        raise DataError(f"{p}: no sentences (token lines separated by blank lines)")
    return out


def read_lists(path: str | Path, token_column: str, tag_column: str) -> Sentences:
    """JSON / JSON Lines / parquet with a list of tokens and a list of tags per row."""
    table = read_table(path, "data")
    tokens = table.column(token_column, "token")
    tags = table.column(tag_column, "tag")
    return _rows_to_sentences(table.path, tokens, tags, [table.where(i) for i in range(len(table))])


def _rows_to_sentences(path: str, tokens: list, tags: list, where: list[str]) -> Sentences:
    out = Sentences(path, [], [], [], [])
    for i, (w, t) in enumerate(zip(tokens, tags, strict=True)):
        if not isinstance(w, list | tuple) or not isinstance(t, list | tuple):
            raise DataError(f"{where[i]}: tokens and tags must be lists, got {type(w).__name__}/{type(t).__name__}")
        if not w:
            raise DataError(f"{where[i]}: a sentence with no tokens")
        if len(w) != len(t):
            raise DataError(f"{where[i]}: {len(w)} tokens but {len(t)} tags")
        out.words.append([str(x) for x in w])
        out.tags.append(list(t))
        out.docs.append(0)
        out.where.append(where[i])
    return out


def read_hub_columns(
    name: str, token_column: str, tag_column: str
) -> tuple[dict[str, Sentences], tuple[str, ...] | None]:
    """A hub dataset's splits as sentences, and its tag names where the dataset has them (a ClassLabel feature)."""
    ds = load_hub_dataset(name)
    out: dict[str, Sentences] = {}
    for split, hub_split in (("train", "train"), ("dev", "validation"), ("test", "test")):
        if hub_split in ds:
            d = ds[hub_split]
            where = [f"{name}[{hub_split}], row {i}" for i in range(len(d))]
            out[split] = _rows_to_sentences(f"{name}[{hub_split}]", list(d[token_column]), list(d[tag_column]), where)
    feature = ds["train"].features.get(tag_column)
    names = getattr(getattr(feature, "feature", None), "names", None)
    return out, (tuple(names) if names else None)


# --------------------------------------------------------------------------------------------- schemes
