"""What glp promises under faults (docs/faults.md): a full, read-only or vanished run directory stops a command with
one line and exit 2 and keeps what was finished, and the same command resumes; the tokenized cache is skipped
when it cannot be written; exports and drops are written whole or not at all; readers of a run another process is
writing see whole plans, each a prefix of the final one."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_prune_config

import glp
import glp.atomic
from glp.atomic import storage_error, write_atomic, write_dir_atomic
from glp.cli import main
from glp.errors import ConfigError, GLPError, RunDirError, StorageError
from glp.plan import Plan
from glp.run.rundir import RunDir
from glp.run.store import Store

ENOSPC = f"No space left on device (errno {errno.ENOSPC})"
RESUME = "run the same command again to resume"

# runs in a fresh interpreter and never imports glp: how many layers the saved model has
RELOAD = textwrap.dedent(
    """
    import sys
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    m = AutoModelForSequenceClassification.from_pretrained(sys.argv[1])
    AutoTokenizer.from_pretrained(sys.argv[1])
    assert not any(k == "glp" or k.startswith("glp.") for k in sys.modules), "glp was imported"
    print(m.config.num_hidden_layers)
    """
)


def _reload_without_glp(path: Path) -> int:
    p = subprocess.run([sys.executable, "-I", "-c", RELOAD, str(path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return int(p.stdout.split()[-1])


def _prune_args(root: Path, out: Path) -> list[str]:
    """``glp prune`` of conftest.tiny_prune_config's search, as flags."""
    return [
        "prune", root / "model", "--out", out, "--max-remove", "2", "--task", "toy", "--train-file",
        root / "train.csv", "--dev-file", root / "dev.csv", "--text-columns", "text", "--label-column", "label",
        "--metric", "accuracy", "--learning-rate", "1e-3", "--num-train-epochs", "1",
        "--per-device-train-batch-size", "16", "--max-seq-length", "32",
    ]  # fmt: skip


