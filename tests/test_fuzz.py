"""Malformed input, generated (hypothesis): every reader of user files and run-directory artifacts either reads it
or fails with a `glp.errors.GLPError` that has a message, never with another exception.

Readers: tables (CSV, TSV, JSON, JSON Lines), a task's data with text and label columns, CoNLL column files and
CoNLL-U, token/tag lists, text corpora and prompt/response pairs (causal LM), the YAML ``--config`` with
`PruneConfig.from_dict`, plans and other JSON artifacts, and the trial journal. Bounded and seeded
(``derandomize``): the same examples on every run, the whole file in well under a minute on one core.
``GLP_FUZZ_EXAMPLES=2000 GLP_FUZZ_RANDOM=1`` searches longer, with fresh examples.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import warnings
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from glp.commands.prune import PruneConfig, load_yaml_config
from glp.data import DataSpec, load_task_data, read_table
from glp.data.conll import read_columns, read_lists
from glp.errors import GLPError
from glp.kinds.causal_lm import CausalLM, read_text_rows
from glp.kinds.token import TokenClassification
from glp.plan import SCHEMA, Candidate, Plan, Step, read_artifact
from glp.run.rundir import RunDir
from glp.trial.hparams import HParams

FUZZ = settings(
    max_examples=int(os.environ.get("GLP_FUZZ_EXAMPLES", "100")),  # more, for a longer search by hand
    derandomize=os.environ.get("GLP_FUZZ_RANDOM") is None,  # set: fresh random examples, not the fixed ones
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def reads_or_refuses(fn, *args, **kwargs):
    """``fn(...)``'s value, or None when it raised a GLPError with a message; any other exception fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped rows are reported as DataWarnings: not what is tested here
        try:
            return fn(*args, **kwargs)
        except GLPError as e:
            assert str(e).strip(), f"{type(e).__name__} without a message"
            return None


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """One directory for the whole module: each example overwrites its files."""
    return tmp_path_factory.mktemp("fuzz")


# ----------------------------------------------------------------------------------------------- strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["pos", "neg", "1", "0", " ", "O", "B-PER", "I-PER", "nan"])
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)
# characters a delimited or column file is made of, the awkward ones included
cells = st.text(alphabet=st.sampled_from(list("ab1 ,\t\"'\n\r\x00é#-.=\\")), max_size=12)
raw_bytes = st.binary(max_size=300)
# pathological JSON: nesting deeper than the parser's recursion limit, an integer longer than int() takes
PATHOLOGICAL = ["[" * 5000 + "]" * 5000, '{"a": ' * 3000 + "1" + "}" * 3000, "1" * 5000]


def _text_or_bytes(text_strategy):
    """A file's content: text (UTF-8), or bytes (usually not UTF-8)."""
    return text_strategy.map(lambda s: s.encode("utf-8", "surrogatepass")) | raw_bytes


def _csv(rows: list[list[str]], delimiter: str = ",") -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter).writerows(rows)
    return buf.getvalue()


# -------------------------------------------------------------------------------------------------- tables


@FUZZ
@given(
    suffix=st.sampled_from([".csv", ".tsv", ".json", ".jsonl", ".ndjson"]),
    content=_text_or_bytes(
        st.lists(st.lists(cells, max_size=4), max_size=6).map(_csv)
        | json_values.map(lambda v: json.dumps(v))
        | st.lists(json_values, max_size=5).map(lambda rows: "\n".join(json.dumps(r) for r in rows))
        | cells
    ),
)
@example(suffix=".json", content=PATHOLOGICAL[0].encode())
@example(suffix=".jsonl", content=PATHOLOGICAL[1].encode())
@example(suffix=".json", content=PATHOLOGICAL[2].encode())
@example(suffix=".csv", content=b"a,b\n1,\x00\n")
@example(suffix=".csv", content=b"\xff\xfe,a\n")
def test_read_table(work, suffix, content):
    path = work / f"table{suffix}"
    path.write_bytes(content)
    reads_or_refuses(read_table, path)


def mostly(good, bad, odds: int = 6):
    """Mostly ``good`` (so that readers get past their first check), sometimes ``bad``."""
    return st.one_of(*[good] * odds, bad)


short_text = st.text(max_size=10)
labels = st.sampled_from(["pos", "neg", "1", "0", 1, 0, 0.5, 2.25, True])
rows_strategy = st.lists(
    mostly(
        st.fixed_dictionaries({"text": short_text, "label": labels}, optional={"b": short_text}),
        st.dictionaries(st.sampled_from(["text", "label", "b", "x"]), json_values, max_size=4),
    ),
    min_size=1,
    max_size=8,
)


