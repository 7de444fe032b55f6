"""The docs point at tests that exist: docs/faults.md names the test behind each promise."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_docs_faults_names_exists():
    text = (ROOT / "docs" / "faults.md").read_text()
    current, named = None, 0
    for m in re.finditer(r"`(tests/[\w/]+\.py)(?:::(\w+))?`|`::(\w+)`", text):
        path, name, short = m.groups()
        current = path or current
        assert (ROOT / current).is_file(), current
        name = name or short
        if name:
            assert re.search(rf"^(async )?def {name}\b", (ROOT / current).read_text(), re.M), f"{current}::{name}"
            named += 1
    assert named >= 20  # the page names a test for each promise
