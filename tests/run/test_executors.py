"""Executors: the same plan in-process, with worker processes and on Ray; a killed worker's trial is retried."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time

import pytest
from conftest import tiny_prune_config as _config

import glp.run.executors as ex
from glp.commands.prune import PruneConfig, prune
from glp.errors import ConfigError, GLPError
from glp.run.executors.pool import _Pool
from glp.run.executors.process import _worker_device
from glp.run.rundir import RunDir
from glp.search import TrialRequest
from glp.trial.hparams import HParams
from glp.trial.scoring import TrialSpec

# Successive halving (2 rungs) over two greedy steps: 4 + 2 + 3 + 2 trials, long enough (~0.5 s each) to be
# killed mid-trial, and survivors that continue where they stopped.
HP = HParams(learning_rate=3e-3, num_train_epochs=4.0, per_device_train_batch_size=16, max_seq_length=32)
RUN = dict(max_remove=2, halving=True, rungs=2, eta=2, baseline=False, hparams=HP)


def _journal(run) -> dict:
    """Every journaled trial: what determines it → what it produced (timings and device left out)."""
    with RunDir(run).journal(lock=False) as store:
        return {
            (tuple(sorted(r["removed"])), r["seed"], r["budget"]): (
                r["status"],
                r["score"],
                r["loss_first"],
                r["loss_last"],
                r["steps"],
                r["examples_seen"],
            )
            for r in store.results()
        }


def _same_plan(a, b) -> None:
    assert a.removals == b.removals and a.order == b.order
    cands = [[(c.removed, c.scores, c.mean, c.status, c.budget) for c in s.candidates] for s in a.steps]
    assert cands == [[(c.removed, c.scores, c.mean, c.status, c.budget) for c in s.candidates] for s in b.steps]


@pytest.fixture(scope="module")
def sequential(tiny_setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("seq") / "run"
    plan = prune(_config(tiny_setup, out, **RUN))
    assert [len(s.candidates) for s in plan.steps] == [4, 3]
    assert sum(c.status == "rejected" for s in plan.steps for c in s.candidates) >= 2
    return plan, _journal(out)


@pytest.fixture
def capture(monkeypatch):
    """The executors prune() builds."""
    made = []
    real = ex.make_executor

    def make(*a, **k):
        made.append(real(*a, **k))
        return made[-1]

    monkeypatch.setattr(ex, "make_executor", make)
    return made


class _Killer(threading.Thread):
    """SIGKILLs the worker of a trial that has been running a moment, once step 1 is done, until a retry shows
    the kill landed mid-trial (a worker that had just sent its result would die idle: then it tries again)."""

    def __init__(self, made: list, after_results: int = 6, min_age: float = 0.05):
        super().__init__(daemon=True)
        self.made, self.after, self.min_age = made, after_results, min_age
        self.killed: list[ex.InFlight] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and len(self.killed) < 3:
            pool = self.made[0] if self.made else None
            if pool is not None and pool.stats["retried"]:
                return  # a kill landed mid-trial
            if pool is None or pool.stats["started"] + pool.stats["continued"] < self.after:
                time.sleep(0.01)
                continue
            lost = pool.stats["workers_lost"]
            now = time.monotonic()
            aged = [f for f in pool.in_flight() if f.pid and now - f.since >= self.min_age]
            if not aged:
                time.sleep(0.005)
                continue
            try:
                os.kill(aged[0].pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.killed.append(aged[0])
            deadline = time.monotonic() + 60
            while pool.stats["workers_lost"] == lost and time.monotonic() < deadline and not self.stop.is_set():
                time.sleep(0.01)


def _run_with_kill(config: PruneConfig, made: list):
    killer = _Killer(made)
    killer.start()
    try:
        plan = prune(config)
    finally:
        killer.stop.set()
        killer.join(5)
    return plan, killer


# ------------------------------------------------------------------------------------------ config


def test_parse_devices_and_config():
    assert ex.parse_devices(None) == []
    assert ex.parse_devices("0,1", 2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert ex.parse_devices("cpu,cpu") == ["cpu", "cpu"]
    assert ex.parse_devices(" cuda:3 ,cuda") == ["cuda:3", "cuda"]
    assert ex.parse_devices("0+1,2+3") == ["cuda:0+1", "cuda:2+3"]  # device groups: a worker sees two GPUs
    with pytest.raises(ConfigError, match="--devices"):
        ex.parse_devices("gpu0")
    with pytest.raises(ConfigError, match="names a GPU twice"):
        ex.parse_devices("0+0")
    with pytest.raises(ConfigError, match="in two device groups"):
        ex.parse_devices("0+1,1+2")
    with pytest.raises(ConfigError, match="--workers-per-device"):
        ex.parse_devices("cpu", 0)
    base = dict(model="m", task="rte")
    cfg = PruneConfig.from_dict({**base, "executor": "ray", "devices": [0, 1], "workers_per_device": 2})
    assert cfg.devices == "0,1" and PruneConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(executor="dask"), "known: local, ray"),
        (dict(ray_address="auto"), "--ray-address needs --executor ray"),
        (dict(max_retries=-1), "--max-retries"),
        (dict(devices="gpu0"), "--devices"),
        (dict(devices="cpu", workers_per_device=0), "--workers-per-device"),
        (dict(devices="0+1"), "a group of GPUs runs one candidate over them: add --device-map auto"),
        (dict(device_map="balanced"), "--device-map 'balanced': the choices are auto"),
        (dict(max_memory="0=70GiB"), "--max-memory needs --device-map auto"),
        (dict(device_map="auto", max_memory="gpu0=70GiB"), "each entry is DEVICE=SIZE"),
        (dict(device_map="auto", max_memory="0=lots"), "each entry is DEVICE=SIZE"),
    ],
)
def test_prune_and_evaluate_check_their_execution_settings_alike(bad, match):
    # both are ExecutionSettings: a bad setting fails when the config is made, before any data or model loads
    from glp.commands.evaluate import EvalConfig

    with pytest.raises(ConfigError, match=match):
        PruneConfig(model="m", task="rte", **bad)
    with pytest.raises(ConfigError, match=match):
        EvalConfig(run_dirs=("runs/x",), **bad)


def test_prune_config_is_its_data_spec():
    from glp.data import DataSpec

    cfg = PruneConfig.from_dict(
        {
            "model": "m",
            "task": "pairs",
            "text_columns": "a, b",
            "label_column": "y",
            "train_file": "t.csv",
            "dev_file": "d.csv",
            "devices": 0,
        }
    )
    assert cfg.text_columns == ("a", "b") and cfg.devices == "0"
    spec = cfg.data_spec()
    assert type(spec) is DataSpec and spec == DataSpec.from_dict(cfg.to_dict())
    assert spec.override(data_dir="glue", train_file=None) == dataclasses.replace(spec, data_dir="glue")
    assert spec.override(train_file="u.csv").data_dir is None


def test_gpu_slots_are_pinned_and_checked(monkeypatch):
    import torch

    assert _worker_device("cuda:3") == ("cuda:0", {"CUDA_VISIBLE_DEVICES": "3"})
    assert _worker_device("cpu") == ("cpu", {})
    assert _worker_device("cuda:2+3") == ("cuda:0", {"CUDA_VISIBLE_DEVICES": "2,3"})
    cfg = PruneConfig(model="m", task="rte", devices="0,5")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ConfigError, match="none is visible"):
        ex.make_executor(cfg, None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match="GPU 5 does not exist"):
        ex.make_executor(cfg, None)
    grouped = PruneConfig(model="m", task="rte", devices="0+2", device_map="auto")
    with pytest.raises(ConfigError, match="GPU 2 does not exist"):
        ex.make_executor(grouped, None)
    assert isinstance(ex.make_executor(PruneConfig(model="m", task="rte"), None), ex.LocalExecutor)


def test_missing_ray_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    with pytest.raises(ConfigError, match=r"pip install 'glp\[ray\]'"):
        ex.RayExecutor(TrialSpec("m", None, HP))


def test_cli_flags_reach_the_config(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import glp.commands.prune
    from glp.cli import app

    seen = []

    def fake_prune(cfg, on_event=None):
        seen.append(cfg)
        raise GLPError("stopped by the test")

    monkeypatch.setattr(glp.commands.prune, "prune", fake_prune)
    args = [
        "prune",
        "m",
        "--task",
        "rte",
        "--out",
        str(tmp_path / "r"),
        "--executor",
        "ray",
        "--devices",
        "0,1",
        "--workers-per-device",
        "2",
        "--ray-address",
        "auto",
        "--max-retries",
        "5",
    ]
    res = CliRunner().invoke(app, args)
    assert isinstance(res.exception, GLPError) and "stopped by the test" in str(res.exception), res.output
    c = seen[0]
    assert (c.executor, c.devices, c.workers_per_device, c.ray_address, c.max_retries) == ("ray", "0,1", 2, "auto", 5)
    res = CliRunner().invoke(app, ["prune", "m", "--task", "rte", "--executor", "dask"])
    assert isinstance(res.exception, ConfigError) and "known: local, ray" in str(res.exception)

    # evaluate takes the same flags (one definition in cli.py serves both commands)
    import glp.commands.evaluate

    def fake_evaluate(cfg, on_event=None):
        seen.append(cfg)
        raise GLPError("stopped by the test")

    monkeypatch.setattr(glp.commands.evaluate, "evaluate", fake_evaluate)
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path), "--out", str(tmp_path / "e"), *args[6:]])
    assert isinstance(res.exception, GLPError) and "stopped by the test" in str(res.exception), res.output
    c = seen[-1]
    assert (c.executor, c.devices, c.workers_per_device, c.ray_address, c.max_retries) == ("ray", "0,1", 2, "auto", 5)


def test_help_shows_the_defaults():
    """Rich reads "[default: x]" as a style tag and drops it unless escaped; the help must show it."""
    from typer.testing import CliRunner

    from glp.cli import app

    out = CliRunner().invoke(app, ["prune", "--help"], env={"COLUMNS": "200"}).output
    assert "[default: greedy]" in out and "[default: local]" in out and "[default: 2e-5]" in out
    out = CliRunner().invoke(app, ["evaluate", "--help"], env={"COLUMNS": "200"}).output
    assert "--devices" in out and "[default: local]" in out


# ------------------------------------------------------------------------- scheduling (no processes)


class _FakePool(_Pool):
    """A pool whose workers boot and answer at once, in order; ``die[removed]`` kills that many workers running
    that trial; ``boot_die`` workers die before they are ready."""

    def __init__(self, slots, max_retries=2, die=None, boot_die=0):
        super().__init__(slots, max_retries)
        self.die, self.boot_die = dict(die or {}), boot_die
        self.queue: list = []
        self.log: list = []  # (slot, removed, budget, continued)
        self.held: dict[int, set] = {}
        self.launched = 0

    def _launch(self, s):
        self.launched += 1
        self.held[s] = set()
        if self.boot_die > 0:
            self.boot_die -= 1
            self.queue.append(("lost", s, "exited with code 1"))
        else:
            self.queue.append(("ready", s))
        return object()

    def _submit(self, s, req):
        self.queue.append(("run", s, req))

    def _drop(self, s, keys):
        self.held[s] -= set(keys)

    def _pid(self, s):
        return 1000 + s

    def _stop(self, s):
        pass

    def _wait(self):
        item = self.queue.pop(0)
        if item[0] != "run":
            return [item]
        _, s, req = item
        key = (frozenset(req.removed), req.seed)
        if self.die.get(req.removed, 0) > 0:
            self.die[req.removed] -= 1
            return [("lost", s, f"worker {1000 + s} died of SIGKILL")]
        continued = key in self.held[s]
        self.held[s].discard(key)
        if req.budget < 1:
            self.held[s].add(key)
        self.log.append((s, req.removed, req.budget, continued))
        result = {"removed": list(req.removed), "seed": req.seed, "budget": req.budget, "status": "ok", "score": 1}
        return [("result", s, result, continued, req.budget < 1)]


def test_pool_gives_up_on_workers_that_cannot_start():
    pool = _FakePool(["cpu", "cpu"], max_retries=1, boot_die=3)  # slot 0 dies twice: given up; slot 1 once
    assert [r["status"] for _, r in pool.run([TrialRequest((i,), 42, 1.0) for i in range(3)])] == ["ok"] * 3
    assert pool.workers[0] is None and 0 in pool._disabled and pool.stats["workers_lost"] == 3
    pool = _FakePool(["cpu"], max_retries=1, boot_die=2)
    with pytest.raises(GLPError, match="no pool worker could start .exited with code 1"):
        list(pool.run([TrialRequest((0,), 42, 1.0)]))


def test_pool_retries_a_lost_trial_then_records_it_failed():
    pool = _FakePool(["cpu", "cpu"], max_retries=2, die={(1,): 1, (2,): 5})
    reqs = [TrialRequest((i,), 42, 1.0) for i in range(4)]
    out = dict(pool.run(reqs))
    assert sorted(out) == [0, 1, 2, 3]
    assert out[1]["status"] == "ok" and out[0]["status"] == "ok" and out[3]["status"] == "ok"
    assert out[2]["status"] == "failed" and out[2]["score"] is None
    assert out[2]["infrastructure"] is True  # not journaled by the driver: a resume retries it
    assert "died of SIGKILL" in out[2]["reason"] and "gave up after 3 attempts" in out[2]["reason"]
    assert pool.stats["retried"] == 1 + 2 and pool.stats["failed"] == 1 and pool.stats["workers_lost"] == 4
    assert pool.launched >= 2 + 3  # every retry ran on a fresh worker
    assert dict(pool.run([TrialRequest((2,), 42, 1.0)]))[0]["status"] == "ok"  # the run goes on


def test_pool_routes_a_continuing_trial_to_its_holder():
    pool = _FakePool(["cpu", "cpu", "cpu"])
    rung1 = [TrialRequest((i,), 42, 1 / 3) for i in range(6)]
    assert len(dict(pool.run(rung1))) == 6
    where = {r: s for s, r, _, _ in pool.log}
    pool.log.clear()
    rung2 = [TrialRequest((i,), 42, 1.0) for i in (0, 1, 2)]  # held by three different workers
    dict(pool.run(rung2))
    assert all(cont and where[r] == s for s, r, _, cont in pool.log)
    assert pool.stats["continued"] == 3 and all(not h for h in pool.held.values())
    # the holder is busy: an idle worker trains the trial fresh rather than wait (equal result)
    pool = _FakePool(["cpu", "cpu"])
    dict(pool.run([TrialRequest((i,), 42, 0.5) for i in (0, 1, 2)]))  # slot 0 holds (0,) and (2,)
    pool.log.clear()
    dict(pool.run([TrialRequest((i,), 42, 1.0) for i in (0, 2)]))
    assert sorted((s, r, c) for s, r, _, c in pool.log) == [(0, (0,), True), (1, (2,), False)]
    assert (frozenset({2}), 42) not in pool.held[0]  # the stale state was let go


# ------------------------------------------------------------------------------ local worker processes


@pytest.mark.slow
def test_two_worker_processes_give_the_same_plan_despite_a_killed_worker(tiny_setup, tmp_path, sequential, capture):
    seq_plan, seq_journal = sequential
    plan, killer = _run_with_kill(_config(tiny_setup, tmp_path / "run", devices="cpu,cpu", **RUN), capture)
    pool = capture[0]
    assert isinstance(pool, ex.ProcessExecutor) and pool.threads >= 1
    assert killer.killed and pool.stats["retried"] >= 1 and pool.stats["failed"] == 0
    assert pool.stats["continued"] >= 1  # step 1's survivors continued on the worker holding them
    _same_plan(plan, seq_plan)
    assert _journal(tmp_path / "run") == seq_journal
    assert all(not w for w in pool.workers)  # prune() closed the pool


def test_a_worker_error_is_raised_in_the_driver(tiny_setup, tmp_path):
    from glp.commands.prune import open_session

    session = open_session(_config(tiny_setup, tmp_path / "run", hparams=HP))
    spec = TrialSpec(str(tmp_path / "no-such-model"), session.trial_data, HP)
    pool = ex.ProcessExecutor(spec, ["cpu"], max_retries=3)
    with pytest.raises(GLPError, match="does not exist") as info:
        dict(pool.run([TrialRequest((1,), 42, 1.0)]))
    assert "raised in glp worker process" in "".join(getattr(info.value, "__notes__", []))
    assert pool.stats["retried"] == 0  # an error is not a lost worker
    assert all(w is None for w in pool.workers)  # an error closes the pool


# ----------------------------------------------------------------------------------------------- ray


@pytest.mark.slow
def test_ray_gives_the_same_plan_despite_a_killed_actor(ray_local, tiny_setup, tmp_path, sequential, capture):
    seq_plan, seq_journal = sequential
    plan, killer = _run_with_kill(_config(tiny_setup, tmp_path / "run", executor="ray", **RUN), capture)
    pool = capture[0]
    assert isinstance(pool, ex.RayExecutor) and pool.slots == ["cpu", "cpu"]
    assert killer.killed and pool.stats["retried"] >= 1 and pool.stats["failed"] == 0
    assert pool.stats["continued"] >= 1
    _same_plan(plan, seq_plan)
    assert _journal(tmp_path / "run") == seq_journal
    assert ray_local.is_initialized()  # the instance it did not start is left running