def _write_rows(path: Path, rows: list[dict]) -> None:
    if path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        cols = ["text", "label", "b"]
        path.write_text(_csv([cols] + [[str(r.get(c, "")) for c in cols] for r in rows]))


@FUZZ
@given(
    suffix=st.sampled_from([".csv", ".jsonl", ".json"]),
    train=rows_strategy,
    dev=rows_strategy,
    text_columns=st.sampled_from([("text",), ("text", "b"), ("nope",), ("text", "b", "x")]),
    metric=st.sampled_from([None, "accuracy", "f1", "macro-f1", "mcc", "spearman", "pearson", "nope"]),
)
@example(suffix=".jsonl", train=[{"text": "a", "label": 10**400}] * 2, dev=[{"text": "a", "label": 1}],
         text_columns=("text",), metric="spearman")  # fmt: skip
@example(suffix=".jsonl", train=[{"text": "a", "label": "1" * 5000}, {"text": "b", "label": "2"}],
         dev=[{"text": "a", "label": "2"}], text_columns=("text",), metric=None)  # fmt: skip
def test_load_task_data(work, suffix, train, dev, text_columns, metric):
    _write_rows(work / f"train{suffix}", train)
    _write_rows(work / f"dev{suffix}", dev)
    reads_or_refuses(
        load_task_data, "mine", train_file=work / f"train{suffix}", dev_file=work / f"dev{suffix}",
        text_columns=text_columns, label_column="label", metric=metric,
    )  # fmt: skip


# --------------------------------------------------------------------------------------- tagged words


conll_lines = st.lists(
    st.sampled_from(["", "-DOCSTART- -X- O O", "# sent_id = 1", "1-2\tdu\t_", "8.1\tx", "  ", "\t"])
    | st.lists(st.sampled_from(["1", "2", "the", "B-PER", "I-PER", "O", "_", "NN", "", "x y"]), max_size=10).map(
        "\t".join
    )
    | st.lists(cells, max_size=5).map(" ".join),
    max_size=15,
).map("\n".join)


@FUZZ
@given(
    suffix=st.sampled_from([".conll", ".conllu", ".txt", ".iob"]),
    content=_text_or_bytes(conll_lines),
    token_column=st.integers(-4, 10),
    tag_column=st.integers(-4, 10),
)
@example(suffix=".conll", content=b"EU\tB-ORG\n\xff\tO\n", token_column=0, tag_column=1)
@example(suffix=".txt", content=b"\xff\xfe\n", token_column=0, tag_column=-1)
def test_read_columns(work, suffix, content, token_column, tag_column):
    path = work / f"tags{suffix}"
    path.write_bytes(content)
    reads_or_refuses(read_columns, path, token_column, tag_column)


tags = st.sampled_from(["O", "B-PER", "I-PER", "E-PER", "S-LOC", "NN", 0, 1, 2, "2", 1.0, 1.5, -1, None])
token_rows = st.lists(
    mostly(
        st.lists(st.tuples(short_text, tags), min_size=1, max_size=4).map(
            lambda pairs: {"tokens": [w for w, _ in pairs], "ner_tags": [t for _, t in pairs]}
        ),
        st.fixed_dictionaries({"tokens": json_values, "ner_tags": st.lists(json_values, max_size=4) | json_values}),
    ),
    min_size=1,
    max_size=5,
)


