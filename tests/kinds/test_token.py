"""Token classification: readers (CoNLL-2003 columns, CoNLL-U, JSONL with integer tags), label alignment, the
kind through a real search, export that tags with a plain transformers pipeline, and bad input as one line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import TINY_WORDS

from glp.data import DataSpec
from glp.data.conll import read_columns
from glp.errors import DataError
from glp.kinds import kind_for, kind_of, load_data
from glp.kinds.token import TokenClassification, detect_scheme
from glp.tasks import Task

PEOPLE = ["fox", "dog", "man"]
PLACES = ["stage", "guitar"]


def _sentences(n: int, seed: int):
    """Random sentences of TINY_WORDS; people are I-PER, places I-LOC (IOB1), 'the lazy dog' a two-word PER."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        words = list(rng.choice(TINY_WORDS, size=int(rng.integers(3, 9))))
        tags = ["I-PER" if w in PEOPLE else "I-LOC" if w in PLACES else "O" for w in words]
        out.append((words, tags))
    return out


def write_conll(path, n: int, seed: int, docs: int = 4) -> None:
    """The CoNLL-2003 layout: word POS chunk NER, -DOCSTART- lines, blank lines between sentences."""
    lines = []
    for i, (words, tags) in enumerate(_sentences(n, seed)):
        if i % max(1, n // docs) == 0:
            lines += ["-DOCSTART- -X- -X- O", ""]
        lines += [f"{w} NN I-NP {t}" for w, t in zip(words, tags, strict=True)] + [""]
    path.write_text("\n".join(lines) + "\n")


def test_conll2003_columns_and_documents(tmp_path):
    write_conll(tmp_path / "train.txt", 40, 0)
    s = read_columns(tmp_path / "train.txt", 0, 3)
    assert len(s.words) == 40 and sorted(set(s.docs)) == [1, 2, 3, 4]
    assert all(len(w) == len(t) for w, t in zip(s.words, s.tags, strict=True))
    assert s.where[0] == f"{tmp_path / 'train.txt'}, line 3"
    assert detect_scheme(s.tags) == "IOB1"
    assert detect_scheme([["B-PER", "I-PER", "O"]]) == "IOB2" and detect_scheme([["S-LOC", "O"]]) == "IOBES"
    assert detect_scheme([["NN", "VB"]]) == "none"


def test_conll2003_tokens_that_look_like_conllu_lines_are_kept(tmp_path):
    """'#', '1-0' and '3.5' are tokens in CoNLL-2003 (not comments, ranges or empty nodes, which only CoNLL-U has)."""
    (tmp_path / "t.txt").write_text("Celtic NNP I-NP I-ORG\n1-0 CD I-NP O\n# NN I-NP O\n3.5 CD I-NP O\n\n")
    assert read_columns(tmp_path / "t.txt", 0, 3).words == [["Celtic", "1-0", "#", "3.5"]]


def test_the_real_conll2003_files_have_the_official_counts():
    """Tjong Kim Sang & De Meulder 2003, Table 2: sentences, tokens and articles of train / dev / test."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "shared" / "data" / "conll2003"
    if not root.is_dir():
        pytest.skip("no ../shared/data/conll2003")
    counts = {}
    for split in ("train", "dev", "test"):
        s = read_columns(root / f"{split}.txt", 0, 3)
        counts[split] = (len(s.words), sum(map(len, s.words)), len(set(s.docs)))
    assert counts == {"train": (14041, 203621, 946), "dev": (3250, 51362, 216), "test": (3453, 46435, 231)}


def test_conllu_comments_ranges_and_empty_nodes(tmp_path):
    (tmp_path / "a.conllu").write_text(
        "# sent_id = 1\n# text = I saw it.\n"
        "1\tI\tI\tPRON\t_\t_\t2\tnsubj\t_\t_\n"
        "2-3\tsaw\t_\t_\t_\t_\t_\t_\t_\t_\n"
        "2\tsaw\tsee\tVERB\t_\t_\t0\troot\t_\t_\n"
        "3\tit\tit\tPRON\t_\t_\t2\tobj\t_\t_\n"
        "3.1\tx\tx\tX\t_\t_\t_\t_\t_\t_\n"
        "4\t.\t.\tPUNCT\t_\t_\t2\tpunct\t_\t_\n\n"
        "1\tYou\tyou\tPRON\t_\t_\t2\tnsubj\t_\t_\n"
        "2\trun\trun\tVERB\t_\t_\t0\troot\t_\t_\n"
    )
    s = read_columns(tmp_path / "a.conllu", 1, 3)
    assert s.words == [["I", "saw", "it", "."], ["You", "run"]]
    assert s.tags == [["PRON", "VERB", "PRON", "PUNCT"], ["PRON", "VERB"]]
    spec = DataSpec(task="upos", train_file=str(tmp_path / "a.conllu"), dev_file=str(tmp_path / "a.conllu"),
                    token_column="1", tag_column="3")  # fmt: skip
    assert kind_for(spec) is TokenClassification
    ds = load_data(spec)
    assert ds.task.metric == "accuracy" and ds.task.option("scheme") == "none"  # POS: token accuracy


def test_jsonl_with_integer_tags_needs_names(tmp_path):
    rows = [{"tokens": ["the", "fox"], "ner_tags": [0, 1]}, {"tokens": ["a", "dog", "ran"], "ner_tags": [0, 1, 0]}]
    for f in ("train.jsonl", "dev.jsonl"):
        (tmp_path / f).write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = DataSpec(task="mine", train_file=str(tmp_path / "train.jsonl"), dev_file=str(tmp_path / "dev.jsonl"))
    assert kind_for(spec) is TokenClassification  # a list column of tokens says it
    with pytest.raises(DataError, match="integer tags need their names: give --label-names"):
        load_data(spec)
    ds = load_data(DataSpec(**{**spec.__dict__, "label_names": ("O", "B-ANIMAL")}))
    assert ds.task.label_names == ("O", "B-ANIMAL") and ds.task.metric == "entity-f1"
    assert [list(x) for x in ds.train.labels] == [[0, 1], [0, 1, 0]]


def test_label_alignment_as_run_ner(tiny_setup):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_setup / "model")
    from glp.data import Examples
    from glp.tasks import Task

    def task(label_all: bool) -> Task:
        opts = (("label_all_tokens", label_all), ("scheme", "IOB2"))
        names = ("O", "B-PER", "I-PER")
        return Task("t", ("tokens",), "tags", 3, False, "entity-f1", names, kind="token-classification", options=opts)

    # "foxes" is not in the vocabulary: it splits into sub-tokens
    ex = Examples([["the", "foxes", "jumps"]], None, [np.array([0, 1, 0])], np.arange(1))
    pieces = tok(["the", "foxes", "jumps"], is_split_into_words=True)
    word_ids = pieces.word_ids()
    assert word_ids.count(1) > 1
    first = kind_of(task(False)).encode(ex, tok, 32)
    labels = first.labels[0]
    subsequent = [p for p, w in enumerate(word_ids) if w == 1][1:]
    assert labels[word_ids.index(1)] == 1 and all(labels[p] == -100 for p in subsequent)
    assert labels[0] == -100 and labels[-1] == -100  # [CLS], [SEP]
    assert list(first.extra["word_tags"][0]) == [0, 1, 0] and len(first.extra["word_starts"][0]) == 3
    every = kind_of(task(True)).encode(ex, tok, 32).labels[0]
    assert all(every[p] == 2 for p in subsequent)  # B-PER's continuation is I-PER
    # cut off by max_length: counted, and not scored
    with pytest.warns(UserWarning, match="1 words in 1 sentences are cut off"):
        short = kind_of(task(False)).encode(ex, tok, 4)
    assert len(short.extra["word_tags"][0]) == len(short.extra["word_starts"][0]) < 3


def _byte_level_model(path, cls="roberta", pre=None, **saved):
    """A tiny RoBERTa config and a byte-level BPE tokenizer: RoBERTa's class (saved without add_prefix_space, as
    roberta-base's is, or with ``saved``), or the generic class transformers builds a tokenizer.json with (``cls``
    other than "roberta"), or another pre-tokenizer (``pre``)."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaTokenizerFast

    tok = Tokenizer(tok_models.BPE())
    tok.pre_tokenizer = pre or pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    corpus = [" ".join(TINY_WORDS) + " the dog's guitar"] * 20
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=alphabet)
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    make = RobertaTokenizerFast if cls == "roberta" else PreTrainedTokenizerFast
    make(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
         mask_token="<mask>", **saved).save_pretrained(path)
    RobertaConfig(vocab_size=len(tok.get_vocab()), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=32).save_pretrained(path)
    return path


