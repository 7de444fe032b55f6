"""The LLM study's table (benchmarks/llm_study.sh): per method and n, the removed layers, the test perplexity and the
zero-shot accuracies of the healed model, the median over seeds, from ``glp evaluate``'s evaluation.json.

    .venv/bin/python benchmarks/summarize_llm_study.py runs/llm-study/eval/evaluation.json
"""

from __future__ import annotations

import json
import statistics
import sys

NAMES = {
    "baseline": "unpruned",
    "greedy": "GLP (greedy, LoRA heal per candidate)",
    "greedy (sleb)": "SLEB (greedy, no heal)",
    "shortgpt": "ShortGPT (block influence)",
    "block-angular": "Gromov et al. (block angular distance)",
    "top": "reverse order, last layer kept",
}


def rows(records: list[dict]) -> list[dict]:
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in records:
        groups.setdefault((r["strategy"], int(r["n"])), []).append(r)
    out = []
    for (strategy, n), rs in groups.items():
        ok = [r for r in rs if r.get("score") is not None]
        keys = sorted({k for r in ok for k in r.get("metrics", {}) if ":" in k and k.endswith(":acc")})
        out.append(
            {
                "method": NAMES.get(strategy, strategy),
                "strategy": strategy,
                "n": n,
                "removed": rs[0]["removed"],
                "seeds": len(ok),
                "perplexity": statistics.median(r["score"] for r in ok) if ok else None,
                **{k: statistics.median(r["metrics"][k] for r in ok) for k in keys},
            }
        )
    order = list(NAMES)
    return sorted(out, key=lambda r: (r["n"], order.index(r["strategy"]) if r["strategy"] in order else 99))


def markdown(table: list[dict]) -> str:
    accs = sorted({k for r in table for k in r if k.endswith(":acc")})
    head = ["n", "method", "removed", "test perplexity", *[a.split(":")[0] + " acc" for a in accs]]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|---:|" + "---:|" * len(accs)]
    best: dict[int, float] = {}
    for r in table:
        if r["perplexity"] is not None and r["n"]:
            best[r["n"]] = min(best.get(r["n"], float("inf")), r["perplexity"])
    for r in table:
        ppl = r["perplexity"]
        cell = "failed" if ppl is None else f"{ppl:.2f}"
        if ppl is not None and r["n"] and ppl == best[r["n"]]:
            cell = f"**{cell}**"
        removed = ",".join(map(str, sorted(r["removed"], reverse=True))) or "–"
        lines.append(
            "| " + " | ".join([str(r["n"]), r["method"], removed, cell, *[f"{100 * r[a]:.1f}" for a in accs]]) + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    with open(sys.argv[1]) as fh:
        result = json.load(fh)
    print(markdown(rows(result["records"])))


if __name__ == "__main__":
    main()
