"""A model's files on disk, read without transformers: which weights file is missing, truncated or corrupt, and
whether torch knows and can hold the dtype its config names.

`glp.models` asks these only after a load failed, to say which file is at fault instead of transformers' traceback
(they read every weights file: a safetensors header, a ``.bin`` checkpoint onto the meta device, a GGUF header).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open

from glp.errors import ModelLoadError, one_line

INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
WEIGHTS = ("model.safetensors", INDEXES[0], "pytorch_model.bin", INDEXES[1])  # the order transformers reads them


def config_dtype(config_json: Path) -> str | None:
    """The dtype a ``config.json`` names (``dtype``, else ``torch_dtype``) without ``torch.``; None for none or
    ``auto``, or a config that cannot be read (its own load says what is wrong with it)."""
    try:
        conf = json.loads(config_json.read_text())
        dtype = conf.get("dtype") or conf.get("torch_dtype")
    except (OSError, ValueError, AttributeError):
        return None
    return dtype.removeprefix("torch.") if isinstance(dtype, str) and dtype != "auto" else None


def unknown_dtype(name: str | None) -> bool:
    """Is ``name`` a dtype torch does not know (``float3``)?"""
    return name is not None and not isinstance(getattr(torch, name, None), torch.dtype)


def dtype_problem(dtype: torch.dtype) -> str | None:
    """Why torch cannot build a model in ``dtype`` on this machine (transformers makes it torch's default dtype
    while it builds one: float8 types, integer types fail so); None when it can."""
    default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(dtype)
    except (TypeError, RuntimeError) as e:
        return one_line(e)[:120]
    finally:
        torch.set_default_dtype(default)
    return None


def bad_weights_file(where: Path, gguf_file: str | None = None, complete: bool = True) -> tuple[Path, str] | None:
    """The first weights file in the model directory ``where`` that is missing, truncated or corrupt, with what is
    wrong with it (``is missing (...)``, ``is truncated or corrupt (...)``); None when every one reads. ``complete``:
    a directory without any weights file is wrong too (a model directory; not a hub cache, which may hold only
    what was fetched so far)."""
    if gguf_file:
        return _bad_file(where / gguf_file)
    for name in WEIGHTS:
        f = where / name
        if not f.is_file():
            continue
        if name not in INDEXES:
            return _bad_file(f)
        try:
            shards = sorted({str(v) for v in json.loads(f.read_text())["weight_map"].values()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            return f, f"is not a readable shard index ({one_line(e)[:120]})"
        for shard in shards:
            if not (where / shard).is_file():
                return where / shard, f"is missing ({name} names it)"
            if (bad := _bad_file(where / shard)) is not None:
                return bad
        return None
    if complete and not any(where.glob("*.safetensors")) and not any(where.glob("*.bin")):
        return where, f"has no weights file ({', '.join(WEIGHTS)})"
    return None


def _bad_file(f: Path) -> tuple[Path, str] | None:
    """``f`` and why it cannot be read as weights; None when it reads."""
    try:
        if f.suffix == ".safetensors":
            with safe_open(str(f), framework="pt") as fh:
                fh.keys()
        elif f.suffix == ".gguf":
            import gguf  # deferred: an optional dependency (glp[llm]), only for a GGUF file that failed to load

            gguf.GGUFReader(str(f))
        else:
            torch.load(f, map_location="meta", weights_only=True, mmap=zipfile.is_zipfile(f))
    except ImportError:
        return None
    except Exception as e:  # noqa: BLE001 - whatever the reader raises, the file is what is wrong
        if not f.exists():
            return f, "is missing"
        return f, f"is truncated or corrupt ({one_line(e).split('. ')[0][:150]})"
    return None


def hash_files(files: list[Path]) -> str | None:
    """``sha256:`` over the names and bytes of ``files`` (a model's weights: its revision), None for no file; a file
    that cannot be read is a `ModelLoadError` naming it."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        try:
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as e:
            why = e.strerror or one_line(e)
            raise ModelLoadError(f"cannot read the weights file {f}: {why}; check the copy") from None
    return "sha256:" + h.hexdigest() if files else None
