"""The run directory: the only code that knows its layout.

::

    RUN/
      plan.json            the latest search's plan (rewritten after every step)
      plans/<label>.json   each strategy's latest plan (label: greedy, beam, top, proxy-bi, ...)
      trials.sqlite        the trial journal (SQLite WAL; `glp.run.store.Store`), with the settings each strategy ran
                           with (meta rows ``config:<label>``, indexed in ``configs``: which label wrote which)
                           and the wall time every call of a strategy has spent (``wall:<label>``)
      .lock                held by the one process using the directory
      cache/               tokenized data (.npz)
      proxy_model/         the fine-tuned model of the loss proxy
      profile.json         `glp profile RUN` writes it
      report/              `glp report RUN` writes it

``glp evaluate`` writes the same journal and cache into its own ``--out`` directory, which is a `RunDir` too, and
its tables next to them: ``evaluation.json`` (what ``glp report --evaluation`` reads), ``evaluation.csv``,
``table.md``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from glp.data import DataSpec
from glp.errors import ConfigError, RunDirError, StorageError
from glp.plan import Plan
from glp.run.store import Store, canonical_json

PLAN = "plan.json"
PLANS = "plans"
JOURNAL = "trials.sqlite"
LOCK = ".lock"
CACHE = "cache"
PROXY_MODEL = "proxy_model"
PROFILE = "profile.json"
REPORT = "report"
EVALUATION = "evaluation.json"
EVALUATION_CSV = "evaluation.csv"
EVALUATION_TABLE = "table.md"
CONFIG_PREFIX = "config:"
CONFIG_INDEX = "configs"
WALL_PREFIX = "wall:"

NOT_A_RUN = "is this a glp run directory? (glp prune --out DIR writes one)"


class RunDir:
    """A run directory at ``path`` (it need not exist yet)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> RunDir:
        """The run directory of ``path``: the directory itself, or the one a plan file (``plan.json``,
        ``plans/<label>.json``) lies in."""
        p = Path(path)
        if p.is_file() or p.suffix == ".json":
            return cls(p.parent.parent if p.parent.name == PLANS else p.parent)
        return cls(p)

    # -- paths ----------------------------------------------------------------------------------------
    @property
    def plan_path(self) -> Path:
        return self.path / PLAN

    @property
    def plans_dir(self) -> Path:
        return self.path / PLANS

    @property
    def journal_path(self) -> Path:
        return self.path / JOURNAL

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    @property
    def cache_dir(self) -> Path:
        return self.path / CACHE

    @property
    def proxy_model_dir(self) -> Path:
        return self.path / PROXY_MODEL

    @property
    def profile_path(self) -> Path:
        return self.path / PROFILE

    @property
    def report_dir(self) -> Path:
        return self.path / REPORT

    @property
    def evaluation_path(self) -> Path:
        return self.path / EVALUATION

    @property
    def evaluation_csv_path(self) -> Path:
        return self.path / EVALUATION_CSV

    @property
    def evaluation_table_path(self) -> Path:
        return self.path / EVALUATION_TABLE

    @classmethod
    def evaluation_at(cls, path: str | os.PathLike[str]) -> Path:
        """The evaluation a command line names: an evaluation directory's ``evaluation.json``, or the file itself."""
        p = Path(path)
        return cls(p).evaluation_path if p.is_dir() else p

    @classmethod
    def with_plan(cls, path: str | os.PathLike[str]) -> RunDir | None:
        """The run directory at ``path`` when it holds a latest plan (``plan.json``); None for anything else (a model
        directory or name, a plan file)."""
        run = cls(path)
        return run if run.plan_path.exists() else None

    def is_run(self) -> bool:
        """Whether a search has written here (a plan or a journal)."""
        return self.plan_path.is_file() or self.journal_path.is_file()

    # -- plans ----------------------------------------------------------------------------------------
    def labels(self) -> list[str]:
        """The labels of the plans in ``plans/``."""
        return sorted(p.stem for p in self.plans_dir.glob("*.json")) if self.plans_dir.is_dir() else []

    def plan_file(self, label: str | None = None) -> Path:
        """``plans/<label>.json``, or the latest plan (``plan.json``) without a label."""
        if label is None:
            return self.plan_path
        f = self.plans_dir / f"{label}.json"
        if not f.is_file():
            raise ConfigError(f"{self.path} has no plan for strategy {label!r}; it has {self.labels() or 'none'}")
        return f

    def plan_files(self) -> list[Path]:
        """Every plan: ``plans/*.json`` (one per strategy), else ``plan.json``."""
        many = [self.plans_dir / f"{x}.json" for x in self.labels()]
        if many:
            return many
        if self.plan_path.is_file():
            return [self.plan_path]
        raise RunDirError(f"no plan in {self.path}: {NOT_A_RUN}")

    @classmethod
    def plans_at(cls, path: str | os.PathLike[str]) -> list[Path]:
        """The plans a command line names: a plan file is itself, a run directory has `plan_files`."""
        p = Path(path)
        return [p] if p.is_file() else cls(p).plan_files()

    @classmethod
    def plan_at(cls, path: str | os.PathLike[str], label: str | None = None) -> Path:
        """The plan a command line names: a plan file is itself, a run directory has `plan_file` (``label``'s)."""
        p = Path(path)
        return p if p.is_file() else cls(p).plan_file(label)

    @classmethod
    def read_plan(cls, path: str | os.PathLike[str], label: str | None = None) -> Plan:
        """The plan a command line names (`plan_at`): a plan file, or a run directory's plan (``label``'s, else
        the latest)."""
        return Plan.load(cls.plan_at(path, label))

    def load_plan(self, label: str | None = None) -> Plan:
        return Plan.load(self.plan_file(label))

    def save_plan(self, plan: Plan, label: str) -> None:
        """``plans/<label>.json`` and ``plan.json`` (the latest search), each written atomically (folders made as
        needed; a write the storage refuses raises `glp.errors.StorageError`)."""
        plan.save(self.plans_dir / f"{label}.json")
        plan.save(self.plan_path)

    # -- journal and settings -------------------------------------------------------------------------
    def journal(self, lock: bool = True) -> Store:
        """The trial journal (`glp.run.store.Store`); ``lock`` takes the directory's lock for this process."""
        return Store(self.journal_path, self.lock_path if lock else None)

    def write_config(
        self,
        store: Store,
        label: str,
        config: dict[str, Any],
        not_the_search: Collection[str] = (),
        started: float | None = None,
    ) -> SearchClock:
        """Journal the settings the plan ``label`` is searched with, and index which label wrote them. Returns the
        clock of the search's wall time over all its calls (see `SearchClock`: a call whose settings differ from
        the last call's in more than ``not_the_search`` starts another search; ``started``: when this call began,
        by `time.monotonic`)."""
        ran_before = store.get_meta(CONFIG_PREFIX + label) is not None
        store.set_meta(CONFIG_PREFIX + label, config)
        index = store.get_meta(CONFIG_INDEX) or {}
        search = {k: v for k, v in config.items() if k not in not_the_search}
        search_id = hashlib.sha256(canonical_json(search).encode()).hexdigest()[:16]
        clock = SearchClock(store, label, search_id, ran_before=ran_before, started=started)
        clock.save()  # a call that fails later still counts
        index[label] = {"strategy": config.get("strategy"), "written": time.time()}
        store.set_meta(CONFIG_INDEX, index)
        return clock

    def data_spec(self, label: str | None = None) -> DataSpec | None:
        """Where plan ``label``'s data came from (the data fields of its journaled settings), or None. Settings of
        another machine (devices, executors) never get in the way: only the data fields are read."""
        d = self.read_config(label)
        return DataSpec.from_dict(d) if d else None

    @staticmethod
    def plan_data(plan_file: str | os.PathLike[str], plan: Plan) -> tuple[DataSpec, str | None]:
        """Where the data of ``plan`` (read from ``plan_file``) is: its run's journaled settings; for a plan file kept
        without its journal (as docs/results keeps them), the local folder the plan records, while it exists; else
        the task's name alone (the hub). With a note saying so when it is not the journal's."""
        task = str(plan.task.get("name"))
        found = RunDir.of(plan_file).data_spec(str(plan.strategy.get("name")))
        if found is not None:
            return found, None
        recorded, why = plan.data.get("source"), f"{plan_file}: no journaled prune config; data"
        local = DataSpec.from_source(task, recorded)
        if local is not None:
            return local, f"{why} read from the plan's recorded source {recorded}"
        return DataSpec(task=task), f"{why} located from the task name only"

    def read_config(self, label: str | None = None) -> dict[str, Any] | None:
        """The settings journaled for plan ``label``; without a label (or for a journal from before the index),
        the only ones there, or the latest written. None without a journal or settings."""
        if not self.journal_path.is_file():
            return None
        with self.journal(lock=False) as store:
            if label is not None:
                d = store.get_meta(CONFIG_PREFIX + label)
                if isinstance(d, dict):
                    return d
            index = store.get_meta(CONFIG_INDEX) or {}
            names = sorted(index, key=lambda k: index[k].get("written", 0.0), reverse=True) if index else []
            found = [store.get_meta(CONFIG_PREFIX + n) for n in names] or list(store.meta_with_prefix(CONFIG_PREFIX))
        found = [d for d in found if isinstance(d, dict) and d.get("task")]
        return found[0] if found else None


