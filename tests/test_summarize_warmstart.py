"""docs/benchmarks.md's warm start tables are what benchmarks/summarize_warmstart.py prints from the artifacts."""

from pathlib import Path

from helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "docs" / "results" / "warmstart" / "sst2"


def _module():
    return load_benchmark("summarize_warmstart")


def _summarize():
    return _module().main


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


def test_the_overview_over_tasks_pairs_the_warm_starts_with_the_papers_search_by_seed():
    module = _module()
    mpnet = ROOT / "docs" / "results" / "warmstart" / "mpnet-sst2"
    evaluation = ROOT / "docs" / "results" / "mpnet" / "sst2" / "evaluation.json"
    text = module.overview(str(ARTIFACTS), f"{mpnet}+{evaluation}")
    assert "| sst2 | 1024 / 184 / 106 | 5.6 / 9.7 | 0.23 / -0.77 |" in text
    assert "| mpnet-sst2 | 3712 / 520 / 208 | 7.1 / 17.8 | 0.65 / 0.83 |" in text
    # n = 6 on MPNet: the paper's set 0.508 / 0.611 / 0.811 by seed, the warm start's 0.802 / 0.825 / 0.817
    assert "| mpnet-sst2 | 6 | 61.1 (50.8–81.1) | 81.7 (80.2–82.5); 3/0/0 | 84.1 (83.5–85.2); 3/0/0 |" in text
    assert "| mpnet-sst2 | 2 | 89.7 (87.8–90.6) | 89.0 (87.6–89.7); 0/0/3 |" in text


def test_the_overview_in_the_docs_is_what_the_script_prints():
    module = _module()
    res, ws = ROOT / "docs" / "results", ROOT / "docs" / "results" / "warmstart"
    study = [f"{ws / t}+{res / t / 'evaluation.json'}+{ws / t / 'evaluation.json'}" for t in ("cola", "stsb")]
    mpnet = [f"{ws / f'mpnet-{t}'}+{res / 'mpnet' / t / 'evaluation.json'}" for t in ("sst2", "stsb")]
    k2 = f"{ws / 'sst2-k2'}+{res / 'sst2' / 'evaluation.json'}+{ws / 'sst2-k2' / 'evaluation.json'}"
    text = module.overview(str(ws / "sst2"), k2, *study, *mpnet)
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    assert text in doc
    assert "| cola | 6840 / 576 / 498 | 11.9 / 13.7 | 0.09 / 0.00 |" in text
    assert "| sst2-k2 | 960 / 94 / 82 | 10.2 / 11.7 |" in text


def test_a_task_without_its_final_rows_yet_has_its_searches_row(tmp_path):
    module = _module()
    text = module.overview(f"{ARTIFACTS}+{tmp_path / 'not-yet.json'}")
    assert "| sst2 | 1024 / 184 / 106 | 5.6 / 9.7 | 0.23 / -0.77 |" in text
    assert "| sst2 | 1 |" not in text  # no final row without an evaluation


def test_the_depth_studys_stsb_searches_are_in_the_docs_as_printed():
    """STS-B's warm starts on MPNet: the searches' tables of its summary are in docs/benchmarks.md as printed (its
    final rows join the summary when the study's final protocol for STS-B is published)."""
    ws = ROOT / "docs" / "results" / "warmstart" / "mpnet-stsb"
    printed = _summarize()(str(ws), str(ROOT / "docs" / "results" / "mpnet" / "stsb" / "evaluation.json"))
    assert printed == (ws / "summary.md").read_text()
    searches = printed.split("### Final scores")[0]
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    for line in searches.splitlines():
        if line.startswith("|"):
            assert line in doc, line
    assert "| GLP warm start | 58 | 520 | 7.1 |" in printed and "| 1 | [11] | [9] | yes | 12 | -0.31 |" in printed