def test_words_of_a_byte_level_bpe_tokenizer_read_as_after_a_space(tmp_path, tiny_setup):
    """transformers tokenizes pre-split words with RoBERTa's tokenizer as if glued together ("fox" unlike the " fox"
    of running text) unless it was loaded with add_prefix_space=True: glp loads it so for token classification (as
    run_ner.py does), the export saves it so, and the journal keys say so; a WordPiece tokenizer is left as it is."""
    from glp import models
    from glp.data import Examples
    from glp.models.words import glues_words
    from glp.tasks import Task

    model = str(_byte_level_model(tmp_path / "roberta"))
    plain = models.load_tokenizer(model)
    assert glues_words(plain) and not plain.add_prefix_space
    spaced = models.load_tokenizer(model, pre_split_words=True)
    assert spaced.add_prefix_space and not glues_words(spaced)
    task = Task("t", ("tokens",), "tags", 2, False, "entity-f1", ("O", "I-PER"), kind="token-classification")
    kind = kind_of(task)
    ex = Examples([["the", "quick", "fox"]], None, [np.array([0, 0, 1])], np.arange(1))
    running = list(plain("the quick fox")["input_ids"])  # <s> the Ġquick Ġfox </s>
    assert list(kind.encode(ex, spaced, 32).input_ids[0][-3:]) == running[-3:]  # ... Ġquick Ġfox </s>
    assert list(kind.encode(ex, plain, 32).input_ids[0][-3:]) != running[-3:]  # ... qui ck fo x </s>
    assert kind.tokenizer_context(spaced) == {"add_prefix_space": True} and kind.tokenizer_context(plain) == {}
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    from glp.commands.export import _save_model

    net = AutoModelForTokenClassification.from_config(AutoConfig.from_pretrained(model))
    assert _save_model(net, models.resolve(model), tmp_path / "out", kind.pre_split_words) is None
    assert AutoTokenizer.from_pretrained(tmp_path / "out").add_prefix_space  # a pipeline reads words as trained
    wordpiece = models.load_tokenizer(str(tiny_setup / "model"), pre_split_words=True)
    assert not glues_words(wordpiece) and kind.tokenizer_context(wordpiece) == {}


