#!/usr/bin/env bash
# The warm start (glp prune --init parent) against the paper's GLP (every candidate fine-tuned from the pre-trained
# weights) on MiniLM-L6 and GLUE, at the GLUE study's budget (benchmarks/study_env.sh). Per task:
#   1. GLP, the paper's way (--init pretrained);
#   2. GLP warm-started: each candidate is the previous step's winner with one more layer removed, trained
#      HEAL_STEPS optimizer steps (the first parent is the unpruned model fine-tuned with the whole schedule);
#   3. the same with successive halving on top (--halving --rungs 3 --eta 3);
#   4. the paper's final protocol for every plan's sets and Top (fine-tune on train, score on dev, SEEDS seeds);
#   5. benchmarks/summarize_warmstart.py: per step the rank correlation of the candidates' scores, the layers each
#      chooses, training steps and time of each search, and the final dev scores.
# Every step is a glp command that resumes from its journal.
#
#   bash benchmarks/bench_warmstart.sh [TASKS]     default "sst2"; HEAL_STEPS (default 8), MAX_REMOVE (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${1:-sst2}
HEAL_STEPS=${HEAL_STEPS:-8}
export OUT=${OUT:-runs/warmstart}
source benchmarks/study_env.sh
PY=${PY:-.venv/bin/python}
for task in $TASKS; do
  common=(--task "$task" --data-dir "$GLUE" "${HP[@]}" "${SEARCH_EVAL[@]}" "${PARALLEL[@]}" --max-remove "$MAX_REMOVE")
  "$GLP" prune "$MODEL" "${common[@]}" --out "$OUT/$task-pretrained"
  "$GLP" prune "$MODEL" "${common[@]}" --init parent --heal-steps "$HEAL_STEPS" --out "$OUT/$task-parent"
  "$GLP" prune "$MODEL" "${common[@]}" --init parent --heal-steps "$HEAL_STEPS" --halving --rungs 3 --eta 3 \
      --out "$OUT/$task-parent-halving"
  "$GLP" evaluate "$OUT/$task-pretrained" "$OUT/$task-parent" "$OUT/$task-parent-halving" \
      --n "$(seq -s, 1 "$MAX_REMOVE")" --pattern top --seeds "$SEEDS" "${HP[@]}" "${PARALLEL[@]}" --out "$OUT/$task-eval"
  mkdir -p "docs/results/warmstart/$task"
  for r in pretrained parent parent-halving; do cp "$OUT/$task-$r/plan.json" "docs/results/warmstart/$task/$r.json"; done
  cp "$OUT/$task-eval/evaluation.json" "docs/results/warmstart/$task/evaluation.json"
  "$PY" benchmarks/summarize_warmstart.py "docs/results/warmstart/$task" | tee "docs/results/warmstart/$task/summary.md"
done
