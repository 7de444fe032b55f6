"""The trial journal of a run directory: every finished trial is written to SQLite at once.

A trial's key is a hash of everything that determines its result (model and weights revision, task, split
fingerprint, hyper-parameters, removed set, seed, budget), not of the strategy that asked for it, so greedy,
beam, optimal and the fixed patterns share trials on the same run directory. SQLite runs in WAL mode with
``synchronous=FULL``: a trial that `put` returned from survives a SIGKILL of the process at any moment.

One process at a time may use a run directory: `Store` takes an exclusive, non-blocking ``flock`` on
``RUN_DIR/.lock`` and raises `RunDirError` when another process holds it. The lock dies with its process,
so a killed run never leaves a stale lock behind.

A write the storage refuses (a full disk, a read-only or vanished run directory) raises `StorageError` naming the
journal; the trials journaled before it stay, and the same command resumes from them.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from glp.atomic import probe_dir, storage_error, storage_fault
from glp.errors import RunDirError, StorageError

SCHEMA_VERSION = 1


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the same data always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def trial_key(context: dict[str, Any], removed: tuple[int, ...], seed: int, budget: float) -> str:
    """Hash of everything that determines a trial's result. The removed set is order-free, but for a warm start
    (``context["init"] == "parent"``), where the order says which parent a set is trained from."""
    ordered = context.get("init") == "parent"
    payload = {
        "context": context,
        "removed": [int(i) for i in removed] if ordered else sorted(int(i) for i in removed),
        "seed": int(seed),
        "budget": round(float(budget), 9),
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


class Store:
    """SQLite journal of finished trials at ``path``; holds the run directory's lock (the file ``lock_path``)
    while open. `glp.run.rundir.RunDir.journal` names both files."""

    def __init__(self, path: str | os.PathLike[str], lock_path: str | os.PathLike[str] | None = None):
        self.path = Path(path)
        self.run_dir = self.path.parent
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise RunDirError(f"{self.run_dir} exists and is not a directory; choose another --out")
        self._lock_file, self._db = None, None
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if lock_path is not None:
                self._acquire_lock(Path(lock_path))
        except OSError as e:
            err = storage_fault(e, self.run_dir)
            if err is None:
                raise
            raise storage_error(e.filename or lock_path or self.run_dir, err) from e
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS trials (key TEXT PRIMARY KEY, removed TEXT NOT NULL, "
                "seed INTEGER NOT NULL, budget REAL NOT NULL, status TEXT NOT NULL, score REAL, "
                "result TEXT NOT NULL, context TEXT NOT NULL, created REAL NOT NULL)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._check_schema()
        except UnicodeDecodeError as e:  # a damaged file can fail before SQLite says so
            self.close()
            raise self._unreadable(e) from e
        except sqlite3.DatabaseError as e:
            self.close()
            fault = self._storage_error(e)
            if fault is None:
                raise self._unreadable(e) from e
            if lock_path is not None or not self._open_read_only():  # a reader may read what it cannot write
                raise fault from e
        except RunDirError:
            self.close()
            raise
        self._file_id = _file_id(self.path)

    def _acquire_lock(self, path: Path) -> None:
        f = open(path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RunDirError(
                f"run directory {self.run_dir} is in use by another glp process ({holder}); "
                "wait for it to finish or stop it, then run the same command again to resume"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        self._lock_file = f

    def _open_read_only(self) -> bool:
        """Open the journal read-only (it still sees what a writer commits), else, when nothing can be changing it
        (a read-only file system, or no ``-wal`` file: no connection has it open), as immutable: SQLite cannot make
        the WAL index where it may not write. Whether that worked."""
        if not self.path.is_file():
            return False
        idle = probe_dir(self.run_dir) == errno.EROFS or not self.path.with_name(self.path.name + "-wal").exists()
        for mode in ["mode=ro"] + (["immutable=1"] if idle else []):
            try:
                self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?{mode}", uri=True, isolation_level=None)
                if self._check_schema(create=False):
                    return True
            except sqlite3.DatabaseError:
                pass
            self.close()
        return False

    def _storage_error(self, exc: sqlite3.Error) -> StorageError | None:
        """The `StorageError` of an SQLite error that is the storage refusing a write, else None. SQLite names no
        errno: a full database is ENOSPC; a read-only one, one it cannot open or an I/O error is what `probe_dir`
        finds in the run directory, or ENOENT when the journal was moved or deleted under the open connection."""
        text = str(exc).lower()
        if "disk is full" in text:
            return storage_error(self.path, errno.ENOSPC)
        if not any(s in text for s in ("readonly database", "unable to open database", "disk i/o error")):
            return None
        err = probe_dir(self.run_dir)
        if err is None and not self.path.exists():
            err = errno.ENOENT
        return None if err is None else storage_error(self.path, err)

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        """Run one writing statement (its own transaction: durable, or not at all); see `_storage_error`. The
        journal must still be where it was opened: SQLite goes on writing a deleted file and loses it all."""
        if _file_id(self.path) != self._file_id:
            raise storage_error(self.path, errno.ENOENT)
        try:
            self._db.execute(sql, params)
        except sqlite3.OperationalError as e:
            if (fault := self._storage_error(e)) is not None:
                raise fault from e
            raise

    def _check_schema(self, create: bool = True) -> bool:
        """Refuse a journal of another schema (`RunDirError`); a new one is given this glp's when ``create``.
        Whether the journal has a schema now."""
        row = self._db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        if row is None:
            if create:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            return create
        try:
            version = int(row[0])
        except (TypeError, ValueError):
            version = None
        if version != SCHEMA_VERSION:
            raise RunDirError(f"{self.path} has journal schema {row[0]}, this glp writes {SCHEMA_VERSION}")
        return True

    def _json(self, text: Any, what: str) -> Any:
        """A journaled JSON value; `RunDirError` when the row is not one (a journal written by something else)."""
        try:
            return json.loads(text)
        except (TypeError, ValueError) as e:
            raise RunDirError(
                f"{self.path} is not a readable glp trial journal ({what} is not JSON: {e}); move it away or "
                "choose another --out"
            ) from e

    def _unreadable(self, exc: BaseException) -> RunDirError:
        return RunDirError(
            f"{self.path} is not a readable glp trial journal ({exc}); move it away or choose another --out"
        )

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Every row of a query; a damaged journal (a bad disk, a copy cut short) is a `RunDirError`."""
        try:
            return self._db.execute(sql, params).fetchall()
        except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
            raise self._unreadable(e) from e

    # -- trials -------------------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        """The journaled result (a TrialResult dict) under ``key``, or None."""
        row = next(iter(self._rows("SELECT result FROM trials WHERE key=?", (key,))), None)
        return None if row is None else self._json(row[0], f"trial {key}")

    def put(self, key: str, result: dict[str, Any], context: dict[str, Any]) -> None:
        """Journal one finished trial; durable when this returns."""
        score = result.get("score")
        self._write(
            "INSERT OR REPLACE INTO trials VALUES (?,?,?,?,?,?,?,?,?)",
            (
                key,
                canonical_json(sorted(result["removed"])),
                int(result["seed"]),
                float(result["budget"]),
                str(result["status"]),
                None if score is None else float(score),
                canonical_json(result),
                canonical_json(context),
                time.time(),
            ),
        )

    def __len__(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM trials")[0][0])

    def results(self) -> Iterator[dict[str, Any]]:
        """Every journaled result, oldest first."""
        for key, text in self._rows("SELECT key, result FROM trials ORDER BY created"):
            yield self._json(text, f"trial {key}")

    # -- run metadata ---------------------------------------------------------------------------------
    def get_meta(self, name: str) -> Any:
        row = next(iter(self._rows("SELECT value FROM meta WHERE name=?", (name,))), None)
        return None if row is None else self._json(row[0], f"meta row {name!r}")

    def meta_with_prefix(self, prefix: str) -> Iterator[Any]:
        """The values of every meta row whose name starts with ``prefix``, in the order they were first written."""
        rows = self._rows("SELECT name, value FROM meta ORDER BY rowid")
        for name, value in rows:
            if name.startswith(prefix):
                yield self._json(value, f"meta row {name!r}")

    def set_meta(self, name: str, value: Any) -> None:
        self._write("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, canonical_json(value)))

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _file_id(path: Path) -> tuple[int, int] | None:
    """The device and inode of ``path`` (None when it is gone): another file there is another journal."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_dev, st.st_ino


def journaled_runner(store: Store, context: dict[str, Any], executor: Any, on_event: Callable[..., None] | None = None):
    """A TrialRunner (`glp.search`): journaled trials are looked up, the rest run on the executor and are
    journaled at once (the driver alone writes the journal). Returns ``(run, stats)``."""
    # steps and wall_time of a result count from the start of its trial (a continued trial includes what it
    # trained before), so the cost of a trial is its largest value over the budgets it reached.
    stats: dict[str, Any] = {"run": 0, "reused": 0, "steps": {}, "seconds": {}}

    def run(requests: list[Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any] | None] = [None] * len(requests)
        keys = [trial_key(context, r.removed, r.seed, r.budget) for r in requests]
        todo = []
        for i, key in enumerate(keys):
            hit = store.get(key)
            if hit is not None:
                out[i] = hit
                stats["reused"] += 1
            else:
                todo.append(i)
        if on_event:
            hits = [(requests[i], out[i]) for i in range(len(requests)) if out[i] is not None]
            on_event("trials_start", total=len(requests), cached=len(hits), from_journal=hits)
        for j, result in executor.run([requests[i] for i in todo]):
            i = todo[j]
            if not result.get("infrastructure"):  # a worker that died is no property of the trial: retry on resume
                store.put(keys[i], result, context)
            out[i] = result
            stats["run"] += 1
            if on_event:
                on_event("trial_done", request=requests[i], result=result)
        for req, r in zip(requests, out, strict=True):
            tid = (frozenset(req.removed), req.seed)
            stats["steps"][tid] = max(stats["steps"].get(tid, 0), int(r.get("steps") or 0))
            stats["seconds"][tid] = max(stats["seconds"].get(tid, 0.0), float(r.get("wall_time") or 0.0))
        return out  # type: ignore[return-value]

    return run, stats
