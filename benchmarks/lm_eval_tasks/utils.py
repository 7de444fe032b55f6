"""Local copies of lm-evaluation-harness's ARC-Easy and PIQA tasks, read from ../shared/data/zeroshot (or
$GLP_ZEROSHOT_DIR) instead of the hub: the harness's own prompts and metrics (tasks/arc/arc_easy.yaml,
tasks/piqa/piqa.yaml), the docs in the shape those tasks read."""

from __future__ import annotations

import json
import os
from pathlib import Path


def _root() -> Path:
    env = os.environ.get("GLP_ZEROSHOT_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data" / "zeroshot"
    if not root.is_dir():
        raise FileNotFoundError(f"no zero-shot data at {root}; set GLP_ZEROSHOT_DIR")
    return root


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def arc_easy(**kwargs):
    import datasets

    def docs(name: str) -> datasets.Dataset:
        rows = []
        for r in _jsonl(_root() / "arc_easy" / name):
            q = r["question"]
            rows.append(
                {
                    "id": r["id"],
                    "question": q["stem"],
                    "choices": {"text": [c["text"] for c in q["choices"]], "label": [c["label"] for c in q["choices"]]},
                    "answerKey": r["answerKey"],
                }
            )
        return datasets.Dataset.from_list(rows)

    return datasets.DatasetDict({"validation": docs("ARC-Easy-Dev.jsonl"), "test": docs("ARC-Easy-Test.jsonl")})


def piqa(**kwargs):
    import datasets

    root = _root() / "piqa"
    rows = _jsonl(root / "valid.jsonl")
    labels = [int(x) for x in (root / "valid-labels.lst").read_text().split()]
    if len(labels) != len(rows):
        raise ValueError(f"piqa: {len(rows)} rows but {len(labels)} labels")
    docs = [
        {"goal": r["goal"], "sol1": r["sol1"], "sol2": r["sol2"], "label": y} for r, y in zip(rows, labels, strict=True)
    ]
    return datasets.DatasetDict({"validation": datasets.Dataset.from_list(docs)})
