"""Strategies on a fake scorer with a known objective (no training)."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from glp.errors import ConfigError, GLPError, LayerIndexError
from glp.search import STRATEGIES, SearchContext, make_strategy, pattern_order
from glp.search.schedule import Halving


def fake_runner(objective, noise=None, log=None):
    """A TrialRunner whose score is objective(removed) (+ noise(seed)), scaled by the budget."""

    def run(requests):
        out = []
        for r in requests:
            if log is not None:
                log.append(r)
            score = objective(frozenset(r.removed))
            if score is None:
                out.append({"removed": list(r.removed), "seed": r.seed, "budget": r.budget,
                            "status": "failed", "score": None, "reason": "nan loss"})
                continue
            if noise is not None:
                score += noise(r.seed, frozenset(r.removed))
            out.append({"removed": list(r.removed), "seed": r.seed, "budget": r.budget,
                        "status": "ok", "score": score * r.budget, "reason": None})
        return out

    return run


def additive(weights):
    return lambda s: 1.0 - sum(weights[i] for i in s)


WEIGHTS = [0.30, 0.05, 0.20, 0.01, 0.12, 0.08]


def ctx(run, d=6, n=3, **kw):
    return SearchContext(num_layers=d, max_remove=n, run_trials=run, **kw)


def best_set(objective, d, n, keep=()):
    sets = [s for s in itertools.combinations(range(d), n) if not set(s) & set(keep)]
    return set(max(sets, key=lambda s: objective(frozenset(s))))


def test_greedy_equals_optimal_on_additive_objective():
    obj = additive(WEIGHTS)
    g = make_strategy("greedy").run(ctx(fake_runner(obj), n=4))
    o = make_strategy("optimal").run(ctx(fake_runner(obj), n=4))
    for n in range(1, 5):
        assert set(g.removals[n]) == set(o.removals[n]) == best_set(obj, 6, n)
    assert g.order == [3, 1, 5, 4]
    assert g.removals[2] == [3, 1]  # nested, in removal order
    # greedy tries d + (d-1) + ... candidates
    assert [len(s.candidates) for s in g.steps] == [6, 5, 4, 3]


def test_beam_finds_what_greedy_misses():
    # removing layer 0 alone is best, but the best pair is {1, 2}, which does not contain 0.
    table = {frozenset([0]): 0.90, frozenset([1]): 0.88, frozenset([2]): 0.80, frozenset([3]): 0.70,
             frozenset([1, 2]): 0.85}

    def obj(s):
        return table.get(s, 0.5 if len(s) == 2 else 0.1)

    g = make_strategy("greedy").run(ctx(fake_runner(obj), d=4, n=2))
    b = make_strategy("beam", {"beam_width": 2}).run(ctx(fake_runner(obj), d=4, n=2))
    assert g.removals[1] == [0] and 0 in g.removals[2]
    assert set(b.removals[2]) == {1, 2} == best_set(obj, 4, 2)
    assert b.order is None  # beam results need not be nested


def test_tie_break_prefers_highest_layer():
    g = make_strategy("greedy").run(ctx(fake_runner(lambda s: 0.5), n=3))
    assert g.order == [5, 4, 3]
    o = make_strategy("optimal").run(ctx(fake_runner(lambda s: 0.5), n=2))
    assert o.removals[2] == [5, 4]


def test_keep_protects_layers():
    obj = additive(WEIGHTS)
    g = make_strategy("greedy").run(ctx(fake_runner(obj), n=3, keep=frozenset({3, 1})))
    assert not {1, 3} & set(g.order)
    assert set(g.removals[3]) == best_set(obj, 6, 3, keep=(1, 3))
    with pytest.raises(LayerIndexError, match="1..4 can be removed"):
        ctx(fake_runner(obj), n=5, keep=frozenset({0, 1}))


def test_patterns():
    assert pattern_order("top", 6) == [5, 4, 3, 2, 1, 0]
    assert pattern_order("bottom", 6) == [0, 1, 2, 3, 4, 5]
    assert pattern_order("even", 6) == [4, 2, 0, 5, 3, 1]
    assert pattern_order("odd", 6) == [5, 3, 1, 4, 2, 0]
    assert pattern_order("symmetric", 6) == [3, 2, 4, 1, 5, 0]
    assert pattern_order("symmetric", 12)[:5] == [6, 5, 7, 4, 8]
    r = pattern_order("random", 12, seed=1)
    assert sorted(r) == list(range(12)) and r == pattern_order("random", 12, seed=1)
    assert r != pattern_order("random", 12, seed=2)
    # the committed depth study's random rows are these orders: a change to the generator would orphan them
    records = json.loads((Path(__file__).parents[2] / "docs/results/mpnet/sst2/evaluation.json").read_text())["records"]
    rows = {(x["strategy"], x["n"]): x["removed"] for x in records if x["strategy"].startswith("random:")}
    assert rows and rows == {(s, n): pattern_order("random", 12, seed=int(s.split(":")[1]))[:n] for s, n in rows}
    log = []
    res = make_strategy("top").run(ctx(fake_runner(additive(WEIGHTS), log=log), n=3))
    assert res.removals == {1: [5], 2: [5, 4], 3: [5, 4, 3]}
    assert len(log) == 3  # one fine-tune per n


def test_optimal_refuses_above_limit_with_count():
    with pytest.raises(ConfigError, match="needs 41 removal sets"):
        make_strategy("optimal", {"max_trials": 20}).run(ctx(fake_runner(additive(WEIGHTS)), n=3))
    res = make_strategy("optimal", {"max_trials": 20, "force": True}).run(ctx(fake_runner(additive(WEIGHTS)), n=3))
    assert len(res.steps[2].candidates) == 20


def test_seeds_mean_and_separation():
    # layer 0 and 1 are nearly tied; seed noise larger than the gap -> not separated
    obj = additive([0.100, 0.101, 0.5, 0.5])
    noisy = fake_runner(obj, noise=lambda seed, s: 0.01 * seed)
    res = make_strategy("greedy").run(ctx(noisy, d=4, n=1, seeds=(0, 1, 2)))
    step = res.steps[0]
    assert step.chosen == [0] and step.runner_up == [1]
    assert len(step.candidates[0].scores) == 3
    assert step.separated is False
    obj = additive([0.1, 0.3, 0.5, 0.5])
    quiet = fake_runner(obj, noise=lambda seed, s: 0.001 * seed)
    res = make_strategy("greedy").run(ctx(quiet, d=4, n=1, seeds=(0, 1, 2)))
    assert res.steps[0].separated is True


def test_failed_candidates_rank_last_and_all_failed_is_an_error():
    obj = additive(WEIGHTS)
    res = make_strategy("greedy").run(ctx(fake_runner(lambda s: None if 3 in s else obj(s)), n=1))
    assert res.removals[1] == [1]
    assert res.steps[0].candidates[-1].status == "failed"
    with pytest.raises(GLPError, match="every candidate of step 1 failed"):
        make_strategy("greedy").run(ctx(fake_runner(lambda s: None), n=1))


def test_halving_cuts_budget_and_keeps_the_winner():
    obj = additive(WEIGHTS)
    full_log, half_log = [], []
    full = make_strategy("greedy").run(ctx(fake_runner(obj, log=full_log), n=3))
    half = make_strategy("greedy").run(ctx(fake_runner(obj, log=half_log), n=3, schedule=Halving(rungs=3, eta=3)))
    assert half.order == full.order
    assert sum(r.budget for r in full_log) == 6 + 5 + 4
    # rung budgets 1/9, 1/3, 1: 6 cands -> 2 -> 1; 5 -> 2 -> 1; 4 -> 2 -> 1
    assert {round(r.budget, 6) for r in half_log} == {round(1 / 9, 6), round(1 / 3, 6), 1.0}
    step1 = half.steps[0]
    assert sum(c.status == "rejected" for c in step1.candidates) == 5
    assert sum(c.budget == 1.0 for c in step1.candidates) == 1
    assert "separation not measured" in step1.note


def test_halving_ranks_an_early_score_below_a_finished_one():
    """A candidate stopped after a few steps keeps its (possibly high) early score, but the step's choice and its
    ranking put the candidate that finished the whole fine-tune first (seen on STS-B, where scores fall late)."""
    early = {0: 0.50, 1: 0.55, 2: 0.60, 3: 0.65, 4: 0.70, 5: 0.80}  # layer -> score at budget 1/9
    later = {4: 0.30, 5: 0.20}  # the two survivors of rung 1, at 1/3; layer 4 goes on to the full budget

    def run(requests):
        out = []
        for r in requests:
            (i,) = r.removed
            score = early[i] if r.budget < 0.2 else later[i] if r.budget < 0.9 else 0.10
            out.append({"removed": [i], "seed": r.seed, "budget": r.budget, "status": "ok", "score": score})
        return out

    res = make_strategy("greedy").run(ctx(run, n=1, schedule=Halving(rungs=3, eta=3)))
    step = res.steps[0]
    assert res.removals[1] == [4] and step.chosen == [4] and step.chosen_mean == pytest.approx(0.10)
    assert [c.removed for c in step.candidates] == [[4], [5], [3], [2], [1], [0]]  # finished, 1/3, then 1/9
    assert [c.status for c in step.candidates] == ["ok"] + ["rejected"] * 5
    assert step.runner_up == [5] and step.separated is None


def test_halving_cut_through_a_tied_metric_goes_by_the_eval_loss():
    """On CoLA every candidate scored Matthews correlation 0 at 1/9 and 1/3 of the budget (all still predict the
    majority class), and the tie rule alone sent the top layers on. The search-eval loss still separates them."""
    loss = {0: 0.60, 1: 0.58, 2: 0.61, 3: 0.66, 4: 0.67, 5: 0.69}  # layer 1, then 0, learn fastest
    final = {0: 0.20, 1: 0.30, 2: 0.10, 3: 0.05, 4: 0.04, 5: 0.03}

    def run(requests):
        return [
            {"removed": list(r.removed), "seed": r.seed, "budget": r.budget, "status": "ok",
             "score": final[r.removed[0]] if r.budget == 1.0 else 0.0, "eval_loss": loss[r.removed[0]]}
            for r in requests
        ]

    step = make_strategy("greedy").run(ctx(run, n=1, schedule=Halving(rungs=3, eta=3))).steps[0]
    assert step.chosen == [1]  # the tie rule alone would have kept [5], [4] and chosen 5
    assert [c.removed for c in step.candidates[:2]] == [[1], [0]]
    assert step.candidates[1].budget == pytest.approx(1 / 3) and step.candidates[1].eval_loss == 0.60
    assert "rung 1 (budget 0.111111): 6 candidates tied at 0.0000; 2 of them went on" in step.note
    assert "rung 2 (budget 0.333333): 2 candidates tied" in step.note and "search-eval loss" in step.note


def test_rank_breaks_exact_ties_by_eval_loss_then_towards_the_top():
    from glp.plan import Candidate
    from glp.search import rank

    def cand(layer, mean, loss):
        return Candidate([layer], layer, [mean], mean, None, 1.0, "ok", eval_loss=loss)

    ranked = rank([cand(4, 0.8, 0.50), cand(5, 0.8, None), cand(3, 0.8, 0.40), cand(2, 0.9, 0.90), cand(1, 0.8, None)])
    assert [c.removed[0] for c in ranked] == [2, 3, 4, 5, 1]


def test_fixed_order_is_fine_tuned_in_one_batch():
    """A pattern's sets for n = 1..N are known before any trial: one batch, so parallel workers all get one."""
    batches = []
    inner = fake_runner(additive(WEIGHTS))

    def run(requests):
        batches.append([(r.removed, r.seed, r.budget) for r in requests])
        return inner(requests)

    res = make_strategy("top").run(ctx(run, n=3, seeds=(1, 2), schedule=Halving(rungs=3, eta=3)))
    sets = [(5,), (5,), (5, 4), (5, 4), (5, 4, 3), (5, 4, 3)]
    assert batches == [[(s, seed, 1.0) for s, seed in zip(sets, (1, 2) * 3, strict=True)]]
    assert res.removals == {1: [5], 2: [5, 4], 3: [5, 4, 3]}
    assert [s.chosen_mean for s in res.steps] == pytest.approx([0.92, 0.80, 0.79])


