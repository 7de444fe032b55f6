"""The run directory: its layout in one place, and journals written before the settings index."""

from __future__ import annotations

import pytest

from glp.errors import ConfigError, RunDirError
from glp.plan import Plan
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


def _plan(strategy: str, removals: dict[int, list[int]]) -> Plan:
    return Plan(model={"source": "m"}, task={"name": "rte"}, data={}, hparams={}, strategy={"name": strategy},
                num_layers=6, max_remove=2, removals=removals)  # fmt: skip


def test_plans_saved_through_the_run_dir_are_found_by_it(tmp_path):
    run = RunDir(tmp_path / "run")
    first = _plan("bottom", {1: [0], 2: [0, 1]})
    first.save(run.plan_path)  # a run directory with plan.json only (as before plans/)
    assert run.labels() == [] and run.plan_files() == [run.plan_path] and RunDir.plans_at(run.path) == [run.plan_path]
    assert run.load_plan().to_dict() == first.to_dict()
    greedy, top = _plan("greedy", {1: [3], 2: [3, 1]}), _plan("top", {1: [5], 2: [5, 4]})
    run.save_plan(greedy, "greedy")
    run.save_plan(top, "top")
    assert run.labels() == ["greedy", "top"]
    found = RunDir.plans_at(run.path)
    assert found == run.plan_files() and [Plan.load(f).to_dict() for f in found] == [greedy.to_dict(), top.to_dict()]
    assert run.load_plan("greedy").to_dict() == greedy.to_dict()
    assert run.load_plan().to_dict() == top.to_dict()  # plan.json: the latest search
    assert RunDir.plans_at(found[0]) == [found[0]] and RunDir.of(found[0]).path == run.path
    assert not RunDir(tmp_path / "other").is_run()
    with RunDir(tmp_path / "other").journal():
        pass
    assert RunDir(tmp_path / "other").is_run()  # a journal without a plan is a run too


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
