"""Warm start (--init parent): candidates start from the previous step's trained winner."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_prune_config
from safetensors.torch import load_file

from glp.commands.prune import PruneConfig, open_session, prune
from glp.errors import ConfigError
from glp.run.rundir import RunDir
from glp.run.store import trial_key
from glp.trial.hparams import HParams
from glp.trial.loop import num_steps
from glp.trial.scoring import Trial

HP = HParams(learning_rate=1e-3, num_train_epochs=2.0, per_device_train_batch_size=16, max_seq_length=32, heal_steps=3)


def _config(root, out, **kw):
    return tiny_prune_config(root, out, init="parent", hparams=HP, **kw)


def _summary(plan):
    return plan.removals, [[(c.removed, c.mean, c.eval_loss) for c in s.candidates] for s in plan.steps]


def test_a_parent_search_keeps_winners_trains_short_and_says_so(tiny_setup, tmp_path):
    plan = prune(_config(tiny_setup, tmp_path / "run"))
    assert plan.complete and plan.strategy["init"] == "parent" and sorted(plan.removals) == [1, 2]
    run = RunDir(tmp_path / "run")
    kept = {n: run.path / p for n, p in plan.strategy["parents"].items()}
    assert sorted(kept) == ["1", "2"] and all(p.is_file() for p in kept.values())
    # the winners stay, the losers go: the baseline (parent of step 1) and one model per step
    assert len(list((run.cache_dir / "parents").glob("*.safetensors"))) == 3
    with run.journal(lock=False) as store:
        steps = {tuple(r["removed"]): r["steps"] for r in store.results()}
    rows = plan.data["search_train"]
    assert steps[()] == num_steps(rows, 16, 2.0)[1] > HP.heal_steps  # the first parent: the whole schedule
    assert all(v == HP.heal_steps for k, v in steps.items() if k)  # every candidate: --heal-steps from its parent
    # step 2's candidates extend step 1's winner, in order
    first = plan.removals[1][0]
    assert all(c.removed[0] == first and len(c.removed) == 2 for c in plan.steps[1].candidates)


def test_a_candidate_is_its_parent_with_one_layer_less(tiny_setup, tmp_path):
    prune(_config(tiny_setup, tmp_path / "run", max_remove=1))
    cfg = _config(tiny_setup, tmp_path / "run", max_remove=1)
    session = open_session(cfg, cache_dir=RunDir(tmp_path / "run").cache_dir)
    parents = session.spec.parents
    parent = load_file(str(parents.path((), 42)))
    child = session.spec.trial((2,), 42)
    assert child.model.config.num_hidden_layers == 3
    state = child.model.state_dict()
    # the fine-tuned embeddings and head, not the pre-trained ones; blocks 3 -> 2 moved down one place
    emb = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(state[emb], parent[emb])
    assert torch.equal(state["classifier.weight"], parent["classifier.weight"])
    key = "bert.encoder.layer.{}.attention.self.query.weight"
    assert torch.equal(state[key.format(2)], parent[key.format(3)])
    assert torch.equal(state[key.format(1)], parent[key.format(1)])
    fresh = Trial(session.spec.model, (2,), session.trial_data, HP, 42)
    assert not torch.equal(fresh.model.state_dict()["classifier.weight"], parent["classifier.weight"])


def test_a_killed_parent_search_resumes_to_the_same_plan(tiny_setup, tmp_path, monkeypatch):
    straight = prune(_config(tiny_setup, tmp_path / "straight"))
    calls = {"n": 0}
    real = Trial.advance

    def dies_at_the_fifth(self, budget, progress=None):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # killed mid-search, in step 1
        return real(self, budget, progress)

    monkeypatch.setattr(Trial, "advance", dies_at_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        prune(_config(tiny_setup, tmp_path / "killed"))
    monkeypatch.setattr(Trial, "advance", real)
    resumed = prune(_config(tiny_setup, tmp_path / "killed"))
    assert resumed.cost["trials_reused"] == 4
    assert _summary(resumed) == _summary(straight)


@pytest.mark.slow
def test_worker_processes_read_the_parents(tiny_setup, tmp_path):
    local = prune(_config(tiny_setup, tmp_path / "local"))
    workers = prune(_config(tiny_setup, tmp_path / "workers", devices=("cpu", "cpu")))
    assert _summary(workers) == _summary(local)


@pytest.mark.slow
def test_ray_actors_get_the_parents_through_the_object_store(ray_local, tiny_setup, tmp_path, monkeypatch):
    """A warm-started search on 2 Ray actors gives the in-process plan and leaves the winners on the driver's disk.
    With early rejection, so that candidates are continued on the actor that holds them."""
    import glp.run.executors as ex

    made = []
    real = ex.make_executor
    monkeypatch.setattr(ex, "make_executor", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    kw = {"halving": True, "rungs": 2, "eta": 2}
    local = prune(_config(tiny_setup, tmp_path / "local", **kw))
    ray = prune(_config(tiny_setup, tmp_path / "ray", executor="ray", devices=("cpu", "cpu"), **kw))
    assert _summary(ray) == _summary(local)
    assert made[-1].stats["continued"] >= 1
    run = RunDir(tmp_path / "ray")
    assert all((run.path / p).is_file() for p in ray.strategy["parents"].values())  # on the driver's disk
    assert len(list((run.cache_dir / "parents").glob("*.safetensors"))) == 3  # the winners only


@pytest.mark.slow
def test_a_ray_actor_trains_from_the_parents_it_is_sent_not_from_the_drivers_disk(ray_local, tiny_setup, tmp_path):
    """The actor (run here in-process) of a node without the driver's disk: it never touches the driver's parents
    folder, trains each candidate from the parent sent through the object store to the in-process search's
    scores, and sends back what it kept."""
    from glp.run.executors.ray import _RayWorker
    from glp.trial.parents import Parents

    cfg = _config(tiny_setup, tmp_path / "run", max_remove=1)
    plan = prune(cfg)  # in-process: the reference
    run = RunDir(tmp_path / "run")
    with run.journal(lock=False) as store:
        scores = {tuple(r["removed"]): r["score"] for r in store.results()}
    spec = open_session(cfg, cache_dir=run.cache_dir).spec
    elsewhere = tmp_path / "the-drivers-disk-is-not-here"
    actor = _RayWorker(dataclasses.replace(spec, parents=Parents(str(elsewhere), spec.parents.context)), "cpu", None)
    result, _, _, unpruned = actor.run((), 42, 1.0)
    assert result["score"] == scores[()] and unpruned == spec.parents.path((), 42).read_bytes()
    layer = plan.removals[1][0]
    result, _, _, trained = actor.run((layer,), 42, 1.0, [ray_local.put(unpruned)])
    assert result["score"] == scores[(layer,)] and trained
    assert not elsewhere.exists()
    actor.clean_up()
    assert not Path(actor.parents.local.directory).exists()


def test_a_ray_actor_holds_one_step_of_parents(tmp_path):
    """An actor's folder keeps the parents of the step it works on: a deeper parent's arrival deletes the shallower
    ones, and a trained model leaves the folder as it is sent back."""
    from glp.trial.parents import Parents, ParentsInTransit

    transit = ParentsInTransit(Parents(str(tmp_path / "driver"), {"run": 1}))
    folder = Path(transit.local.directory)
    assert folder != tmp_path / "driver" and not (tmp_path / "driver").exists()
    transit.receive((3,), 42, b"unpruned")  # step 1's candidates start from the fine-tuned unpruned model
    transit.receive((2,), 42, b"ignored")  # the same parent again: already there
    assert transit.local.path((), 42).read_bytes() == b"unpruned"
    transit.local.path((3,), 42).write_bytes(b"trained")  # the trial of {3} kept its model
    assert transit.send((3,), 42) == b"trained" and transit.send((3,), 42) is None
    transit.receive((3, 1), 42, b"winner of step 1")
    assert sorted(f.read_bytes() for f in folder.glob("*.safetensors")) == [b"winner of step 1"]
    transit.receive((2,), 43, None)  # no parent sent: nothing written
    assert len(list(folder.glob("*"))) == 1
    transit.clean_up()  # the actor is stopped
    assert not folder.exists()


def test_parent_keys_never_meet_pretrained_keys(tiny_setup, tmp_path):
    cfg = tiny_prune_config(tiny_setup, tmp_path / "p", hparams=HP)
    pre = open_session(cfg).context
    warm = open_session(dataclasses.replace(cfg, init="parent")).context
    assert "init" not in pre and warm == {**pre, "init": "parent"}  # the pre-trained keys are the old ones
    assert trial_key(pre, (3, 1), 42, 1.0) == trial_key(pre, (1, 3), 42, 1.0)  # a set, for the pre-trained init
    assert trial_key(warm, (3, 1), 42, 1.0) != trial_key(warm, (1, 3), 42, 1.0)  # the order names the parent
    assert trial_key(warm, (3,), 42, 1.0) != trial_key(pre, (3,), 42, 1.0)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"strategy": "beam"}, "needs a nested strategy"),
        ({"strategy": "optimal"}, "needs a nested strategy"),
        ({"hparams": dataclasses.replace(HP, heal_steps=None)}, "--heal-steps"),
        ({"hparams": dataclasses.replace(HP, heal="none")}, "--heal full or lora"),
        ({"baseline": False}, "keep --baseline"),
        ({"init": "sideways"}, "unknown --init 'sideways'"),
    ],
)
def test_settings_a_warm_start_cannot_use_are_refused(tiny_setup, tmp_path, change, message):
    base = {**dataclasses.asdict(tiny_prune_config(tiny_setup, tmp_path / "r")), "init": "parent", "hparams": HP}
    base.pop("strategy_settings")
    with pytest.raises(ConfigError, match=message):
        PruneConfig(**{**base, **change})


def test_progress_says_which_model_a_step_starts_from(tiny_setup, tmp_path):
    from glp.cli.progress import SearchProgress

    seen = []
    plan = prune(_config(tiny_setup, tmp_path / "run"), on_event=lambda e, **i: seen.append((e, i)))
    starts = [i for e, i in seen if e == "step_start"]
    assert [s["parent"] for s in starts] == [[], plan.removals[1]]
    progress = SearchProgress(2)
    assert progress.line("step_start", starts[0]).endswith("candidates, from the fine-tuned unpruned model")
    assert progress.line("step_start", starts[1]).endswith(f"from the winner that removes {plan.removals[1]}")


def test_export_ships_the_model_the_warm_start_trained(tiny_setup, tmp_path):
    """Without --finetune, `glp export` of a warm-started run writes the search's own model for n; it loads with
    plain transformers, in a process without glp."""
    import subprocess
    import sys

    from glp.commands.export import export

    plan = prune(_config(tiny_setup, tmp_path / "run"))
    export(tmp_path / "run", 2, tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "pruning.json").read_text())
    assert manifest["search_model"].endswith(plan.strategy["parents"]["2"].split("/")[-1])
    assert manifest["finetuned"] is False and "warm-started search" in manifest["head"]
    card = (tmp_path / "model" / "README.md").read_text()
    assert "the model the warm-started search (`glp prune --init parent`) trained" in card
    assert "untrained" not in card.lower().split("## how it was made")[0]
    saved = load_file(str(tmp_path / "run" / plan.strategy["parents"]["2"]))
    code = (
        "import sys, torch, transformers\n"
        "m = transformers.AutoModelForSequenceClassification.from_pretrained(sys.argv[1])\n"
        "print(m.config.num_hidden_layers, float(m.classifier.weight.sum()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model")], capture_output=True, text=True)
    layers, head = out.stdout.split()
    assert int(layers) == 2 and float(head) == pytest.approx(float(saved["classifier.weight"].sum()), abs=1e-6)


def test_a_final_fine_tune_of_a_warm_started_run_trains_the_whole_schedule(tiny_setup, tmp_path):
    """`glp evaluate` (and `export --finetune`) of a warm-started run alone: the plan's --heal-steps was each
    candidate's budget from its parent, not the final fine-tune's; the rows start from the pre-trained weights and
    train every step of the schedule, as with the paper's plans."""
    from glp.commands.evaluate import EvalConfig, evaluate
    from glp.plan import Plan

    plan = prune(_config(tiny_setup, tmp_path / "run"))
    assert plan.hparams["heal_steps"] == HP.heal_steps and "heal_steps" not in plan.final_hparams()
    paper = dataclasses.replace(plan, strategy={**plan.strategy, "init": "pretrained"})
    assert Plan.final_hparams(paper)["heal_steps"] == HP.heal_steps  # (an LLM's heal: the final heal's budget too)
    evaluate(EvalConfig(run_dirs=(str(tmp_path / "run"),), out=str(tmp_path / "e"), ns=(1,), seeds=1))
    with RunDir(tmp_path / "e").journal(lock=False) as store:
        results = list(store.results())
    assert results and all(r["steps"] > HP.heal_steps for r in results), [r["steps"] for r in results]
