"""Raw tables: a file (CSV, TSV, JSON, JSON Lines or parquet) or hub split as columns, before they become Examples.

A row that cannot be read (a TSV/CSV row with the wrong number of fields, a JSON Lines line that is not an object) is
skipped and counted in ``_Table.skipped`` / ``_Table.skipped_where``; `glp.data.labels` reports it. A missing file,
text that is not UTF-8 or a file that cannot be parsed at all raises :class:`~glp.errors.DataError`.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from glp.errors import DataError, one_line, reading

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet", ".pq")


@dataclass
class _Table:
    """Columns of one file or hub split, before they become Examples."""

    path: str
    columns: list[str]
    data: dict[str, list]
    row_ids: np.ndarray
    lines: np.ndarray | None = None  # line numbers (1-based) where the file has lines
    skipped: int = 0
    skipped_where: list[str] = field(default_factory=list)
    label_names: tuple[str, ...] | None = None  # from a hub ClassLabel feature

    def __len__(self) -> int:
        return len(self.row_ids)

    def where(self, i: int) -> str:
        s = f"{self.path}, row {int(self.row_ids[i])}"
        if self.lines is not None:
            s += f" (line {int(self.lines[i])})"
        return s

    def column(self, name: str, role: str) -> list:
        if name not in self.data:
            raise DataError(
                f"{self.path}: {role} column {name!r} not found; available columns: "
                f"{', '.join(repr(c) for c in self.columns) or '(none)'}"
            )
        return self.data[name]


def _check_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} file not found: {path}")
    if not path.is_file():
        raise DataError(f"{what} path is not a file: {path}")
    return path


def _read_delimited(
    path: Path, delimiter: str, quoting: int, header: bool = True, names: Sequence[str] | None = None
) -> _Table:
    """Read a CSV/TSV file; rows whose field count differs from the header's are skipped and counted."""
    rows: list[list[str]] = []
    row_ids: list[int] = []
    lines: list[int] = []
    skipped_where: list[str] = []
    try:
        with reading(path, DataError), open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter=delimiter, quoting=quoting)
            if header:
                columns = next(reader, None)
                if columns is None:
                    raise DataError(f"{path}: the file is empty (no header row)")
                columns = [c.strip() for c in columns]
            else:
                columns = list(names or [])
            ncols = len(columns)
            row = 0
            for fields in reader:
                if not fields:  # blank line: not a row
                    continue
                if not ncols:
                    ncols = len(fields)
                    columns = [str(i) for i in range(ncols)]
                if len(fields) != ncols:
                    skipped_where.append(
                        f"row {row} (line {reader.line_num}: {len(fields)} fields, expected {ncols})"
                    )
                else:
                    rows.append(fields)
                    row_ids.append(row)
                    lines.append(reader.line_num)
                row += 1
    except csv.Error as e:
        raise DataError(f"{path}: cannot parse as {'TSV' if delimiter == chr(9) else 'CSV'}: {e}") from e
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise DataError(f"{path}: duplicate column names {dup}; columns: {columns}")
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    data = {c: list(v) for c, v in zip(columns, cols, strict=True)}
    return _Table(
        path=str(path),
        columns=list(columns),
        data=data,
        row_ids=np.asarray(row_ids, dtype=np.int64),
        lines=np.asarray(lines, dtype=np.int64),
        skipped=len(skipped_where),
        skipped_where=skipped_where,
    )


def _records_to_table(path: Path, records: list, row_ids: list[int], lines: list[int] | None) -> _Table:
    columns: dict[str, None] = {}
    for r in records:
        for k in r:
            columns.setdefault(str(k), None)
    data = {c: [r.get(c) for r in records] for c in columns}
    return _Table(
        path=str(path),
        columns=list(columns),
        data=data,
        row_ids=np.asarray(row_ids, dtype=np.int64),
        lines=None if lines is None else np.asarray(lines, dtype=np.int64),
    )


def _read_json(path: Path) -> _Table:
    """JSON (a list of records, ``{"data": [records]}`` or ``{column: [values]}``) or JSON Lines."""
    with reading(path, DataError):
        text = path.read_text(encoding="utf-8-sig")
    obj = None
    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):  # (nested too deep, or an integer of more than 4300 digits)
            obj = None  # maybe JSON Lines with a .json name
    if isinstance(obj, dict):
        values = list(obj.values())
        if values and all(isinstance(v, list) for v in values):
            if len(obj) == 1 and all(isinstance(r, dict) for r in values[0]):
                obj = values[0]  # {"data": [records]}
            else:
                lengths = {len(v) for v in values}
                if len(lengths) != 1:
                    raise DataError(f"{path}: columns have different lengths {sorted(lengths)}")
                n = lengths.pop()
                return _Table(
                    path=str(path),
                    columns=[str(k) for k in obj],
                    data={str(k): list(v) for k, v in obj.items()},
                    row_ids=np.arange(n, dtype=np.int64),
                )
        else:
            obj = [obj]
    if isinstance(obj, list):
        records, ids, skipped = [], [], []
        for i, r in enumerate(obj):
            if isinstance(r, dict):
                records.append(r)
                ids.append(i)
            else:
                skipped.append(f"row {i} (not a JSON object: {type(r).__name__})")
        table = _records_to_table(path, records, ids, None)
        table.skipped, table.skipped_where = len(skipped), skipped
        return table
    # JSON Lines
    records, ids, lines, skipped = [], [], [], []
    row = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, or nested too deep, or a too long integer
            skipped.append(f"row {row} (line {lineno}: invalid JSON: {getattr(e, 'msg', None) or one_line(e)[:80]})")
        else:
            if isinstance(r, dict):
                records.append(r)
                ids.append(row)
                lines.append(lineno)
            else:
                skipped.append(f"row {row} (line {lineno}: not a JSON object)")
        row += 1
    table = _records_to_table(path, records, ids, lines)
    table.skipped, table.skipped_where = len(skipped), skipped
    return table


def _read_parquet(path: Path) -> _Table:
    import pyarrow.parquet as pq  # heavy: imported only when a parquet file is read

    try:
        data = pq.read_table(path).to_pydict()
    except Exception as e:  # pyarrow raises several types for broken files
        raise DataError(f"{path}: cannot read as parquet: {e}") from e
    n = len(next(iter(data.values()))) if data else 0
    return _Table(path=str(path), columns=list(data), data=data, row_ids=np.arange(n, dtype=np.int64))


def read_table(path: str | os.PathLike, what: str = "data") -> _Table:
    """Read a CSV / TSV / JSON / JSONL / parquet file by its suffix (TSV is read GLUE-style, unquoted)."""
    path = _check_file(Path(path), what)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_delimited(path, ",", csv.QUOTE_MINIMAL)
    if suffix == ".tsv":
        return _read_delimited(path, "\t", csv.QUOTE_NONE)
    if suffix in (".json", ".jsonl", ".ndjson"):
        return _read_json(path)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path)
    raise DataError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}")
