"""The one model loader: sources (directory, .gguf, pkg:, hub name) and every load failure as one line, exit 2."""

from __future__ import annotations

import json
import sys

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
    assert src.describe()["path"] == src.path
    # a plan's record resolves where it was read, and by its name where that path is gone
    assert models.from_record(p.describe()).path == p.path
    assert models.from_record({"source": "pkg:my_model_pkg", "path": "/gone"}).path == p.path
    with pytest.raises(ModelLoadError, match="does not exist"):
        models.from_record({"source": "./gone", "path": "/gone"})
    sys.modules.pop("my_model_pkg", None)
