"""glp evaluate: the median / relative arithmetic on known numbers, then a small real evaluation that resumes."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest

from glp.commands.evaluate import EvalConfig, evaluate
from glp.errors import ConfigError
from glp.results.evaluation import csv_text, markdown_table, paired_table, relabel, summaries, summarize, write_outputs
from glp.run.rundir import RunDir


def _rec(task, strategy, n, scores, metric="accuracy", removed=()):
    return [
        {
            "task": task,
            "metric": metric,
            "strategy": strategy,
            "n": n,
            "removed": list(removed),
            "seed": 42 + i,
            "score": s,
        }
        for i, s in enumerate(scores)
    ]


def test_summarize_median_min_max_and_relative():
    records = (
        _rec("rte", "baseline", 0, [0.60, 0.70, 0.65])
        + _rec("mrpc", "baseline", 0, [0.80, 0.90, 0.85, 0.84, 0.86], metric="f1")
        + _rec("rte", "greedy", 2, [0.50, 0.62, 0.60], removed=(3, 5))
        + _rec("mrpc", "greedy", 2, [0.80, None, 0.70, 0.90], metric="f1", removed=(4, 1))
        + _rec("rte", "top", 2, [0.55, 0.52, 0.58], removed=(5, 4))
    )
    s = summarize(records)
    assert s["tasks"] == ["rte", "mrpc"] and s["score_name"] == "GLUE"
    assert [(r["strategy"], r["n"]) for r in s["rows"]] == [("baseline", 0), ("greedy", 2), ("top", 2)]
    base, greedy, top = s["rows"]
    assert base["cells"]["rte"]["median"] == pytest.approx(0.65)
    assert base["cells"]["mrpc"]["median"] == pytest.approx(0.85)
    assert base["score"] == pytest.approx((0.65 + 0.85) / 2) and base["rel"] == pytest.approx(100.0)
    g = greedy["cells"]
    assert g["rte"]["median"] == pytest.approx(0.60) and g["rte"]["rel"] == pytest.approx(100 * 0.60 / 0.65)
    assert (g["rte"]["min"], g["rte"]["max"]) == (0.50, 0.62)
    # the failed seed is left out: median of [0.8, 0.7, 0.9]
    assert g["mrpc"]["median"] == pytest.approx(0.80) and g["mrpc"]["failed"] == 1
    assert greedy["score"] == pytest.approx(0.70)
    assert greedy["rel"] == pytest.approx(100 * 0.70 / 0.75)
    # a row without every task has no GLUE score and no row Rel.; its task cell still has one
    assert top["score"] is None and top["rel"] is None
    assert top["cells"]["rte"]["rel"] == pytest.approx(100 * 0.55 / 0.65)

    md = markdown_table(s)
    lines = md.strip().splitlines()
    assert lines[0] == "| Method | n | RTE (accuracy) | MRPC (f1) | GLUE | Rel. (%) |"
    assert lines[2] == "| baseline | 0 | 65.0 (60.0–70.0) | 85.0 (80.0–90.0) | 75.0 | 100.0 |"
    assert lines[3] == "| greedy | 2 | 60.0 (50.0–62.0) | 80.0 (70.0–90.0) [1 failed] | 70.0 | 93.3 |"
    assert lines[4] == "| top | 2 | 55.0 (52.0–58.0) | – | – | – |"
    rows = list(csv.DictReader(io.StringIO(csv_text(s))))
    assert len(rows) == 5
    r = next(x for x in rows if x["strategy"] == "greedy" and x["task"] == "rte")
    assert float(r["rel_percent"]) == pytest.approx(92.307692, abs=1e-4) and r["removed"] == "3 5"


def test_rows_come_unpruned_first_then_glp_and_its_variants_then_the_rest_as_they_came():
    """Plans are read by file name, so bottom.json's rows come before greedy.json's; the table still starts with
    the unpruned model and GLP (a warm start is a GLP variant), then the others in their order."""
    records = (
        _rec("rte", "bottom", 1, [0.5], removed=(0,))
        + _rec("rte", "bottom", 2, [0.4], removed=(0, 1))
        + _rec("rte", "greedy (parent)", 1, [0.6], removed=(5,))
        + _rec("rte", "greedy", 2, [0.6], removed=(5, 3))
        + _rec("rte", "greedy", 1, [0.6], removed=(5,))
        + _rec("rte", "top", 1, [0.6], removed=(5,))
        + _rec("rte", "baseline", 0, [0.7])
        + _rec("rte", "greedyish", 1, [0.6], removed=(4,))
    )
    assert [(r["strategy"], r["n"]) for r in summarize(records)["rows"]] == [
        ("baseline", 0), ("greedy (parent)", 1), ("greedy", 1), ("greedy", 2), ("bottom", 1), ("bottom", 2),
        ("top", 1), ("greedyish", 1)]
    # renamed for a report (glp report --label greedy=GLP), GLP and its variant keep their places
    evald = {"records": records, **summaries(records)}
    assert [r["strategy"] for r in relabel(evald, {"greedy": "GLP"})["summary"]["rows"]][:5] == [
        "baseline", "greedy (parent)", "GLP", "GLP", "bottom"]


def test_the_paired_table_sets_glp_against_each_row_of_its_n_seed_by_seed():
    records = (
        _rec("rte", "baseline", 0, [0.60, 0.70, 0.65])
        + _rec("rte", "greedy", 1, [0.60, 0.62, 0.64], removed=(5,))
        + _rec("rte", "top", 1, [0.50, 0.62003, 0.66], removed=(5,))  # seed 43: a tie (thread noise's size)
        + _rec("rte", "bottom", 1, [0.40, None, 0.50], removed=(0,))  # seed 43 failed: two pairs
        + _rec("rte", "greedy", 2, [0.58, 0.59, 0.57], removed=(5, 3))
        + _rec("rte", "top", 2, [0.50, 0.55, 0.53], removed=(5, 4))
        + _rec("rte", "top", 3, [0.5, 0.5, 0.5], removed=(5, 4, 3))  # no GLP row at n = 3: not compared
    )
    lines = paired_table(summarize(records)).splitlines()
    rows = [line for line in lines if line.startswith("| RTE")]
    assert rows == [
        "| RTE | 1 | top | 3 | 1/1/1 | +2.67 |",  # (+10, 0, −2) points
        "| RTE | 2 | top | 3 | 3/0/0 | +5.33 |",
        "| RTE | 1 | bottom | 2 | 2/0/0 | +17.00 |",
    ]
    # across n: top is behind in no cell, ahead in 2, one task's nested cells: no test; bottom has one cell, no line
    assert "| top | 2 | 2/0/0 | 4/1/1 | – |" in lines
    assert not any(line.startswith("| bottom |") for line in lines)


def test_the_paired_table_flips_a_lower_is_better_metric_and_needs_two_seeds():
    def lm(strategy, n, scores):
        return [dict(r, higher_is_better=False) for r in _rec("wikitext2", strategy, n, scores, "perplexity")]

    s = summarize(lm("greedy", 2, [35.0, 36.0]) + lm("sleb", 2, [36.0, 35.5]))
    assert "| WikiText-2 | 2 | sleb | 2 | 1/0/1 | +0.25 |" in paired_table(s)  # perplexity as it is: (+1 − 0.5) / 2
    s = summarize(lm("greedy", 8, [300.0, 310.0]) + lm("sleb", 8, [300.01, 309.99]))  # within 1e-4 of the score
    assert "| WikiText-2 | 8 | sleb | 2 | 0/2/0 | +0.00 |" in paired_table(s)
    assert paired_table(summarize(lm("greedy", 2, [35.0]) + lm("sleb", 2, [36.0]))) == ""  # one seed: no pairs


def test_a_distilled_row_is_paired_with_glps_distilled_row_and_a_seed_lost_is_left_out():
    def rows(strategy, scores, seeds=(42, 43, 44)):
        return [dict(r, seed=seed) for r, seed in zip(_rec("rte", strategy, 2, scores), seeds, strict=True)]

    records = (rows("greedy", [0.60, 0.60, 0.60]) + rows("top", [0.50, 0.50, 0.50])
               + rows("greedy (distilled, teacher init)", [0.70, 0.70, 0.70])
               + rows("top (distilled, teacher init)", [0.65, 0.75, 0.65], seeds=(42, None, 44)))
    table = paired_table(summarize(records))
    assert "| RTE | 2 | top | 3 | 3/0/0 | +10.00 |" in table
    assert "| RTE | 2 | top (distilled, teacher init) | 2 | 2/0/0 | +5.00 |" in table  # seed None: no pair
    assert "greedy (distilled, teacher init) | 3" not in table  # GLP's distilled row is a reference, not a rival


def test_the_sign_test_of_the_paired_table_is_the_exact_binomial_one(tmp_path):
    from scipy.stats import binomtest

    records = []
    for i, task in enumerate(("rte", "mrpc", "cola", "sst2", "stsb")):  # GLP ahead of Top on 5 tasks of 5
        records += _rec(task, "greedy", 1, [0.7 + i / 100, 0.71]) + _rec(task, "top", 1, [0.6, 0.6])
    s = summarize(records)
    assert f"| top | 5 | 5/0/0 | 10/0/0 | {binomtest(5, 5, 0.5).pvalue:.3f} |" in paired_table(s)
    write_outputs({"summary": s, "seeds": [42, 43], "records": records, "model": "m"}, tmp_path)
    assert "## Paired by seed" in (tmp_path / "table.md").read_text()


def test_glue_score_excludes_wnli_and_custom_tasks_use_the_mean():
    s = summarize(_rec("wnli", "baseline", 0, [0.1]) + _rec("cola", "baseline", 0, [0.5]))
    assert s["rows"][0]["score"] == pytest.approx(0.5)
    s = summarize(_rec("toy", "baseline", 0, [0.4]) + _rec("rte", "baseline", 0, [0.6]))
    assert s["score_name"] == "Mean" and s["rows"][0]["score"] == pytest.approx(0.5)


def test_evaluate_runs_resumes_and_keeps_its_own_keys(tiny_run, tmp_path):
    plan = RunDir(tiny_run).load_plan()
    cfg = EvalConfig(
        run_dirs=(str(tiny_run),),
        out=str(tmp_path / "ev"),
        ns=(1,),
        patterns=("bottom",),
        seeds=2,
        hparams={"num_train_epochs": 1},
    )
    events = []
    res = evaluate(cfg, on_event=lambda e, **i: events.append((e, i)))
    rows = res["summary"]["rows"]
    assert [(r["strategy"], r["n"]) for r in rows] == [("baseline", 0), ("greedy", 1), ("bottom", 1)]
    assert rows[1]["cells"]["toy"]["removed"] == plan.layers_to_remove(1)
    assert rows[2]["cells"]["toy"]["removed"] == [0]
    assert all(len(r["cells"]["toy"]["scores"]) == 2 for r in rows) and rows[0]["rel"] == pytest.approx(100)
    assert res["tasks"]["toy"]["data"]["train_rows"] == 240 and res["tasks"]["toy"]["data"]["dev_rows"] == 60
    for f in ("table.md", "evaluation.csv", "evaluation.json", "trials.sqlite"):
        assert (tmp_path / "ev" / f).exists()
    assert json.loads((tmp_path / "ev" / "evaluation.json").read_text())["summary"] == res["summary"]
    assert {(r["device"], r["precision"]) for r in res["records"]} == {("cpu", "fp32")}  # where and how each ran
    ran = sum(e == "trial_done" for e, _ in events)
    assert ran == len({(frozenset(r["cells"]["toy"]["removed"]), s) for r in rows for s in (42, 43)})

    con = sqlite3.connect(tmp_path / "ev" / "trials.sqlite")
    contexts = [json.loads(c) for (c,) in con.execute("SELECT context FROM trials")]
    keys = {k for (k,) in con.execute("SELECT key FROM trials")}
    con.close()
    assert all(c["protocol"] == "full-train/dev" for c in contexts)
    search = sqlite3.connect(tiny_run / "trials.sqlite")
    assert not keys & {k for (k,) in search.execute("SELECT key FROM trials")}
    search.close()

    # same command again: everything comes from the journal
    events.clear()
    again = evaluate(cfg, on_event=lambda e, **i: events.append((e, i)))
    assert not any(e == "trial_done" for e, _ in events)
    assert again["summary"] == res["summary"]


def test_evaluate_config_errors(tiny_run, tmp_path):
    with pytest.raises(ConfigError, match="RUN_DIR"):
        EvalConfig(out=str(tmp_path))
    with pytest.raises(ConfigError, match="--seeds"):
        EvalConfig(run_dirs=(str(tiny_run),), seeds=0)
    with pytest.raises(ConfigError, match="only 4 layers"):
        evaluate(EvalConfig(run_dirs=(str(tiny_run),), out=str(tmp_path / "e"), ns=(4,), patterns=("top",)))
    for bad in ("top:1", "random:x"):
        with pytest.raises(ConfigError, match="only random takes a seed"):
            evaluate(EvalConfig(run_dirs=(str(tiny_run),), out=str(tmp_path / "e"), ns=(1,), patterns=(bad,)))


def test_random_orders_of_several_seeds_are_rows_of_their_own(tiny_run):
    from glp.commands.evaluate import plan_jobs

    cfg = EvalConfig(run_dirs=(str(tiny_run),), ns=(2,), patterns=("random:0", "random:1", "random:2"))
    job = plan_jobs(cfg)[0]
    rows = {a.strategy: a.removed for a in job.arms if a.strategy.startswith("random")}
    assert rows == {"random:0": (2, 0), "random:1": (3, 0), "random:2": (1, 2)}  # each seed its own order


def test_the_same_strategy_from_two_runs_is_told_apart_by_its_run_given_as_folder_or_plan_file(tiny_run, tmp_path):
    """Two plans of one strategy are two rows, the second labelled with its run's name, whether the command line
    names the run directories, their plan files, or plan files kept in folders of their own."""
    from glp.commands.evaluate import plan_jobs

    other = tmp_path / "other"
    (other / "plans").mkdir(parents=True)
    plan = RunDir(tiny_run).plan_file()
    (other / "plans" / plan.name).write_text(plan.read_text())
    kept = tmp_path / "kept" / "sleb"
    kept.mkdir(parents=True)
    (kept / "plan.json").write_text(plan.read_text())
    for second, name in ((other, "other"), (other / "plans" / plan.name, "other"), (kept / "plan.json", "sleb")):
        job = plan_jobs(EvalConfig(run_dirs=(str(tiny_run), str(second)), ns=(1,)))[0]
        assert [a.strategy for a in job.arms] == ["baseline", "greedy", f"greedy ({name})"]


@pytest.mark.slow
def test_evaluate_in_worker_processes_matches_in_process(tiny_run, tmp_path):
    """--devices cpu,cpu runs the rows' fine-tunes in two worker processes; the numbers are the same."""
    common = dict(run_dirs=(str(tiny_run),), ns=(1,), seeds=2, hparams={"num_train_epochs": 1})
    local = evaluate(EvalConfig(out=str(tmp_path / "local"), **common))
    workers = []
    par = evaluate(
        EvalConfig(out=str(tmp_path / "par"), devices="cpu,cpu", **common),
        on_event=lambda e, **i: workers.append(i["result"].get("device")) if e == "trial_done" else None,
    )
    assert len(workers) == 4  # baseline and greedy n=1, two seeds each, none from the other journal
    scores = {(r["strategy"], r["seed"]): r["score"] for r in local["records"]}
    assert scores == {(r["strategy"], r["seed"]): r["score"] for r in par["records"]}
    with pytest.raises(ConfigError, match="--devices"):
        evaluate(EvalConfig(out=str(tmp_path / "bad"), devices="gpu0", **common))


