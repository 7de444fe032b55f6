"""Distillation: the loss (plain at alpha = 1), one teacher per seed for every row, export --distill."""

from __future__ import annotations

import numpy as np
import pytest
import safetensors.torch
import torch

from glp.errors import ConfigError
from glp.kinds import kind_of
from glp.tasks import custom_task
from glp.trial.distill import TEACHER_KEY, DistillKind, DistillSettings


def _batch(logits_shape, labels):
    torch.manual_seed(0)
    return torch.randn(*logits_shape), {"labels": torch.as_tensor(labels), TEACHER_KEY: torch.randn(*logits_shape)}


def test_alpha_one_is_the_plain_loss_and_the_soft_term_vanishes_at_the_teacher():
    kind = kind_of(custom_task("t", ("text",), "label", num_labels=3))
    logits, batch = _batch((4, 3), [0, 2, 1, 1])
    plain = kind.loss_sum(logits, batch["labels"])
    assert torch.equal(DistillKind(kind, [], DistillSettings(alpha=1.0)).batch_loss(logits, batch), plain)
    half = DistillKind(kind, [], DistillSettings(alpha=0.5, temperature=2.0))
    assert not torch.allclose(half.batch_loss(logits, batch), plain)
    at_teacher = {**batch, TEACHER_KEY: logits.clone()}
    assert torch.allclose(half.batch_loss(logits, at_teacher), 0.5 * plain)  # KL(teacher || teacher) = 0
    reg = kind_of(custom_task("r", ("text",), "y", "spearman"))
    y, rb = _batch((4, 1), [0.1, 0.5, 0.2, 0.9])
    mse = DistillKind(reg, [], DistillSettings(alpha=0.0)).batch_loss(y, rb)
    assert torch.allclose(mse, ((y.view(-1) - rb[TEACHER_KEY].view(-1)) ** 2).sum())
    with pytest.raises(ConfigError, match="--distill-alpha"):
        DistillSettings(alpha=1.5)


def test_per_token_distillation_is_masked_like_the_labels():
    from glp.tasks import Task

    task = Task("ner", ("tokens",), "tags", 3, False, "entity-f1", ("O", "B-X", "I-X"), kind="token-classification")
    kind = DistillKind(kind_of(task), [], DistillSettings(alpha=0.0))
    logits, batch = _batch((2, 5, 3), [[-100, 1, 0, -100, -100], [-100, 2, 2, 0, -100]])
    masked = {**batch, TEACHER_KEY: batch[TEACHER_KEY].clone()}
    masked[TEACHER_KEY][batch["labels"] == -100] = 1e3  # where there is no label the teacher does not count
    assert torch.allclose(kind.batch_loss(logits, batch), kind.batch_loss(logits, masked))
    # the teacher's outputs are padded to the batch's width by collate
    from glp.data import Encoded

    table = Encoded([np.array([2, 5, 3]), np.array([2, 5, 6, 7, 3])], None,
                    [np.array([-100, 1, -100]), np.array([-100, 1, 2, 0, -100])])  # fmt: skip
    teacher = [np.ones((3, 3), np.float32), 2 * np.ones((5, 3), np.float32)]
    out = DistillKind(kind_of(task), teacher, DistillSettings()).collate(table, np.array([0, 1]), 0)
    assert out[TEACHER_KEY].shape == (2, 5, 3) and out[TEACHER_KEY][0, 3:].sum() == 0