def _glp(capsys, *args) -> tuple[int, str, str]:
    """Run ``glp ARGS`` as the console script does: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _fails(capsys, *args) -> str:
    """``glp ARGS`` fails as a user error: exit 2, no traceback, its last stderr line the only ``error:`` line (a
    search prints its progress before it). Returns that line, its whitespace joined."""
    code, out, err = _glp(capsys, *args)
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    return " ".join(errors[0].split())


def _journaled(run: Path) -> int:
    with RunDir(run).journal(lock=False) as store:
        return len(store)


def _same_search(a: Plan, b: Plan) -> None:
    """The same search result: removals, order, steps (candidates and scores) and baseline; not the costs."""
    assert a.complete and b.complete
    assert (a.removals, a.order, a.baseline["mean"]) == (b.removals, b.order, b.baseline["mean"])
    assert a.to_dict()["steps"] == b.to_dict()["steps"]


class FullDisk:
    """A disk with ``left`` bytes free under every write glp makes: a file written through `glp.atomic` takes its
    size, a journal row its text. A write that does not fit fails as on a full disk (the file writer's OSError
    ENOSPC, SQLite's "database or disk is full") and takes no space, so a smaller one may still fit after it."""

    def __init__(self, monkeypatch, left: int):
        self.left, self.failed = left, []
        real = glp.atomic.write_atomic

        def write_atomic(path, save):
            def save_and_count(tmp):
                save(tmp)
                self._take(Path(tmp).stat().st_size, path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

            return real(path, save_and_count)

        for mod in [m for name, m in sys.modules.items() if name == "glp" or name.startswith("glp.")]:
            if getattr(mod, "write_atomic", None) is real:
                monkeypatch.setattr(mod, "write_atomic", write_atomic)
        connect, disk = sqlite3.connect, self

        class Journal:
            def __init__(self, db):
                self._db = db

            def execute(self, sql, params=()):
                if sql.lstrip().upper().startswith("INSERT"):
                    disk._take(len(repr(params)), "journal", sqlite3.OperationalError("database or disk is full"))
                return self._db.execute(sql, params)

            def close(self):
                self._db.close()

        monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: Journal(connect(*a, **k)))

    def _take(self, size: int, what, error: Exception) -> None:
        if size > self.left:
            self.failed.append(str(what))
            raise error
        self.left -= size


# ------------------------------------------------------------------------------------- the messages


def test_a_refused_write_is_one_storage_error_naming_the_path(tmp_path):
    e = storage_error(Path("runs/x/plan.json"), errno.ENOSPC)
    assert isinstance(e, GLPError) and isinstance(e, OSError) and e.exit_code == 2
    assert str(e) == f"cannot write runs/x/plan.json: {ENOSPC}; free space and {RESUME}"
    assert str(storage_error(Path("runs/x/plan.json"), errno.EROFS)) == (
        f"cannot write runs/x/plan.json: Read-only file system (errno {errno.EROFS}); make runs/x writable and {RESUME}"
    )
    assert "was runs/x moved or deleted while glp wrote to it? run the same command again" in str(
        storage_error(Path("runs/x/trials.sqlite"), errno.ENOENT)
    )

    def full(tmp):
        tmp.write_text("half a fi")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    old = glp.atomic.write_text_atomic(tmp_path / "plan.json", "old\n")
    with pytest.raises(StorageError, match="cannot write .*plan.json: No space left on device"):
        write_atomic(old, full)
    assert old.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["plan.json"]

    def rust(tmp):  # safetensors: "I/O error: No space left on device (os error 28)"
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")

    with pytest.raises(StorageError, match=re.escape(ENOSPC)):
        write_atomic(tmp_path / "w.safetensors", rust)
    for other in (ValueError("a bug"), OSError("not the disk's"), KeyboardInterrupt()):

        def fails(tmp, exc=other):
            raise exc

        with pytest.raises(type(other)) as info:
            write_atomic(tmp_path / "x.json", fails)
        assert info.value is other  # anything else is raised as it was


def test_the_journal_says_which_write_the_storage_refused(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch, left=10**9)
    store = RunDir(tmp_path / "run").journal()
    store.put("k1", {"removed": [1], "seed": 1, "budget": 1.0, "status": "ok", "score": 0.5}, {})
    disk.left = 0
    with pytest.raises(StorageError, match=f"cannot write .*trials.sqlite: {re.escape(ENOSPC)}; free space"):
        store.put("k2", {"removed": [2], "seed": 1, "budget": 1.0, "status": "ok", "score": 0.5}, {})
    monkeypatch.undo()
    store.close()
    assert _journaled(tmp_path / "run") == 1
    with RunDir(tmp_path / "run").journal() as store:  # a journal deleted under its open connection
        os.remove(store.path)
        with pytest.raises(StorageError, match="No such file or directory .* moved or deleted"):
            store.set_meta("x", 1)


def test_a_journal_row_that_is_not_json_or_another_schema_is_refused(tmp_path):
    RunDir(tmp_path).journal().close()
    db = sqlite3.connect(tmp_path / "trials.sqlite")
    db.execute("INSERT INTO trials VALUES ('k', '[]', 0, 1.0, 'ok', NULL, '{', '{}', 0)")
    db.commit()
    with RunDir(tmp_path).journal(lock=False) as store, pytest.raises(RunDirError, match="trial k is not JSON"):
        list(store.results())
    db.execute("UPDATE meta SET value='x' WHERE name='schema'")
    db.commit()
    db.close()
    with pytest.raises(RunDirError, match="has journal schema x, this glp writes 1"):
        RunDir(tmp_path).journal()
    with open(tmp_path / ".lock") as f:  # the refused journal let go of the run directory's lock
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_the_cache_is_skipped_with_one_warning_when_it_cannot_be_written(tmp_path, monkeypatch, tiny_tokenizer):
    from glp.data.encode import clear_encode_cache, encode
    from glp.data.examples import Examples

    clear_encode_cache()  # tokenized again, not found in memory
    disk = FullDisk(monkeypatch, left=0)
    rows = Examples(["w1 w2 w3", "w4 w5"], None, np.array([0, 1]), np.arange(2))
    warning = f"cannot write the tokenization cache .*: {re.escape(ENOSPC)}; going on without it"
    with pytest.warns(UserWarning, match=warning) as seen:
        encode(rows, tiny_tokenizer, 8, cache_dir=tmp_path / "cache")
        more = Examples(["w6 w7"], None, np.array([1]), np.arange(1))
        got = encode(more, tiny_tokenizer, 8, cache_dir=tmp_path / "cache")
    assert len([w for w in seen if "tokenization cache" in str(w.message)]) == 1  # once per folder
    assert len(disk.failed) == 2 and list(got.input_ids[0]) == tiny_tokenizer("w6 w7")["input_ids"]
    assert not list((tmp_path / "cache").glob("*"))


# ---------------------------------------------------------------------------- a full disk under a search


def test_a_full_disk_stops_the_search_with_one_line_and_the_same_command_resumes(
    tiny_setup, tiny_run, tmp_path, monkeypatch, capsys
):
    from glp.data.encode import clear_encode_cache

    clear_encode_cache()  # the data is tokenized (and its cache written), not found in memory
    run = tmp_path / "run"
    # too small for the train set's cache (37 KB), not for the dev set's (8 KB); then the settings (1.4 KB), step 1's
    # five trials (1.1 KB each, the search's wall time after each) and plans (4 KB each) fit, and step 2's first
    # trial, not its second
    disk = FullDisk(monkeypatch, left=25_600)
    with pytest.warns(UserWarning, match="cannot write the tokenization cache"):
        line = _fails(capsys, *_prune_args(tiny_setup, run))
    assert line == f"error: cannot write {run}/trials.sqlite: {ENOSPC}; free space and {RESUME}"
    # (the search's wall time, saved on the way out, may fail too and is swallowed: its size follows the clock)
    assert "cache" in disk.failed[0] and disk.failed[1:] in (["journal"], ["journal", "journal"])
    kept = _journaled(run)
    assert 5 < kept < 1 + 4 + 3  # the trials finished before the disk filled up stay in the journal
    monkeypatch.undo()  # space is back
    code, out, err = _glp(capsys, *_prune_args(tiny_setup, run))
    assert code == 0, err
    plan = RunDir(run).load_plan()
    assert plan.cost["trials_reused"] == kept and plan.cost["trials"] == 1 + 4 + 3
    _same_search(plan, RunDir(tiny_run).load_plan())  # as the run that never failed


def test_a_full_disk_at_a_plan_write_keeps_the_trials(tiny_setup, tmp_path, monkeypatch, capsys):
    """The disk fills up when step 1's plan is written: the step's five trials are journaled already."""
    run = tmp_path / "run"
    disk = FullDisk(monkeypatch, left=10**9)
    real_save = RunDir.save_plan

    def save_plan(self, *a, **k):  # the disk is full once step 1's trials and the search's time are journaled
        disk.left = 0
        real_save(self, *a, **k)

    monkeypatch.setattr(RunDir, "save_plan", save_plan)
    line = _fails(capsys, *_prune_args(tiny_setup, run))
    assert line == f"error: cannot write {run}/plans/greedy.json: {ENOSPC}; free space and {RESUME}"
    monkeypatch.undo()
    assert _journaled(run) == 5 and not (run / "plan.json").exists()
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]  # no temporary file left behind


