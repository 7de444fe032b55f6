"""The public API mirrors the CLI: the same commands, the same settings, the same results."""

import inspect
import json

import pytest
from conftest import tiny_prune_config

import glp
from glp.errors import ConfigError
from glp.trial.hparams import HParams


def test_api_names_are_the_commands():
    import glp.api
    import glp.commands.export
    import glp.commands.profile
    import glp.commands.report
    import glp.layers
    import glp.plan

    assert glp.export is glp.commands.export.export and glp.profile is glp.commands.profile.profile
    assert glp.report is glp.commands.report.report
    assert glp.drop_layers is glp.layers.drop_layers and glp.Plan is glp.plan.Plan
    assert glp.prune is glp.api.prune and glp.evaluate is glp.api.evaluate
    for name in ("prune", "evaluate", "export", "profile", "report", "drop_layers", "Plan"):
        assert inspect.getdoc(getattr(glp, name)), f"glp.{name} has no documentation"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        glp.nothing  # noqa: B018


def test_prune_settings_are_the_flags(tiny_setup, tmp_path):
    """glp.prune(model, **flags) builds the PruneConfig the CLI builds; the plan is the CLI's plan."""
    from glp.cli import main

    hp = HParams(learning_rate=1e-3, num_train_epochs=4.0, per_device_train_batch_size=16, max_seq_length=32)
    cfg = tiny_prune_config(tiny_setup, tmp_path / "api", max_remove=1, hparams=hp)
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("model", "hparams")}
    plan = glp.prune(cfg.model, **settings, **cfg.hparams.to_dict())
    with pytest.raises(SystemExit) as done:
        main([
            "prune", cfg.model, "--task", "toy", "--train-file", cfg.train_file, "--dev-file", cfg.dev_file,
            "--text-columns", "text", "--label-column", "label", "--metric", "accuracy", "--max-remove", "1",
            "--learning-rate", "1e-3", "--num-train-epochs", "4", "--per-device-train-batch-size", "16",
            "--max-seq-length", "32", "--out", str(tmp_path / "cli"),
        ])
    assert done.value.code in (0, None)
    cli_plan = json.loads((tmp_path / "cli" / "plan.json").read_text())
    assert plan.order == cli_plan["order"] and plan.searched_max == 1
    got = [(c.mean, c.eval_loss) for c in plan.steps[0].candidates]
    assert [(c["mean"], c["eval_loss"]) for c in cli_plan["steps"][0]["candidates"]] == got
    assert len({loss for _, loss in got}) == len(got)  # the candidates differ: the comparison can fail
    assert glp.prune(cfg).order == plan.order  # a whole PruneConfig works too (from the journal)
    with pytest.raises(ConfigError, match="unknown setting"):
        glp.prune(cfg.model, no_such_flag=1)
    with pytest.raises(TypeError, match="either a PruneConfig or settings"):
        glp.prune(cfg, max_remove=2)


def test_evaluate_takes_the_flags(tiny_run, tmp_path):
    result = glp.evaluate(tiny_run, n=[1], seeds=1, num_train_epochs=1.0, out=str(tmp_path / "eval"))
    rows = {(r["strategy"], r["n"]) for r in result["records"]}
    assert ("greedy", 1) in rows and (tmp_path / "eval" / "evaluation.json").exists()
    assert {meta["hparams"]["num_train_epochs"] for meta in result["tasks"].values()} == {1.0}
    assert len(result["records"]) == 2  # the baseline and n = 1, one seed each


def test_load_plan_reads_a_run_directory_or_a_plan_file(tiny_run):
    from glp.errors import RunDirError
    from glp.run.rundir import RunDir

    run = RunDir(tiny_run)
    latest = glp.load_plan(tiny_run)
    assert latest.to_dict() == glp.load_plan(run.plan_path).to_dict() == run.load_plan().to_dict()
    assert glp.load_plan(tiny_run, "greedy").strategy["name"] == "greedy"
    with pytest.raises(RunDirError, match="is a directory: read a run directory's plan with glp.load_plan"):
        glp.Plan.load(tiny_run)
