from __future__ import annotations

import pytest

from glp.errors import LayerIndexError, RunDirError
from glp.plan import Plan
from glp.run.rundir import RunDir
from glp.run.store import trial_key

CTX = {"model": "m", "task": "rte", "split": "abc", "hparams": {"lr": 2e-5}}


def result(removed, seed=0, budget=1.0, score=0.5):
    return {"removed": list(removed), "seed": seed, "budget": budget, "status": "ok", "score": score}


def test_key_depends_on_everything_but_order():
    k = trial_key(CTX, (3, 1), 0, 1.0)
    assert k == trial_key(CTX, (1, 3), 0, 1.0)
    assert k != trial_key(CTX, (1, 3), 1, 1.0)
    assert k != trial_key(CTX, (1, 3), 0, 0.5)
    assert k != trial_key(CTX | {"split": "abd"}, (1, 3), 0, 1.0)
    assert k != trial_key(CTX | {"hparams": {"lr": 3e-5}}, (1, 3), 0, 1.0)


def test_put_get_persist(tmp_path):
    with RunDir(tmp_path).journal() as s:
        s.put(trial_key(CTX, (1,), 0, 1.0), result((1,)), CTX)
        s.set_meta("config", {"a": 1})
    with RunDir(tmp_path).journal() as s:
        assert len(s) == 1
        assert s.get(trial_key(CTX, (1,), 0, 1.0))["score"] == 0.5
        assert s.get(trial_key(CTX, (2,), 0, 1.0)) is None
        assert s.get_meta("config") == {"a": 1}


def test_corrupt_journal(tmp_path):
    (tmp_path / "trials.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RunDirError, match="not a readable glp trial journal"):
        RunDir(tmp_path).journal()


def test_plan_roundtrip_and_lookup(tmp_path):
    plan = Plan(model={"source": "m"}, task={"name": "rte"}, data={}, hparams={}, strategy={"name": "greedy"},
                num_layers=6, max_remove=2, removals={1: [5], 2: [5, 3]}, order=[5, 3])
    plan.save(tmp_path / "plan.json")
    back = RunDir(tmp_path).load_plan()
    assert back.layers_to_remove(2) == [5, 3] and back.layers_to_remove(0) == []
    assert back.kept_layers(2) == [0, 1, 2, 4]
    with pytest.raises(LayerIndexError, match=r"the plan has no removal set for n=3; it covers n in \[1, 2\]"):
        back.layers_to_remove(3)
    with pytest.raises(RunDirError, match="no plan"):
        RunDir(tmp_path / "nowhere").load_plan()


def test_artifact_readers_say_what_is_wrong(tmp_path):
    """Plan.load, evaluate.load_evaluation and profile.load share one reader: missing, not JSON, wrong schema."""
    from glp.commands import profile
    from glp.commands.evaluate import load_evaluation

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    other = tmp_path / "other.json"
    other.write_text('{"schema": "something/1"}')
    readers = [
        (Plan.load, "plan", "glp prune --out DIR"),
        (load_evaluation, "evaluation", "glp evaluate --out DIR"),
        (profile.load, "profile", "glp profile"),
    ]
    for read, what, hint in readers:
        with pytest.raises(RunDirError, match=f"no {what} at .*{hint}"):
            read(tmp_path / "missing.json")
        with pytest.raises(RunDirError, match="bad.json is not valid JSON"):
            read(bad)
        with pytest.raises(RunDirError, match=f"other.json is not .*{what}"):
            read(other)