def test_a_vanished_run_directory_stops_the_search_with_one_line(tiny_setup, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    real_put = Store.put

    def put(self, *a, **k):  # someone deletes the run directory after the second trial
        real_put(self, *a, **k)
        if len(self) == 2:
            shutil.rmtree(self.run_dir)

    monkeypatch.setattr(Store, "put", put)
    line = _fails(capsys, *_prune_args(tiny_setup, run))
    assert line == (
        f"error: cannot write {run}/trials.sqlite: No such file or directory (errno {errno.ENOENT}); "
        f"was {run} moved or deleted while glp wrote to it? run the same command again"
    )


def _read_only(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if p.is_dir():
            p.chmod(0o555)
    if os.access(path, os.W_OK):  # root writes anyway
        path.chmod(0o755)
        pytest.skip("chmod cannot make a directory read-only for this user (root)")


def test_a_read_only_run_directory_is_refused_in_one_line_and_still_read(tiny_setup, tiny_run, tmp_path, capsys):
    run = tmp_path / "ro" / "run"
    shutil.copytree(tiny_run, run)
    _read_only(tmp_path / "ro")
    try:
        line = _fails(capsys, *_prune_args(tiny_setup, run.parent / "new"))
        assert line.startswith(f"error: cannot write {run.parent}/new: Permission denied (errno {errno.EACCES})")
        line = _fails(capsys, *_prune_args(tiny_setup, run))  # resuming it: the journal cannot be written
        denied = f"Permission denied (errno {errno.EACCES})"
        assert line == f"error: cannot write {run}/trials.sqlite: {denied}; make {run} writable and {RESUME}"
        # readers: the plan, the journaled settings, an export elsewhere
        assert _glp(capsys, "show", run)[0] == 0
        assert RunDir(run).read_config()["task"] == "toy"
        code, out, err = _glp(capsys, "export", run, "--remove", "1", "--out", tmp_path / "model")
        assert code == 0, err
        line = _fails(capsys, "export", run, "--remove", "1", "--out", run / "model")
        assert line.startswith(f"error: cannot write {run}/model: Permission denied") and f"make {run} writable" in line
    finally:
        for p in [tmp_path / "ro", *(tmp_path / "ro").rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)


def test_a_full_disk_under_a_write_of_no_storage_error_is_one_line_too(tiny_run, tmp_path, monkeypatch, capsys):
    from glp.commands import report

    def fails(err, name=None):
        def report_(*a, **k):
            raise OSError(err, os.strerror(err), name)

        return report_

    monkeypatch.setattr(report, "report", fails(errno.ENOSPC))  # a figure written straight to a full disk
    line = _fails(capsys, "report", tiny_run, "--out", tmp_path / "rep")
    assert line == f"error: cannot write a file: {ENOSPC}; free space and run the same command again"
    monkeypatch.setattr(report, "report", fails(errno.EROFS, str(tmp_path / "rep")))
    assert f"cannot write {tmp_path}/rep: Read-only file system" in _fails(capsys, "report", tiny_run)
    monkeypatch.setattr(report, "report", fails(errno.EINVAL))  # no fault of the disk: raised as it is
    with pytest.raises(OSError, match="Invalid argument"):
        main(["report", str(tiny_run)])


# ----------------------------------------------------------------------------------- atomic folders


def _interrupt_halfway(monkeypatch, exc: BaseException) -> None:
    """save_pretrained writes the weights and config, then the process is stopped."""
    from transformers import PreTrainedModel

    real = PreTrainedModel.save_pretrained

    def save(self, folder, *a, **k):
        real(self, folder, *a, **k)
        assert (Path(folder) / "config.json").exists()
        raise exc

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save)


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), SystemExit(1)])
def test_an_export_stopped_while_saving_leaves_no_folder_and_runs_again(tiny_run, tmp_path, monkeypatch, stop):
    from glp.commands.export import export

    out = tmp_path / "model"
    _interrupt_halfway(monkeypatch, stop)
    with pytest.raises(type(stop)):
        export(tiny_run, 2, out)
    assert list(tmp_path.iterdir()) == []  # neither out nor its temporary sibling
    monkeypatch.undo()
    assert export(tiny_run, 2, out).out == out
    assert (out / "pruning.json").exists() and list(tmp_path.iterdir()) == [out]


