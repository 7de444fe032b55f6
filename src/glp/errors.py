"""Errors a user can cause. The CLI prints them without a traceback and exits 2."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class GLPError(Exception):
    """Base class of every error a user can cause (bad input, unsupported model, ...)."""

    exit_code = 2


class UnsupportedModelError(GLPError):
    """The model has no flat stack of independent layers that can be removed."""


class LayerIndexError(GLPError):
    """Layer indices that are out of range, duplicated, protected, or would remove every layer."""


class TaskError(GLPError):
    """An unknown task, metric or task definition."""


class DataError(GLPError):
    """Missing files, columns or rows; labels or targets that cannot be read."""


class ConfigError(GLPError):
    """Invalid settings (flags or YAML)."""


class RunDirError(GLPError):
    """A run directory that is locked by another process, corrupted, or from a different run."""


class StorageError(GLPError, OSError):
    """A file or folder glp writes could not be written: a full disk, a read-only or vanished directory
    (`glp.atomic.storage_error` builds one). An OSError too, so code that tolerates a failed write still does."""


class ModelLoadError(GLPError):
    """A model, config or tokenizer that cannot be loaded from the source given."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (white space folded), or its type's name when it has none."""
    return " ".join(str(exc).split()) or type(exc).__name__


@contextlib.contextmanager
def reading(path: object, error: type[GLPError]) -> Iterator[None]:
    """Inside: reading the text file ``path``. Text that is not UTF-8, or a file that cannot be read, leaves as one
    ``error`` naming the file."""
    try:
        yield
    except UnicodeDecodeError as e:
        raise error(f"{path}: not valid UTF-8 text ({e})") from e
    except OSError as e:
        raise error(f"{path}: cannot read the file: {e.strerror or e}") from e
