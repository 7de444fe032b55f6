"""The task-kind refactor changed no result: a fixed run gives exactly the numbers recorded before it.

tests/data/reference_run.json was written by tests/reference_run.py with the code before the seam (issue 14): every
plan's scores and search-eval losses, every journal key (so journals written before the change are still hit on
resume) and every trial's numbers, for greedy, beam with successive halving, a regression top pattern with two
seeds and an evaluation. Everything but a float is compared exactly (keys, chosen sets, counts, statuses). One
thread on one machine gives the same arithmetic to the last bit, but another CPU's kernels do not: on an AMD EPYC
the classification runs' float32 losses differed from the file's by up to 2.3e-7 (relative) and the accuracies not
at all, so floats are compared to a relative 1e-5; the regression's rank correlation moved by up to 1.8e-3 (two
near-equal predictions swap ranks), so its run is compared to 5e-3.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reference_run import run_reference

pytestmark = pytest.mark.slow  # one fixed run, ~20 s

EXPECTED = json.loads((Path(__file__).parent / "data" / "reference_run.json").read_text())
REL = 1e-5  # float32 losses across CPUs: last-bit differences only
REL_RANK = 5e-3  # the regression run: Spearman's ranks of near-equal predictions swap across CPUs


def rel_of(name: str) -> float:
    return REL_RANK if name.startswith("reg") else REL


def assert_same(got, want, where="", rel=REL) -> None:
    """``got == want``, floats within ``rel`` (relative; 1e-12 absolute around 0)."""
    if isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, (int, float)) and isinstance(want, (int, float)), f"{where}: {got!r} != {want!r}"
        assert got == pytest.approx(want, rel=rel, abs=1e-12), f"{where}: {got!r} != {want!r}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            assert_same(got[k], want[k], f"{where}.{k}", rel)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]", rel)
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def test_the_comparison_is_exact_but_for_float_noise():
    assert_same({"a": [1, "x", 0.5]}, {"a": [1, "x", 0.5 * (1 + 1e-7)]})
    for got in ({"a": [2, "x", 0.5]}, {"a": [1, "y", 0.5]}, {"a": [1, "x", 0.5001]}, {"b": [1, "x", 0.5]}):
        with pytest.raises(AssertionError):
            assert_same(got, {"a": [1, "x", 0.5]})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return json.loads(json.dumps(run_reference(tmp_path_factory.mktemp("ref") / "ref"), sort_keys=True))


@pytest.mark.parametrize("name", sorted(EXPECTED["plans"]))
def test_plans_are_unchanged(reference, name):
    assert_same(reference["plans"][name], EXPECTED["plans"][name], name, rel_of(name))


@pytest.mark.parametrize("name", sorted(EXPECTED["journals"]))
def test_journal_keys_and_trials_are_unchanged(reference, name):
    got, want = reference["journals"][name], EXPECTED["journals"][name]
    assert sorted(got) == sorted(want)  # the same keys: old journals are still hit
    assert_same(got, want, name, rel_of(name))


def test_evaluation_is_unchanged(reference):
    assert_same(reference["evaluation"], EXPECTED["evaluation"], "evaluation")