def test_proxy_strategy_uses_lowest_proxy():
    calls = []

    def proxy(removed, layers):
        calls.append((removed, tuple(layers)))
        return {i: WEIGHTS[i] for i in layers}

    res = make_strategy("proxy-bi").run(ctx(fake_runner(additive(WEIGHTS)), n=2, proxy=proxy))
    assert res.order == [3, 1]
    assert calls[1][0] == (3,)
    assert res.steps[0].candidates[0].proxy == pytest.approx(0.01)


def test_proxy_prefilter_limits_finetunes():
    log = []
    res = make_strategy("greedy").run(ctx(fake_runner(additive(WEIGHTS), log=log), n=2,
                          proxy=lambda removed, layers: {i: WEIGHTS[i] for i in layers}, prefilter_top=2))
    assert len(log) == 4 and res.order == [3, 1]


def test_make_strategy_unknown():
    with pytest.raises(ConfigError, match="unknown --strategy 'sideways'; known: greedy, beam, optimal, top"):
        make_strategy("sideways")
    assert make_strategy("beam", {"beam_width": 3}).width == 3


def test_halving_budgets():
    assert Halving(rungs=3, eta=3).budgets() == [round(1 / 9, 9), round(1 / 3, 9), 1.0]
    assert Halving(rungs=3, eta=3, min_budget=0.25).budgets() == [0.25, 0.5, 1.0]
    assert Halving(rungs=1).budgets() == [1.0] and Halving(eta=3).keep(6) == 2 and Halving(eta=3).keep(1) == 1
    with pytest.raises(ConfigError, match="--min-budget"):
        Halving(min_budget=1.5)


