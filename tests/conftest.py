import os

import pytest


def pytest_configure(config):
    """One torch thread for the whole suite, subprocesses included: tiny models on a small shared machine run
    several times faster so, and results do not depend on the machine's core count."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A word-level fast tokenizer over 'w0'..'w94' plus BERT-style special tokens (vocab size 100)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(specials + [f"w{i}" for i in range(95)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


# ---------------------------------------------------------------------------------- tiny model + toy task

TINY_WORDS = "the quick brown fox jumps over lazy dog a man is playing guitar on stage".split()


def write_toy_csv(path, n: int, seed: int) -> None:
    """A toy sentiment CSV (text,label): random words with "good" (pos) or "bad" (neg) inserted."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = ["text,label"]
    for _ in range(n):
        label = int(rng.integers(2))
        words = list(rng.choice(TINY_WORDS, size=int(rng.integers(4, 12))))
        words.insert(int(rng.integers(len(words))), "good" if label else "bad")
        lines.append(f"{' '.join(words)},{'pos' if label else 'neg'}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory):
    """ROOT with model/ (random 4-layer BERT, hidden 32, its tokenizer), train.csv (240 rows), dev.csv (60)."""
    from helpers import make_tiny_tokenizer
    from transformers import BertConfig, BertForSequenceClassification

    root = tmp_path_factory.mktemp("tiny")
    model_dir = root / "model"
    tok = make_tiny_tokenizer(model_dir, corpus=[" ".join(TINY_WORDS + ["good", "bad"])] * 3)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
    )
    import torch

    with torch.random.fork_rng(devices=[]):  # the same weights in every process: tests that train on it are stable
        torch.manual_seed(0)
        BertForSequenceClassification(cfg).save_pretrained(model_dir)
    write_toy_csv(root / "train.csv", 240, 0)
    write_toy_csv(root / "dev.csv", 60, 1)
    return root


def tiny_prune_config(root, out, **kw):
    """A PruneConfig for the toy task of ``tiny_setup`` (fast hyper-parameters)."""
    from glp.commands.prune import PruneConfig
    from glp.trial.hparams import HParams

    base = dict(
        model=str(root / "model"),
        task="toy",
        train_file=str(root / "train.csv"),
        dev_file=str(root / "dev.csv"),
        text_columns=("text",),
        label_column="label",
        metric="accuracy",
        max_remove=2,
        out=str(out),
        hparams=HParams(learning_rate=1e-3, num_train_epochs=1.0, per_device_train_batch_size=16, max_seq_length=32),
    )
    base.update(kw)
    return PruneConfig(**base)


@pytest.fixture(scope="session")
def tiny_run(tiny_setup, tmp_path_factory):
    """A finished greedy run directory (n = 1, 2, with baseline) on the toy task; treat it as read-only."""
    from glp.commands.prune import prune

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    prune(tiny_prune_config(tiny_setup, out))
    return out


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance of 2 CPUs for the module's tests (skipped without Ray)."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'glp[ray]')")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024**2,
        logging_level="ERROR",
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