def test_a_byte_level_tokenizer_is_spaced_whatever_its_class_and_left_alone_when_spaced_or_beyond_mending(tmp_path):
    """A generic tokenizer class keeps add_prefix_space=True without applying it: glp sets its byte-level
    pre-tokenizer. One saved with add_prefix_space=True is left alone and its journal keys stay as they were. One
    that add_prefix_space cannot mend (a split before a byte-level step without its own regex, as Qwen2's: a space
    would go before "'s" too) is kept as it was, with a warning."""
    from tokenizers import Regex, pre_tokenizers

    from glp import models
    from glp.models.words import glues_words

    kind = kind_of(Task("t", ("tokens",), "tags", 2, False, "entity-f1", ("O", "I-PER"), kind="token-classification"))
    generic = models.load_tokenizer(str(_byte_level_model(tmp_path / "generic", cls="generic")), pre_split_words=True)
    assert not glues_words(generic) and kind.tokenizer_context(generic) == {"add_prefix_space": True}
    ready = models.load_tokenizer(str(_byte_level_model(tmp_path / "ready", add_prefix_space=True)),
                                  pre_split_words=True)
    assert ready.add_prefix_space and not glues_words(ready) and kind.tokenizer_context(ready) == {}
    split = pre_tokenizers.Split(Regex(r"'s|\s?\w+|\s+"), behavior="isolated")
    pre = pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    model = str(_byte_level_model(tmp_path / "qwen-like", cls="generic", pre=pre))
    with pytest.warns(UserWarning, match="add_prefix_space=True does not mend it"):
        kept = models.load_tokenizer(model, pre_split_words=True)
    assert glues_words(kept) and kind.tokenizer_context(kept) == {}


