"""Tokenized data: `Encoded` (what the training loop reads), `collate_inputs` (a padded batch) and :func:`encode`.

:func:`encode` tokenizes once and caches the result in memory (and optionally on disk as ``.npz``);
`ENCODE_STATS` counts its hits, `clear_encode_cache` forgets the in-memory entries.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from glp.atomic import write_atomic
from glp.data.examples import DataWarning, Examples, _as_indices, _texts_digest
from glp.errors import DataError, StorageError


@dataclass
class Encoded:
    """Tokenized examples as the training loop reads them: unpadded int64 id arrays (each at most ``max_length``
    long), optional token type ids, and labels (one per row; a kind may give each row an array of labels)."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray] | None
    labels: np.ndarray | list[np.ndarray]
    _lengths: np.ndarray | None = field(default=None, repr=False, compare=False)
    extra: dict[str, list] = field(default_factory=dict)  # per-row data of a kind (word starts, word tags ...)

    def __len__(self) -> int:
        return len(self.input_ids)

    def __repr__(self) -> str:
        lengths = self.lengths
        longest = int(lengths.max()) if len(lengths) else 0
        has_types = self.token_type_ids is not None
        return f"Encoded({len(self)} rows, max length {longest}, token_type_ids={has_types})"

    @property
    def lengths(self) -> np.ndarray:
        if self._lengths is None or len(self._lengths) != len(self.input_ids):
            self._lengths = np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))
        return self._lengths

    def check(self) -> Encoded:
        """Raise `DataError` unless ids, token types and labels have one row each and no row is empty."""
        n = len(self.input_ids)
        if len(self.labels) != n or (self.token_type_ids is not None and len(self.token_type_ids) != n):
            raise DataError(
                f"encoded data: {n} input_ids, {len(self.labels)} labels"
                + (f", {len(self.token_type_ids)} token_type_ids" if self.token_type_ids is not None else "")
                + "; they must have the same length"
            )
        if n and self.lengths.min() < 1:
            raise DataError("encoded data contains an empty sequence")
        return self

    def subset(self, indices) -> Encoded:
        idx = _as_indices(indices, len(self))
        labels = self.labels[idx] if isinstance(self.labels, np.ndarray) else [self.labels[i] for i in idx]
        return Encoded(
            input_ids=[self.input_ids[i] for i in idx],
            token_type_ids=None if self.token_type_ids is None else [self.token_type_ids[i] for i in idx],
            labels=labels,
            _lengths=self.lengths[idx],
            extra={k: [v[i] for i in idx] for k, v in self.extra.items()},
        )

    def subsample(self, max_n: int | None, seed: int, stream: int) -> Encoded:
        """A seeded random subset of ``max_n`` rows (in their original order); self when it is not smaller.

        ``stream`` separates the subsets drawn with one seed (a trial's train rows: 1, its eval rows: 2)."""
        if max_n is None or max_n >= len(self):
            return self
        if max_n < 0:
            raise DataError(f"max_n must be >= 0, got {max_n}")
        rng = np.random.default_rng([seed, stream])
        return self.subset(np.sort(rng.choice(len(self), size=int(max_n), replace=False)))

    def fingerprint(self) -> str:
        """A hash of the rows (ids, token types, labels): a checkpoint refuses to continue on other data."""
        h = hashlib.sha256()
        h.update(self.lengths.tobytes())
        if isinstance(self.labels, np.ndarray):
            h.update(np.ascontiguousarray(self.labels).tobytes())
        else:
            for a in self.labels:
                h.update(np.ascontiguousarray(a).tobytes())
        if len(self):
            h.update(np.concatenate([np.asarray(a, dtype=np.int64) for a in self.input_ids]).tobytes())
            if self.token_type_ids is not None:
                h.update(np.concatenate([np.asarray(a, dtype=np.int64) for a in self.token_type_ids]).tobytes())
        return h.hexdigest()[:16]


