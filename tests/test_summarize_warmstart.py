"""docs/benchmarks.md's warm start tables are what benchmarks/summarize_warmstart.py prints from the artifacts."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "summarize_warmstart.py"
ARTIFACTS = ROOT / "docs" / "results" / "warmstart" / "sst2"


def _summarize():
    spec = importlib.util.spec_from_file_location("summarize_warmstart", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_the_committed_summary_is_what_the_script_prints():
    printed = _summarize()(str(ARTIFACTS))
    assert printed == (ARTIFACTS / "summary.md").read_text()
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    for line in printed.splitlines():
        if line.startswith("|"):
            assert line in doc, line  # every table row of the summary is in the doc as printed
    assert "| GLP warm start | 16 | 184 | 5.6 |" in printed


def test_the_depth_study_summary_is_what_the_script_prints():
    """The MPNet warm start reads its final scores from the depth study's evaluation, where the paper's search is
    the run directory's plain ``greedy`` row."""
    mpnet = ROOT / "docs" / "results" / "warmstart" / "mpnet-sst2"
    printed = _summarize()(str(mpnet), str(ROOT / "docs" / "results" / "mpnet" / "sst2" / "evaluation.json"),
                           str(mpnet / "evaluation-halving.json"))
    assert printed == (mpnet / "summary.md").read_text()
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    for line in printed.splitlines():
        if line.startswith("|"):
            assert line in doc, line
    assert "| GLP warm start | 58 | 520 | 7.1 |" in printed and "| 6 | GLP (paper) | [10, 8, 9, 5, 2, 11] |" in printed
    assert "| GLP warm start + halving | 58 | 208 | 17.8 |" in printed