def test_bad_input_is_one_line(capsys, tmp_path, tiny_setup):
    model = str(tiny_setup / "model")
    write_conll(tmp_path / "train.txt", 20, 0)
    write_conll(tmp_path / "dev.txt", 10, 1)
    files = ["--train-file", str(tmp_path / "train.txt"), "--dev-file", str(tmp_path / "dev.txt"), "--tag-column", "3"]

    def run(*args: str) -> str:
        from glp.cli import main

        with pytest.raises(SystemExit) as info:
            main(["prune", model, "--task", "ner", "--out", str(tmp_path / "r"), *args])
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if x.strip()]
        assert info.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
        return lines[0]

    bad = tmp_path / "bad.txt"
    bad.write_text("EU NNP I-NP I-ORG\nrejects VBZ O\n")
    line = run("--train-file", str(bad), "--dev-file", str(tmp_path / "dev.txt"), "--tag-column", "3")
    assert f"{bad}, line 2: 3 columns" in line
    dev = tmp_path / "dev2.txt"
    dev.write_text("EU NNP I-NP I-ORG\n")
    line = run("--train-file", str(tmp_path / "train.txt"), "--dev-file", str(dev), "--tag-column", "3")
    assert "tag 'I-ORG' never occurs in train" in line and f"{dev}, line 1" in line
    empty = tmp_path / "e.jsonl"
    empty.write_text(json.dumps({"tokens": [], "ner_tags": []}) + "\n")
    assert "a sentence with no tokens" in run("--train-file", str(empty), "--dev-file", str(empty))
    nocol = tmp_path / "n.jsonl"
    nocol.write_text(json.dumps({"tokens": ["a"], "tags": ["O"]}) + "\n")
    line = run("--train-file", str(nocol), "--dev-file", str(nocol))
    assert "tag column 'ner_tags' not found" in line
    assert "--tag-column 7" in run(*files[:4], "--tag-column", "7")


