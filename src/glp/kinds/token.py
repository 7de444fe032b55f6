"""Token classification: a tag for every word (named entities, parts of speech, slot filling).

``AutoModelForTokenClassification``. Labels are aligned to sub-words as transformers' ``run_ner.py`` aligns them: the
first sub-token of a word carries its tag, the others -100 (ignored), or, with ``--label-all-tokens``, the tag with
``B-`` turned into ``I-``. Collation pads labels with -100; the loss is the mean cross-entropy over the labelled
tokens. Words cut off by ``--max-seq-length`` are counted and reported (a warning and the data notes), and are left
out of the score on both sides (gold and prediction), never scored as "O".

Scoring is at the word level (the first sub-token's prediction): entity-level micro F1, precision, recall and per-type
F1 from seqeval for tags with ``B-``/``I-`` (or ``S-``/``E-``) prefixes, in the tag scheme detected from train (IOB1,
IOB2, IOBES; ``--tag-scheme`` sets it); token accuracy for tags without prefixes (POS). Predicting "O" everywhere
scores entity F1 0, which the baseline warning uses.

Data: ``--task conll2003`` (``DATA_DIR/conll2003/{train,dev,test}.txt``, the original 4 columns, or the hub's
``eriktks/conll2003``), column files (CoNLL, CoNLL-U) with ``--token-column`` / ``--tag-column``, JSON/JSONL/parquet
(and hub datasets) with a list of tokens and a list of tags per row. The search split draws whole documents where
``-DOCSTART-`` marks them, else sentences.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from dataclasses import dataclass
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
    tokenizer_fingerprint,
)
from glp.data.conll import Sentences, read_columns, read_hub_columns, read_lists
from glp.errors import DataError, TaskError
from glp.kinds.base import TaskKind
from glp.kinds.registry import register_kind
from glp.tasks import Task

CONLL2003 = "conll2003"
CONLL2003_HUB = "eriktks/conll2003"
SCHEMES = ("IOB1", "IOB2", "IOBES", "none")


def detect_scheme(tags: list[list[str]]) -> str:
    """IOBES when S-/E- prefixes occur, IOB2 when every entity starts with B-, IOB1 when I- starts entities, "none"
    for tags without prefixes (parts of speech)."""
    flat = [t for s in tags for t in s]
    prefixed = [t for t in flat if len(t) > 2 and t[1] == "-" and t[0] in "BIESL"]
    if not prefixed or len(prefixed) + flat.count("O") < len(flat):
        return "none"
    if any(t[0] in "SEL" for t in prefixed):
        return "IOBES"
    for s in tags:
        prev = "O"
        for t in s:
            if t.startswith("I-") and (prev == "O" or prev[2:] != t[2:]):
                return "IOB1"
            prev = t
    return "IOB2"


def _tag_id(t: Any) -> int | None:
    """A tag id written as text or a whole float ("3", 3.0); None for anything else."""
    try:
        f = float(t)
    except (TypeError, ValueError, OverflowError):
        return None
    return int(f) if f.is_integer() else None


def _b_to_i(names: tuple[str, ...]) -> np.ndarray:
    """Class id → the id of its I- tag (B-X → I-X where I-X exists), for --label-all-tokens."""
    index = {n: i for i, n in enumerate(names)}
    return np.array([index.get("I-" + n[2:], i) if n.startswith("B-") else i for i, n in enumerate(names)])


@dataclass
class TokenPredictions:
    """The word-level predicted class ids of every row and the mean loss over the labelled tokens."""

    tags: list[np.ndarray]
    loss: float
    finite: bool


# ------------------------------------------------------------------------------------------------ kind


@register_kind
class TokenClassification(TaskKind):
    name = "token-classification"
    auto_class = "AutoModelForTokenClassification"
    pipeline_tag = "token-classification"
    description = "a tag for every word: named entities (seqeval entity F1), parts of speech (token accuracy)"
    extra_splits = ("test",)
    pre_split_words = True

    @classmethod
    def claims(cls, spec: Any) -> bool:
        if getattr(spec, "tag_column", None) is not None or getattr(spec, "token_column", None) is not None:
            return True
        if str(spec.task).lower().replace("-", "").replace("_", "") == CONLL2003:
            return True
        train = getattr(spec, "train_file", None)
        if train and Path(train).suffix.lower() in (".conll", ".conllu", ".iob", ".bio"):
            return True
        if train and Path(train).suffix.lower() in (".json", ".jsonl", ".ndjson") and Path(train).is_file():
            try:
                with open(train, encoding="utf-8") as fh:
                    first = fh.readline()
                row = json.loads(first)
            except (OSError, ValueError, RecursionError):  # not UTF-8, not JSON: the reader says what is wrong
                return False
            return isinstance(row, dict) and isinstance(row.get("tokens"), list)
        return False

    # -- data -----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, spec: Any):
        label_names = tuple(spec.label_names) if getattr(spec, "label_names", None) else None
        name = str(spec.task)
        conll = name.lower().replace("-", "").replace("_", "") == CONLL2003
        files = {"train": spec.train_file, "dev": spec.dev_file, "test": getattr(spec, "test_file", None)}
        if spec.train_file or spec.dev_file:
            if not (spec.train_file and spec.dev_file):
                raise DataError("give both --train-file and --dev-file (and --test-file if you have one)")
            source = f"files:train={spec.train_file},dev={spec.dev_file}"
            splits = {k: cls._read(f, spec) for k, f in files.items() if f}
        elif conll and spec.data_dir:
            root = Path(spec.data_dir) / CONLL2003
            if not root.is_dir():
                raise DataError(f"no {CONLL2003} directory in {spec.data_dir} (expected {root / 'train.txt'})")
            source = f"conll2003-dir:{root}"
            splits = {k: read_columns(root / f"{k}.txt", 0, 3) for k in ("train", "dev", "test")}
        elif spec.hub_dataset or conll:
            hub = spec.hub_dataset or CONLL2003_HUB
            splits, hub_names = read_hub_columns(hub, spec.token_column or "tokens", spec.tag_column or "ner_tags")
            label_names = label_names or hub_names
            source = f"hub:{hub}"
        else:
            raise TaskError(
                f"task {name!r} (token classification): give --train-file and --dev-file, --hub-dataset, or "
                f"--task {CONLL2003} with --data-dir"
            )
        for split in ("train", "dev"):
            if split not in splits:
                raise DataError(f"no {split} split for task {name!r} ({source})")
        for s in splits.values():
            s.tags = [cls._tag_names(t, label_names, s, i) for i, t in enumerate(s.tags)]
        tags = sorted({t for sent in splits["train"].tags for t in sent})
        tags = (["O"] if "O" in tags else []) + [t for t in tags if t != "O"]
        if label_names:
            tags = list(label_names)
        scheme = spec.tag_scheme or detect_scheme(splits["train"].tags)
        if scheme not in SCHEMES:
            raise TaskError(f"--tag-scheme {scheme!r}: one of {', '.join(SCHEMES)}")
        metric = "accuracy" if scheme == "none" else "entity-f1"
        metrics = ("accuracy",) if scheme == "none" else ("entity-f1", "precision", "recall", "accuracy")
        task = Task(
            name=CONLL2003 if conll else name,
            text_columns=(str(spec.token_column if spec.token_column is not None else "tokens"),),
            label_column=str(spec.tag_column if spec.tag_column is not None else "tags"),
            num_labels=len(tags),
            is_regression=False,
            metric=metric,
            label_names=tuple(tags),
            metrics=metrics,
            kind=cls.name,
            options=tuple(sorted({"scheme": scheme, "label_all_tokens": bool(spec.label_all_tokens)}.items())),
        )
        ex = {k: cls._examples(s, tags, k) for k, s in splits.items()}
        notes = [f"tag scheme {scheme}" + (" (detected from train)" if not spec.tag_scheme else "")]
        return TaskDataset(
            task=task,
            train=ex.pop("train"),
            dev=ex.pop("dev"),
            source=source,
            extra_dev=ex,
            notes=notes,
        )

    @staticmethod
    def _read(path: str, spec: Any) -> Sentences:
        if Path(path).suffix.lower() in (".json", ".jsonl", ".ndjson", ".parquet", ".pq"):
            return read_lists(path, str(spec.token_column or "tokens"), str(spec.tag_column or "ner_tags"))

        def col(v: Any, default: int, flag: str) -> int:
            if v is None:
                return default
            try:
                return int(v)
            except ValueError:
                raise DataError(f"{flag} {v!r}: a column file takes a 0-based column number") from None

        return read_columns(path, col(spec.token_column, 0, "--token-column"), col(spec.tag_column, -1, "--tag-column"))

    @staticmethod
    def _tag_names(tags: list, names: tuple[str, ...] | None, s: Sentences, i: int) -> list[str]:
        if all(isinstance(t, str) for t in tags):
            return list(tags)
        if names is None:
            raise DataError(f"{s.where[i]}: integer tags need their names: give --label-names O,B-PER,I-PER,...")
        ids = [t if isinstance(t, int) and not isinstance(t, bool) else _tag_id(t) for t in tags]
        if not all(isinstance(t, int) and 0 <= t < len(names) for t in ids):
            raise DataError(f"{s.where[i]}: tag ids {tags} do not fit the {len(names)} label names")
        return [names[t] for t in ids]

    @staticmethod
    def _examples(s: Sentences, tags: list[str], split: str):
        index = {t: i for i, t in enumerate(tags)}
        labels = []
        for i, sent in enumerate(s.tags):
            unknown = [t for t in sent if t not in index]
            if unknown:
                raise DataError(
                    f"{s.where[i]}: tag {unknown[0]!r} never occurs in train ({split}); the train tags are "
                    f"{', '.join(tags)}"
                )
            labels.append(np.array([index[t] for t in sent], dtype=np.int64))
        return Examples(s.words, None, labels, np.arange(len(s.words)), groups=np.array(s.docs))

    def split(self, train, eval_fraction: float, seed: int):
        """Whole documents to search-eval (seeded) until it holds ``eval_fraction`` of the sentences; sentences
        where the data has no documents."""
        return group_split(train, eval_fraction, seed)

    def encode(self, examples, tokenizer, max_length: int, cache_dir=None):
        """Sub-word ids of every sentence (``is_split_into_words``), labels aligned as run_ner.py aligns them, the
        first sub-token of every word (``extra["word_starts"]``) and the word-level tags scored
        (``extra["word_tags"]``; words cut off by ``max_length`` are not among them, and are counted)."""
        label_all = bool(self.task.option("label_all_tokens", False))
        key = hashlib.sha256(b"glp-encode-words/v1|")
        key.update(tokenizer_fingerprint(tokenizer).encode("utf-8", "surrogatepass"))
        key.update(f"|{int(max_length)}|{label_all}|".encode())
        key.update(json.dumps(examples.text_a, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        for lab in examples.labels:
            key.update(np.asarray(lab, dtype="<i8").tobytes())
        digest = key.hexdigest()
        hit = _CACHE.get(digest)
        if hit is None:
            hit = self._tokenize(examples, tokenizer, int(max_length), label_all)
            _CACHE[digest] = hit
            while len(_CACHE) > 8:
                _CACHE.pop(next(iter(_CACHE)))
        ids, types, labels, starts, word_tags, cut_words, cut_rows = hit
        if cut_words:
            warnings.warn(
                f"{cut_words} words in {cut_rows} sentences are cut off by --max-seq-length {max_length}; they are "
                "not scored (neither gold nor predicted)",
                stacklevel=2,
            )
        return Encoded(ids, types, labels, extra={"word_starts": starts, "word_tags": word_tags})

    def _tokenize(self, examples, tokenizer, max_length: int, label_all: bool):
        b_to_i = _b_to_i(self.task.label_names)
        ids, types, labels, starts, word_tags = [], [], [], [], []
        cut_words = cut_rows = 0
        words = examples.text_a
        for start in range(0, len(words), 1024):
            batch = words[start : start + 1024]
            try:
                enc = tokenizer(batch, is_split_into_words=True, truncation=True, max_length=max_length)
            except (TypeError, ValueError) as e:
                raise DataError(
                    f"the tokenizer cannot take pre-split words ({e}); token classification needs a fast tokenizer "
                    "(tokenizer.json) that can"
                ) from e
            for r in range(len(batch)):
                word_ids = enc.word_ids(r)
                tags = examples.labels[start + r]
                lab = np.full(len(word_ids), -100, dtype=np.int64)
                first: list[int] = []
                prev = None
                for pos, w in enumerate(word_ids):
                    if w is None:
                        pass
                    elif w != prev:
                        lab[pos] = tags[w]
                        first.append(pos)
                    elif label_all:
                        lab[pos] = b_to_i[tags[w]]
                    prev = w
                kept = len(first)
                if kept < len(tags):
                    cut_words += len(tags) - kept
                    cut_rows += 1
                ids.append(np.asarray(enc["input_ids"][r], dtype=np.int64))
                if "token_type_ids" in enc:
                    types.append(np.asarray(enc["token_type_ids"][r], dtype=np.int64))
                labels.append(lab)
                starts.append(np.asarray(first, dtype=np.int64))
                word_tags.append(np.asarray(tags[:kept], dtype=np.int64))
        return ids, (types or None), labels, starts, word_tags, cut_words, cut_rows

    # -- model ----------------------------------------------------------------------------------------
    def head_config(self, config: Any) -> Any:
        names = self.task.label_names
        config.num_labels = len(names)
        config.id2label = {i: str(n) for i, n in enumerate(names)}
        config.label2id = {str(n): i for i, n in enumerate(names)}
        if getattr(config, "pad_token_id", None) is None:
            eos = getattr(config, "eos_token_id", None)
            config.pad_token_id = int((eos[0] if isinstance(eos, list | tuple) else eos) or 0)
        return config

    def head_key(self) -> tuple:
        return (self.name, tuple(self.task.label_names))

    # -- training -------------------------------------------------------------------------------------
    def collate(self, table, idx: np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
        out = collate_inputs(table, idx, pad_id)
        labels = np.full(out["input_ids"].shape, -100, dtype=np.int64)
        for r, j in enumerate(idx):
            lab = table.labels[j]
            labels[r, : len(lab)] = lab
        out["labels"] = labels
        return out

    def loss_sum(self, logits, labels):
        logits = logits.float()
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
        )

    def units(self, batch) -> int:
        return int((np.asarray(batch["labels"]) != -100).sum())

    # -- scoring --------------------------------------------------------------------------------------
    def gather(self, outputs, order, table) -> TokenPredictions:
        tags: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(table)
        total, count, finite = 0.0, 0, True
        for out, idx in zip(outputs, order, strict=True):
            labels = torch.from_numpy(self.collate(table, idx, 0)["labels"]).to(out.device)
            finite = finite and bool(torch.isfinite(out).all())
            total += float(self.loss_sum(out, labels))
            count += int((labels != -100).sum())
            pred = out.argmax(-1).cpu().numpy()
            for r, j in enumerate(idx):
                tags[int(j)] = pred[r, table.extra["word_starts"][int(j)]]
        return TokenPredictions(tags, total / max(count, 1), finite)

    def score(self, predictions: TokenPredictions, table) -> tuple[dict[str, float], float | None]:
        names = self.task.label_names
        gold = [[names[i] for i in row] for row in table.extra["word_tags"]]
        pred = [[names[i] for i in row] for row in predictions.tags]
        flat_g = [t for s in gold for t in s]
        flat_p = [t for s in pred for t in s]
        metrics = {"accuracy": float(np.mean([a == b for a, b in zip(flat_g, flat_p, strict=True)])) if flat_g else 0.0}
        scheme = self.task.option("scheme", "IOB2")
        if scheme != "none":
            # deferred: only entity-tagged tasks need it
            from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

            kw: dict[str, Any] = {"zero_division": 0}
            if scheme == "IOBES":
                from seqeval.scheme import IOBES  # deferred: only entity-tagged tasks need it

                kw.update(mode="strict", scheme=IOBES)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                metrics["entity-f1"] = float(f1_score(gold, pred, **kw))
                metrics["precision"] = float(precision_score(gold, pred, **kw))
                metrics["recall"] = float(recall_score(gold, pred, **kw))
                report = classification_report(gold, pred, output_dict=True, **kw)
            for label, row in sorted(report.items()):
                if isinstance(row, dict) and " avg" not in label:
                    metrics[f"f1-{label}"] = float(row["f1-score"])
        loss = predictions.loss
        return metrics, (loss if np.isfinite(loss) else None)

    def constant_score(self, labels) -> float | None:
        if self.task.option("scheme", "IOB2") != "none":
            return 0.0  # "O" everywhere finds no entity
        counts = Counter(int(x) for lab in labels for x in np.asarray(lab) if x != -100)
        total = sum(counts.values())
        return max(counts.values()) / total if total else None


_CACHE: dict[str, tuple] = {}
