"""glp report: markdown + PNG figures (+ HTML) from a run, an evaluation and a profile."""

from __future__ import annotations

import json

import pytest

from glp.commands.profile import profile
from glp.commands.report import (
    TRADEOFF_SIZE,
    heatmap_matrix,
    heatmap_size,
    report,
    tradeoff_series,
)
from glp.errors import ConfigError
from glp.results.evaluation import SCHEMA as EVAL_SCHEMA
from glp.results.evaluation import relabel, summarize, write_outputs
from glp.results.profile import save
from glp.results.render import expected_size, png_size
from glp.run.rundir import RunDir


def _fake_evaluation(out, plan):
    """An evaluation directory with known numbers (what glp evaluate writes, without the fine-tunes)."""
    records = []
    for strategy, n, scores in [
        ("baseline", 0, [0.80, 0.82, 0.78]),
        ("greedy", 1, [0.79, 0.80, 0.75]),
        ("greedy", 2, [0.70, 0.72, 0.74]),
        ("top", 1, [0.76, 0.77, 0.70]),
        ("top", 2, [0.60, 0.66, 0.62]),
    ]:
        removed = plan.layers_to_remove(n) if strategy == "greedy" else [3, 2][:n]
        records += [
            {
                "task": "rte",
                "metric": "accuracy",
                "strategy": strategy,
                "n": n,
                "removed": removed,
                "seed": 42 + i,
                "score": s,
            }
            for i, s in enumerate(scores)
        ]
    result = {
        "schema": EVAL_SCHEMA,
        "model": plan.model["source"],
        "seeds": [42, 43, 44],
        "tasks": {"rte": {"hparams": plan.hparams}},
        "summary": summarize(records),
        "records": records,
    }
    write_outputs(result, out)
    return out


def test_heatmap_matrix_marks_tried_and_chosen(tiny_run):
    plan = RunDir(tiny_run).load_plan()
    mat, chosen, _ = heatmap_matrix(plan)
    first, second = plan.order
    assert len(mat) == 2 and all(len(r) == 4 for r in mat)
    assert all(v is not None for v in mat[0])  # step 1 tried every layer
    assert mat[1][first] is None and sum(v is not None for v in mat[1]) == 3  # removed already: not tried
    assert chosen == [(0, first), (1, second)]
    assert mat[0][first] == plan.steps[0].chosen_mean


def test_report_files_and_png_sizes(tiny_run, tmp_path):
    plan = RunDir(tiny_run).load_plan()
    ev = _fake_evaluation(tmp_path / "ev", plan)
    prof = save(profile(str(tiny_run), repeats=2, warmup=0, seq_len=32, gpu=False), tmp_path / "profile.json")
    rep = report([tiny_run], tmp_path / "rep", evaluation=ev, profile=prof, html=True)
    names = sorted(f.name for f in rep.figures)
    assert names == ["heatmap_toy_greedy.png", "tradeoff.png"]
    assert png_size(tmp_path / "rep" / "tradeoff.png") == expected_size(TRADEOFF_SIZE) == (900, 450)
    assert png_size(tmp_path / "rep" / "heatmap_toy_greedy.png") == expected_size(heatmap_size(plan))
    md = rep.markdown.read_text()
    for text in (
        "## Performance vs. speed-up",
        "![trade-off](tradeoff.png)",
        "## Final evaluation",
        "| greedy | 2 | 72.0 (70.0–74.0) | 72.0 | 90.0 |",
        "| RTE | 2 | top | 3 | 3/0/0 | +9.33 |",  # GLP against Top, paired by seed
        "## Size and latency",
        "CPU speed-up",
        "## Plan: greedy on toy",
        "heatmap_toy_greedy.png",
    ):
        assert text in md, text
    html = rep.html.read_text()
    assert html.count("data:image/png;base64,") == 2 and "<table>" in html

    data = tradeoff_series([plan], json.loads((ev / "evaluation.json").read_text()), json.loads(prof.read_text()))
    assert set(data["series"]) == {"greedy", "top"} and data["baseline"] == (1.0, 100.0)
    assert [round(p[1], 3) for p in data["series"]["top"]] == [95.0, 77.5]
    assert "CPU" in data["x_label"]
    assert data["y_label"] == "relative performance (%): RTE accuracy / baseline"  # one task: its own metric


