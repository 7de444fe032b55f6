"""glp.atomic: a write that fails leaves the old file and no temporary file behind."""

from __future__ import annotations

import numpy as np
import pytest

from glp.atomic import write_atomic, write_text_atomic


def test_write_replaces_and_keeps_the_suffix(tmp_path):
    path = tmp_path / "sub" / "a.npz"
    write_atomic(path, lambda tmp: np.savez(tmp, x=np.arange(3)))  # np.savez adds ".npz" unless the name has it
    with np.load(path) as z:
        assert z["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.npz"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = write_text_atomic(tmp_path / "plan.json", "old\n")

    def half(tmp):
        tmp.write_text("half a fi")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]