class SearchClock:
    """The wall time of a search over every call that ran it (a killed call counts up to its last journaled
    trial). Kept in the journal's meta row ``wall:<label>`` as ``{"seconds": s, "complete": bool, "search": id}``;
    a call of another search under the same label (``search``: an id of the settings that decide the plan) starts
    again from zero. ``complete`` is False when the label had run before the journal kept its time (a journal of an
    older glp), so the total misses those calls and says so. Trials reused from another label's search count in
    the plan's ``trial_seconds``, not here."""

    def __init__(self, store: Store, label: str, search: str, ran_before: bool, started: float | None = None):
        self.store, self.name, self.search = store, WALL_PREFIX + label, search
        self.start = time.monotonic() if started is None else started
        before = store.get_meta(self.name)
        if before is not None and before.get("search") != search:
            before, ran_before = None, False  # another search: its time is not this one's
        self.before = float(before["seconds"]) if before else 0.0
        self.complete = bool(before["complete"]) if before else not ran_before

    def call_seconds(self) -> float:
        return time.monotonic() - self.start

    def save_quietly(self) -> None:
        """`save` on the way out of an interrupted call: a journal that cannot take it (the fault that ended the
        call) loses only this call's last seconds."""
        try:
            self.save()
        except (StorageError, RunDirError):
            pass

    def save(self) -> dict[str, Any]:
        """Journal the time so far; the cost fields of the plan: this call's wall time and the search's."""
        now = self.call_seconds()
        total = round(self.before + now, 2)
        self.store.set_meta(self.name, {"seconds": total, "complete": self.complete, "search": self.search})
        return {"wall_seconds": round(now, 2), "search_wall_seconds": total, "search_wall_complete": self.complete}
