"""The run directory: its layout in one place, and journals written before the settings index."""

from __future__ import annotations

import pytest

from glp.errors import ConfigError, RunDirError
from glp.run.rundir import RunDir


def test_layout_and_plan_files(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not run.is_run() and run.read_config() is None
    with pytest.raises(RunDirError, match="no plan in"):
        run.plan_files()
    run.plans_dir.mkdir(parents=True)
    for label in ("top", "greedy"):
        (run.plans_dir / f"{label}.json").write_text("{}")
    assert run.labels() == ["greedy", "top"] and [p.stem for p in run.plan_files()] == ["greedy", "top"]
    assert RunDir.of(run.plans_dir / "top.json").path == run.path and RunDir.of(run.plan_path).path == run.path
    with pytest.raises(ConfigError, match=r"no plan for strategy 'beam'; it has \['greedy', 'top'\]"):
        run.plan_file("beam")
    assert run.journal_path.name == "trials.sqlite" and run.report_dir == run.path / "report"


def test_settings_are_read_by_the_plan_label_that_wrote_them(tmp_path):
    run = RunDir(tmp_path)
    with run.journal() as store:
        run.write_config(store, "greedy", {"task": "rte", "strategy": "greedy"})
        run.write_config(store, "top", {"task": "sst2", "strategy": "top"})
    assert run.read_config("greedy")["task"] == "rte" and run.read_config("top")["task"] == "sst2"
    assert run.read_config(None)["task"] == "sst2"  # the latest written
    assert run.read_config("beam")["task"] == "sst2"  # a label without settings: the latest


def test_a_journal_from_before_the_index(tmp_path):
    """Run directories written before the run-directory object (meta rows config:<strategy>, no index) work."""
    with RunDir(tmp_path).journal() as store:
        store.set_meta("config:optimal", {"task": "mrpc", "strategy": "optimal"})
    run = RunDir(tmp_path)
    assert run.read_config("optimal")["task"] == "mrpc"
    assert run.read_config("greedy")["task"] == "mrpc"  # the only settings there are
