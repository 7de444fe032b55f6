"""The command line end to end: every command's happy path through typer's CliRunner on the tiny model and toy task
of conftest.py, and the typical user errors through ``main``: exit code 2, one ``error:`` line, no traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from glp.cli import app, main
from glp.run.rundir import RunDir

WIDE = {"COLUMNS": "200"}  # rich tables are not cut at 80 columns


def invoke(*args: str):
    """Run ``glp ARGS`` in-process; the result has stdout and stderr apart."""
    result = CliRunner().invoke(app, [str(a) for a in args], env=WIDE)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def fails(capsys, *args: str) -> str:
    """Run ``glp ARGS`` as the console script does; it must fail as a user error: exit code 2 and a single line
    ``error: ...`` on stderr (no traceback). Returns that line, its whitespace joined."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert exc.value.code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return " ".join(lines[0].split())


def _toy_flags(root) -> list[str]:
    """The toy task's data and fast fine-tuning flags (conftest.tiny_prune_config, as flags)."""
    return [
        "--task", "toy", "--train-file", root / "train.csv", "--dev-file", root / "dev.csv", "--text-columns", "text",
        "--label-column", "label", "--metric", "accuracy", "--learning-rate", "1e-3", "--num-train-epochs", "1",
        "--per-device-train-batch-size", "16", "--max-seq-length", "32",
    ]  # fmt: skip


def test_help_lists_the_commands():
    out = invoke("--help").stdout
    for command in ("prune", "show", "export", "evaluate", "profile", "report", "drop"):
        assert command in out
    assert "--max-remove" in invoke("prune", "--help").stdout


# --------------------------------------------------------------------------------------------- prune