def collate_inputs(table: Encoded, idx: np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
    """Pad the rows ``idx`` to their own longest length: ``input_ids``, ``attention_mask`` and, where the tokenizer
    made them, ``token_type_ids`` (numpy). The task's kind adds ``labels`` (`glp.kinds.TaskKind.collate`)."""
    lens = table.lengths[idx]
    width = int(lens.max())
    ids = np.full((len(idx), width), pad_id, dtype=np.int64)
    tt = np.zeros((len(idx), width), dtype=np.int64) if table.token_type_ids is not None else None
    for r, (j, n) in enumerate(zip(idx, lens, strict=True)):
        ids[r, :n] = table.input_ids[j][:n]
        if tt is not None:
            tt[r, :n] = table.token_type_ids[j][:n]
    out = {
        "input_ids": ids,
        "attention_mask": (np.arange(width)[None, :] < lens[:, None]).astype(np.int64),
    }
    if tt is not None:
        out["token_type_ids"] = tt
    return out


@dataclass(frozen=True)
class _Tokens:
    input_ids: np.ndarray  # flat, read-only
    offsets: np.ndarray  # len n + 1
    token_type_ids: np.ndarray | None  # flat, read-only


_CACHE_MAX_ENTRIES = 32
_cache: OrderedDict[str, _Tokens] = OrderedDict()
_cache_lock = threading.Lock()
_tokenizer_hashes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Counters of :func:`encode`: ``memory_hits``, ``disk_hits``, ``tokenized``.
ENCODE_STATS = {"memory_hits": 0, "disk_hits": 0, "tokenized": 0}


def clear_encode_cache() -> None:
    """Forget every in-memory tokenization (the on-disk cache stays)."""
    with _cache_lock:
        _cache.clear()
        for k in ENCODE_STATS:
            ENCODE_STATS[k] = 0


def tokenizer_fingerprint(tokenizer) -> str:
    """Identity of a tokenizer: name_or_path, class, vocabulary size and a hash of its full definition.

    The definition (vocabulary, normalizer, templates; not the transient truncation/padding state) is
    hashed once per tokenizer object, so two tokenizers trained on the fly never share cache entries.
    """
    size = len(tokenizer)
    try:
        memo = _tokenizer_hashes.get(tokenizer)
    except TypeError:
        memo = None
    if memo is not None and memo[0] == size:
        digest = memo[1]
    else:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            spec = json.loads(backend.to_str())
            spec.pop("truncation", None)
            spec.pop("padding", None)
            blob = json.dumps(spec, sort_keys=True, ensure_ascii=False)
        else:
            blob = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
        digest = hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()
        try:
            _tokenizer_hashes[tokenizer] = (size, digest)
        except TypeError:
            pass
    name = getattr(tokenizer, "name_or_path", "") or ""
    return f"{type(tokenizer).__name__}|{name}|{size}|{digest}"


def _encode_key(examples: Examples, tokenizer, max_length: int) -> str:
    h = hashlib.sha256(b"glp-encode/v1|")
    h.update(tokenizer_fingerprint(tokenizer).encode("utf-8", "surrogatepass"))
    h.update(f"|max_length={int(max_length)}|".encode())
    h.update(_texts_digest(examples.text_a, examples.text_b).encode())
    return h.hexdigest()


def _tokenize(examples: Examples, tokenizer, max_length: int, batch_size: int = 4096) -> _Tokens:
    ids: list[list[int]] = []
    types: list[list[int]] | None = []
    n = len(examples)
    for start in range(0, n, batch_size):
        a = examples.text_a[start : start + batch_size]
        b = None if examples.text_b is None else examples.text_b[start : start + batch_size]
        out = tokenizer(
            a, b, truncation=True, max_length=int(max_length), padding=False, return_attention_mask=False
        )
        ids.extend(out["input_ids"])
        if types is not None:
            tt = out.get("token_type_ids")
            types = None if tt is None else types + list(tt)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(offsets[-1]))
    flat_tt = None
    if types is not None and len(types) == n:
        flat_tt = np.fromiter(itertools.chain.from_iterable(types), dtype=np.int64, count=int(offsets[-1]))
    return _frozen_tokens(flat, offsets, flat_tt)


