"""Choosing n by a target (--max-drop, --min-speedup, --max-params) and stopping a search early (--stop-drop)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_prune_config

from glp.errors import ConfigError
from glp.kinds import KINDS, TaskKind
from glp.plan import Candidate, Plan, Step
from glp.results.targets import Drop, NoTargetMet, Targets, choose, parse_count
from glp.run.rundir import RunDir


def _plan(means, baseline, kind=None) -> Plan:
    """A greedy plan over 6 layers removing 5, 4, 3, ... with these chosen means."""
    task = {"name": "t", "text_columns": ["text"], "label_column": "label", "num_labels": 2, "is_regression": False,
            "metric": "accuracy", "label_names": ["0", "1"], "metrics": ["accuracy"], "is_glue": False,
            "in_glue_average": True}  # fmt: skip
    if kind:
        task["kind"] = kind
    order = [5, 4, 3, 2]
    steps = [
        Step(n, [Candidate(order[:n], order[n - 1], [m], m, None, 1.0, "ok")], order[:n], m)
        for n, m in enumerate(means, start=1)
    ]
    return Plan(model={"source": "m"}, task=task, data={}, hparams={}, strategy={"name": "greedy"}, num_layers=6,
                max_remove=len(means), removals={n: order[:n] for n in range(1, len(means) + 1)}, steps=steps,
                baseline={"mean": baseline})  # fmt: skip


PLAN = _plan([0.90, 0.895, 0.88, 0.80], 0.90)


def test_parsing():
    assert Drop.parse("1%") == Drop(0.01, True) and Drop.parse("0.02") == Drop(0.02, False)
    assert str(Drop.parse("1%")) == "1%" and str(Drop.parse(0.5)) == "0.5"
    assert parse_count("15M") == 15_000_000 and parse_count("800k") == 800_000 and parse_count("1.5B") == 1_500_000_000
    with pytest.raises(ConfigError, match="a count such as 15M"):
        parse_count("lots")
    with pytest.raises(ConfigError, match="a number .* or a percentage"):
        Drop.parse("some")
    with pytest.raises(ConfigError, match="give a target"):
        choose(PLAN, Targets())


def test_each_target_picks_the_largest_n_that_meets_it():
    assert choose(PLAN, Targets.parse(max_drop="1%")).n == 2  # 0.895 is 0.56% below 0.90; 0.88 is 2.2%
    assert choose(PLAN, Targets.parse(max_drop="0.03")).n == 3  # absolute
    est = choose(PLAN, Targets.parse(min_speedup=1.5))  # estimated 6 / (6 - n): n = 4 gives 3x
    assert est.n == 4 and "estimated" in est.speedup_source
    prof = {"rows": [{"n": 0, "cpu_speedup": 1.0}, {"n": 1, "cpu_speedup": 1.1}, {"n": 2, "cpu_speedup": 1.3},
                     {"n": 3, "cpu_speedup": 1.6}, {"n": 4, "cpu_speedup": 1.9}], "gpu": None}  # fmt: skip
    measured = choose(PLAN, Targets.parse(min_speedup=1.5), profile=prof)
    assert measured.n == 4 and measured.speedup_source == "profile (cpu)"
    params = {0: 22_000_000, 1: 20_000_000, 2: 18_000_000, 3: 16_000_000, 4: 14_000_000}
    assert choose(PLAN, Targets.parse(max_params="17M"), params=params).n == 4
    # together: the n that meets them all (drop <= 1% -> n <= 2; measured speed-up >= 1.2 -> n >= 2)
    assert choose(PLAN, Targets.parse(max_drop="1%", min_speedup=1.2), profile=prof).n == 2


def test_no_n_qualifies_names_the_closest():
    with pytest.raises(NoTargetMet, match=r"no n in \[1, 2, 3, 4\] meets --max-drop 0.1%, --min-speedup 1.5; "
                                          r"the closest is n = 1 \(accuracy 0.9000, drop 0%, speed-up 1.20x\), "
                                          r"which misses --min-speedup"):  # fmt: skip
        choose(PLAN, Targets.parse(max_drop="0.1%", min_speedup=1.5))


class _LowerIsBetter(TaskKind):
    """A stand-in for a lower-is-better kind (perplexity): only the direction matters here."""

    name = "test-lower-is-better"
    auto_class = "AutoModelForCausalLM"
    pipeline_tag = "text-generation"
    description = "test only"

    @classmethod
    def load(cls, spec):
        raise NotImplementedError

    def split(self, train, eval_fraction, seed):
        raise NotImplementedError

    def encode(self, examples, tokenizer, max_length, cache_dir=None):
        raise NotImplementedError

    def head_config(self, config):
        return config

    def loss_sum(self, logits, labels):
        raise NotImplementedError

    def score(self, predictions, table):
        raise NotImplementedError

    def higher_is_better(self):
        return False


def test_lower_is_better_metrics_may_rise_by_the_drop():
    KINDS.add(_LowerIsBetter.name, _LowerIsBetter)
    try:
        ppl = _plan([36.5, 40.0, 48.0, 90.0], 36.2, kind=_LowerIsBetter.name)
        assert ppl.higher_is_better is False
        assert choose(ppl, Targets.parse(max_drop="12%")).n == 2  # 40.0 is 10.5% above 36.2, 48.0 is 33%
        assert choose(ppl, Targets.parse(max_drop="1")).n == 1  # absolute: 36.5 is 0.3 above
        assert Drop.parse("1%").of(35.0, 36.2, higher_is_better=False) < 0  # better than the baseline
    finally:
        KINDS.remove(_LowerIsBetter.name)


def test_show_and_export_by_target(tiny_run, capsys, tmp_path):
    from glp.cli import main

    with pytest.raises(SystemExit) as e:
        main(["show", str(tiny_run), "--min-speedup", "1.3"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert "chosen: --min-speedup 1.3: n = 2" in " ".join(out.split()) and "←" in out
    with pytest.raises(SystemExit) as e:
        main(["show", str(tiny_run), "--min-speedup", "9"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "no n in [1, 2] meets --min-speedup 9; the closest is n = 2" in " ".join(err.split())
    with pytest.raises(SystemExit) as e:
        main(["export", str(tiny_run), "--max-params", "1K", "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "misses --max-params" in capsys.readouterr().err


class _Scripted:
    """An executor whose trials score 0.9 - 0.05 per removed layer (no training), to test the stop rule."""

    def __init__(self):
        self.ran = 0

    def run(self, requests):
        for i, r in enumerate(requests):
            self.ran += 1
            score = 0.9 - 0.05 * len(r.removed) - 0.001 * sum(r.removed)
            yield i, {"removed": list(r.removed), "seed": r.seed, "budget": r.budget, "status": "ok", "score": score,
                      "metrics": {"accuracy": score}, "eval_loss": 1 - score, "steps": 1, "wall_time": 0.0}  # fmt: skip

    def close(self):
        pass


def test_stop_drop_stops_records_why_and_goes_on_with_a_larger_bound(tiny_setup, tmp_path, monkeypatch):
    import glp.run.executors
    from glp.commands.prune import prune

    made = []
    monkeypatch.setattr(glp.run.executors, "make_executor", lambda *a: made.append(_Scripted()) or made[-1])
    out = tmp_path / "run"
    plan = prune(tiny_prune_config(tiny_setup, out, max_remove=3, stop_drop="8%"))
    # step 1 loses 5.6% (kept), step 2 11% (more than 8%: the search ends after it)
    assert plan.stopped["after_n"] == 2 and "--stop-drop 8%" in plan.stopped["reason"] and not plan.complete
    assert sorted(plan.removals) == [1, 2] and plan.order == plan.removals[2]
    assert RunDir(out).load_plan().stopped == plan.stopped
    again = prune(tiny_prune_config(tiny_setup, out, max_remove=3, stop_drop="20%"))
    assert again.stopped is None and again.complete and sorted(again.removals) == [1, 2, 3]
    assert again.cost["trials_reused"] == 1 + 4 + 3 and made[-1].ran == 2  # only step 3 was new
    with pytest.raises(ConfigError, match="needs --baseline"):
        tiny_prune_config(tiny_setup, out, stop_drop="1%", baseline=False)
    assert np.isclose(Drop.parse("8%").of(0.85, 0.9), 0.0556, atol=1e-3)


def test_progress_best_so_far_follows_the_direction():
    """The log's 'best so far' is the lowest score of a step when the metric is lower-is-better."""
    from glp.cli.progress import SearchProgress as _SearchProgress
    from glp.search import SearchContext, TrialRequest

    events = []
    run = [{"status": "ok", "score": 1.0, "removed": [1], "seed": 42, "budget": 1.0}]
    ctx = SearchContext(num_layers=4, max_remove=2, run_trials=lambda reqs: run * len(reqs), higher_is_better=False,
                        on_event=lambda e, **i: events.append((e, i)))  # fmt: skip
    ctx.evaluate(1, [(1,)], [1])
    start = next(i for e, i in events if e == "step_start")
    assert start["higher_is_better"] is False  # the search tells the display which way is better
    progress = _SearchProgress(2)
    progress.event("step_start", **start)
    for removed, score in (((1,), 40.0), ((2,), 36.5)):
        progress.event("trial_done", request=TrialRequest(removed, 42, 1.0), result={"status": "ok", "score": score})
    assert progress.best == 36.5