def test_a_drop_stopped_while_saving_leaves_no_folder(tiny_setup, tmp_path, monkeypatch, capsys):
    out = tmp_path / "dropped"
    _interrupt_halfway(monkeypatch, KeyboardInterrupt())
    code, _, _ = _glp(capsys, "drop", tiny_setup / "model", "--remove", "1", "--out", out)
    assert code != 0 and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert _glp(capsys, "drop", tiny_setup / "model", "--remove", "1", "--out", out)[0] == 0
    assert _reload_without_glp(out) == 3


def test_a_folder_is_written_whole_and_an_existing_one_only_with_overwrite(tmp_path):
    def save(folder, text="new"):
        (folder / "config.json").write_text(text)
        (folder / "model.safetensors").write_text(text)
        return "done"

    out = tmp_path / "out"
    stale = tmp_path / ".out.tmp-999999999"  # a killed writer's (no such process)
    stale.mkdir()
    (stale / "model.safetensors").write_text("half")
    assert write_dir_atomic(out, save) == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(ConfigError, match="exists and is not empty; pass --overwrite"):
        write_dir_atomic(out, save)
    (out / "mine.txt").write_text("kept")
    write_dir_atomic(out, lambda f: save(f, "newer"), overwrite=True)  # written into: files replaced, others kept
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "config.json": "newer", "model.safetensors": "newer", "mine.txt": "kept"
    }  # fmt: skip
    (tmp_path / "empty").mkdir()
    write_dir_atomic(tmp_path / "empty", save)
    assert (tmp_path / "empty" / "config.json").read_text() == "new"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        write_dir_atomic(tmp_path / "file", save, overwrite=True)

    def full(folder):
        (folder / "config.json").write_text("x")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / "config.json"))

    with pytest.raises(StorageError) as info:
        write_dir_atomic(tmp_path / "full", full)
    assert str(info.value) == f"cannot write {tmp_path}/full: {ENOSPC}; free space and run the same command again"
    assert not (tmp_path / "full").exists() and not list(tmp_path.glob(".full*"))