def _frozen_tokens(flat, offsets, flat_tt) -> _Tokens:
    for a in (flat, offsets, flat_tt):
        if a is not None:
            a.setflags(write=False)
    return _Tokens(flat, offsets, flat_tt)


def _disk_path(cache_dir, key: str) -> Path:
    return Path(cache_dir) / f"glp-encoded-{key[:40]}.npz"


def _load_disk(path: Path, key: str) -> _Tokens | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            flat, offsets = z["input_ids"], z["offsets"]
            flat_tt = z["token_type_ids"] if "token_type_ids" in z.files else None
    except FileNotFoundError:
        return None
    except Exception as e:  # corrupted or partial file: tokenize again and overwrite it
        warnings.warn(f"ignoring unreadable tokenization cache {path}: {e}", DataWarning, stacklevel=3)
        return None
    return _frozen_tokens(
        np.array(flat, dtype=np.int64),
        np.array(offsets, dtype=np.int64),
        None if flat_tt is None else np.array(flat_tt, dtype=np.int64),
    )


_unwritable: set[Path] = set()  # cache folders whose write failed: warned about once


def _save_disk(path: Path, key: str, tokens: _Tokens) -> None:
    """Write the cache file; the cache is an optimization: when the storage refuses it (a full disk, a read-only
    folder), warn once per folder and go on without it."""
    arrays = {"key": np.array(key), "input_ids": tokens.input_ids, "offsets": tokens.offsets}
    if tokens.token_type_ids is not None:
        arrays["token_type_ids"] = tokens.token_type_ids
    try:
        write_atomic(path, lambda tmp: np.savez(tmp, **arrays))
    except StorageError as e:
        if path.parent not in _unwritable:
            _unwritable.add(path.parent)
            warnings.warn(
                f"cannot write the tokenization cache {path}: {getattr(e, 'reason', e)}; going on without it",
                stacklevel=4,
            )


def encode(
    examples: Examples, tokenizer, max_length: int, cache_dir: str | os.PathLike | None = None
) -> Encoded:
    """Tokenize ``examples`` (batched, truncated to ``max_length``, unpadded) once and reuse it.

    The result is cached in memory keyed by the tokenizer (name_or_path, vocabulary size, definition
    hash), the texts' hash and ``max_length``; with ``cache_dir`` also on disk as ``.npz``. The
    returned arrays are read-only views shared between calls. ``token_type_ids`` are kept when the
    tokenizer returns them. Labels come from ``examples`` (they are not part of the cache key).
    """
    if int(max_length) < 1:
        raise DataError(f"max_length must be positive, got {max_length}")
    key = _encode_key(examples, tokenizer, max_length)
    with _cache_lock:
        tokens = _cache.get(key)
        if tokens is not None:
            _cache.move_to_end(key)
            ENCODE_STATS["memory_hits"] += 1
    if tokens is None:
        path = _disk_path(cache_dir, key) if cache_dir is not None else None
        tokens = _load_disk(path, key) if path is not None and path.exists() else None
        if tokens is not None:
            ENCODE_STATS["disk_hits"] += 1
        else:
            tokens = _tokenize(examples, tokenizer, max_length)
            ENCODE_STATS["tokenized"] += 1
            if path is not None:
                _save_disk(path, key, tokens)
        with _cache_lock:
            _cache[key] = tokens
            while len(_cache) > _CACHE_MAX_ENTRIES:
                _cache.popitem(last=False)
    split_at = tokens.offsets[1:-1]
    input_ids = np.split(tokens.input_ids, split_at) if len(examples) else []
    token_type_ids = None
    if tokens.token_type_ids is not None:
        token_type_ids = np.split(tokens.token_type_ids, split_at) if len(examples) else []
    labels = examples.labels.copy() if isinstance(examples.labels, np.ndarray) else list(examples.labels)
    return Encoded(input_ids=input_ids, token_type_ids=token_type_ids, labels=labels)