# ------------------------------------------------------------------------ docs/extending.md's strategy plug-in

DOC = Path(__file__).resolve().parents[2] / "docs" / "extending.md"


def _doc_strategy_code() -> str:
    """The python block of docs/extending.md that registers a strategy."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    return next(b for b in blocks if "register_strategy" in b)


@pytest.fixture
def greedy_top(monkeypatch):
    module = types.ModuleType("glp_greedy_top")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look their module up
    exec(compile(_doc_strategy_code(), str(DOC), "exec"), module.__dict__)
    yield module.GreedyTop
    STRATEGIES.remove("greedy-top")


def test_the_documented_strategy_searches_only_its_window(greedy_top):
    obj = additive([0.9, 0.1, 0.5, 0.4, 0.3, 0.2])  # on its own the search would remove layer 1 first
    strategy = make_strategy("greedy-top", {"window": 3})
    assert isinstance(strategy, greedy_top) and strategy.params() == {"window": 3}
    res = strategy.run(ctx(fake_runner(obj), d=6, n=2))
    assert set(res.order) <= {3, 4, 5} and res.order == [5, 4]  # the window's best, step by step
    assert all(set(c.removed) <= {3, 4, 5} for s in res.steps for c in s.candidates)
    with pytest.raises(ConfigError, match="--window 1 leaves 1 layers"):
        make_strategy("greedy-top", {"window": 1}).run(ctx(fake_runner(obj), d=6, n=2))


@pytest.mark.slow
def test_the_documented_strategy_gets_its_flag_in_the_cli(tiny_setup, tmp_path):
    """Registered before the CLI is built (as an entry point is), the plug-in's setting is a `glp prune` flag."""
    out = tmp_path / "run"
    args = ["prune", str(tiny_setup / "model"), "--task", "toy", "--train-file", str(tiny_setup / "train.csv"),
            "--dev-file", str(tiny_setup / "dev.csv"), "--text-columns", "text", "--label-column", "label",
            "--strategy", "greedy-top", "--window", "2", "--max-remove", "2", "--num-train-epochs", "1",
            "--per-device-train-batch-size", "16", "--max-seq-length", "32", "--out", str(out)]  # fmt: skip
    script = _doc_strategy_code() + f"\nfrom glp.cli import main\nimport sys\nsys.argv = ['glp'] + {args!r}\nmain()\n"
    help_script = _doc_strategy_code() + "\nfrom glp.cli import main\nmain(['prune', '--help'])\n"
    shown = subprocess.run([sys.executable, "-c", help_script], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert "--window" in shown.stdout and "search only the last WINDOW layers" in shown.stdout
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    plan = json.loads((out / "plan.json").read_text())
    assert plan["strategy"]["name"] == "greedy-top" and plan["strategy"]["window"] == 2
    assert sorted(plan["order"]) == [2, 3]  # the 4-layer model's last two layers: all the window holds
