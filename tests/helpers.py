"""Shared test helpers: tiny tokenizers trained on the fly, the local GLUE directory, the benchmark scripts."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` as a module, its sibling modules (results_lib) importable while it loads;
    registered in ``sys.modules`` (dataclasses look their module up there)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))

_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a man is playing a guitar on the stage",
    "it 's a charming and often affecting journey",
    "the movie was not good at all , it was bad",
    "he said the company would not buy the chain",
    "weapons of mass destruction found in iraq",
    "a plane is taking off from the airport",
    "she reads books about history and science every day",
    "this film is great fun and the acting is wonderful",
    "nobody liked the ending of the story",
]

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tiny_tokenizer(tmpdir: str | os.PathLike | None = None, vocab_size: int = 200, corpus=None):
    """A BERT-style WordPiece tokenizer over a tiny corpus, the same on every call and in every process.

    The vocabulary is built, not trained: the special tokens, the corpus's words (lowercased, sorted), then its
    characters and their ``##`` continuations, cut at ``vocab_size`` (a trained WordPiece vocabulary orders tied
    merges differently from one process to the next, which made tests that train on it flaky). Returns a
    transformers ``PreTrainedTokenizerFast`` that produces ``input_ids`` and ``token_type_ids`` with
    ``[CLS] a [SEP] b [SEP]`` templates. When ``tmpdir`` is given it is saved there with ``save_pretrained`` and
    reloaded, so ``name_or_path`` is that directory and ``AutoTokenizer.from_pretrained(tmpdir)`` works.
    """
    import re

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    text = " ".join(corpus or _CORPUS).lower()
    words = sorted(set(re.findall(r"\w+|[^\w\s]", text)))
    chars = sorted(set("".join(words)))
    vocab: dict[str, int] = {}
    for piece in [*SPECIAL_TOKENS, *words, *chars, *(f"##{c}" for c in chars)]:
        if piece not in vocab and len(vocab) < max(vocab_size, len(SPECIAL_TOKENS) + 2 * len(chars)):
            vocab[piece] = len(vocab)
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    if tmpdir is not None:
        fast.save_pretrained(str(tmpdir))
        fast = PreTrainedTokenizerFast.from_pretrained(str(tmpdir))
    return fast


def glue_dir() -> Path | None:
    """The local GLUE directory (env GLP_GLUE_DIR, else ../shared/data/glue next to the repo), or None."""
    env = os.environ.get("GLP_GLUE_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / "glue")
    for c in candidates:
        if c.is_dir():
            return c
    return None