def test_a_copy_of_the_plans_model_elsewhere_is_accepted_by_its_weights(tiny_setup, tiny_run, tmp_path):
    """A plan names the path its model had where it was searched; a copy at another path with the same weights is
    the same model (``--model``), one with other weights is refused, and a missing path says what to do."""
    import shutil

    from transformers import AutoConfig, BertForSequenceClassification

    from glp.commands.evaluate import plan_jobs
    from glp.models import ModelLoadError, from_record

    copy = tmp_path / "copy"
    shutil.copytree(tiny_setup / "model", copy)
    (job,) = plan_jobs(EvalConfig(run_dirs=(str(tiny_run),), out=str(tmp_path / "e"), model=str(copy)))
    assert job.source.path == str(copy)

    other = tmp_path / "other"
    shutil.copytree(tiny_setup / "model", other)
    BertForSequenceClassification(AutoConfig.from_pretrained(other)).save_pretrained(other)  # new random weights
    with pytest.raises(ConfigError, match=r"weights sha256:[0-9a-f]{64}.*one model at a time"):
        plan_jobs(EvalConfig(run_dirs=(str(tiny_run),), out=str(tmp_path / "e"), model=str(other)))

    record = {**RunDir(tiny_run).load_plan().model, "source": str(tmp_path / "gone"), "path": str(tmp_path / "gone")}
    with pytest.raises(ModelLoadError, match=r"does not exist; .*weights sha256:.*glp evaluate --model PATH"):
        from_record(record)


