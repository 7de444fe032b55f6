"""The search split.

The search split (:func:`search_split`) is a seeded, stratified split of the training data into the
part candidates are fine-tuned on and the part they are scored on; its ``fingerprint`` identifies it.
:func:`group_split` keeps groups of rows (a document's sentences) together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from glp.data.examples import Examples
from glp.errors import DataError


@dataclass(frozen=True)
class SearchSplit:
    """The training data split into ``train`` (fine-tune candidates) and ``eval`` (score them)."""

    train: Examples
    eval: Examples
    fingerprint: str
    seed: int = 0
    eval_fraction: float = 0.15

    def to_dict(self) -> dict:
        """Plain metadata to record with a run (not the examples)."""
        return {
            "fingerprint": self.fingerprint,
            "seed": self.seed,
            "eval_fraction": self.eval_fraction,
            "train_size": len(self.train),
            "eval_size": len(self.eval),
        }


def split_fingerprint(eval_row_ids, train_row_ids, seed: int, eval_fraction: float) -> str:
    """sha256 of the chosen row ids, the seed and the fraction."""
    h = hashlib.sha256(f"glp-search-split/v1|seed={int(seed)}|fraction={float(eval_fraction)!r}|".encode())
    ev = np.sort(np.asarray(eval_row_ids, dtype=np.int64))
    tr = np.sort(np.asarray(train_row_ids, dtype=np.int64))
    h.update(f"eval={len(ev)}|".encode() + ev.astype("<i8").tobytes())
    h.update(f"|train={len(tr)}|".encode() + tr.astype("<i8").tobytes())
    return h.hexdigest()


def regression_strata(targets, n_bins: int = 10) -> np.ndarray:
    """Quantile bin of every regression target (ties share a bin, so some bins may be empty)."""
    y = np.asarray(targets, dtype=np.float64)
    n_bins = max(1, min(int(n_bins), len(y) // 10))
    if n_bins == 1:
        return np.zeros(len(y), dtype=np.int64)
    edges = np.quantile(y, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
    return np.searchsorted(edges, y, side="right").astype(np.int64)


def stratified_eval_indices(strata, eval_fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a seeded eval subset with ``round(n * eval_fraction)`` rows, stratified.

    Every stratum of size ``n_c`` gets ``floor(q)`` or ``ceil(q)`` eval rows, ``q = n_c * n_eval / n``
    (largest remainders first, ties broken by the seeded generator), so each class is within one
    example of its share.
    """
    strata = np.asarray(strata)
    n = len(strata)
    if n < 2:
        raise DataError(f"cannot split {n} example(s) into search-train and search-eval; need at least 2")
    if not 0.0 < eval_fraction < 1.0:
        raise DataError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    rng = np.random.default_rng(seed)
    n_eval = min(max(int(round(n * eval_fraction)), 1), n - 1)
    classes, inverse = np.unique(strata, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(classes))
    quota = counts * (n_eval / n)
    take = np.floor(quota).astype(np.int64)
    remainder = n_eval - int(take.sum())
    if remainder > 0:
        order = np.lexsort((rng.permutation(len(classes)), -(quota - take)))
        take[order[:remainder]] += 1
    chosen = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        chosen.append(rng.permutation(members)[: take[c]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def search_split(
    train: Examples, eval_fraction: float = 0.15, seed: int = 42, regression: bool = False, strata=None
) -> SearchSplit:
    """Seeded split of ``train`` into search-train (85%) and search-eval (15%), stratified by label.

    Regression targets (``regression=True``, or float labels) are stratified by quantile bins; a kind whose labels
    are not one class per row gives its own ``strata`` (one integer per row: a document, the first label ...).
    The same examples, seed and fraction always give the same split; the ``fingerprint`` proves it.
    """
    if strata is None:
        regression = bool(regression) or train.labels.dtype.kind == "f"
        strata = regression_strata(train.labels) if regression else train.labels
    eval_idx = stratified_eval_indices(strata, float(eval_fraction), int(seed))
    mask = np.zeros(len(train), dtype=bool)
    mask[eval_idx] = True
    train_part, eval_part = train.subset(~mask), train.subset(mask)
    fp = split_fingerprint(eval_part.row_ids, train_part.row_ids, int(seed), float(eval_fraction))
    return SearchSplit(
        train=train_part, eval=eval_part, fingerprint=fp, seed=int(seed), eval_fraction=float(eval_fraction)
    )


def group_split(train: Examples, eval_fraction: float, seed: int) -> SearchSplit:
    """Whole groups (``train.groups``: a document's sentences, an article's paragraphs) to search-eval, in a seeded
    order, until it holds ``eval_fraction`` of the rows; a plain seeded split of the rows where there are fewer than 4
    groups."""
    docs = np.unique(train.groups) if train.groups is not None else np.zeros(1)
    if len(docs) < 4:
        return search_split(train, eval_fraction, seed, strata=np.zeros(len(train), dtype=np.int64))
    if not 0.0 < eval_fraction < 1.0:
        raise DataError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    rng = np.random.default_rng(seed)
    want = max(1, int(round(len(train) * eval_fraction)))
    mask = np.zeros(len(train), dtype=bool)
    for d in rng.permutation(docs):
        if mask.sum() >= want:
            break
        mask |= train.groups == d
    if mask.all():
        raise DataError("the search split left no training sentences; lower --eval-fraction")
    tr, ev = train.subset(~mask), train.subset(mask)
    fp = split_fingerprint(ev.row_ids, tr.row_ids, int(seed), float(eval_fraction))
    return SearchSplit(train=tr, eval=ev, fingerprint=fp, seed=int(seed), eval_fraction=float(eval_fraction))
