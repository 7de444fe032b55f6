#!/usr/bin/env bash
# The GLUE study: MiniLM-L6 on real GLUE tasks. GLP (greedy) vs Top, Bottom, a training-free proxy
# (block influence) and the exhaustive optimum for n=2, all searched on the same 85/15 split of train with the
# same hyper-parameters, then every chosen removal set fine-tuned on train and scored on dev (median of SEEDS).
# GLP with early rejection runs in its own run directory (as in benchmarks/bench_halving.sh), so it reuses nothing.
# The commands run in order of need, so that a run cut off early (benchmarks/gpu_study.sh gives each command a
# deadline through $GLP) has the most important rows: GLP, Top, Bottom, proxy, a first dev evaluation, the
# optimum, early rejection, the dev evaluation of all of them (the second reuses the first's fine-tunes).
# Every step is `glp prune` / `glp evaluate`, which resume from their journals: kill and re-run at will.
#
#   bash benchmarks/glue_study.sh [TASKS]        e.g. bash benchmarks/glue_study.sh "sst2 stsb"
#
# Budget (benchmarks/study_env.sh, environment variables): by default the reduced one for 2 CPU cores stated in
# docs/results.md: train subsampled to 1000 examples (search and final), search-eval to 600, 2 epochs at
# learning rate 5e-5, max length 64, 3 seeds. n <= 3 (MAX_REMOVE) for every strategy except the exhaustive
# optimum, which covers n <= 2 (6 + 15 removal sets for 6 layers, the paper's Figure 2).
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${1:-"sst2 stsb"}
source benchmarks/study_env.sh
for task in $TASKS; do
  run="$OUT/$task-full"
  common=(--task "$task" --data-dir "$GLUE" "${HP[@]}" "${SEARCH_EVAL[@]}" "${PARALLEL[@]}")
  evaluate() {  # every run directory of the task that has a plan so far
    local dirs=() d
    for d in "$run" "$OUT/$task-halving"; do [ -f "$d/plan.json" ] && dirs+=("$d"); done
    "$GLP" evaluate "${dirs[@]}" --n "$(seq -s, 1 "$MAX_REMOVE")" --seeds "$SEEDS" "${HP[@]}" "${PARALLEL[@]}" \
        --out "$OUT/$task-eval"
  }
  "$GLP" prune "$MODEL" "${common[@]}" --max-remove "$MAX_REMOVE" --no-baseline --out "$run"   # GLP
  for s in top bottom proxy-bi; do
    "$GLP" prune "$MODEL" "${common[@]}" --max-remove "$MAX_REMOVE" --strategy "$s" --out "$run"
  done
  evaluate
  "$GLP" prune "$MODEL" "${common[@]}" --max-remove 2 --strategy optimal --out "$run"
  "$GLP" prune "$MODEL" "${common[@]}" --max-remove "$MAX_REMOVE" --no-baseline --halving --rungs 3 --eta 3 \
      --out "$OUT/$task-halving"
  evaluate
done