def test_one_teacher_per_seed_serves_every_row(tiny_run, tmp_path, monkeypatch):
    import glp.trial.distill
    from glp.commands.evaluate import EvalConfig, evaluate
    from glp.trial.scoring import Trial

    calls = []
    real = Trial.advance

    def counted(self, budget, progress=None):
        calls.append((self.removed, self.seed, self.loop.kind.__class__.__name__))
        return real(self, budget, progress)

    monkeypatch.setattr(Trial, "advance", counted)
    cfg = EvalConfig(run_dirs=(str(tiny_run),), out=str(tmp_path / "eval"), seeds=1, distill=True)
    result = evaluate(cfg)
    teachers = [c for c in calls if c[0] == ()]
    assert teachers == [((), 42, "SequenceClassification")]  # fine-tuned once, for both rows (n = 1, 2)
    assert sorted(c[0] for c in calls if c[0]) == sorted([tuple(r["removed"]) for r in result["records"] if r["n"]])
    assert all(c[2] == "DistillKind" for c in calls if c[0])
    strategies = {r["strategy"]: r["distilled"] for r in result["records"]}
    assert strategies == {"baseline": False, "greedy (distilled, teacher init)": True}
    # again: the journal has every row, the teacher's outputs are on disk
    calls.clear()
    glp.trial.distill._TEACHERS.clear()
    again = evaluate(cfg)
    assert calls == [] and [r["score"] for r in again["records"]] == [r["score"] for r in result["records"]]


def test_export_distilled(tiny_run, tmp_path):
    import shutil

    import glp.trial.distill
    from glp.commands.export import export

    glp.trial.distill._TEACHERS.clear()  # (the evaluation above kept this teacher in memory: the same key)
    run = tmp_path / "run"  # a copy: the teacher's outputs are cached in the run directory
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns(".lock"))
    out = export(run, 1, tmp_path / "m", finetune=True, distill=DistillSettings(alpha=0.5, init="pretrained"))
    assert list((run / "cache" / "teachers").glob("*.npz")) and not list(
        (run / "cache" / "teachers").glob("*.safetensors")
    )
    assert out.manifest["distilled"] == {"alpha": 0.5, "temperature": 2.0}  # the pretrained init: its old key
    card = (tmp_path / "m" / "README.md").read_text()
    assert "distilled from the unpruned model" in card and "starting from the pruned pre-trained model" in card
    with pytest.raises(ConfigError, match="needs --finetune"):
        export(run, 1, tmp_path / "n", distill=DistillSettings())
    out = export(run, 1, tmp_path / "t", finetune=True, distill=DistillSettings())  # the default: teacher init
    assert out.manifest["distilled"]["init"] == "teacher" and list((run / "cache" / "teachers").glob("*.safetensors"))
    assert "starting from the teacher's own weights" in (tmp_path / "t" / "README.md").read_text()


def test_teacher_init_starts_the_student_from_the_fine_tuned_teacher(tiny_run, tmp_path, monkeypatch):
    """--distill-init teacher: the student is the teacher's fine-tuned weights with the plan's layers dropped (head
    included), kept next to its outputs; the pretrained init starts elsewhere. The rows say how they were made."""
    import shutil

    import glp.trial.distill
    from glp.commands.evaluate import EvalConfig, evaluate
    from glp.trial.scoring import Trial

    starts: dict[tuple[int, ...], dict[str, torch.Tensor]] = {}
    real = Trial.advance

    def capture(self, budget, progress=None):
        if self.removed and self.step == 0:
            starts[self.removed] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return real(self, budget, progress)

    monkeypatch.setattr(Trial, "advance", capture)
    glp.trial.distill._TEACHERS.clear()
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns(".lock"))
    cfg = EvalConfig(run_dirs=(str(run),), out=str(tmp_path / "eval"), seeds=1, distill=True)  # teacher: the default
    result = evaluate(cfg)
    (weights,) = (tmp_path / "eval" / "cache" / "teachers").glob("*.safetensors")
    teacher = safetensors.torch.load_file(weights)  # plain data: no pickle in what glp writes
    removed = next(tuple(r["removed"]) for r in result["records"] if r["n"] == 1)
    student = starts[removed]
    depth = len({k.split(".layer.")[1].split(".")[0] for k in teacher if ".layer." in k})
    kept = [i for i in range(depth) if i not in removed]
    checked = 0
    for name, value in student.items():
        parts = name.split(".")
        if ".layer." in name:  # encoder.layer.<new>.… holds the teacher's encoder.layer.<kept[new]>.…
            i = parts.index("layer") + 1
            parts[i] = str(kept[int(parts[i])])
        assert torch.equal(value, teacher[".".join(parts)]), name
        checked += 1
    assert checked == len(student) and any(k.startswith("classifier") for k in student)
    assert {r["strategy"] for r in result["records"]} == {"baseline", "greedy (distilled, teacher init)"}
    # the pretrained init starts from the pre-trained weights and a fresh head, not from the teacher
    starts.clear()
    again = evaluate(
        EvalConfig(run_dirs=(str(run),), out=str(tmp_path / "eval2"), seeds=1, distill=True, distill_init="pretrained")
    )
    assert {r["strategy"] for r in again["records"]} == {"baseline", "greedy (distilled, pretrained init)"}
    head = [k for k in starts[removed] if k.startswith("classifier")]
    assert not all(torch.equal(starts[removed][k], student[k]) for k in head)
    with pytest.raises(ConfigError, match="--distill-init"):
        DistillSettings(init="random")


