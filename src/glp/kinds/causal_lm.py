"""Causal language modelling: decoder LLMs, scored by perplexity (lower is better).

``AutoModelForCausalLM`` keeps its pre-trained output head. Two shapes of data, named as transformers' run_clm.py
and the SFT tools name them:

- **text** (``--task lm --train-file corpus.txt --dev-file test.txt``; or JSON/JSONL/parquet/CSV with
  ``--text-column``): every row (a line of a .txt file) is tokenized, the rows are concatenated in order and cut
  into blocks of ``--block-size`` tokens (the remainder is dropped, as run_clm does). Loss and perplexity count every
  token after the first of a block.
- **prompt/response pairs** (``--prompt-column``, ``--response-column``, ``--chat-template``): one row per pair,
  prompt then response then the end-of-sequence token, cut at ``--block-size``; loss and perplexity count the
  response tokens (and the end-of-sequence token) only.

``--task wikitext2 --data-dir DIR`` reads ``DIR/wikitext-2/valid.txt`` (the pruning corpus, split 85/15 by
article for the search) and ``DIR/wikitext-2/test.txt`` (the final evaluation); without a directory it reads the
hub's ``Salesforce/wikitext`` (``wikitext-2-v1``: validation and test).

Perplexity is ``exp(total negative log-likelihood / counted tokens)`` over the whole split; each evaluation batch is
reduced to per-row sums on the device (`reduce`), so no split's logits (a vocabulary per token) are kept.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from glp.data import (
    Encoded,
    Examples,
    TaskDataset,
    collate_inputs,
    group_split,
    load_hub_dataset,
    read_table,
    tokenizer_fingerprint,
)
from glp.errors import DataError, TaskError, reading
from glp.kinds.base import TaskKind
from glp.kinds.registry import register_kind
from glp.memory import EVAL_PIECE
from glp.tasks import Task

WIKITEXT2 = "wikitext2"
WIKITEXT2_HUB = ("Salesforce/wikitext", "wikitext-2-v1")
LM_TASKS = ("lm", WIKITEXT2)
IGNORE = -100
_ARTICLE = re.compile(r"^ = [^=].* = $")  # a WikiText article's title line (sections have == ... ==)
_CACHE: dict[str, Any] = {}


def _norm(name: str) -> str:
    return str(name).lower().replace("-", "").replace("_", "")


def read_text_rows(path: str | Path) -> tuple[list[str], np.ndarray]:
    """The non-blank lines of a text file (each with its newline) and their groups: the WikiText article each line
    belongs to (a `` = Title = `` line starts one), or one group per line where there are no such titles."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"text file {p} does not exist" if not p.exists() else f"{p} is not a file")
    rows, groups, article, titled = [], [], -1, False
    with reading(p, DataError):
        with open(p, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                if _ARTICLE.match(line.rstrip("\n")):
                    article += 1
                    titled = True
                rows.append(line if line.endswith("\n") else line + "\n")
                groups.append(article if titled else len(rows) - 1)
    return rows, np.asarray([max(g, 0) for g in groups], dtype=np.int64)


@register_kind
class CausalLM(TaskKind):
    name = "causal-lm"
    auto_class = "AutoModelForCausalLM"
    pipeline_tag = "text-generation"
    distillable = False  # the teacher's outputs would be a vocabulary per token
    lm_eval = True
    mergekit = True
    description = "next-token prediction on text or prompt/response pairs, scored by perplexity (decoder LLMs)"
    bf16_on_cpu = True
    fresh_head = False

    @classmethod
    def claims(cls, spec: Any) -> bool:
        if _norm(spec.task) in LM_TASKS:
            return True
        if getattr(spec, "prompt_column", None) or getattr(spec, "response_column", None):
            return True
        return getattr(spec, "text_column", None) is not None  # (a .txt file may be CoNLL columns: not claimed)

    # -- data -----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, spec: Any):
        name = _norm(spec.task)
        pairs = bool(spec.prompt_column or spec.response_column)
        if pairs and not (spec.prompt_column and spec.response_column):
            raise DataError("prompt/response data needs both --prompt-column and --response-column")
        if spec.chat_template and not pairs:
            raise DataError("--chat-template applies to prompt/response pairs (--prompt-column, --response-column)")
        if spec.train_file or spec.dev_file:
            if not (spec.train_file and spec.dev_file):
                raise DataError("give both --train-file (the pruning corpus) and --dev-file (the final evaluation)")
            source = f"files:train={spec.train_file},dev={spec.dev_file}"
            splits = {k: cls._read(f, spec, pairs) for k, f in (("train", spec.train_file), ("dev", spec.dev_file))}
        elif name == WIKITEXT2 and spec.data_dir:
            root = Path(spec.data_dir)
            root = root / "wikitext-2" if (root / "wikitext-2").is_dir() else root
            if not (root / "valid.txt").is_file():
                raise DataError(f"no wikitext-2 corpus in {spec.data_dir} (expected {root / 'valid.txt'} and test.txt)")
            source = f"wikitext-2-dir:{root}"
            splits = {"train": read_text_rows(root / "valid.txt"), "dev": read_text_rows(root / "test.txt")}
        elif name == WIKITEXT2 or spec.hub_dataset:
            splits, source = cls._hub(spec, pairs)
        else:
            raise TaskError(
                f"task {spec.task!r} (causal LM): give --train-file and --dev-file, --hub-dataset, or "
                f"--task {WIKITEXT2} with --data-dir"
            )
        block = int(spec.block_size) if spec.block_size else None
        if block is not None and block < 2:
            raise DataError(f"--block-size must be at least 2 tokens, got {block}")
        mode = "pairs" if pairs else "text"
        options = {"mode": mode, "block_size": block, "chat_template": bool(spec.chat_template)}
        task = Task(
            name=WIKITEXT2 if name == WIKITEXT2 else str(spec.task),
            text_columns=(spec.prompt_column, spec.response_column) if pairs else (spec.text_column or "text",),
            label_column=spec.response_column if pairs else (spec.text_column or "text"),
            num_labels=0,
            is_regression=False,
            metric="perplexity",
            metrics=("perplexity",),
            kind=cls.name,
            options=tuple(sorted((k, v) for k, v in options.items() if v is not None)),
        )
        ex = {}
        for split, (a, b) in splits.items():
            if pairs:
                ex[split] = Examples(a, b, np.zeros(len(a), dtype=np.int64), np.arange(len(a)), np.arange(len(a)))
            else:
                ex[split] = Examples(a, None, np.zeros(len(a), dtype=np.int64), np.arange(len(a)), b)
            if not len(ex[split]):
                raise DataError(f"the {split} corpus of task {spec.task!r} has no text ({source})")
        return TaskDataset(task=task, train=ex["train"], dev=ex["dev"], source=source)

    @staticmethod
    def _read(path: str, spec: Any, pairs: bool) -> tuple[list[str], Any]:
        """(texts, groups) of a text corpus, or (prompts, responses) of pairs."""
        if Path(path).suffix.lower() == ".txt":
            if pairs:
                raise DataError(f"{path}: prompt/response pairs are read from JSON/JSONL/parquet/CSV files, not .txt")
            return read_text_rows(path)
        table = read_table(path, "corpus")
        if pairs:
            prompts = table.column(spec.prompt_column, "prompt")
            responses = table.column(spec.response_column, "response")
            empty = [table.where(i) for i, r in enumerate(responses) if r is None or not str(r).strip()]
            if empty:
                raise DataError(
                    f"{path}: the response column {spec.response_column!r} is empty in {len(empty)} row(s), first "
                    f"{empty[0]}; every pair needs a response to learn from"
                )
            return ["" if p is None else str(p) for p in prompts], [str(r) for r in responses]
        texts = table.column(spec.text_column or "text", "text")
        rows = [str(t) for t in texts if t is not None and str(t).strip()]
        return [t if t.endswith("\n") else t + "\n" for t in rows], np.arange(len(rows))

    @staticmethod
    def _hub(spec: Any, pairs: bool):
        if spec.hub_dataset:
            name, config = spec.hub_dataset, None
            train_split, dev_split = "train", "validation"
        else:
            (name, config), train_split, dev_split = WIKITEXT2_HUB, "validation", "test"
        ds = load_hub_dataset(name, config)
        out = {}
        for split, hub_split in (("train", train_split), ("dev", dev_split)):
            if hub_split not in ds:
                raise DataError(f"hub dataset {name!r} has no {hub_split!r} split (it has {', '.join(ds)})")
            rows = ds[hub_split]
            if pairs:
                out[split] = ([str(x) for x in rows[spec.prompt_column]], [str(x) for x in rows[spec.response_column]])
            else:
                texts = [t if t.endswith("\n") else t + "\n" for t in rows[spec.text_column or "text"] if t.strip()]
                groups = np.cumsum([bool(_ARTICLE.match(t.rstrip("\n"))) for t in texts]).astype(np.int64)
                out[split] = (texts, groups)
        return out, f"hub:{name}" + (f"/{config}" if config else "")

    def split(self, train, eval_fraction: float, seed: int):
        """Whole articles (text; a line where there are none) or pairs to search-eval, seeded."""
        return group_split(train, eval_fraction, seed)

    def block_size(self, max_length: int) -> int:
        return int(self.task.option("block_size") or max_length)

    def encode(self, examples, tokenizer, max_length: int, cache_dir=None):
        """Text: the rows' tokens concatenated and cut into blocks; pairs: one sequence per pair, prompt tokens
        labelled -100. ``labels`` holds one array per row."""
        block = self.block_size(max_length)
        mode = self.task.option("mode", "text")
        chat = bool(self.task.option("chat_template", False))
        key = hashlib.sha256(b"glp-encode-lm/v1|")
        key.update(tokenizer_fingerprint(tokenizer).encode("utf-8", "surrogatepass"))
        key.update(f"|{block}|{mode}|{chat}|{examples.content_hash()}".encode())
        digest = key.hexdigest()
        hit = _CACHE.get(digest)
        if hit is None:
            hit = (
                self._pairs(examples, tokenizer, block, chat)
                if mode == "pairs"
                else self._blocks(examples, tokenizer, block)
            )
            _CACHE[digest] = hit
            while len(_CACHE) > 8:
                _CACHE.pop(next(iter(_CACHE)))
        ids, labels = hit
        return Encoded(list(ids), None, list(labels))

    @staticmethod
    def _blocks(examples, tokenizer, block: int):
        enc = tokenizer(list(examples.text_a), add_special_tokens=False)["input_ids"]
        flat = np.fromiter((t for row in enc for t in row), dtype=np.int64)
        if len(flat) < block:
            raise DataError(
                f"the corpus has {len(flat)} tokens, fewer than one block of {block} (--block-size); give more text "
                "or a smaller --block-size"
            )
        n = len(flat) // block
        blocks = flat[: n * block].reshape(n, block)
        blocks.setflags(write=False)
        return list(blocks), list(blocks)

    @staticmethod
    def _pairs(examples, tokenizer, block: int, chat: bool):
        prompts = list(examples.text_a)
        if chat:
            if not getattr(tokenizer, "chat_template", None):
                raise DataError("--chat-template: the tokenizer has no chat template")
            prompts = [
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
                )
                for p in prompts
            ]
        p_ids = tokenizer(prompts, add_special_tokens=not chat)["input_ids"]
        r_ids = tokenizer(list(examples.text_b), add_special_tokens=False)["input_ids"]
        eos = tokenizer.eos_token_id
        ids, labels, cut = [], [], 0
        for p, r in zip(p_ids, r_ids, strict=True):
            r = list(r) + ([int(eos)] if eos is not None else [])
            seq = np.asarray(list(p) + r, dtype=np.int64)[:block]
            lab = np.asarray([IGNORE] * len(p) + r, dtype=np.int64)[:block]
            if (lab[1:] != IGNORE).sum() == 0:
                cut += 1
                continue
            ids.append(seq)
            labels.append(lab)
        if cut:
            warnings.warn(
                f"{cut} pairs left out: their prompt fills the whole --block-size {block}, so no response token "
                "is left",
                stacklevel=3,
            )
        if not ids:
            raise DataError(f"no prompt/response pair fits in --block-size {block} with a response token left")
        return ids, labels

    # -- model ----------------------------------------------------------------------------------------
    def head_config(self, config: Any) -> Any:
        if getattr(config, "pad_token_id", None) is None:  # padding of prompt/response batches
            eos = getattr(config, "eos_token_id", None)
            config.pad_token_id = int((eos[0] if isinstance(eos, list | tuple) else eos) or 0)
        return config

    def head_key(self) -> tuple:
        return (self.name,)

    # -- training -------------------------------------------------------------------------------------
    def collate(self, table, idx: np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
        batch = collate_inputs(table, idx, pad_id)
        labels = np.full(batch["input_ids"].shape, IGNORE, dtype=np.int64)
        for r, j in enumerate(idx):
            lab = table.labels[int(j)]
            labels[r, : len(lab)] = lab
        batch["labels"] = labels
        return batch

    @staticmethod
    def _token_nll(logits, labels):
        """Per-token negative log-likelihood of the next token (float32), 0 where it is not counted; and the mask."""
        target = labels[:, 1:]
        flat = logits[:, :-1].float().reshape(-1, logits.shape[-1])  # (rows, vocab): 5x faster than (B, V, T) on CPU
        nll = F.cross_entropy(flat, target.reshape(-1), ignore_index=IGNORE, reduction="none")
        return nll.view(target.shape), target != IGNORE

    def loss_sum(self, logits, labels):
        if torch.is_grad_enabled():
            nll, _ = self._token_nll(logits, labels)
            return nll.sum()
        nll, _ = self._token_nll_pieces(logits, labels)  # no gradient (a proxy's loss): the same sum, less memory
        return nll.contiguous().sum()

    def units(self, batch) -> int:
        return int((np.asarray(batch["labels"])[:, 1:] != IGNORE).sum())

    # -- scoring --------------------------------------------------------------------------------------
    def reduce(self, logits, batch):
        nll, mask = self._token_nll_pieces(logits, batch["labels"])
        return torch.stack([nll.double().sum(1), mask.double().sum(1)], dim=1)

    @staticmethod
    def _token_nll_pieces(logits, labels):
        """`_token_nll` without gradients, in pieces of at most `EVAL_PIECE` logits: the batch's logits stay once,
        in the model's dtype, with one float32 piece beside them (not a float32 copy of the whole batch and its
        log-softmax). Each token's value is the same as `_token_nll`'s on a CPU (tested): cross-entropy is computed
        row by row (a GPU's kernel may round the last bit differently where the vocabulary is not a multiple of 4)."""
        rows, vocab = labels.numel(), logits.shape[-1]
        target = torch.full_like(labels, IGNORE)  # the next token at each position; the last one counts nothing
        target[:, :-1] = labels[:, 1:]
        flat, target = logits.reshape(rows, vocab), target.reshape(-1)
        nll = torch.empty(rows, dtype=torch.float32, device=logits.device)
        step = max(1, EVAL_PIECE // vocab)
        with torch.no_grad():
            for a in range(0, rows, step):
                piece = flat[a : a + step].float()
                nll[a : a + step] = F.cross_entropy(piece, target[a : a + step], ignore_index=IGNORE, reduction="none")
        nll = nll.view(labels.shape)[:, :-1]
        return nll, labels[:, 1:] != IGNORE

    def score(self, predictions: np.ndarray, table) -> tuple[dict[str, float], float | None]:
        total, count = float(predictions[:, 0].sum()), float(predictions[:, 1].sum())
        if count == 0:
            raise DataError("no token to score: every label is masked")
        loss = total / count
        ppl = math.exp(loss) if loss < 700 else math.inf
        return {"perplexity": ppl}, loss

    def higher_is_better(self) -> bool:
        return False
