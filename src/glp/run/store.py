"""The trial journal of a run directory: every finished trial is written to SQLite at once.

A trial's key is a hash of everything that determines its result (model and weights revision, task, split
fingerprint, hyper-parameters, removed set, seed, budget), not of the strategy that asked for it, so greedy,
beam, optimal and the fixed patterns share trials on the same run directory. SQLite runs in WAL mode with
``synchronous=FULL``: a trial that `put` returned from survives a SIGKILL of the process at any moment.

One process at a time may use a run directory: `Store` takes an exclusive, non-blocking ``flock`` on
``RUN_DIR/.lock`` and raises `RunDirError` when another process holds it. The lock dies with its process,
so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from glp.errors import RunDirError

SCHEMA_VERSION = 1


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the same data always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def trial_key(context: dict[str, Any], removed: tuple[int, ...], seed: int, budget: float) -> str:
    """Hash of everything that determines a trial's result. The removed set is order-free."""
    payload = {
        "context": context,
        "removed": sorted(int(i) for i in removed),
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
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = None
        if lock_path is not None:
            self._acquire_lock(Path(lock_path))
        path = self.path
        try:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS trials (key TEXT PRIMARY KEY, removed TEXT NOT NULL, "
                "seed INTEGER NOT NULL, budget REAL NOT NULL, status TEXT NOT NULL, score REAL, "
                "result TEXT NOT NULL, context TEXT NOT NULL, created REAL NOT NULL)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._check_schema()
        except sqlite3.DatabaseError as e:
            self.close()
            raise RunDirError(
                f"{path} is not a readable glp trial journal ({e}); move it away or choose another --out"
            ) from e

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

    def _check_schema(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise RunDirError(
                f"{self.path} has journal schema {row[0]}, this glp writes {SCHEMA_VERSION}"
            )

    # -- trials -------------------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        """The journaled result (a TrialResult dict) under ``key``, or None."""
        row = self._db.execute("SELECT result FROM trials WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, result: dict[str, Any], context: dict[str, Any]) -> None:
        """Journal one finished trial; durable when this returns."""
        score = result.get("score")
        self._db.execute(
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
        return int(self._db.execute("SELECT COUNT(*) FROM trials").fetchone()[0])

    def results(self) -> Iterator[dict[str, Any]]:
        """Every journaled result, oldest first."""
        for (text,) in self._db.execute("SELECT result FROM trials ORDER BY created"):
            yield json.loads(text)

    # -- run metadata ---------------------------------------------------------------------------------
    def get_meta(self, name: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    def meta_with_prefix(self, prefix: str) -> Iterator[Any]:
        """The values of every meta row whose name starts with ``prefix``, in the order they were first written."""
        rows = self._db.execute("SELECT name, value FROM meta ORDER BY rowid").fetchall()
        for name, value in rows:
            if name.startswith(prefix):
                yield json.loads(value)

    def set_meta(self, name: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, canonical_json(value)))

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
            on_event("trials_start", total=len(requests), cached=len(requests) - len(todo))
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