@pytest.mark.slow
def test_teachers_are_fine_tuned_by_the_workers_side_by_side(tiny_run, tmp_path):
    """--devices cpu,cpu: the baseline's trials of both seeds run in the two worker processes and keep themselves
    as the teachers (outputs and weights in the cache); the main process fine-tunes none, and the rows score as
    they do in one process."""
    import glp.trial.distill
    from glp.commands.evaluate import EvalConfig, evaluate

    common = dict(run_dirs=(str(tiny_run),), ns=(1,), seeds=2, distill=True)
    glp.trial.distill._TEACHERS.clear()
    local = evaluate(EvalConfig(out=str(tmp_path / "local"), **common))
    glp.trial.distill._TEACHERS.clear()
    events = []
    par = evaluate(
        EvalConfig(out=str(tmp_path / "par"), devices="cpu,cpu", **common),
        on_event=lambda e, **i: events.append(
            (e, i.get("result", {}).get("removed"), i.get("result", {}).get("device"))
        ),
    )
    assert not [e for e in events if e[0] == "teacher"]  # no teacher fine-tuned in the main process
    baselines = [e for e in events if e[0] == "trial_done" and not e[1]]
    assert len(baselines) == 2 and all(str(d).startswith("cpu") for _, _, d in baselines)
    kept = tmp_path / "par" / "cache" / "teachers"
    assert len(list(kept.glob("*.npz"))) == 2 and len(list(kept.glob("*.safetensors"))) == 2
    scores = {(r["strategy"], r["seed"]): r["score"] for r in local["records"]}
    assert scores == {(r["strategy"], r["seed"]): r["score"] for r in par["records"]}


def test_a_teacher_the_worker_cannot_keep_is_fine_tuned_by_the_driver(tiny_run, tmp_path, monkeypatch):
    """Where the baseline's trial cannot write its teacher (a Ray node with another disk), it warns, its result
    stands, and the main process fine-tunes the teacher itself before the distilled rows."""
    import glp.trial.distill
    from glp.commands.evaluate import EvalConfig, evaluate

    real, calls = glp.trial.distill.keep_teacher, []

    def first_fails(*a, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise PermissionError("read-only file system")
        return real(*a, **kw)

    monkeypatch.setattr(glp.trial.distill, "keep_teacher", first_fails)
    glp.trial.distill._TEACHERS.clear()
    events = []
    with pytest.warns(UserWarning, match="could not be kept at .*read-only file system"):
        result = evaluate(
            EvalConfig(run_dirs=(str(tiny_run),), out=str(tmp_path / "e"), ns=(1,), seeds=1, distill=True),
            on_event=lambda e, **i: events.append(e),
        )
    assert events.count("teacher") == 1 and len(calls) == 2  # the worker's try, then the driver's fine-tune
    assert all(r["status"] == "ok" for r in result["records"]) and {r["distilled"] for r in result["records"]} == {
        False,
        True,
    }