@pytest.mark.slow
def test_search_export_and_a_plain_pipeline(tiny_setup, tmp_path):
    """A real search on a toy NER task, then an export that tags with pipeline() in a process without glp."""
    from glp.commands.evaluate import EvalConfig, evaluate
    from glp.commands.export import export
    from glp.commands.prune import PruneConfig, prune
    from glp.trial.hparams import HParams

    for name, n, seed in (("train", 240, 0), ("dev", 40, 1), ("test", 40, 2)):
        write_conll(tmp_path / f"{name}.txt", n, seed)
    hp = HParams(learning_rate=5e-3, num_train_epochs=4.0, per_device_train_batch_size=16, max_seq_length=32)
    cfg = PruneConfig(model=str(tiny_setup / "model"), task="ner", train_file=str(tmp_path / "train.txt"),
                      dev_file=str(tmp_path / "dev.txt"), test_file=str(tmp_path / "test.txt"), tag_column="3",
                      max_remove=2, out=str(tmp_path / "run"), hparams=hp, halving=True, rungs=2, eta=2)  # fmt: skip
    plan = prune(cfg)
    assert plan.task["kind"] == "token-classification" and plan.task["metric"] == "entity-f1"
    assert plan.task["options"]["scheme"] == "IOB1"
    assert plan.baseline["constant"] == 0.0 and plan.baseline["mean"] > 0.5 and "warning" not in plan.baseline
    assert [len(s.candidates) for s in plan.steps] == [4, 3]
    # glp evaluate scores dev and test, from the journaled settings
    result = evaluate(EvalConfig(run_dirs=(str(tmp_path / "run"),), out=str(tmp_path / "eval"), ns=(1,), seeds=1))
    rec = result["records"][0]
    assert rec["score"] is not None and rec["test_score"] is not None and "summary_test" in result
    assert any(k.startswith("test:f1-") for k in rec["metrics"])  # per-type F1 on test too
    out = export(tmp_path / "run", 1, tmp_path / "model", finetune=True)
    card = (tmp_path / "model" / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "AutoModelForTokenClassification" in card
    script = tmp_path / "tag.py"
    script.write_text(
        textwrap.dedent(
            """
        import json, sys
        from transformers import pipeline
        tagger = pipeline("token-classification", model=sys.argv[1], aggregation_strategy="simple")
        groups = tagger("the quick brown fox jumps over the lazy dog on stage")
        assert not any(k == "glp" or k.startswith("glp.") for k in sys.modules), "glp was imported"
        json.dump([{"entity_group": g["entity_group"], "word": g["word"]} for g in groups], open(sys.argv[2], "w"))
        """
        )
    )
    p = subprocess.run([sys.executable, "-I", str(script), str(tmp_path / "model"), str(tmp_path / "g.json")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert p.returncode == 0, p.stderr
    groups = json.loads((tmp_path / "g.json").read_text())
    assert {g["entity_group"] for g in groups} <= {"PER", "LOC"} and groups, groups
    assert out.manifest["metrics"]["dev"]["entity-f1"] > 0.5 and "entity-f1" in out.manifest["metrics"]["test"]
    assert "Test set (40 examples)" in card


def test_malformed_files_and_tag_ids_are_data_errors(tmp_path):
    """What the fuzz tests (test_fuzz.py) found: text that is not UTF-8, and tag ids that are no ids."""
    (tmp_path / "bad.conll").write_bytes(b"EU\tB-ORG\n\xff\tO\n")
    with pytest.raises(DataError, match=r"bad\.conll: not valid UTF-8"):
        read_columns(tmp_path / "bad.conll", 0, 1)
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe{}")
    spec = DataSpec(task="mine", train_file=str(tmp_path / "bin.json"), dev_file=str(tmp_path / "bin.json"))
    assert not TokenClassification.claims(spec)  # the table reader says what is wrong with it
    dev = tmp_path / "dev.jsonl"
    dev.write_text(json.dumps({"tokens": ["a"], "ner_tags": [0]}) + "\n")
    for bad in (None, {"x": 1}, float("inf"), -1, 1.5, 7, "x"):
        train = tmp_path / "train.jsonl"
        train.write_text(json.dumps({"tokens": ["a", "b"], "ner_tags": [0, bad]}) + "\n")
        spec = DataSpec(task="mine", train_file=str(train), dev_file=str(dev), label_names=("O", "B-PER"))
        with pytest.raises(DataError, match=r"train\.jsonl, row 0 \(line 1\): tag ids .* do not fit the 2 label"):
            load_data(spec)
    train.write_text(json.dumps({"tokens": ["a", "b"], "ner_tags": [0, "1"]}) + "\n")  # an id as text, as before
    assert load_data(spec).task.label_names == ("O", "B-PER")


def test_a_warm_started_search_tags_from_its_parents(tiny_setup, tmp_path):
    """--init parent on token classification: the first parent trains the whole schedule, every candidate
    --heal-steps from the previous step's winner, whose kept weights include the tag head."""
    from safetensors.torch import load_file

    from glp.commands.prune import PruneConfig, prune
    from glp.run.rundir import RunDir
    from glp.trial.hparams import HParams

    for name, n, seed in (("train", 160, 0), ("dev", 40, 1)):
        write_conll(tmp_path / f"{name}.txt", n, seed)
    hp = HParams(learning_rate=5e-3, num_train_epochs=4.0, per_device_train_batch_size=16, max_seq_length=32,
                 heal_steps=3)
    cfg = PruneConfig(model=str(tiny_setup / "model"), task="ner", train_file=str(tmp_path / "train.txt"),
                      dev_file=str(tmp_path / "dev.txt"), tag_column="3", max_remove=2, out=str(tmp_path / "run"),
                      hparams=hp, init="parent")  # fmt: skip
    plan = prune(cfg)
    assert plan.task["kind"] == "token-classification" and plan.strategy["init"] == "parent"
    assert sorted(plan.removals) == [1, 2] and plan.baseline["mean"] > 0.5
    with RunDir(tmp_path / "run").journal(lock=False) as store:
        steps = {tuple(r["removed"]): r["steps"] for r in store.results()}
    assert steps[()] > hp.heal_steps and all(v == hp.heal_steps for k, v in steps.items() if k)
    first = plan.removals[1][0]
    assert all(c.removed[0] == first for c in plan.steps[1].candidates)
    parent = load_file(str(tmp_path / "run" / plan.strategy["parents"]["1"]))
    assert parent["classifier.weight"].shape[0] == plan.task["num_labels"] == 3  # the tag head goes with it
