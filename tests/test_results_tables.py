"""docs/results.md's tables are what benchmarks/results_tables.py prints from the committed artifacts, its links
resolve, and the script's parts (the check, the depth study's block, the constants) do what they say."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "results.md"


@pytest.fixture(scope="module")
def rt():
    return load_benchmark("results_tables")


@pytest.fixture(scope="module")
def tables(rt):
    return rt.generate()


def _pages() -> dict[str, str]:
    return {"docs/results.md": DOC.read_text(), "docs/benchmarks.md": (ROOT / "docs" / "benchmarks.md").read_text()}


def test_the_tables_of_docs_results_md_match_the_artifacts(rt, tables):
    found = rt.problems(_pages(), tables)
    assert not found, "run: python benchmarks/results_tables.py --write\n" + "\n".join(found)


# numbers the summary quotes from outside the artifacts: published scores (PaddleNLP's MPNet README)
PUBLISHED = {"91.3"}


def test_every_decimal_of_the_summary_is_in_a_generated_table_or_a_committed_artifact(tables):
    """The summary's prose repeats numbers from the tables; when an artifact changes (a task lands), a number it no
    longer prints makes this fail, so the prose is rewritten with the tables."""
    doc = DOC.read_text()
    summary = doc[doc.index("## Summary"):doc.index("\n## ", doc.index("## Summary") + 1)]
    summary = re.sub(r"<!-- table:.*?<!-- /table -->", "", summary, flags=re.S)
    sources = "\n".join(tables.values()) + "\n".join(
        f.read_text() for f in sorted((ROOT / "docs" / "results").rglob("*.md")))
    numbers = set(re.findall(r"(?<![\w.])-?\d+\.\d+", summary))
    assert len(numbers) > 20
    missing = sorted(n for n in numbers - PUBLISHED if not re.search(rf"(?<![\d.]){re.escape(n)}(?!\d)", sources))
    assert not missing, f"numbers in the summary that no table or artifact prints: {missing}"


def test_the_check_sees_a_changed_number_a_missing_an_unknown_and_a_repeated_table(rt, tables):
    pages = _pages()
    doc = pages["docs/results.md"]
    changed = doc.replace("| greedy | 2 | 62.2 (50.9–68.9)", "| greedy | 2 | 62.3 (50.9–68.9)", 1)
    assert changed != doc
    assert any(p.startswith("minilm-table1: differs") for p in rt.problems({**pages, "docs/results.md": changed},
                                                                            tables))
    assert rt.problems({**pages, "docs/results.md": rt.rewrite(changed, tables)}, tables) == []
    dropped = re.sub(r"<!-- table:minilm-gap -->.*?<!-- /table -->", "", doc, flags=re.S)
    assert any(p.startswith("minilm-gap: not in docs/results.md or docs/benchmarks.md")
               for p in rt.problems({**pages, "docs/results.md": dropped}, tables))
    extra = doc + "\n<!-- table:no-such -->\nx\n<!-- /table -->\n"
    assert any(p.startswith("no-such: no such table") for p in rt.problems({**pages, "docs/results.md": extra}, tables))
    twice = doc + f"\n<!-- table:minilm-variants -->\n{tables['minilm-variants']}<!-- /table -->\n"
    assert "minilm-variants: on docs/benchmarks.md and on docs/results.md" in rt.problems(
        {"docs/benchmarks.md": pages["docs/benchmarks.md"], "docs/results.md": twice}, tables)


def test_every_table_has_a_number_and_no_machine_path(tables):
    for name, text in tables.items():
        assert re.search(r"\d", text), name
        assert not re.search(r"/(tmp|work|root|home)/", text), name


def test_the_depth_study_block_reads_the_layout_glp_writes(rt, tmp_path):
    """docs/results/mpnet/<task>/{plans/*.json, evaluation.json}: here MiniLM's files stand in for MPNet's."""
    empty = rt.t_mpnet(tmp_path / "none")
    assert empty.startswith("No MPNet result is committed yet")
    root = tmp_path / "mpnet"
    for t in ("sst2", "cola"):
        (root / t / "plans").mkdir(parents=True)
        shutil.copy(ROOT / "docs" / "results" / t / "evaluation.json", root / t)
        for p in ("greedy", "proxy-bi", "optimal"):
            shutil.copy(ROOT / "docs" / "results" / t / "plans" / f"{p}.json", root / t / "plans")
    text = rt.t_mpnet(root)
    for part in ("| SST-2 | accuracy | 50.9 | 76.7 (74.2–79.0) | 23.3 | 0.8300 | yes |",
                 "| CoLA | mcc | 0.0 | 21.8 (21.4–22.4) | 21.4 | 0.2560 | yes |",
                 "| SST-2 | unpruned | – | 0.8300 |",  # the searches, their order and cost
                 "|  | GLP | 5,3,2 | 0.6950 / – / – | 15 | 960 |",
                 "|  | proxy-bi (training-free order) | 2,1,0 |",
                 "| SST-2 (accuracy) | CoLA (mcc) | Mean | Rel. (%) |",  # one table, a column per task
                 "| baseline | 0 | 76.7 (74.2–79.0) | 21.8 (21.4–22.4) | 49.3 | 100.0 |",
                 "| top | every task and n (the unpruned model clearly learns on each) | 6 | 4/2/0 | 13/11/0 | 0.125 |",
                 "| SST-2 | 15 | {3,4} (0.7800), worst 0.5850 | {3,5} 7 (0.6950) |"):
        assert part in text, part
    head = next(line for line in text.splitlines() if line.startswith("| task | n | GLP removes"))
    assert head.index("vs top") < head.index("vs bottom") < head.index("vs proxy-bi") < head.index("vs optimal")


def test_the_depth_study_headline_is_the_table1_share_with_its_per_seed_spread(rt, tmp_path):
    """MiniLM's SST-2 (5 seeds) and CoLA (3) stand in for MPNet's tasks. GLP at n = 2: medians 0.6216 and 0.2245
    against the unpruned 0.7672 and 0.2181, (0.6216 + 0.2245) / (0.7672 + 0.2181) = 85.9%; per seed (the 3 both
    tasks have) 87.5, 88.9 and 71.3%; against Top SST-2's seed pairs win 4 and tie 1 (both predict the majority
    class), CoLA's win 3."""
    lib = sys.modules["results_lib"]
    assert lib.t_mpnet_headline(tmp_path / "none").startswith("No MPNet result is committed yet")
    root = tmp_path / "mpnet"
    for t in ("sst2", "cola"):
        (root / t).mkdir(parents=True)
        shutil.copy(ROOT / "docs" / "results" / t / "evaluation.json", root / t)
    text = lib.t_mpnet_headline(root, ns=(1, 2))
    assert "MPNet-base on SST-2, CoLA" in text and "medians of 3/5 seeds" in text
    assert ("| 2 | 85.9 (71.3–88.9) | 67.4 (65.7–73.5) | 56.4 (54.0–57.4) | SST-2 81.0 / 66.4 / 68.5; CoLA 103.0 / "
            "70.9 / 13.9 | 7/1/0 | 5/1/2 |") in text  # SST-2's GLP: 0.6216 / 0.7672 = 81.0%
    assert "| 1 | 99.0 (83.2–100.1) | 99.0 (83.2–100.1) |" in text  # the same layer: the same rows
    shares = lib.seed_shares({t: lib.load_json(root / t / "evaluation.json") for t in ("sst2", "cola")}, "greedy", 2)
    assert list(shares) == [42, 43, 44] and shares[43] == pytest.approx(100 * (0.6376 + 0.2490) / (0.7833 + 0.2143),
                                                                         abs=0.01)


def test_the_depth_studys_budget_table_reads_each_tasks_gate_and_says_where_precision_is_not_recorded(tmp_path):
    lib = sys.modules["results_lib"]
    root = tmp_path / "mpnet"
    (root / "gates").mkdir(parents=True)
    assert lib.t_mpnet_setup(root).startswith("No gate is committed yet")
    for t in ("sst2", "cola"):
        shutil.copy(ROOT / "docs" / "results" / "mpnet" / "gates" / f"{t}.json", root / "gates")
    (root / "sst2").mkdir()
    ev = json.loads((ROOT / "docs" / "results" / "mpnet" / "sst2" / "evaluation.json").read_text())
    ev["records"] = [{**r, "precision": "fp32"} for r in ev["records"]]
    (root / "sst2" / "evaluation.json").write_text(json.dumps(ev))
    text = lib.t_mpnet_setup(root)
    assert ("| SST-2 | accuracy | 1,000 of 57,247 / 600 of 10,102 | 1,000 of 67,349 | 872 | 2 | 5e-05 | 0 | 64 | 32 | "
            "fp32 | 3 |") in text
    assert ("| CoLA | mcc | 1,000 of 7,268 / 600 of 1,283 | pending | 1,043 | 3 | 0.0001 | 0.1 | 64 | 32 | pending | "
            "pending |") in text
    assert "predate the records' `precision`" not in text  # every record of SST-2's says it
    ev["records"][0]["precision"] = None  # a resumed evaluation's older trial
    ev["tasks"]["sst2"]["hparams"]["learning_rate"] = 1e-4  # a final budget unlike the search's
    (root / "sst2" / "evaluation.json").write_text(json.dumps(ev))
    text = lib.t_mpnet_setup(root)
    assert "| 2 | 5e-05 / 0.0001 | 0 | 64 | 32 | fp32 * | 3 |" in text and "predate the records' `precision`" in text


def test_the_decoder_reevaluation_table_pairs_glp_by_seed_beside_the_first_evaluation(rt, tmp_path):
    """The first evaluation's records as seeds 42-44: every row's perplexity times 1.00 / 1.02 / 0.98, GLP's times
    0.99 / 1.03 / 0.98, and a row that removes GLP's layers (SLEB at n = 4 and 6) GLP's own scores, as glp evaluate
    gives them (one trial per set and seed). At n = 2 GLP (35.56 once) against SLEB (35.45): 35.21 < 35.45,
    36.63 > 36.16, 34.85 > 34.74, one win, two losses; at n = 4 and 6 one row for GLP and SLEB."""
    assert rt.t_llm_reeval(tmp_path).startswith("Not committed yet")
    first = ROOT / "docs" / "results" / "llm" / "eval" / "evaluation.json"
    (tmp_path / "llm" / "eval").mkdir(parents=True)
    shutil.copy(first, tmp_path / "llm" / "eval")
    ev = json.loads(first.read_text())
    records = []
    glp_sets = {(r["n"], tuple(sorted(r["removed"]))) for r in ev["records"] if r["strategy"] == "greedy"}
    for seed, f, g in ((42, 1.00, 0.99), (43, 1.02, 1.03), (44, 0.98, 0.98)):
        for r in ev["records"]:
            glps = (r["n"], tuple(sorted(r["removed"]))) in glp_sets
            records.append({**r, "seed": seed, "score": r["score"] * (g if glps else f)})
    (tmp_path / rt.REEVAL).mkdir(parents=True)
    (tmp_path / rt.REEVAL / "evaluation.json").write_text(json.dumps({**ev, "seeds": [42, 43, 44], "records": records}))
    text = rt.t_llm_reeval(tmp_path)
    for row in ("| 0 | unpruned | – | 30.76 (30.15–31.38) | 30.76 | 46.0 (46.0–46.0) | 63.0 (63.0–63.0) |  |",
                "| 2 | GLP | 17,13 | **35.21 (34.85–36.63)** | 35.56 | 46.0 (46.0–46.0) | 67.0 (67.0–67.0) |  |",
                "| 2 | SLEB | 14,13 | 35.45 (34.74–36.16) | 35.45 | 48.0 (48.0–48.0) | 65.0 (65.0–65.0) | 1/0/2 |",
                "| 4 | GLP = SLEB | 17,14,13,12 | **41.17 (40.76–42.84)** | 41.59 |",
                "| 6 | Gromov et al. | 18,17,16,15,14,13 | **51.70 (50.66–52.73)** | 51.70 |"):
        assert row in text, row
    assert "| 4 | SLEB |" not in text and "| 6 | GLP = SLEB |" in text  # one row per set
    assert ("one seed on 32 blocks → the median of 3 seeds on the whole test set: n = 2: SLEB → GLP; "
            "n = 4: GLP = SLEB → GLP = SLEB; n = 6: Gromov et al. → Gromov et al.; n = 8: GLP → GLP.") in text


def test_the_gates_table_reads_the_gate_plans(rt, tmp_path):
    """SST-2's gate: the unpruned model 0.9017 against the majority class's 0.5578 closes (0.9017 - 0.5578) /
    (1 - 0.5578) = 78% of the gap; a file named <task>-<budget>.json is a probe, a budget tried before the study's."""
    lib = sys.modules["results_lib"]
    assert lib.t_mpnet_gates(tmp_path).startswith("No gate is committed yet")
    (tmp_path / "gates").mkdir()
    gates = ROOT / "docs" / "results" / "mpnet" / "gates"
    shutil.copy(gates / "sst2.json", tmp_path / "gates" / "sst2.json")
    shutil.copy(gates / "sst2.json", tmp_path / "gates" / "sst2-2ep-5e-5.json")
    text = lib.t_mpnet_gates(tmp_path)
    row = "| 2 epochs, 5e-05, warmup 0 | accuracy | 0.5578 | 0.9017 | 78%: goes on | 0.9050 | 2 | 509 |"
    assert f"| SST-2 | study {row}" in text and f"| SST-2 | probe {row}" in text


def test_warm_started_runs_are_named_alike_on_every_task(rt):
    lib = sys.modules["results_lib"]
    ev = {"records": [{"strategy": s, "task": "stsb"} for s in
                      ("greedy", "greedy (stsb-parent)", "greedy (stsb-parent-halving)", "greedy (sst2-parent)")]}
    assert [r["strategy"] for r in lib.same_names(ev, "stsb")["records"]] == [
        "greedy", "greedy (parent)", "greedy (parent-halving)", "greedy (sst2-parent)"]


def test_the_paired_statistics(rt):
    lib = sys.modules["results_lib"]
    assert lib.paired({42: 0.5, 43: 0.7, 44: 0.1}, {43: 0.6, 42: 0.5, 45: 0.9}) == [0.0, pytest.approx(0.1)]
    assert lib.wtl([0.1, 0.0, -0.2, 0.3]) == "2/1/1"
    r = lib.sign_test([[0.1, 0.2], [0.0, 0.0], [0.3, -0.1], [-0.2, -0.1]])
    assert (r["ahead"], r["level"], r["behind"], r["pairs"]) == (2, 1, 1, "3/2/3")
    assert r["p"] == pytest.approx(1.0)
    assert lib.sign_test([[0.1]] * 6)["p"] == pytest.approx(2 / 2**6)
    # RTE n = 2 against Bottom: +4, −5, +1 examples of 277 sum to nothing, a mean of −4e-17 in floats: level
    assert lib.sign_test([[4 / 277, 0.5 - (0.5 + 5 / 277), 1 / 277]])["level"] == 1
    scores = {frozenset({0, 1}): 0.5, frozenset({1, 2}): 0.7, frozenset({2, 3}): 0.5, frozenset({3, 4}): 0.4}
    assert [lib.rank(scores, s) for s in scores] == ["2–3", "1", "2–3", "4"]


def test_the_constant_predictions_are_the_dev_sets_label_counts(rt):
    glue = ROOT.parent / "shared" / "data" / "glue"
    if not glue.is_dir():
        pytest.skip("no local GLUE copy")
    lib = sys.modules["results_lib"]

    def count(path: Path, column: str, positive: str) -> tuple[int, int]:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            labels = [r[column] for r in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)]
        return sum(v == positive for v in labels), len(labels)

    assert count(glue / "SST-2" / "dev.tsv", "label", "1") == lib.DEV_LABELS["sst2"]
    assert count(glue / "RTE" / "dev.tsv", "label", "entailment") == lib.DEV_LABELS["rte"]
    assert count(glue / "MRPC" / "dev.tsv", "Quality", "1") == lib.DEV_LABELS["mrpc"]
    pos, n = lib.DEV_LABELS["mrpc"]
    assert lib.CONSTANT["mrpc"] == pytest.approx(2 * pos / (n + pos))  # F1 of answering "paraphrase" throughout


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", ["docs/results.md", "docs/benchmarks.md", "README.md"])
def test_links_to_and_in_the_results_resolve(page):
    """Every local link of the page names a file that exists, and an anchor into a markdown page one of its
    headings."""
    text = (ROOT / page).read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        path, _, anchor = link.partition("#")
        target = (ROOT / page).parent / path if path else ROOT / page
        assert target.exists(), f"{page}: {link}"
        if anchor and target.suffix == ".md":
            anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", target.read_text(), re.M)}
            assert anchor in anchors, f"{page}: {link}"


def test_the_trade_off_plot_draws_the_seeds_spread(tmp_path):
    from glp.commands.report import plot_tradeoff, tradeoff_series
    from glp.results.render import png_size

    evaluation = json.loads((ROOT / "docs" / "results" / "sst2" / "evaluation.json").read_text())
    profile = json.loads((ROOT / "docs" / "results" / "profile.json").read_text())
    data = tradeoff_series([], evaluation, profile, "cpu")
    lo, hi = data["ranges"]["top"][2]  # Top's 4-layer model: the majority class on all 5 seeds
    assert lo == pytest.approx(hi) == pytest.approx(data["series"]["top"][1][1])
    lo, hi = data["ranges"]["greedy"][2]
    assert lo < data["series"]["greedy"][1][1] < hi
    assert data["baseline_range"][0] < 100 < data["baseline_range"][1]
    assert png_size(plot_tradeoff(data, tmp_path / "t.png")) == (900, 450)


def test_the_distillation_rows_of_the_depth_study(rt, tmp_path):
    """GLP's and Top's sets plain (the task's evaluation) and distilled (distill/evaluation.json), paired by seed."""
    assert rt.t_mpnet_distill(tmp_path).startswith("No distillation rows are committed yet")

    def rec(strategy, n, seed, score):
        return {"task": "sst2", "metric": "accuracy", "strategy": strategy, "n": n, "seed": seed, "score": score,
                "removed": list(range(n)), "status": "ok"}

    seeds = (42, 43, 44)
    plain = [rec("baseline", 0, s, 0.9) for s in seeds]
    plain += [rec("greedy", 4, s, v) for s, v in zip(seeds, (0.88, 0.86, 0.87), strict=True)]
    plain += [rec("top", 4, s, v) for s, v in zip(seeds, (0.85, 0.87, 0.84), strict=True)]
    dist = [rec("greedy (distilled, teacher init)", 4, s, v) for s, v in zip(seeds, (0.89, 0.89, 0.86), strict=True)]
    dist += [rec("top (distilled, teacher init)", 4, s, v) for s, v in zip(seeds, (0.88, 0.89, 0.88), strict=True)]
    (tmp_path / "sst2" / "distill").mkdir(parents=True)
    (tmp_path / "sst2" / "evaluation.json").write_text(json.dumps({"seeds": list(seeds), "records": plain}))
    (tmp_path / "sst2" / "distill" / "evaluation.json").write_text(json.dumps({"seeds": list(seeds), "records": dist}))
    text = rt.t_mpnet_distill(tmp_path)
    assert ("| SST-2 | 4 | 87.0 (86.0–88.0); 96.7% | 89.0 (86.0–89.0); 98.9% | 85.0 (84.0–87.0); 94.4% | "
            "88.0 (88.0–89.0); 97.8% | 2/0/1 | 3/0/0 | 2/0/1 | 1/1/1 |") in text, text
