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
#
# FROM_STUDY=1 reuses the GLUE study's committed search and final rows of each task instead of steps 1 and 4's
# paper rows: the paper's plan is docs/results/<task>/plans/greedy.json, the warm starts search with that plan's
# budget (its hyper-parameters and subsamples; the study's budgets differ between tasks), the final protocol runs
# for the warm starts' sets only, with as many seeds as the study's docs/results/<task>/evaluation.json, and the
# summary merges the two evaluations (paired by seed):
#
#   FROM_STUDY=1 bash benchmarks/bench_warmstart.sh "cola stsb rte mrpc"
#
# Another K beside the committed one: FROM_STUDY=1 HEAL_STEPS=2 OUT=runs/warmstart-k2 SUFFIX=-k2 bash ... sst2
# writes docs/results/warmstart/sst2-k2/.
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${1:-sst2}
HEAL_STEPS=${HEAL_STEPS:-8}
export OUT=${OUT:-runs/warmstart}
source benchmarks/study_env.sh
PY=${PY:-.venv/bin/python}
budget() {  # the CLI budget of a committed plan (its hparams) -> glp prune/evaluate options, one per line
  "$PY" - "$1" <<'PYEOF'
import json, sys
hp = json.load(open(sys.argv[1]))["hparams"]
opts = {"--num-train-epochs": hp["num_train_epochs"], "--learning-rate": hp["learning_rate"],
        "--max-seq-length": hp["max_seq_length"], "--warmup-ratio": hp["warmup_ratio"],
        "--max-train-samples": hp.get("max_train_samples"), "--max-eval-samples": hp.get("max_eval_samples")}
for k, v in opts.items():
    if v is not None:
        print(k); print(v)
PYEOF
}
for task in $TASKS; do
  dest="docs/results/warmstart/$task${SUFFIX:-}"  # SUFFIX: another variant's artifacts beside (e.g. -k2)
  mkdir -p "$dest"
  if [ "${FROM_STUDY:-0}" = 1 ]; then
    study="docs/results/$task"
    mapfile -t search < <(budget "$study/plans/greedy.json")
    final=()  # the final protocol: the search's budget without the search-eval subsample
    for ((i = 0; i < ${#search[@]}; i += 2)); do
      [ "${search[i]}" = --max-eval-samples ] || final+=("${search[i]}" "${search[i+1]}")
    done
    seeds=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["seeds"]))' "$study/evaluation.json")
    common=(--task "$task" --data-dir "$GLUE" "${search[@]}" "${PARALLEL[@]}" --max-remove "$MAX_REMOVE")
    runs=("$OUT/$task-parent" "$OUT/$task-parent-halving")
    evaluations=("$study/evaluation.json" "$dest/evaluation.json")
    cp "$study/plans/greedy.json" "$dest/pretrained.json"
  else
    common=(--task "$task" --data-dir "$GLUE" "${HP[@]}" "${SEARCH_EVAL[@]}" "${PARALLEL[@]}" --max-remove "$MAX_REMOVE")
    final=("${HP[@]}") seeds=$SEEDS
    "$GLP" prune "$MODEL" "${common[@]}" --out "$OUT/$task-pretrained"
    runs=("$OUT/$task-pretrained" "$OUT/$task-parent" "$OUT/$task-parent-halving")
    evaluations=()
    cp "$OUT/$task-pretrained/plan.json" "$dest/pretrained.json"
  fi
  "$GLP" prune "$MODEL" "${common[@]}" --init parent --heal-steps "$HEAL_STEPS" --out "$OUT/$task-parent"
  "$GLP" prune "$MODEL" "${common[@]}" --init parent --heal-steps "$HEAL_STEPS" --halving --rungs 3 --eta 3 \
      --out "$OUT/$task-parent-halving"
  top=(--pattern top); [ "${FROM_STUDY:-0}" = 1 ] && top=()
  "$GLP" evaluate "${runs[@]}" --n "$(seq -s, 1 "$MAX_REMOVE")" "${top[@]}" --seeds "$seeds" "${final[@]}" \
      "${PARALLEL[@]}" --out "$OUT/$task-eval"
  for r in parent parent-halving; do cp "$OUT/$task-$r/plan.json" "$dest/$r.json"; done
  cp "$OUT/$task-eval/evaluation.json" "$dest/evaluation.json"
  "$PY" benchmarks/summarize_warmstart.py "$dest" "${evaluations[@]}" | tee "$dest/summary.md"
done
