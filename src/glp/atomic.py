"""Atomic file writes: every file glp writes that another process may read while it is written (plans, the
tokenized cache, trial checkpoints, evaluations, profiles, teachers) goes through `write_atomic`."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], save: Callable[[Path], object]) -> Path:
    """``save(tmp)`` to a temporary file beside ``path`` (the same suffix, so ``np.savez`` adds none), then renamed
    onto ``path``: a reader sees the old file or the new one, never half of one. The temporary file is removed if
    ``save`` fails. The name holds the process and thread, so concurrent writers do not share one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
    try:
        save(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """`write_atomic` of a text file (UTF-8)."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
