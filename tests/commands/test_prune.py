"""The real scorer end to end on a tiny model: glp prune, resume after SIGKILL, lock, show."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_prune_config as _config

from glp.commands.prune import prune
from glp.plan import Plan
from glp.run.rundir import RunDir


def test_greedy_end_to_end_and_reuse(tiny_setup, tmp_path):
    events = []
    plan = prune(_config(tiny_setup, tmp_path / "run"), on_event=lambda e, **i: events.append((e, i)))
    # the unpruned model's trial goes with step 1's four candidates, in one batch for the workers
    batches = [i["total"] for e, i in events if e == "trials_start"]
    assert batches == [1 + 4, 3]
    events = [e for e, _ in events]
    assert plan.complete and plan.num_layers == 4
    assert len(plan.order) == 2 and plan.layers_to_remove(1) == plan.order[:1]
    assert [len(s.candidates) for s in plan.steps] == [4, 3]
    assert plan.baseline["mean"] is not None
    assert all(c.status == "ok" for s in plan.steps for c in s.candidates)
    assert plan.cost["trials"] == 1 + 4 + 3 and plan.cost["train_steps"] > 0
    assert plan.data["split_fingerprint"] and plan.data["search_eval"] == 36
    assert "step_done" in events and "trial_done" in events
    on_disk = RunDir(tmp_path / "run").load_plan()
    assert on_disk.to_dict() == plan.to_dict()
    assert (tmp_path / "run" / "plans" / "greedy.json").exists()
    # optimal for n=2 reuses greedy's step-1 trials and the step-2 trials that extend greedy's first choice
    opt = prune(_config(tiny_setup, tmp_path / "run", strategy="optimal"))
    assert opt.cost["trials_reused"] >= 1 + 4 + 3
    best2 = max(opt.steps[1].candidates, key=lambda c: c.mean)
    assert set(opt.layers_to_remove(2)) == set(best2.removed)
    # top pattern: all its trials are in the journal already
    top = prune(_config(tiny_setup, tmp_path / "run", strategy="top"))
    assert top.cost["trials_run"] == 0 and top.removals == {1: [3], 2: [3, 2]}


def test_baseline_rides_with_the_first_batch(tiny_setup, tmp_path):
    """A fixed pattern's batch and a halving search's first rung take the baseline along, and the plan has it."""
    for name, extra, first in [
        ("top", dict(strategy="top"), [((), 1.0), ((3,), 1.0), ((2, 3), 1.0)]),
        ("halving", dict(halving=True, rungs=2, eta=2), [((), 1.0)] + [((i,), 0.5) for i in range(4)]),
    ]:
        events: list = []
        plan = prune(
            _config(tiny_setup, tmp_path / name, **extra), on_event=lambda e, _ev=events, **i: _ev.append((e, i))
        )
        starts = [k for k, (e, _) in enumerate(events) if e == "trials_start"] + [len(events)]
        batch = [i["request"] for e, i in events[starts[0] : starts[1]] if e == "trial_done"]
        assert sorted((tuple(sorted(r.removed)), r.budget) for r in batch) == sorted(first)
        assert plan.baseline is not None and plan.baseline["mean"] is not None
        again = prune(_config(tiny_setup, tmp_path / name, **extra))  # resumed: everything from the journal
        assert again.baseline == plan.baseline and again.cost["trials_run"] == 0
        # the whole search's cost survives the resume: the journal's trials and their seconds, not this call's
        assert {k: again.cost[k] for k in ("trials", "train_steps", "trial_seconds")} == {
            k: plan.cost[k] for k in ("trials", "train_steps", "trial_seconds")
        }
        # and its wall time: this call's, and the search's over both calls, the first one's included
        assert plan.cost["search_wall_seconds"] == plan.cost["wall_seconds"] and plan.cost["search_wall_complete"]
        assert again.cost["search_wall_seconds"] >= plan.cost["wall_seconds"] + again.cost["wall_seconds"] - 0.02
        assert again.cost["search_wall_complete"]
    # a journal whose earlier calls did not keep their time (an older glp): the total says it is a lower bound
    with sqlite3.connect(tmp_path / "top" / "trials.sqlite") as db:
        db.execute("DELETE FROM meta WHERE name LIKE 'wall:%'")
    old = prune(_config(tiny_setup, tmp_path / "top", strategy="top"))
    assert old.cost["search_wall_seconds"] == old.cost["wall_seconds"] and not old.cost["search_wall_complete"]
    # another search under the same label (another seed): its wall time starts from zero, the old one's not added
    other = prune(_config(tiny_setup, tmp_path / "top", strategy="top", seed=7))
    assert other.cost["search_wall_seconds"] == other.cost["wall_seconds"] and other.cost["search_wall_complete"]


def test_halving_uses_fewer_steps(tiny_setup, tmp_path, capsys):
    from glp.cli.app import print_plan

    full = prune(_config(tiny_setup, tmp_path / "full", max_remove=1, baseline=False))
    half = prune(_config(tiny_setup, tmp_path / "half", max_remove=1, baseline=False, halving=True, rungs=2, eta=2))
    assert half.cost["train_steps"] < full.cost["train_steps"]
    assert sum(c.status == "rejected" for c in half.steps[0].candidates) == 2
    # every candidate carries its search-eval loss (the tie-breaker), into plan.json too
    assert all(c.eval_loss is not None and c.eval_loss > 0 for s in (full, half) for c in s.steps[0].candidates)
    assert Plan.load(tmp_path / "half" / "plan.json").steps[0].candidates == half.steps[0].candidates
    print_plan(half)  # the step's note (here: the runner-up stopped early) is printed under the table
    assert f"step 1: {half.steps[0].note}" in " ".join(capsys.readouterr().out.split())
    # the cost line: the search's wall time over all its calls where a resume made it differ from this call's
    half.cost.update(wall_seconds=2.0, search_wall_seconds=4000.0, search_wall_complete=False)
    print_plan(half)
    assert "2 s wall for this call, at least 4,000 s over all its calls" in " ".join(capsys.readouterr().out.split())


def _block_influence(model, table, layers):
    """Block influence (ShortGPT) of the encoder layers ``layers`` of a BERT ``model`` (the rest taken out), in plain
    torch: 1 - cos(a layer's input, its output), averaged over every token of ``table``'s rows; by layer index."""
    import torch

    encoder = model.bert.encoder
    full = encoder.layer
    encoder.layer = torch.nn.ModuleList(full[i] for i in layers)
    sums, tokens = torch.zeros(len(layers), dtype=torch.float64), 0
    try:
        with torch.no_grad():
            for j, ids in enumerate(table.input_ids):
                types = None if table.token_type_ids is None else torch.tensor(table.token_type_ids[j])[None]
                h = model(input_ids=torch.tensor(ids)[None], token_type_ids=types, output_hidden_states=True)
                h = torch.stack(h.hidden_states).double()[:, 0]  # (layers + 1, tokens, hidden)
                sums += (1 - torch.nn.functional.cosine_similarity(h[:-1], h[1:], dim=-1)).sum(1)
                tokens += h.shape[1]
    finally:
        encoder.layer = full
    return dict(zip(layers, (sums / tokens).tolist(), strict=True))


def test_proxy_strategy_and_prefilter(tiny_setup, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from glp.commands.prune import open_session

    cfg = _config(tiny_setup, tmp_path / "p", strategy="proxy-bi", baseline=False)
    plan = prune(cfg)
    # proxy-bi: each step removes the remaining layer of lowest block influence, recomputed without the removed
    model = AutoModelForSequenceClassification.from_pretrained(tiny_setup / "model").eval()
    table = open_session(cfg).trial_data.eval  # the search-eval rows (fewer than --proxy-examples: all of them)
    assert len(table) < cfg.proxy_examples
    expected, removed = [], []
    for step in plan.steps:
        bi = _block_influence(model, table, [i for i in range(4) if i not in removed])
        removed.append(min(bi, key=lambda i: (bi[i], -i)))
        expected.append(bi[removed[-1]])
        assert step.candidates[0].removed == removed  # the nested set, in the order it was chosen
    assert plan.order == removed and len(removed) == 2
    assert [s.candidates[0].proxy for s in plan.steps] == pytest.approx(expected, rel=1e-3)
    pre = prune(_config(tiny_setup, tmp_path / "q", max_remove=1, prefilter_top=2, baseline=False))
    assert len(pre.steps[0].candidates) == 2 and "pre-filter" in pre.steps[0].note


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "glp.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _cli_args(root: Path, out: Path) -> list[str]:
    return ["prune", str(root / "model"), "--task", "toy", "--train-file", str(root / "train.csv"),
            "--dev-file", str(root / "dev.csv"), "--text-columns", "text", "--label-column", "label",
            "--max-remove", "2", "--out", str(out), "--learning-rate", "1e-3", "--num-train-epochs", "4",
            "--per-device-train-batch-size", "16", "--max-seq-length", "32"]


def _journaled(run: Path) -> int:
    try:
        con = sqlite3.connect(run / "trials.sqlite", timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_plan(tiny_setup, tmp_path):
    straight = tmp_path / "straight"
    p = _cli(*_cli_args(tiny_setup, straight))
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err

    killed = tmp_path / "killed"
    p = _cli(*_cli_args(tiny_setup, killed))
    deadline = time.time() + 240
    while _journaled(killed) < 3 and p.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert p.poll() is None, "the run finished before it could be killed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done_before = _journaled(killed)
    assert 3 <= done_before < 1 + 4 + 3
    p = _cli(*_cli_args(tiny_setup, killed))
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    a = json.loads((straight / "plan.json").read_text())
    b = json.loads((killed / "plan.json").read_text())
    assert b["cost"]["trials_reused"] >= done_before
    for d in (a, b):
        d.pop("cost")
        d["model"].pop("source")
    assert a == b


def test_second_process_is_refused(tiny_setup, tmp_path):
    with RunDir(tmp_path / "busy").journal():
        q = _cli(*_cli_args(tiny_setup, tmp_path / "busy"))
        _, err = q.communicate(timeout=120)
    assert q.returncode == 2 and "in use by another glp process" in err and "Traceback" not in err
    RunDir(tmp_path / "busy").journal().close()  # released when closed


def test_show_and_cli_errors(tiny_setup, tmp_path):
    args = _cli_args(tiny_setup, tmp_path / "r")
    args[args.index("--max-remove") + 1] = "4"
    p = _cli(*args)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "--max-remove 4" in err and "Traceback" not in err
    p = _cli("show", str(tmp_path / "nothing"))
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "no plan" in err


def test_runner_journals_results_but_not_dead_worker_failures(tmp_path):
    from glp.run.store import journaled_runner as make_runner
    from glp.search import TrialRequest

    class FakeExecutor:
        def run(self, requests):
            for i, r in enumerate(requests):
                res = {"removed": list(r.removed), "seed": r.seed, "budget": r.budget, "status": "ok", "score": 0.5}
                if r.removed == (2,):
                    res = {**res, "status": "failed", "score": None, "reason": "worker died", "infrastructure": True}
                yield i, res

    reqs = [TrialRequest((1,), 0, 1.0), TrialRequest((2,), 0, 1.0)]
    with RunDir(tmp_path).journal() as store:
        run, stats = make_runner(store, {"m": 1}, FakeExecutor())
        out = run(reqs)
        assert [r["status"] for r in out] == ["ok", "failed"]
        assert len(store) == 1
        run(reqs)
        assert stats["reused"] == 1 and stats["run"] == 3


def test_untrained_baseline_is_flagged(tiny_setup, tmp_path, capsys):
    """A budget at which the unpruned model learns nothing gets a warning in the plan, live and in glp show."""
    from glp.cli.app import print_plan
    from glp.commands.prune import UNTRAINED_MARGIN, untrained_warning
    from glp.trial.hparams import HParams

    assert untrained_warning(0.80, 0.81, "f1") and untrained_warning(0.81 + UNTRAINED_MARGIN, 0.81, "f1")
    assert untrained_warning(0.83, 0.81, "f1") is None and untrained_warning(0.1, None, "spearman") is None
    assert untrained_warning(None, 0.5, "accuracy") is None

    frozen = HParams(learning_rate=1e-12, num_train_epochs=1.0, per_device_train_batch_size=16, max_seq_length=32)
    events = []
    plan = prune(
        _config(tiny_setup, tmp_path / "frozen", max_remove=1, strategy="top", hparams=frozen),
        on_event=lambda e, **i: events.append((e, i)),
    )
    from glp.commands.prune import open_session

    session = open_session(_config(tiny_setup, tmp_path / "frozen", max_remove=1, strategy="top", hparams=frozen))
    labels = list(session.trial_data.eval.labels)  # accuracy of answering the most frequent class everywhere
    assert plan.baseline["constant"] == pytest.approx(max(labels.count(c) for c in set(labels)) / len(labels))
    # at a learning rate of 1e-12 the model keeps predicting what its random head predicts: one class
    assert plan.baseline["mean"] <= plan.baseline["constant"] + UNTRAINED_MARGIN
    assert "cannot rank removal sets" in plan.baseline["warning"]
    assert [i["text"] for e, i in events if e == "warning"] == [plan.baseline["warning"]]
    print_plan(plan)
    assert "warning:" in capsys.readouterr().out
    # a model that learns gets no warning
    hp = HParams(learning_rate=3e-3, num_train_epochs=4.0, per_device_train_batch_size=16, max_seq_length=32)
    learned = prune(_config(tiny_setup, tmp_path / "learned", max_remove=1, strategy="top", hparams=hp))
    assert learned.baseline["mean"] > learned.baseline["constant"] + UNTRAINED_MARGIN
    assert "warning" not in learned.baseline
