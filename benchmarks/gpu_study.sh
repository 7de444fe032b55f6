#!/usr/bin/env bash
# The GLUE study's MRPC and RTE rows on one lent GPU machine, inside one time-limited call.
#
#   bash benchmarks/gpu_study.sh [SECONDS]      (default 500; results packed under $RESULTS)
#
# Inputs under .device/ (filled here by: python benchmarks/device_model.py pack MODEL .device/minilm-fp16, and a
# copy of ../shared/data/glue/{MRPC,RTE} in .device/glue): the GPU machine takes at most 64 MiB per call, so the
# model travels as a float16 copy and is cast back to float32 there (benchmarks/device_model.py says what that
# costs). Steps, both tasks side by side, each `glp` call cut off at the deadline (the journals keep every
# finished trial, so a rerun with the packed runs/ in place resumes):
#   1. budget: the unpruned model fine-tuned once per setting of GRID (learning rate:epochs:warmup ratio) on
#      the task's search split, scored on search-eval (never dev); the best setting is the task's budget for
#      every row after it;
#   2. benchmarks/glue_study.sh at that budget: its runs come in order of need (GLP, Top, Bottom, proxy, a
#      first dev evaluation, the n = 2 optimum, GLP with early rejection, the dev evaluation of all of them).
# Then everything small is packed: $RESULTS/runs.tgz (plans, journals, evaluations; no caches) and the logs.
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${1:-500}
END=$(( $(date +%s) + BUDGET ))
RESULTS=${RESULTS:-${OUT:-runs/gpu-results}}
mkdir -p "$RESULTS"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}                       # calibration trials
export DEVICES=${DEVICES:-0} WORKERS=${WORKERS:-6}
TASKS=${TASKS:-"mrpc rte"}
GRID=${GRID:-"2e-5:3:0 5e-5:3:0.1 1e-4:3:0.1 5e-5:8:0.1 1e-4:8:0.1"}
export OUT=${STUDY_OUT:-runs/glue-gpu} GLUE=${GLUE:-.device/glue} SEEDS=${SEEDS:-3}
export TRAIN_SAMPLES=${TRAIN_SAMPLES:-0} EVAL_SAMPLES=${EVAL_SAMPLES:-0} MAX_LEN=${MAX_LEN:-128}
CAL=${CAL_OUT:-runs/gpu-cal} CAL_LIMIT=${CAL_LIMIT:-150}   # seconds the budget step may take
LOGS=$RESULTS/logs; mkdir -p "$LOGS" "$OUT" "$CAL"
left() { echo $(( END - $(date +%s) )); }
log() { echo "[$(date +%T) left $(left)s] $*"; }

# the glp command (no install needed: src/ on PYTHONPATH), cut off at the deadline; out of time, it exits 124
# without starting, which stops glue_study.sh (set -e)
BIN=runs/gpu-bin; mkdir -p "$BIN" && cat > "$BIN/glp" <<EOF && chmod +x "$BIN/glp"
#!/bin/sh
left=\$(( $END - \$(date +%s) ))
[ "\$left" -gt 5 ] || { echo "[\$(date +%T)] out of time before: glp \$*"; exit 124; }
echo "[\$(date +%T) left \${left}s] glp \$*"
exec timeout "\$left" $PY -m glp.cli "\$@"
EOF
export GLP=$PWD/$BIN/glp
{ nvidia-smi -L; $PY -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "transformers", transformers.__version__)'; } 2>&1 | tee "$LOGS/env.txt"
export MODEL=${MODEL:-runs/minilm}
[ -f "$MODEL/model.safetensors" ] || $PY benchmarks/device_model.py unpack .device/minilm-fp16 "$MODEL" || exit 1

# 1. the budget, per task
log "budget grid: $GRID"
SUB=(); [ "$TRAIN_SAMPLES" != 0 ] && SUB+=(--max-train-samples "$TRAIN_SAMPLES")
[ "$EVAL_SAMPLES" != 0 ] && SUB+=(--max-eval-samples "$EVAL_SAMPLES")
for task in $TASKS; do
  for g in $GRID; do
    IFS=: read -r lr ep wu <<<"$g"
    timeout $(( $(left) < CAL_LIMIT ? ($(left) > 0 ? $(left) : 1) : CAL_LIMIT )) "$GLP" prune "$MODEL" --task "$task" --data-dir "$GLUE" --strategy top \
        --max-remove 1 --learning-rate "$lr" --num-train-epochs "$ep" --warmup-ratio "$wu" --max-seq-length "$MAX_LEN" \
        "${SUB[@]}" --device "$DEVICE" --out "$CAL/$task-lr$lr-ep$ep-wu$wu" > "$LOGS/cal-$task-lr$lr-ep$ep-wu$wu.log" 2>&1 &
  done
done
wait
choose() {  # best baseline search-eval score over the grid -> "lr ep wu"
  $PY - "$CAL" "$1" <<'EOF'
import json, sys
from pathlib import Path
rows = []
for p in sorted(Path(sys.argv[1]).glob(f"{sys.argv[2]}-lr*/plan.json")):
    plan = json.loads(p.read_text())
    mean, hp = (plan.get("baseline") or {}).get("mean"), plan["hparams"]
    if mean is not None:
        rows.append((mean, -hp["num_train_epochs"], hp["learning_rate"], hp["warmup_ratio"]))
for s, ep, lr, wu in sorted(rows, reverse=True):
    print(f"  {sys.argv[2]}: lr {lr:g} epochs {-ep:g} warmup {wu:g} -> baseline search-eval {s:.4f}", file=sys.stderr)
if rows:
    s, ep, lr, wu = max(rows)
    print(f"{lr:g} {-ep:g} {wu:g}")
EOF
}

# 2. the study (benchmarks/glue_study.sh) at each task's budget, the tasks side by side
study() {
  read -r LR EPOCHS WARMUP < <(choose "$1" 2>>"$LOGS/budget.txt")
  [ -n "${LR:-}" ] || { log "$1: no calibration finished"; return; }
  log "$1: budget lr $LR epochs $EPOCHS warmup $WARMUP" | tee -a "$LOGS/budget.txt"
  LR=$LR EPOCHS=$EPOCHS WARMUP=$WARMUP bash benchmarks/glue_study.sh "$1"
}
for task in $TASKS; do study "$task" > "$LOGS/study-$task.log" 2>&1 & done
wait
log "done or out of time; packing"
for task in $TASKS; do tail -n 12 "$LOGS/study-$task.log"; done
pkill -f "glp.cli" 2>/dev/null; sleep 2; pkill -9 -f "multiprocessing" 2>/dev/null
cat "$LOGS/budget.txt" 2>/dev/null
tar czf "$RESULTS/runs.tgz" --exclude=cache --exclude='*.safetensors' --exclude='*.bin' "$OUT" "$CAL" 2>&1
tar czf "$RESULTS/logs.tgz" -C "$RESULTS" logs && rm -rf "$LOGS"
for task in $TASKS; do tail -n 4 "$OUT/$task-eval/"*.md 2>/dev/null; done
ls -la "$RESULTS"
