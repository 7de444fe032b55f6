"""The task-kind seam: docs/extending.md's multi-label kind, run from the page through a real search."""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_WORDS

from glp.errors import ConfigError
from glp.kinds import KINDS, kind_of
from glp.tasks import get_task
from glp.trial.hparams import HParams

DOC = Path(__file__).resolve().parents[2] / "docs" / "extending.md"


@pytest.fixture(scope="module")
def multilabel():
    """The first python block of docs/extending.md, imported as a module (it registers the kind)."""
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    module = types.ModuleType("glp_docs_multilabel")
    exec(compile(code, str(DOC), "exec"), module.__dict__)
    yield module.MultiLabel
    KINDS.remove("multi-label")


def _write(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        words = list(rng.choice(TINY_WORDS, size=int(rng.integers(4, 10))))
        labels = []
        for cue, label in (("good", "pos"), ("bad", "neg")):
            if rng.random() < 0.5:
                words.insert(int(rng.integers(len(words))), cue)
                labels.append(label)
        if "dog" in words:
            labels.append("animal")
        rows.append({"text": " ".join(words), "labels": labels})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.slow
def test_the_documented_kind_runs_a_search_in_its_direction(multilabel, tiny_setup, tmp_path):
    from glp.commands.evaluate import EvalConfig, evaluate
    from glp.commands.export import export
    from glp.commands.prune import PruneConfig, prune

    _write(tmp_path / "train.jsonl", 240, 0)
    _write(tmp_path / "dev.jsonl", 40, 1)
    hp = HParams(learning_rate=5e-3, num_train_epochs=8.0, per_device_train_batch_size=16, max_seq_length=32)
    cfg = PruneConfig(model=str(tiny_setup / "model"), kind="multi-label", task="topics",
                      train_file=str(tmp_path / "train.jsonl"), dev_file=str(tmp_path / "dev.jsonl"),
                      text_columns=("text",), label_column="labels", max_remove=2, out=str(tmp_path / "run"),
                      hparams=hp)  # fmt: skip
    plan = prune(cfg)
    assert plan.task["kind"] == "multi-label" and plan.task["label_names"] == ["animal", "neg", "pos"]
    assert plan.higher_is_better is False
    for step in plan.steps:  # the lowest Hamming loss wins each step
        ok = [c.mean for c in step.candidates if c.status == "ok"]
        assert step.chosen_mean == min(ok)
    base = plan.baseline
    assert 0 <= base["mean"] < base["constant"] <= 0.5  # learned something: no warning
    assert "warning" not in base
    # glp evaluate reads the kind back from the journaled settings; relative performance follows the direction
    result = evaluate(EvalConfig(run_dirs=(str(tmp_path / "run"),), out=str(tmp_path / "eval"), ns=(1,), seeds=1))
    rows = {r["strategy"]: r for r in result["summary"]["rows"]}
    b, g = rows["baseline"]["cells"]["topics"]["median"], rows["greedy"]["cells"]["topics"]
    # lower is better: 100 × baseline / pruned, which tells the direction apart (100 × pruned / baseline) as b != g
    assert g["median"] > 0 and g["median"] != b
    assert g["rel"] == pytest.approx(100 * b / g["median"])
    # the export's model card and manifest come from the kind
    out = export(tmp_path / "run", 1, tmp_path / "model")
    assert out.manifest["kind"]["name"] == "multi-label"
    assert out.model.config.problem_type == "multi_label_classification"


def test_sequence_kind_is_the_default_and_keeps_old_task_dicts():
    task = get_task("rte")
    assert task.kind == "sequence-classification" and "kind" not in task.to_dict()  # journal keys unchanged
    kind = kind_of(task.to_dict())
    assert kind.auto_class == "AutoModelForSequenceClassification" and kind.higher_is_better()
    assert kind.constant_score(np.array([0, 0, 1])) == pytest.approx(2 / 3)
    with pytest.raises(ConfigError, match="^unknown --kind 'nope'; known: causal-lm, sequence-classification"):
        KINDS.get("nope")
