"""The task-kind refactor changed no result: a fixed run gives exactly the numbers recorded before it.

tests/data/reference_run.json was written by tests/reference_run.py with the code before the seam (issue 14): every
plan's scores and search-eval losses, every journal key (so journals written before the change are still hit on
resume) and every trial's numbers, for greedy, beam with successive halving, a regression top pattern with two
seeds and an evaluation. Equality is exact: the CPU, one thread, the same arithmetic.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reference_run import run_reference

pytestmark = pytest.mark.slow  # one fixed run, ~20 s

EXPECTED = json.loads((Path(__file__).parent / "data" / "reference_run.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return json.loads(json.dumps(run_reference(tmp_path_factory.mktemp("ref") / "ref"), sort_keys=True))


@pytest.mark.parametrize("name", sorted(EXPECTED["plans"]))
def test_plans_are_unchanged(reference, name):
    assert reference["plans"][name] == EXPECTED["plans"][name]


@pytest.mark.parametrize("name", sorted(EXPECTED["journals"]))
def test_journal_keys_and_trials_are_unchanged(reference, name):
    got, want = reference["journals"][name], EXPECTED["journals"][name]
    assert sorted(got) == sorted(want)  # the same keys: old journals are still hit
    assert got == want


def test_evaluation_is_unchanged(reference):
    assert reference["evaluation"] == EXPECTED["evaluation"]