def test_a_compared_model_is_a_row_fine_tuned_with_the_runs_protocol(tiny_setup, tiny_run, tmp_path, capsys):
    """--compare: a ready-made smaller model (here: the tiny BERT with two layers dropped, its own tokenizer)
    fine-tuned with the same data, hyper-parameters and seeds; journaled; in the table; a model that does not fit
    the task is one line."""
    from glp.cli import main
    from glp.commands.drop import drop_and_save

    small = tmp_path / "small"
    drop_and_save(str(tiny_setup / "model"), [0, 1], small)
    cfg = EvalConfig(run_dirs=(str(tiny_run),), ns=(1,), seeds=1, compare=(str(small),), out=str(tmp_path / "e"))
    result = evaluate(cfg)
    rows = [r for r in result["records"] if r.get("compare")]
    assert len(rows) == 1 and rows[0]["compare"]["layers"] == 2 and rows[0]["n"] == 2  # 4 - 2 layers
    assert rows[0]["strategy"].startswith(f"{small} (2 layers, ") and rows[0]["score"] is not None
    from glp import models
    from glp.tasks import Task

    task = Task.from_dict(RunDir(tiny_run).load_plan().task)
    full, fewer = models.count_parameters(str(tiny_setup / "model"), task, [(), (0, 1)])
    assert rows[0]["compare"]["parameters"] == fewer < full  # the 2-layer model with the task's head
    table = (tmp_path / "e" / "table.md").read_text()
    assert f"{small} (2 layers" in table
    seen = []
    again = evaluate(cfg, on_event=lambda e, **i: seen.append((e, i)))
    assert [i["cached"] == i["total"] for e, i in seen if e == "trials_start"] == [True, True]  # all from the journal
    assert [r["score"] for r in again["records"]] == [r["score"] for r in result["records"]]
    bare = tmp_path / "bare"  # weights and config, no tokenizer files: it cannot read the task's text
    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(small).save_pretrained(bare)
    args = ["evaluate", str(tiny_run), "--n", "1", "--seeds", "1", "--compare", str(bare), "--out", str(tmp_path / "x")]
    with pytest.raises(SystemExit) as done:
        main(args)
    err = capsys.readouterr().err
    assert done.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error:") and "has no tokenizer files" in err


def test_a_plan_kept_without_its_journal_reads_its_data_from_the_recorded_folder(tiny_run, tmp_path):
    """A plan file copied out of its run (as docs/results keeps them) has no journaled settings: its data is read
    from the local folder the plan records, while that folder exists, else located by the task's name."""
    from glp.commands.evaluate import plan_jobs

    doc = json.loads(RunDir(tiny_run).plan_file().read_text())
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    kept = tmp_path / "kept" / "greedy"
    kept.mkdir(parents=True)
    for source, data_dir in ((f"glue-dir:{tmp_path / 'glue' / 'SST-2'}", str(tmp_path / "glue")), ("hub:x", None)):
        (kept / "plan.json").write_text(json.dumps({**doc, "data": {**doc["data"], "source": source}}))
        (job,) = plan_jobs(EvalConfig(run_dirs=(str(kept / "plan.json"),), ns=(1,)))
        assert job.spec.data_dir == data_dir and job.spec.train_file is None
        assert ("recorded source" in job.notes[0]) == (data_dir is not None), job.notes