@FUZZ
@given(train=token_rows, dev=token_rows, label_names=st.sampled_from([None, ("O", "B-PER", "I-PER"), ("O",)]))
@example(train=[{"tokens": ["a", "b"], "ner_tags": [0, None]}], dev=[], label_names=("O", "B-PER"))
@example(train=[{"tokens": ["a"], "ner_tags": [float("inf")]}], dev=[], label_names=("O", "B-PER"))
@example(train=[{"tokens": ["a"], "ner_tags": [{"x": 1}]}], dev=[], label_names=("O", "B-PER"))
def test_token_lists(work, train, dev, label_names):
    for name, rows in (("train", train), ("dev", dev)):
        (work / f"{name}.ner.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
        reads_or_refuses(read_lists, work / f"{name}.ner.jsonl", "tokens", "ner_tags")
    spec = DataSpec(task="ner", train_file=str(work / "train.ner.jsonl"), dev_file=str(work / "dev.ner.jsonl"),
                    label_names=label_names)  # fmt: skip
    reads_or_refuses(TokenClassification.load, spec)


@FUZZ
@given(content=_text_or_bytes(conll_lines), column=st.sampled_from([None, "0", "1", "-1", "x"]))
@example(content=b"\xff\n", column=None)
def test_token_classification_from_column_files(work, content, column):
    (work / "train.conll").write_bytes(content)
    (work / "dev.conll").write_bytes(b"a\tO\n\nb\tO\n")
    spec = DataSpec(task="ner", train_file=str(work / "train.conll"), dev_file=str(work / "dev.conll"),
                    token_column=column)  # fmt: skip
    reads_or_refuses(TokenClassification.load, spec)
    reads_or_refuses(TokenClassification.claims, spec)


# ------------------------------------------------------------------------------------------------ causal LM


@FUZZ
@given(content=_text_or_bytes(st.lists(cells | st.just(" = Title = "), max_size=8).map("\n".join)))
@example(content=b"\xff\xfe\x00 = T = \n")
def test_read_text_rows(work, content):
    path = work / "corpus.txt"
    path.write_bytes(content)
    reads_or_refuses(read_text_rows, path)


pair_rows = st.lists(
    mostly(
        st.fixed_dictionaries({"prompt": short_text, "response": short_text, "text": short_text}),
        st.dictionaries(st.sampled_from(["prompt", "response", "text"]), json_values, max_size=3),
    ),
    min_size=1,
    max_size=5,
)


@FUZZ
@given(suffix=st.sampled_from([".jsonl", ".csv", ".json"]), train=pair_rows, dev=pair_rows, pairs=st.booleans())
@example(suffix=".jsonl", train=[{"prompt": 1, "response": "x"}], dev=[{"response": "y"}], pairs=True)
def test_causal_lm_data(work, suffix, train, dev, pairs):
    for name, rows in (("train", train), ("dev", dev)):
        path = work / f"{name}.lm{suffix}"
        if suffix == ".csv":
            cols = ["prompt", "response", "text"]
            path.write_text(_csv([cols] + [[str(r.get(c, "")) for c in cols] for r in rows]))
        else:
            _write_rows(path, rows)
    cols = {"prompt_column": "prompt", "response_column": "response"} if pairs else {"text_column": "text"}
    spec = DataSpec(task="lm", train_file=str(work / f"train.lm{suffix}"), dev_file=str(work / f"dev.lm{suffix}"),
                    **cols)  # fmt: skip
    reads_or_refuses(CausalLM.load, spec)


# ---------------------------------------------------------------------------------------------- YAML --config

PLAUSIBLE = {  # setting: values a user might write, right and wrong
    "model": ["m"], "task": ["rte", "mine"], "hparams": [{"learning_rate": 1e-3}, {"max_seq_length": "abc"}, {}],
    "keep": [[0, 1], "0,1", 1, "a"], "devices": ["cpu", [0], 0, "cuda:9"], "text_columns": ["a,b", ["a"], 3],
    "label_names": ["O,B-PER", [0, 1]], "max_remove": [1, -1, "x"], "strategy": ["greedy", "beam", "nope"],
    "eval_fraction": [0.2, 1.5, "x"], "search_seeds": [2, 0], "seed": [1, 2.5], "stop_drop": ["1%", "x", 0.01],
    "proxy": ["bi", "nope"], "prefilter_top": [2, 0], "init": ["parent", "pretrained", "x"],
    "executor": ["local", "ray", "dask"], "learning_rate": [1e-3, 0, "x"], "max_seq_length": [32, 0, "abc"],
    "heal_steps": [5, -1], "beam_width": [2, "x", 0], "workers_per_device": [1, 0], "halving": [True, "x"],
}  # fmt: skip
settings_dicts = st.dictionaries(
    st.sampled_from(sorted(PLAUSIBLE)),
    st.sampled_from(sorted(PLAUSIBLE)).flatmap(lambda k: st.sampled_from(PLAUSIBLE[k])) | json_values,
    max_size=4,
).map(lambda d: {"model": "m", "task": "rte", **d})
settings_dicts = st.one_of(
    st.sampled_from(sorted(PLAUSIBLE)).flatmap(
        lambda k: st.sampled_from(PLAUSIBLE[k]).map(lambda v: {"model": "m", "task": "rte", k: v})
    ),
    settings_dicts,
)


def _yaml(d) -> str:
    return yaml.safe_dump(json.loads(json.dumps(d, default=str)), allow_unicode=True)


@FUZZ
@given(content=_text_or_bytes(settings_dicts.map(_yaml) | json_values.map(_yaml) | cells))
@example(content=b"model: m\nhparams: 5\n")
@example(content=b"model: m\nkeep: [a]\n")
@example(content=b"model: m\nkeep: 1\n")
@example(content=b"model: m\nhparams: {max_seq_length: abc}\n")
@example(content=b"model: m\nstrategy_settings: [1]\n")
@example(content=b"model: !!python/object:os.system x\n")
@example(content=b"\xff\xfe")
@example(content=b"model: m\nseed: .inf\n")
def test_yaml_config(work, content):
    path = work / "config.yaml"
    path.write_bytes(content)
    d = reads_or_refuses(load_yaml_config, path)
    if d is not None:
        reads_or_refuses(PruneConfig.from_dict, d)


# ------------------------------------------------------------------------------------ plans and artifacts


def _plan_dict() -> dict:
    cand = Candidate(removed=[1], added=1, scores=[0.5], mean=0.5, std=0.0, budget=1.0, status="ok")
    step = Step(n=1, candidates=[cand], chosen=[1], chosen_mean=0.5)
    task = {"name": "rte", "kind": "sequence-classification"}
    return Plan(model={"source": "m"}, task=task, data={}, hparams=HParams().to_dict(), strategy={"name": "greedy"},
                num_layers=4, max_remove=1, removals={1: [1]}, order=[1], steps=[step]).to_dict()  # fmt: skip


_DROP = object()  # a mutation that deletes the key


def _mutate(plan: dict, where: str, key: str, value) -> dict:
    """The plan with ``key`` of its top level, first step or first candidate set to ``value`` (or deleted)."""
    plan = json.loads(json.dumps(plan))
    target = {"plan": plan, "step": plan["steps"][0], "candidate": plan["steps"][0]["candidates"][0]}[where]
    if value is _DROP:
        target.pop(key, None)
    else:
        target[key] = value
    return plan


_PLAN = _plan_dict()
_WHERE = {"plan": [*_PLAN, "extra"], "step": [*_PLAN["steps"][0], "x"],
          "candidate": [*_PLAN["steps"][0]["candidates"][0], "x"]}  # fmt: skip
mutated_plans = st.sampled_from(sorted(_WHERE)).flatmap(
    lambda where: st.builds(
        _mutate, st.just(_PLAN), st.just(where), st.sampled_from(_WHERE[where]), json_values | st.just(_DROP)
    )
)


@FUZZ
@given(content=_text_or_bytes(mutated_plans.map(json.dumps) | json_values.map(json.dumps)))
@example(content=json.dumps(_plan_dict()).encode())
@example(content=json.dumps({**_plan_dict(), "removals": {"x": [1]}}).encode())
@example(content=json.dumps({**_plan_dict(), "removals": [1]}).encode())
@example(content=json.dumps({**_plan_dict(), "steps": ["x"]}).encode())
@example(content=PATHOLOGICAL[0].encode())
@example(content=b"\xff{}")
def test_plan_load(work, content):
    path = work / "plan.json"
    path.write_bytes(content)
    plan = reads_or_refuses(Plan.load, path)
    if plan is not None:  # what glp show and glp report read of it
        plan.table_rows()
        for n in plan.removals:
            plan.kept_layers(n)
    reads_or_refuses(read_artifact, path, None, "evaluation", "glp evaluate writes one")
    reads_or_refuses(read_artifact, path, SCHEMA, "plan", "glp prune writes one")


# -------------------------------------------------------------------------------------------------- journal


def _journal(run: Path) -> None:
    """What glp reads of a run's journal: its results, its meta data, the journaled settings."""
    with RunDir(run).journal(lock=False) as store:
        list(store.results())
        store.get_meta("x")
    RunDir(run).read_config()


@FUZZ
@given(content=raw_bytes | st.just(b"SQLite format 3\x00") | raw_bytes.map(lambda b: b"SQLite format 3\x00" + b))
@example(content=b"")
def test_a_garbage_journal(work, content):
    run = work / "run-garbage"
    run.mkdir(exist_ok=True)
    for f in run.iterdir():
        f.unlink()
    (run / "trials.sqlite").write_bytes(content)
    reads_or_refuses(_journal, run)


@FUZZ
@given(schema=st.sampled_from(["2", "x", ""]), value=st.sampled_from(["{", "", "[1,", "nan"]))
def test_a_journal_with_garbage_rows(work, schema, value):
    run = work / "run-rows"
    run.mkdir(exist_ok=True)
    for f in run.iterdir():
        f.unlink()
    with RunDir(run).journal(lock=False):
        pass
    db = sqlite3.connect(run / "trials.sqlite")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('x', ?)", (value,))
    db.execute("INSERT INTO trials VALUES ('k', '[]', 0, 1.0, 'ok', NULL, ?, '{}', 0)", (value,))
    db.commit()
    db.close()
    reads_or_refuses(_journal, run)
    db = sqlite3.connect(run / "trials.sqlite")
    db.execute("UPDATE meta SET value=? WHERE name='schema'", (schema,))
    db.commit()
    db.close()
    reads_or_refuses(_journal, run)


@pytest.fixture(scope="module")
def whole_journal(work) -> Path:
    """A journal with trials and meta data in it."""
    run = work / "run-whole"
    with RunDir(run).journal(lock=False) as store:
        for i in range(40):
            store.put(f"k{i}", {"removed": [i % 4], "seed": i, "budget": 1.0, "status": "ok", "score": 0.5,
                                "reason": "x" * 200}, {"task": "rte"})  # fmt: skip
        store.set_meta("x", {"a": [1, 2, 3]})
    return run / "trials.sqlite"


@settings(FUZZ)
@given(damage=st.lists(st.tuples(st.integers(0, 1 << 16), st.binary(min_size=1, max_size=64)), min_size=1, max_size=4))
def test_a_damaged_journal(work, whole_journal, damage):
    """A journal with trials in it, bytes overwritten here and there (a bad disk, a copy cut short)."""
    run = work / "run-damaged"
    run.mkdir(exist_ok=True)
    for f in run.iterdir():
        f.unlink()
    data = bytearray(whole_journal.read_bytes())
    for offset, chunk in damage:
        at = offset % len(data)
        data[at : at + len(chunk)] = chunk
    (run / "trials.sqlite").write_bytes(bytes(data))
    reads_or_refuses(_journal, run)


# ------------------------------------------------------- what the fuzzing found: plain regression tests


def _refused(error: type[GLPError], match: str, fn, *args, **kwargs) -> None:
    with pytest.raises(error, match=match):
        fn(*args, **kwargs)


def test_text_that_is_not_utf8(work):
    from glp.errors import ConfigError, DataError, RunDirError

    for name in ("corpus.txt", "config.yaml", "plan.json"):
        (work / name).write_bytes(b"\xff\xfe = Title = \n")
    _refused(DataError, r"corpus\.txt: not valid UTF-8", read_text_rows, work / "corpus.txt")
    _refused(ConfigError, r"config file .*config\.yaml: not valid UTF-8", load_yaml_config, work / "config.yaml")
    _refused(RunDirError, r"plan\.json is not valid JSON", Plan.load, work / "plan.json")


def test_yaml_settings_of_the_wrong_shape(work):
    from glp.errors import ConfigError

    def config(text: str) -> PruneConfig:
        (work / "config.yaml").write_text("task: rte\n" + text)
        return PruneConfig.from_dict(load_yaml_config(work / "config.yaml"))

    _refused(ConfigError, "config file .*: cannot read the file", load_yaml_config, work)  # a directory
    _refused(ConfigError, "is not valid YAML: month must be in 1..12", config, "model: m\nseed: 2024-13-45\n")
    _refused(ConfigError, "hparams must be a mapping of settings", config, "model: m\nhparams: 5\n")
    _refused(ConfigError, "strategy_settings must be a mapping", config, "model: m\nstrategy_settings: [1]\n")
    _refused(ConfigError, r"keep takes layer numbers, e.g. 0,11; got \('a',\)", config, "model: m\nkeep: [a]\n")
    _refused(ConfigError, "text_columns takes a list", config, "model: m\ntext_columns: {a: 1}\n")
    _refused(ConfigError, "invalid settings: invalid literal for int", config, "model: m\nmax_seq_length: abc\n")
    assert config("model: m\nkeep: 1\n").keep == (1,)  # one layer, as a YAML number


def test_plans_of_the_wrong_shape(work):
    from glp.errors import RunDirError

    def load(**change) -> Plan:
        (work / "plan.json").write_text(json.dumps({**_plan_dict(), **change}))
        return Plan.load(work / "plan.json")

    assert load().removals == {1: [1]}
    _refused(RunDirError, "keys of plan field removals must be numbers", load, removals={"x": [1]})
    _refused(RunDirError, "plan field removals must be an object", load, removals=[1])
    _refused(RunDirError, "plan field removals must be layers of the model", load, removals={"1": [7]})
    _refused(RunDirError, "plan field steps must be a list of objects", load, steps=["x"])
    _refused(RunDirError, "plan field num_layers must be a number of layers", load, num_layers="4")
    step = {**_plan_dict()["steps"][0], "chosen_mean": "high"}
    _refused(RunDirError, "plan field steps\\[\\].chosen_mean must be a number", load, steps=[step])
    (work / "plan.json").write_text("[" * 5000 + "]" * 5000)
    _refused(RunDirError, "is not valid JSON: maximum recursion depth", Plan.load, work / "plan.json")