def test_prune_writes_the_plan_and_prints_it(tiny_setup, tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "c.yaml"
    config.write_text("max-remove: 3\nseed: 7\n")  # the file's settings, the command line's win
    res = invoke("prune", tiny_setup / "model", *_toy_flags(tiny_setup), "--max-remove", "1", "--out", out,
                 "--config", config)  # fmt: skip
    plan = RunDir(out).load_plan()
    assert plan.complete and list(plan.removals) == [1] and len(plan.steps[0].candidates) == 4
    assert plan.task["name"] == "toy" and plan.baseline["mean"] is not None
    assert plan.strategy["search_seeds"] == [7] and plan.data["split_seed"] == 7  # the file's seed is used
    text = " ".join(res.stdout.split())
    assert "greedy on toy (accuracy, search split)" in text and "4 layers" in text
    assert f"1 │ {plan.removals[1][0]} │ 3 │ {plan.steps[0].chosen_mean:.4f}" in text
    assert f"plan written to {out / 'plan.json'}" in text
    # no terminal: one progress line per event, on stderr
    assert "step 1/1: 4 candidates" in res.stderr and "baseline (with the first batch) trial 1/5" in res.stderr
    assert "step 1/1 trial 5/5: remove" in res.stderr
    assert f"step 1 done: remove {plan.removals[1]}" in res.stderr


def test_prune_errors(tiny_setup, tmp_path, capsys):
    model, out = tiny_setup / "model", tmp_path / "r"
    assert "no model given" in fails(capsys, "prune", "--task", "rte", "--out", out)
    assert "no task given" in fails(capsys, "prune", model, "--out", out)
    line = fails(capsys, "prune", model, "--task", "nope", "--out", out)
    assert "nope" in line and "rte" in line  # names the known tasks
    line = fails(capsys, "prune", model, *_toy_flags(tiny_setup), "--strategy", "nope", "--out", out)
    assert "nope" in line and "greedy" in line
    assert "comma separated integers" in fails(capsys, "prune", model, *_toy_flags(tiny_setup), "--keep", "x")
    assert "does not exist" in fails(capsys, "prune", model, "--config", tmp_path / "missing.yaml")
    assert not (out / "plan.json").exists()


# ---------------------------------------------------------------------------------------------- show


def test_show_prints_the_plan_and_a_chosen_n(tiny_run):
    plan = RunDir(tiny_run).load_plan()
    text = " ".join(invoke("show", tiny_run).stdout.split())
    assert "greedy on toy (accuracy, search split)" in text and "chosen" not in text
    for n in (1, 2):
        removed = ",".join(map(str, plan.removals[n]))
        assert f"{n} │ {removed} │ {4 - n} │ {plan.steps[n - 1].chosen_mean:.4f}" in text
    text = " ".join(invoke("show", tiny_run, "--min-speedup", "1.3").stdout.split())
    assert "2 ←" in text and "chosen: --min-speedup 1.3: n = 2" in text


def test_show_errors(tiny_run, tmp_path, capsys):
    assert "no plan" in fails(capsys, "show", tmp_path / "nothing")
    assert "--max-drop 'x'" in fails(capsys, "show", tiny_run, "--max-drop", "x")
    assert "beam" in fails(capsys, "show", tiny_run, "--strategy", "beam")


# -------------------------------------------------------------------------------------------- export


def test_export_removes_the_plans_layers(tiny_run, tmp_path):
    plan = RunDir(tiny_run).load_plan()
    out = tmp_path / "x"
    text = " ".join(invoke("export", tiny_run, "--remove", "2", "--out", out).stdout.split())
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2
    manifest = json.loads((out / "pruning.json").read_text())
    assert sorted(manifest["removed_layers"]) == sorted(plan.removals[2])
    assert f"removed layers {manifest['removed_layers']}: 4 → 2 layers, {manifest['parameters']:,} parameters" in text
    assert "note: the head is" in text and f"saved to {out}" in text
    # by a target: the largest n whose estimated speed-up is at least 1.3 (4 / 2 layers)
    text = " ".join(invoke("export", tiny_run, "--min-speedup", "1.3", "--out", tmp_path / "y").stdout.split())
    assert "chosen: --min-speedup 1.3: n = 2" in text
    assert json.loads((tmp_path / "y" / "config.json").read_text())["num_hidden_layers"] == 2


def test_export_with_a_fine_tune_prints_its_progress_and_metrics(tiny_run, tmp_path):
    out = tmp_path / "ft"
    res = invoke("export", tiny_run, "--remove", "1", "--finetune", "--out", out, "--max-train-samples", "32",
                 "--num-train-epochs", "1")  # fmt: skip
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 3
    assert "fine-tune step 2/2, loss" in res.stdout  # 32 rows, batch 16: the last step is always shown
    metrics = json.loads((out / "pruning.json").read_text())["metrics"]
    (split, values), = metrics.items()  # fmt: skip
    assert f"{split}: accuracy={values['accuracy']:.4f}" in res.stdout and "note:" not in res.stdout


def test_export_errors(tiny_run, tmp_path, capsys):
    out = tmp_path / "x"
    assert "say how many layers" in fails(capsys, "export", tiny_run, "--out", out)
    assert "not both" in fails(capsys, "export", tiny_run, "--remove", "1", "--max-drop", "1%", "--out", out)
    assert "n=5" in fails(capsys, "export", tiny_run, "--remove", "5", "--out", out)
    assert "no plan" in fails(capsys, "export", tmp_path / "nothing", "--remove", "1", "--out", out)
    assert not out.exists()


# ------------------------------------------------------------------------------------------ evaluate


def test_evaluate_prints_the_table(tiny_run, tmp_path):
    plan = RunDir(tiny_run).load_plan()
    out = tmp_path / "ev"
    res = invoke("evaluate", tiny_run, "--n", "1", "--seeds", "1", "--out", out, "--max-train-samples", "32",
                 "--num-train-epochs", "1")  # fmt: skip
    assert "toy: 2 trials (0 from the journal)" in res.stdout
    assert "[1/2] remove - seed 42" in res.stdout and f"[2/2] remove {plan.removals[1]} seed 42" in res.stdout
    first = next(line for line in res.stdout.splitlines() if "[1/2]" in line)
    last = next(line for line in res.stdout.splitlines() if "[2/2]" in line)
    assert re.search(r"; about \d+ (s|min) left$", first) and "left" not in last  # the time the rest should take
    printed = [line for line in res.stdout.splitlines() if line.startswith("|")]
    assert printed[0].startswith("| Method | n | toy (accuracy) |")
    assert [line.split("|")[1:3] for line in printed[2:]] == [[" baseline ", " 0 "], [" greedy ", " 1 "]]
    assert "\n".join(printed) in (out / "table.md").read_text()  # the file's first table
    assert f"written to {out}/table.md, evaluation.csv, evaluation.json" in res.stdout
    assert "one seed" not in res.stdout  # no other row to set GLP against
    rows = json.loads((out / "evaluation.json").read_text())["summary"]["rows"]
    assert [(r["strategy"], r["n"]) for r in rows] == [("baseline", 0), ("greedy", 1)]


def test_evaluate_prints_glp_against_the_other_rows_by_seed(tiny_run, tmp_path):
    res = invoke("evaluate", tiny_run, "--n", "2", "--seeds", "2", "--pattern", "bottom", "--out", tmp_path / "ev",
                 "--max-train-samples", "32", "--num-train-epochs", "1")  # fmt: skip
    assert "GLP (greedy) against each row of the same n, paired by seed" in res.stdout
    row = next(line for line in res.stdout.splitlines() if line.startswith("| toy | 2 | bottom | 2 | "))
    assert re.fullmatch(r"\| toy \| 2 \| bottom \| 2 \| \d/\d/\d \| [+-]\d+\.\d\d \|", row)
    res = invoke("evaluate", tiny_run, "--n", "2", "--seeds", "1", "--pattern", "bottom", "--out", tmp_path / "ev1",
                 "--max-train-samples", "32", "--num-train-epochs", "1")  # fmt: skip
    assert "one seed: with --seeds 2 or more, GLP is set against the other rows of its n seed by seed" in res.stdout


def test_evaluate_errors(tiny_run, tmp_path, capsys):
    assert "give RUN_DIR" in fails(capsys, "evaluate", "--out", tmp_path / "e")
    assert "--n takes comma separated integers" in fails(capsys, "evaluate", tiny_run, "--n", "a")
    assert "--seeds must be at least 1" in fails(capsys, "evaluate", tiny_run, "--seeds", "0")
    assert "dask" in fails(capsys, "evaluate", tiny_run, "--executor", "dask", "--out", tmp_path / "e")


# ------------------------------------------------------------------------------------------- profile


def test_profile_times_every_n_of_the_plan(tiny_run, tmp_path):
    path = tmp_path / "prof.json"
    res = invoke("profile", tiny_run, "--repeats", "1", "--warmup", "0", "--no-gpu", "--seq-len", "16", "--out", path)
    rows = json.loads(path.read_text())["rows"]
    assert [r["layers"] for r in rows] == [4, 3, 2] and rows[0]["params"] > rows[1]["params"] > rows[2]["params"]
    assert "greedy n=2" in res.stdout and "CPU speed-up" in res.stdout and f"written to {path}" in res.stdout


def test_profile_errors(tiny_run, tmp_path, capsys):
    assert "comma separated integers" in fails(capsys, "profile", tiny_run, "--remove", "x")
    assert "does not exist" in fails(capsys, "profile", tmp_path / "nothing", "--no-gpu")


# -------------------------------------------------------------------------------------------- report


def test_report_writes_its_files(tiny_run, tmp_path):
    out = tmp_path / "rep"
    res = invoke("report", tiny_run, "--out", out, "--title", "CLI test")
    assert f"wrote {out / 'report.md'}" in res.stdout and f"wrote {out / 'tradeoff.png'}" in res.stdout
    assert "CLI test" in (out / "report.md").read_text() and not (out / "report.html").exists()


def test_report_errors(tiny_run, tmp_path, capsys):
    assert "--out" in fails(capsys, "report", tiny_run, tiny_run)
    assert "no evaluation" in fails(capsys, "report", tiny_run, "--out", tmp_path / "d", "--evaluation", tmp_path)
    assert "write OLD=NEW" in fails(capsys, "report", tiny_run, "--out", tmp_path / "d", "--label", "top")


# ---------------------------------------------------------------------------------------------- drop


def test_drop_saves_a_smaller_model(tiny_setup, tmp_path):
    out = tmp_path / "dropped"
    text = " ".join(invoke("drop", tiny_setup / "model", "--remove", "3,1", "--out", out).stdout.split())
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert "removed layers [1, 3]" in text and "layers │ 4 │ 2" in text and f"saved to {out}" in text


def test_drop_errors(tiny_setup, tmp_path, capsys):
    model, out = tiny_setup / "model", tmp_path / "dropped"
    assert "out of range" in fails(capsys, "drop", model, "--remove", "1,9", "--out", out)
    assert "comma separated integers" in fails(capsys, "drop", model, "--remove", "a,2", "--out", out)
    assert not out.exists()
    (out / "f").parent.mkdir()
    (out / "f").write_text("x")
    assert "--overwrite" in fails(capsys, "drop", model, "--remove", "1", "--out", out)


def test_python_dash_m_runs_the_cli(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "glp.cli", "show", str(tmp_path / "nothing")], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "no plan" in lines[0]
