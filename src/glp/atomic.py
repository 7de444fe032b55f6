"""Atomic writes, and the one error a refused write raises.

Every file glp writes that another process may read while it is written (plans, the tokenized cache, trial
checkpoints, evaluations, profiles, teachers) goes through `write_atomic`; every folder (an exported or dropped
model) through `write_dir_atomic`. A write the storage refuses (a full disk, a read-only or vanished directory)
raises `StorageError` naming the path, the errno's meaning and what to do (`storage_error`): the CLI prints it as
one line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from glp.errors import ConfigError, StorageError

T = TypeVar("T")

RESUME = "run the same command again to resume"
AGAIN = "run the same command again"
# what an errno of a refused write means for the user (the errnos a write can fail with that are the storage's)
_FULL = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
#: errnos only a write can end with: whichever write raised one, it is the storage's fault
FULL_OR_READ_ONLY = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # safetensors (Rust) says "... (os error 28)"


def storage_error(path: str | os.PathLike[str], err: int, again: str = RESUME) -> StorageError:
    """The `StorageError` of a write to ``path`` that failed with the errno ``err``: one line naming the path, the
    errno's meaning and what to do, then ``again`` (how to go on once that is done)."""
    path = Path(path)
    where = path.parent
    if err in _FULL:
        fix = f"free space and {again}"
    elif err in _NOT_WRITABLE:
        fix = f"make {where} writable and {again}"
    else:  # ENOENT: the directory went away under glp
        fix = f"was {where} moved or deleted while glp wrote to it? {AGAIN}"
    reason = f"{os.strerror(err)} (errno {err})"
    exc = StorageError(f"cannot write {path}: {reason}; {fix}")
    # not OSError's errno and strerror: with them set, str() would be "[Errno 28] ..." instead of the message
    exc.path, exc.reason = path, reason  # what a caller that goes on without the file warns with
    return exc


def probe_dir(directory: str | os.PathLike[str]) -> int | None:
    """Why nothing can be written in ``directory``, as an errno (vanished: ENOENT, a read-only file system: EROFS,
    no permission: EACCES, no free space: ENOSPC), or None when it looks writable. For writers whose failure
    does not say (SQLite's "disk I/O error", torch's "file write failed")."""
    d = Path(directory)
    if not d.is_dir():
        return errno.ENOENT
    try:
        st = os.statvfs(d)
    except OSError:
        return errno.ENOENT
    if st.f_flag & os.ST_RDONLY:
        return errno.EROFS
    if not os.access(d, os.W_OK | os.X_OK):
        return errno.EACCES
    if st.f_bfree == 0 or (st.f_bavail == 0 and os.geteuid() != 0):  # root may write the reserved blocks
        return errno.ENOSPC
    return None


def storage_fault(exc: BaseException, directory: str | os.PathLike[str]) -> int | None:
    """The errno of ``exc`` when it is the storage refusing a write into ``directory`` (an OSError, or a library's
    error that names an OS error, or any failed write in a directory that `probe_dir` finds unwritable); else None.
    A missing file or a denied permission counts only for a file in ``directory``, not one a writer read."""
    if isinstance(exc, StorageError) or not isinstance(exc, Exception):
        return None  # said already; KeyboardInterrupt and SystemExit are no fault of the disk
    err = _errno_of(exc)
    if err in FULL_OR_READ_ONLY:
        return err
    if err in (errno.EACCES, errno.EPERM, errno.ENOENT):
        name = getattr(exc, "filename", None)
        inside = name is None or _is_within(Path(os.fsdecode(name)), Path(directory))
        return err if inside or probe_dir(directory) else None
    return probe_dir(directory)


def _errno_of(exc: BaseException) -> int | None:
    """The OS error number an exception (or one it was raised from) carries."""
    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 5:
        if isinstance(e, OSError) and e.errno:
            return e.errno
        m = _RUST_OS_ERROR.search(str(e))
        if m:
            return int(m.group(1))
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def _is_within(path: Path, directory: Path) -> bool:
    try:
        return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(directory))
    except ValueError:
        return False


def write_atomic(path: str | os.PathLike[str], save: Callable[[Path], object]) -> Path:
    """``save(tmp)`` to a temporary file beside ``path`` (the same suffix, so ``np.savez`` adds none), then renamed
    onto ``path``: a reader sees the old file or the new one, never half of one. The temporary file is removed if
    ``save`` fails; a write the storage refuses raises `StorageError`. The name holds the process and thread, so
    concurrent writers do not share one."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        err = storage_fault(exc, path.parent)
        if err is None:
            raise
        raise storage_error(path, err) from exc
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """`write_atomic` of a text file (UTF-8)."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


LAST = "config.json"  # moved into an existing folder last: a model folder without it does not load


def check_out_dir(out: Path, overwrite: bool) -> None:
    """`ConfigError` unless ``out`` can be written by `write_dir_atomic`: it is no file, and has nothing in it
    unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"output directory {out} exists and is not empty; pass --overwrite to write into it")


def write_dir_atomic(out: str | os.PathLike[str], save: Callable[[Path], T], overwrite: bool = False) -> T:
    """``save(tmp)`` into a temporary sibling folder ``.<name>.tmp-<pid>``, renamed to ``out`` when it returns: a
    killed writer leaves no ``out`` that looks finished (its hidden sibling is removed by the next call). An
    existing ``out`` (empty, or with ``overwrite``) is written into: the new entries are moved in one by one,
    replacing those of the same name, ``config.json`` last. Returns what ``save`` returned; a write the storage
    refuses raises `StorageError` naming ``out``."""
    out = Path(out)
    target = Path(os.path.abspath(out))  # "." and ".." have a name and a parent so
    check_out_dir(out, overwrite)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(target)
        tmp.mkdir()
        result = save(tmp)
        if target.exists():
            _move_into(tmp, target)
        else:
            os.rename(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        err = storage_fault(exc, target.parent)
        if err is None:
            raise
        raise storage_error(out, err, AGAIN) from exc
    return result


def _remove_stale(target: Path) -> None:
    """The temporary siblings of ``target`` that killed writers left (their process is gone), and this process's."""
    prefix = f".{target.name}.tmp-"
    for p in target.parent.iterdir():
        pid = p.name[len(prefix) :] if p.name.startswith(prefix) else ""
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _move_into(src: Path, dst: Path) -> None:
    """Every entry of the folder ``src`` into the existing folder ``dst`` (replacing, ``LAST`` last); ``src`` goes."""
    for entry in sorted(src.iterdir(), key=lambda p: p.name == LAST):
        dest = dst / entry.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(entry, dest)
    src.rmdir()