def test_report_labels_rename_evaluation_rows(tiny_run, tmp_path):
    """--label OLD=NEW renames a row in the tables and the plot's series; the numbers stay the row's."""
    ev = _fake_evaluation(tmp_path / "ev", RunDir(tiny_run).load_plan())
    rep = report([], tmp_path / "rep", evaluation=ev, labels={"top": "Top-n (fixed)"})
    md = rep.markdown.read_text()
    assert "| Top-n (fixed) | 2 | 62.0 (60.0–66.0) |" in md and "| top |" not in md
    evald = relabel(json.loads((ev / "evaluation.json").read_text()), {"top": "Top-n (fixed)"})
    assert set(tradeoff_series([], evald, None)["series"]) == {"greedy", "Top-n (fixed)"}
    md = report([], tmp_path / "rep-glp", evaluation=ev, labels={"greedy": "GLP"}).markdown.read_text()
    assert "\nGLP against each row" in md and "| RTE | 2 | top | 3 | 3/0/0 | +9.33 |" in md  # still paired
    with pytest.raises(ConfigError, match="no row so named; its rows: baseline, greedy, top"):
        report([], tmp_path / "rep2", evaluation=ev, labels={"Top": "x"})
    with pytest.raises(ConfigError, match="two rows would both be named 'greedy'"):  # pooling seeds of two rows
        report([], tmp_path / "rep2", evaluation=ev, labels={"top": "greedy"})
    with pytest.raises(ConfigError, match="the unpruned row keeps its name"):
        report([], tmp_path / "rep2", evaluation=ev, labels={"baseline": "unpruned"})
    assert not (tmp_path / "rep2").exists()
    with pytest.raises(ConfigError, match="give --evaluation too"):
        report([tiny_run], tmp_path / "rep3", labels={"top": "x"})


def test_report_without_evaluation_or_profile_uses_search_scores(tiny_run, tmp_path):
    plan = RunDir(tiny_run).load_plan()
    rep = report([tiny_run], tmp_path / "r")
    assert png_size(tmp_path / "r" / "tradeoff.png") == expected_size(TRADEOFF_SIZE)
    data = tradeoff_series([plan], None, None)
    pts = data["series"]["greedy (toy)"]
    assert [p[0] for p in pts] == [1.0, 2.0] and data["x_label"] == "layers removed"
    assert pts[0][1] == pytest.approx(100 * plan.steps[0].chosen_mean / plan.baseline["mean"])
    assert "Final evaluation" not in rep.markdown.read_text()
    with pytest.raises(ConfigError):
        report([], tmp_path / "x")


def test_cli(tiny_run, tmp_path, capsys):
    from glp.cli import main

    with pytest.raises(SystemExit) as e:
        main(["report", str(tiny_run), "--out", str(tmp_path / "c"), "--html"])
    assert e.value.code == 0 and (tmp_path / "c" / "report.html").exists()
    assert "tradeoff.png" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["report", str(tiny_run), "--out", str(tmp_path / "d"), "--evaluation", str(tmp_path / "none")])
    assert e.value.code == 2 and "no evaluation" in capsys.readouterr().err
    # without --out: RUN/report/ (of a copy: tiny_run is shared)
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns(".lock"))
    with pytest.raises(SystemExit) as e:
        main(["report", str(run)])
    assert e.value.code == 0 and (run / "report" / "report.md").exists()
    with pytest.raises(SystemExit) as e:
        main(["report", str(run), str(tiny_run)])
    assert e.value.code == 2 and "--out" in capsys.readouterr().err


def test_a_report_stopped_while_writing_leaves_no_folder(tiny_run, tmp_path, monkeypatch):
    """Written into a hidden sibling and moved in when complete: a report that fails half-way leaves no --out."""
    import glp.commands.report as rp

    real = rp._plan_section

    def fails(*args, **kwargs):
        real(*args, **kwargs)  # a heat map is already written
        raise KeyboardInterrupt

    monkeypatch.setattr(rp, "_plan_section", fails)
    with pytest.raises(KeyboardInterrupt):
        report([tiny_run], tmp_path / "rep")
    assert not (tmp_path / "rep").exists() and not list(tmp_path.glob(".rep.tmp-*"))
    monkeypatch.setattr(rp, "_plan_section", real)
    rep = report([tiny_run], tmp_path / "rep")
    assert rep.markdown.is_file() and all(f.is_file() and f.parent == tmp_path / "rep" for f in rep.figures)


def test_a_compared_model_sits_at_its_own_speed_up():
    """glp evaluate --compare and glp profile --compare: the ready-made model's point is at its measured speed-up,
    not at the speed-up of the plan's n it is listed with."""
    label = "small (2 layers, 0.1M parameters)"
    evaluation = {
        "summary": {
            "rows": [
                {"strategy": "baseline", "n": 0, "rel": 100.0},
                {"strategy": "greedy", "n": 2, "rel": 95.0},
                {"strategy": label, "n": 2, "rel": 90.0},
            ]
        },
        "records": [{"strategy": label, "compare": {"model": "small", "layers": 2, "parameters": 100000}}],
    }
    profile = {
        "rows": [
            {"label": "unpruned", "n": 0, "cpu_speedup": 1.0},
            {"label": "greedy n=2", "n": 2, "cpu_speedup": 1.8},
            {"label": "small (2 layers)", "n": 2, "cpu_speedup": 2.5},
        ]
    }
    data = tradeoff_series([], evaluation, profile, "cpu")
    assert data["series"]["greedy"] == [(1.8, 95.0, 2)] and data["series"][label] == [(2.5, 90.0, 2)]
    del profile["rows"][2]  # not profiled: left out, not put at the plan's n
    left = tradeoff_series([], evaluation, profile, "cpu")
    assert label not in left["series"] and left["missing_n"] == []
