"""Carry a model to a GPU machine that takes at most 64 MiB of files per call (benchmarks/gpu_study.sh).

    python benchmarks/device_model.py pack SRC DST     # float32 weights -> float16 copy (half the bytes)
    python benchmarks/device_model.py unpack SRC DST   # float16 copy -> float32 model directory for glp

all-MiniLM-L6-v2's model.safetensors is 91 MB in float32; its float16 copy is 45 MB. Packing rounds every
weight to float16 (relative error at most 2^-11); unpacking casts back to float32, so the unpacked model is the
rounded one, not the original: runs from it must say so. Files other than the weights are copied unchanged.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "model.safetensors"


def convert(src: Path, dst: Path, dtype: torch.dtype) -> None:
    if not (src / WEIGHTS).is_file():
        sys.exit(f"no {WEIGHTS} in {src}")
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != WEIGHTS:
            shutil.copy2(f, dst / f.name)
    tensors = load_file(str(src / WEIGHTS))
    out = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    save_file(out, str(dst / WEIGHTS), metadata={"format": "pt"})
    size = (dst / WEIGHTS).stat().st_size / 2**20
    print(f"{src} -> {dst}: {len(out)} tensors, {size:.1f} MiB, floating point -> {dtype}")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit(__doc__)
    convert(Path(sys.argv[2]), Path(sys.argv[3]), torch.float16 if sys.argv[1] == "pack" else torch.float32)
