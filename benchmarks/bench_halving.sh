#!/usr/bin/env bash
# Early rejection vs paper-faithful GLP: the same greedy search on the same split with the same
# hyper-parameters, once fully fine-tuning every candidate and once with successive halving (3 rungs, eta 3),
# each in its own run directory so neither reuses the other's trials. Resumable: run it again after a kill.
# Budget and paths: benchmarks/study_env.sh (environment variables).
#
#   bash benchmarks/bench_halving.sh [TASKS]      then: .venv/bin/python benchmarks/summarize_halving.py
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${1:-"sst2 stsb"}
source benchmarks/study_env.sh
for task in $TASKS; do
  for mode in full halving; do
    extra=(); [ "$mode" = halving ] && extra=(--halving --rungs 3 --eta 3)
    "$GLP" prune "$MODEL" --task "$task" --data-dir "$GLUE" "${HP[@]}" "${SEARCH_EVAL[@]}" \
        --max-remove "$MAX_REMOVE" --no-baseline "${PARALLEL[@]}" "${extra[@]}" --out "$OUT/$task-$mode"
  done
done
