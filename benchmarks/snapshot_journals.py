"""Copy the trial journals of a study's run directories into the repository, so that a study a session could not
finish resumes in the next one instead of starting over (docs/results/mpnet/in-progress/README.md).

    .venv/bin/python benchmarks/snapshot_journals.py runs/mpnet docs/results/mpnet/in-progress
    .venv/bin/python benchmarks/snapshot_journals.py docs/results/mpnet/in-progress runs/mpnet   # and back

Each ``SRC/<run>/trials.sqlite`` is copied with SQLite's backup API (a consistent copy while a search writes to
it) to ``DEST/<run>/trials.sqlite``, in rollback-journal mode so that the copy is one file; a journal already
there is replaced only when the source has more trials (so copying back never loses a newer run's trials), and
with it any write-ahead log of the journal it replaces. Stop the study before copying back. Prints what it copied.
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path


def _trials(path: Path) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")]
        return sum(con.execute(f'select count(*) from "{t}"').fetchone()[0] for t in names if "trial" in t)
    finally:
        con.close()


def snapshot(runs: Path, dest: Path) -> list[str]:
    done = []
    for journal in sorted(runs.glob("*/trials.sqlite")):
        target = dest / journal.parent.name / "trials.sqlite"
        n = _trials(journal)
        if target.is_file() and _trials(target) >= n:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        src, out = sqlite3.connect(journal), sqlite3.connect(tmp)
        try:
            src.backup(out)
            out.execute("pragma journal_mode = delete")
        finally:
            src.close()
            out.close()
        for stale in (target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
            stale.unlink(missing_ok=True)  # the replaced journal's log: applied to the copy it would corrupt it
        tmp.replace(target)
        done.append(f"{journal.parent.name}: {n} rows")
    return done


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, help="the run directories' parent (runs/mpnet), or a snapshot to copy back")
    ap.add_argument("dest", type=Path, help="where the journals go (docs/results/mpnet/in-progress, or runs/mpnet)")
    args = ap.parse_args(argv)
    for line in snapshot(args.runs, args.dest) or ["nothing new"]:
        print(line)


if __name__ == "__main__":
    main()