def test_progress_after_a_resume_counts_the_journaled_trials_in_the_best_and_not_in_the_eta(monkeypatch):
    """A resumed step's 'best so far' includes the candidates read from the journal, and its ETA is paced by the
    trials run now (journal hits take no time)."""
    from glp.cli import progress as progress_mod
    from glp.search import TrialRequest

    clock = [1000.0]
    monkeypatch.setattr(progress_mod.time, "time", lambda: clock[0])
    p = progress_mod.SearchProgress(2)
    p.event("step_start", n=1, total=2, candidates=4)
    journaled = [(TrialRequest((), 42, 1.0), {"status": "ok", "score": 0.9}),  # the unpruned model: not a candidate
                 (TrialRequest((0,), 42, 1.0), {"status": "ok", "score": 0.7})]
    p.event("trials_start", total=5, cached=2, from_journal=journaled)
    assert p.best == 0.7
    clock[0] += 100.0  # one trial run now took 100 s; 2 of 5 came from the journal, so 2 are left at 100 s each
    info = {"request": TrialRequest((1,), 42, 1.0), "result": {"status": "ok", "score": 0.6}}
    p._track("trial_done", info)
    text = p.line("trial_done", info)
    assert "trial 3/5" in text and "best so far 0.7000" in text and "ETA for this batch 200s" in text, text
