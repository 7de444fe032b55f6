"""glp export: plan → pruned model directory that loads with plain transformers (checked in a process without glp)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from glp.commands.export import export
from glp.errors import ConfigError, LayerIndexError
from glp.plan import sha256_file
from glp.run.rundir import RunDir

IDS = [[2, 7, 9, 11, 13, 3, 0, 0], [2, 5, 6, 8, 10, 12, 14, 3]]
MASK = [[1, 1, 1, 1, 1, 1, 0, 0], [1] * 8]

# runs in a fresh interpreter and never imports glp
RELOAD = (
    textwrap.dedent(
        """
    import json, sys
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    out = {}
    for d in sys.argv[2:]:
        m = AutoModelForSequenceClassification.from_pretrained(d).eval()
        tok = AutoTokenizer.from_pretrained(d)
        with torch.no_grad():
            logits = m(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK)).logits
        n_tok = len(tok("good dog")["input_ids"])
        out[d] = {"logits": logits.tolist(), "layers": m.config.num_hidden_layers, "tok": n_tok}
    assert not any(k == "glp" or k.startswith("glp.") for k in sys.modules), "glp was imported"
    json.dump(out, open(sys.argv[1], "w"))
    """
    )
    .replace("IDS", repr(IDS))
    .replace("MASK", repr(MASK))
)


def _logits(model) -> list:
    with torch.no_grad():
        return model(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK)).logits.tolist()


def _reload_without_glp(tmp_path, *dirs):
    script = tmp_path / "reload.py"
    script.write_text(RELOAD)
    res = tmp_path / "res.json"
    p = subprocess.run(
        [sys.executable, "-I", str(script), str(res), *map(str, dirs)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(res.read_text())


@pytest.mark.slow
def test_export_reloads_without_glp_and_manifest(tiny_run, tmp_path):
    plan = RunDir(tiny_run).load_plan()
    raw = export(tiny_run, 2, tmp_path / "raw", seed=3)
    tuned = export(tiny_run, 1, tmp_path / "tuned", finetune=True, seed=3, hparams={"num_train_epochs": 1})
    got = _reload_without_glp(tmp_path, raw.out, tuned.out)
    for ex, n in ((raw, 2), (tuned, 1)):
        r = got[str(ex.out)]
        assert r["layers"] == 4 - n and r["tok"] > 2
        assert torch.allclose(torch.tensor(r["logits"]), torch.tensor(_logits(ex.model)), atol=1e-5)
        assert (ex.out / "model.safetensors").exists() and not list(ex.out.glob("*.bin"))

    m = json.loads((raw.out / "pruning.json").read_text())
    assert m == raw.manifest
    assert m["removed_layers"] == plan.layers_to_remove(2) and len(m["kept_layers"]) == 2
    assert m["source"]["model"] == plan.model["source"] and m["source"]["revision"].startswith("sha256:")
    assert m["plan"]["sha256"] == sha256_file(tiny_run / "plan.json") and m["plan"]["n"] == 2
    assert m["split_fingerprint"] == plan.data["split_fingerprint"]
    assert m["hparams"]["learning_rate"] == plan.hparams["learning_rate"] and m["glp_version"]
    assert m["finetuned"] is False and m["metrics"] is None
    assert m["parameters"] < m["source"]["parameters"]
    card = (raw.out / "README.md").read_text()
    assert "untrained" in card and ",".join(map(str, m["removed_layers"])).replace(",", ", ") in card

    t = tuned.manifest
    assert t["finetuned"] and set(t["metrics"]["dev"]) >= {"accuracy"} and t["data"]["train_rows"] == 240
    assert t["data"]["dev_rows"] == 60 and t["hparams"]["num_train_epochs"] == 1
    assert t["training"]["dev_examples"] == 60 and t["hparams"]["max_eval_samples"] is None  # whole dev set
    assert "untrained" not in (tuned.out / "README.md").read_text()
    assert "| accuracy |" in (tuned.out / "README.md").read_text()


def test_export_errors_and_cli(tiny_run, tmp_path, capsys):
    with pytest.raises(LayerIndexError, match="n=3"):
        export(tiny_run, 3, tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(ConfigError, match="--overwrite"):
        export(tiny_run, 1, tmp_path / "full")
    with pytest.raises(ConfigError, match="no plan for strategy"):
        export(tiny_run, 1, tmp_path / "y", strategy="beam")

    from glp.cli import main

    with pytest.raises(SystemExit) as e:
        main(["export", str(tiny_run), "--remove", "1", "--out", str(tmp_path / "cli")])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "untrained" in out and (tmp_path / "cli" / "pruning.json").exists()
    with pytest.raises(SystemExit) as e:
        main(["export", str(tiny_run), "--remove", "5", "--out", str(tmp_path / "cli2")])
    assert e.value.code == 2 and "n=5" in capsys.readouterr().err