KILLED_EXPORT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from transformers import PreTrainedModel
    from glp.commands.export import export
    real = PreTrainedModel.save_pretrained
    def save(self, folder, *a, **k):
        real(self, folder, *a, **k)
        Path(sys.argv[3]).write_text(str(folder))  # the weights are written: the test kills us now
        time.sleep(600)
    PreTrainedModel.save_pretrained = save
    export(sys.argv[1], 2, sys.argv[2])
    """
)


@pytest.mark.slow
def test_an_export_killed_while_saving_leaves_no_folder_and_the_same_command_succeeds(tiny_run, tmp_path, capsys):
    out, saving = tmp_path / "models" / "m", tmp_path / "saving"
    p = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, str(tiny_run), str(out), str(saving)])
    deadline = time.time() + 240
    while not saving.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "the export ended before it was killed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    half = Path(saving.read_text())
    assert half.name == f".m.tmp-{p.pid}" and (half / "config.json").exists()
    assert not out.exists()  # nothing that looks finished
    code, _, err = _glp(capsys, "export", tiny_run, "--remove", "2", "--out", out)
    assert code == 0, err
    assert os.listdir(out.parent) == ["m"]  # the killed export's half is gone
    assert _reload_without_glp(out) == 2


# --------------------------------------------------------------------------------- readers during a run


def test_readers_see_whole_plans_while_a_search_writes_them(tiny_setup, tmp_path):
    """A reader calling glp.load_plan in a loop (the latest plan, and plans/greedy.json as glp report reads it)
    while a search rewrites both after every step: every read parses, and its steps begin the final plan's."""
    from glp.commands.prune import prune

    run = tmp_path / "run"
    reads: list[tuple[str, Plan]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            for label in (None, "greedy"):
                try:
                    reads.append((str(label), glp.load_plan(run, label)))
                except (RunDirError, ConfigError) as e:  # no plan yet
                    if "no plan" not in str(e):
                        errors.append(e)
                except BaseException as e:  # noqa: BLE001 - anything else is a torn read
                    errors.append(e)
            time.sleep(0.001)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        final = prune(tiny_prune_config(tiny_setup, run))
    finally:
        done.set()
        reader.join()
    assert not errors, errors[:3]
    steps = final.to_dict()["steps"]
    assert len(reads) > 10 and {len(p.steps) for _, p in reads} >= {1, 2}
    for _, plan in reads:
        assert plan.to_dict()["steps"] == steps[: len(plan.steps)]
        assert plan.removals == {s.n: s.chosen for s in plan.steps} or plan.complete
    assert json.loads((run / "plan.json").read_text())["complete"]
