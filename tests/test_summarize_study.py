"""benchmarks/summarize_study.py: the cross-task Table 1 built from each task's evaluation.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import load_benchmark


@pytest.fixture(scope="module")
def summarize():
    return load_benchmark("summarize_study")


def write_eval(root: Path, task: str, rows: dict[tuple[str, int], list[float]]) -> None:
    """An evaluation.json with glp evaluate's records and summary (the parts the script reads)."""
    from glp.results.evaluation import summarize as summarize_records

    metric = {"cola": "mcc", "rte": "accuracy", "mrpc": "f1"}[task]
    records = [
        {"task": task, "metric": metric, "strategy": s, "n": n, "removed": list(range(n)), "seed": 42 + i, "score": v}
        for (s, n), scores in rows.items()
        for i, v in enumerate(scores)
    ]
    d = root / f"{task}-eval"
    d.mkdir(parents=True)
    doc = {"schema": "glp.evaluation/1", "records": records, "summary": summarize_records(records)}
    (d / "evaluation.json").write_text(json.dumps(doc))


def test_table1_across_roots(tmp_path, summarize):
    a, b = tmp_path / "cpu", tmp_path / "gpu"
    write_eval(
        a,
        "cola",
        {
            ("baseline", 0): [0.2, 0.3, 0.4],
            ("greedy", 1): [0.1, 0.2, 0.6],
            ("greedy (cola-halving)", 1): [0.3, 0.3, 0.3],
        },
    )
    write_eval(
        b, "rte", {("baseline", 0): [0.5, 0.6, 0.7], ("greedy", 1): [0.4, 0.5, 0.9], ("top", 1): [0.5, 0.5, 0.5]}
    )
    pairs = summarize.parse_args([f"{a}:cola", f"{b}:rte"])
    assert pairs == [(a, "cola"), (b, "rte")]
    table = summarize.table1(pairs)
    lines = table.splitlines()
    assert lines[0] == "| Method | n | CoLA (mcc) | RTE (accuracy) | GLUE | Rel. (%) |"
    # baseline mean (30 + 60) / 2 = 45; greedy (20 + 50) / 2 = 35 -> 77.8 %
    assert "| baseline | 0 | 30.0 (20.0–40.0) | 60.0 (50.0–70.0) | 45.0 | 100.0 |" in lines
    assert "| greedy | 1 | 20.0 (10.0–60.0) | 50.0 (40.0–90.0) | 35.0 | 77.8 |" in lines
    # a row only one task has is not averaged
    assert not any(line.startswith(("| top ", "| greedy + halving ")) for line in lines)
    rel = summarize.overview(pairs).splitlines()
    assert "| greedy + halving | 1 | 100.0 | – |" in rel
    assert "| top | 1 | – | 83.3 |" in rel


def test_table1_needs_every_baseline(tmp_path, summarize):
    write_eval(tmp_path, "cola", {("greedy", 1): [0.1, 0.2, 0.3], ("baseline", 0): [0.2, 0.3, 0.4]})
    assert "no baseline" in summarize.table1([(tmp_path, "cola"), (tmp_path, "mrpc")])


def test_parse_args_old_form(tmp_path, summarize):
    assert summarize.parse_args([str(tmp_path), "sst2", "stsb"]) == [(tmp_path, "sst2"), (tmp_path, "stsb")]
    with pytest.raises(SystemExit):
        summarize.parse_args([f"{tmp_path}:", "x:y"])


def test_distillation_summary_shares_of_the_gap(tmp_path, capsys):
    """benchmarks/summarize_distill.py: the share of the gap per cell, none where there is no gap, the averages."""
    mod = load_benchmark("summarize_distill")

    def write(name, rows):
        records = [
            {"task": "cola", "metric": "mcc", "strategy": s, "n": n, "seed": 42 + i, "score": v}
            for (s, n), scores in rows.items()
            for i, v in enumerate(scores)
        ]
        (tmp_path / name).mkdir()
        (tmp_path / name / "evaluation.json").write_text(json.dumps({"records": records}))

    write("plain", {("baseline", 0): [0.5, 0.6, 0.7], ("greedy", 2): [0.3, 0.4, 0.5], ("greedy", 3): [0.7, 0.7, 0.7]})
    write("dist", {("baseline", 0): [0.5, 0.6, 0.7], ("greedy (distilled)", 2): [0.5, 0.5, 0.6],
                   ("greedy (distilled)", 3): [0.7, 0.8, 0.8]})  # fmt: skip
    assert mod.main([f"cola={tmp_path / 'plain'},{tmp_path / 'dist'}"]) == 0
    out = capsys.readouterr().out
    assert "| 2 | 60.0 | 40.0 (30.0–50.0) | 50.0 (50.0–60.0) | +50% |" in out
    assert "| 3 | 60.0 | 70.0 (70.0–70.0) | 80.0 (70.0–80.0) | no gap |" in out
    assert (
        "greedy (distilled): mean share +50% over 1 cells with a gap; per task cola +50%: mean over 1 tasks +50%; "
        "pooled +10.0 of 20.0 points (+50%)"
    ) in out
    # two tasks, the variants named by --names: each task's mean counts once (not each cell)
    write("dist2", {("baseline", 0): [0.5, 0.6, 0.7], ("greedy (distilled, teacher init)", 2): [0.4, 0.45, 0.5],
                    ("greedy (distilled, teacher init)", 3): [0.7, 0.8, 0.8]})  # fmt: skip
    write("plain2", {("baseline", 0): [0.5, 0.6, 0.7], ("greedy", 2): [0.2, 0.2, 0.2], ("greedy", 3): [0.4, 0.4, 0.4]})
    argv = ["--names", "teacher", f"cola={tmp_path / 'plain'},{tmp_path / 'dist'}"]
    assert mod.main([*argv, f"sst2={tmp_path / 'plain2'},{tmp_path / 'dist2'}"]) == 0
    out = capsys.readouterr().out
    # sst2: n = 2 (45 - 20) / 40 = 62.5%, n = 3 (80 - 40) / 20 = 200%; the cells' mean 104%, the tasks' (50 + 131) / 2
    assert (
        "teacher: mean share +104% over 3 cells with a gap; per task cola +50%, sst2 +131%: mean over 2 tasks +91%"
    ) in out
    with pytest.raises(SystemExit, match="1 distilled evaluations, 2 --names"):
        mod.main(["--names=a,b", f"cola={tmp_path / 'plain'},{tmp_path / 'dist'}"])
