#!/usr/bin/env bash
# Publish finished tasks of the depth study (benchmarks/mpnet_study.sh) from its run directories into docs/results,
# where benchmarks/results_tables.py and summarize_warmstart.py read them:
#   docs/results/mpnet/<task>/plans/{greedy,proxy-bi}.json, evaluation.json, report.md (glp report: the trade-off
#   with each row's seeds, the search's heat map), the task's gate (OUT/<task>-gate.json) as gates/<task>.json, distill/evaluation.json and plans/optimal.json once they exist;
#   docs/results/warmstart/mpnet-<task>/{pretrained,parent,parent-halving}.json and summary.md (the warm starts
#   against the paper's search, on the tasks where they ran);
# then rewrites the generated tables of docs/results.md. A task whose final protocol has not finished is skipped, and
# one already published (its evaluation unchanged) unless FORCE=1.
#
#   bash benchmarks/publish_mpnet.sh [TASKS]        default: "sst2 stsb cola mrpc"; OUT (default runs/mpnet)
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${1:-"sst2 stsb cola mrpc"}
OUT=${OUT:-runs/mpnet}
PY=${PY:-.venv/bin/python}
GLP=${GLP:-.venv/bin/glp}
declare -A NAME=([sst2]=SST-2 [stsb]=STS-B [mrpc]=MRPC [rte]=RTE [cola]=CoLA)
for task in $TASKS; do
  dest="docs/results/mpnet/$task" warm="docs/results/warmstart/mpnet-$task"
  # the rows that come after every task's (the n = 2 optimum, the distillation rows), once they exist
  if [ -f "$OUT/$task-full/plans/optimal.json" ] && [ -d "$dest/plans" ]; then
    cp "$OUT/$task-full/plans/optimal.json" "$dest/plans/"
  fi
  if [ -f "$OUT/$task-distill/evaluation.json" ] && [ -d "$dest" ]; then
    mkdir -p "$dest/distill" && cp "$OUT/$task-distill/evaluation.json" "$dest/distill/"
  fi
  ev="$OUT/$task-eval/evaluation.json"
  if [ ! -f "$ev" ] || ! "$PY" - "$ev" <<'PYEOF'
import json, sys
records = json.load(open(sys.argv[1]))["records"]
sys.exit(0 if any(r["strategy"].startswith("random:") for r in records) else 1)  # the second pass has run
PYEOF
  then
    echo "$task: its final protocol has not finished ($ev): skipped" >&2
    continue
  fi
  if [ "${FORCE:-0}" != 1 ] && cmp -s "$ev" "$dest/evaluation.json"; then
    echo "$task: already published (FORCE=1 publishes it again)" >&2  # a resumed run rewrites its plan's wall time
    continue
  fi
  mkdir -p "$dest/plans" docs/results/mpnet/gates
  cp "$OUT/$task-full/plans/greedy.json" "$OUT/$task-full/plans/proxy-bi.json" "$dest/plans/"
  [ -f "$OUT/$task-gate.json" ] && cp "$OUT/$task-gate.json" "docs/results/mpnet/gates/$task.json"
  cp "$ev" "$dest/evaluation.json"
  profile=(); [ -f "$dest/profile.json" ] && profile=(--profile "$dest/profile.json")
  labels=()  # the warm starts as the tables name them (glp evaluate names a run after its directory)
  if "$GLP" report --help 2>/dev/null | grep -- --label > /dev/null; then  # (a glp before --label: run names)
    for r in parent parent-halving; do
      grep -q "\"greedy ($task-$r)\"" "$ev" && labels+=(--label "greedy ($task-$r)=greedy ($r)")
    done
  fi
  "$GLP" report "$dest" --evaluation "$dest" "${profile[@]}" "${labels[@]}" --out "$dest" \
      --title "MPNet-base (12 layers), ${NAME[$task]}"
  if [ -f "$OUT/$task-parent/plan.json" ]; then  # the warm starts ran on this task (WARM_TASKS of the study)
    mkdir -p "$warm"
    cp "$dest/plans/greedy.json" "$warm/pretrained.json"
    for r in parent parent-halving; do cp "$OUT/$task-$r/plan.json" "$warm/$r.json"; done
    "$PY" benchmarks/summarize_warmstart.py "$warm" "$dest/evaluation.json" > "$warm/summary.md"
  fi
  echo "$task: published to $dest"
done
"$PY" benchmarks/results_tables.py --write
