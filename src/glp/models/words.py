"""Pre-split words (token classification) read as in running text: each word as after a space.

transformers tokenizes the words of ``tokenizer(words, is_split_into_words=True)`` one by one. A WordPiece or
SentencePiece tokenizer reads each as running text would; a byte-level BPE one (RoBERTa, GPT-2) reads each as if no
space came before it unless it was loaded with ``add_prefix_space=True``, which transformers v5 no longer insists on.
transformers' run_ner.py loads such tokenizers so; ``glp.models.load_tokenizer(..., pre_split_words=True)`` too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from glp.kinds import WORDS_SPACED


def glues_words(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` tokenizes the second of the pre-split words ``["a", "b's"]`` unlike the ``" b's"`` of
    ``"a b's"``: as if no space came before it (or, with a space before every piece, ``Ġb Ġ's``). False when it
    cannot take pre-split words at all."""

    def ids(text: Any, **kw: Any) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False, **kw)["input_ids"])

    try:
        split = ids(["a", "b's"], is_split_into_words=True)[len(ids(["a"], is_split_into_words=True)) :]
        joined = ids("a b's")[len(ids("a")) :]
    except (TypeError, ValueError):
        return False
    return split != joined


def spaced_words(tokenizer: Any, load_spaced: Callable[[], Any]) -> Any | None:
    """``tokenizer`` reading pre-split words as running text does, or None when it cannot be made to. First
    ``load_spaced()`` (the tokenizer loaded again with ``add_prefix_space=True``: RoBERTa, GPT-2), then, for a
    tokenizer transformers builds generically (which keeps the flag but does not apply it), its byte-level
    pre-tokenizer set so. The result is marked `WORDS_SPACED` for the journal keys (`TaskKind.tokenizer_context`)."""
    from tokenizers import pre_tokenizers  # deferred, as transformers (which brings it) is

    if not glues_words(tokenizer):
        return tokenizer
    spaced = load_spaced()
    pre = getattr(getattr(spaced, "backend_tokenizer", None), "pre_tokenizer", None)
    if glues_words(spaced) and isinstance(pre, pre_tokenizers.ByteLevel):
        pre.add_prefix_space = True
    if glues_words(spaced):
        return None
    setattr(spaced, WORDS_SPACED, True)
    return spaced
