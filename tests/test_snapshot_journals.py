"""benchmarks/snapshot_journals.py: a study's journals copied whole, and only when they grew."""

import sqlite3
from pathlib import Path

from helpers import load_benchmark


def _module():
    return load_benchmark("snapshot_journals")


def _journal(path: Path, rows: int) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute("pragma journal_mode = wal")
    con.execute("create table if not exists trials (key text primary key, result text)")
    con.executemany("insert or ignore into trials values (?, ?)", [(f"k{i}", "{}") for i in range(rows)])
    con.commit()
    return con


def test_a_live_journal_is_copied_whole_and_only_when_it_grew(tmp_path):
    snap = _module().snapshot
    live = _journal(tmp_path / "runs" / "stsb-full" / "trials.sqlite", 3)  # open, in WAL mode, as a search keeps it
    dest = tmp_path / "in-progress"
    assert snap(tmp_path / "runs", dest) == ["stsb-full: 3 rows"]
    copy = dest / "stsb-full" / "trials.sqlite"
    con = sqlite3.connect(copy)
    assert con.execute("select count(*) from trials").fetchone()[0] == 3
    assert con.execute("pragma journal_mode").fetchone()[0] == "delete"
    con.close()
    assert sorted(p.name for p in copy.parent.iterdir()) == ["trials.sqlite"]  # one file, no -wal beside it
    assert snap(tmp_path / "runs", dest) == []  # nothing new
    live.executemany("insert into trials values (?, ?)", [("k9", "{}")])
    live.commit()
    assert snap(tmp_path / "runs", dest) == ["stsb-full: 4 rows"]
    live.close()


def test_copying_back_keeps_a_larger_journal_and_replaces_a_smaller_one_with_its_log(tmp_path):
    """Restoring a snapshot (the same call, the other way) never loses the trials of a run that has more, and a
    smaller journal it replaces takes its write-ahead log with it."""
    snap = _module().snapshot
    saved = tmp_path / "in-progress"
    _journal(saved / "cola-full" / "trials.sqlite", 5).close()
    _journal(saved / "sst2-full" / "trials.sqlite", 2).close()
    runs = tmp_path / "runs"
    newer = _journal(runs / "sst2-full" / "trials.sqlite", 4)  # this machine ran further: kept
    newer.close()
    older = _journal(runs / "cola-full" / "trials.sqlite", 1)  # left open: its -wal file is on disk
    wal = runs / "cola-full" / "trials.sqlite-wal"
    assert wal.exists()
    assert snap(saved, runs) == ["cola-full: 5 rows"]
    assert not wal.exists()  # the replaced journal's log is gone with it
    older.close()
    for run, rows in (("cola-full", 5), ("sst2-full", 4)):
        con = sqlite3.connect(runs / run / "trials.sqlite")
        assert con.execute("select count(*) from trials").fetchone()[0] == rows
        con.close()
