#!/usr/bin/env bash
# Issue 15's study: CLOOB against CLIP on the embedded captioned scenes, batch 128, STEPS (default 5000)
# optimiser steps, 3 seeds; CLOOB with β 8 and 14.3 (fixed τ⁻¹ 30), CLIP (learnable τ⁻¹ from 1/0.07), the
# ablations InfoLOOB without retrieval (τ⁻¹ 30) and InfoNCE on retrieved embeddings (β 14.3, learnable τ⁻¹
# like CLIP), and a warm-start pair: CLIP and CLOOB (β 8) continued for STEPS from one 300-step CLIP
# checkpoint. Every run: AdamW ε 1e-8 and cloob-pretrain's defaults otherwise (lr 2e-3, warmup 30, cosine),
# zero-shot and embedding geometry every EVAL steps. Then scripts/study/summarize.py writes the table and
# the curves.
#   scripts/study/run.sh                      # about 75 minutes on 2 cores
#   STEPS=1000 SEEDS="0" LOGS=/tmp/s scripts/study/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${STEPS:-5000}
SEEDS=${SEEDS:-"0 1 2"}
EVAL=${EVAL:-250}
LOGS=${LOGS:-logs/study}
JOBS=${JOBS:-2}                                  # runs at a time, each on THREADS threads
export RAYON_NUM_THREADS=${THREADS:-1}
cargo build --workspace --release --bin cloob-pretrain
BIN=target/release/cloob-pretrain
mkdir -p "$LOGS"
common=(--quiet --data embedded --batch-size 128 --eps 1e-8 --zeroshot-frequency "$EVAL" --logs "$LOGS" --overwrite)
declare -A CONFIGS=(
  [cloob-b8]="--loss cloob --scale-hopfield 8 --init-inv-tau 30"
  [cloob-b14.3]="--loss cloob --scale-hopfield 14.3 --init-inv-tau 30"
  [clip]="--loss clip --init-inv-tau 14.3 --learnable-inv-tau"
  [infoloob]="--loss infoloob --init-inv-tau 30"
  [infonce-hopfield]="--loss infonce-hopfield --scale-hopfield 14.3 --init-inv-tau 14.3 --learnable-inv-tau"
)
run() {  # name, steps, flags...
  local name=$1 steps=$2; shift 2
  if [ -f "$LOGS/$name/done" ]; then echo "skip $name (done)"; return; fi
  local start; start=$(date +%s)
  "$BIN" "${common[@]}" --name "$name" --steps "$steps" "$@" > "$LOGS/$name.out" 2>&1
  echo "$(( $(date +%s) - start ))" > "$LOGS/$name/done"
  echo "$name: $(cat "$LOGS/$name/done") s"
}
# The warm start's checkpoint first (300 CLIP steps, seed 0), then every run, JOBS at a time.
run warmstart-clip300 300 --seed 0 --save-frequency 300 ${CONFIGS[clip]}
ckpt="$LOGS/warmstart-clip300/checkpoints/step_0000300.json"
jobs_list=()
for seed in $SEEDS; do
  for c in cloob-b8 cloob-b14.3 clip infoloob infonce-hopfield; do
    jobs_list+=("$c-s$seed|$STEPS|--seed $seed --save-frequency 0 ${CONFIGS[$c]}")
  done
done
jobs_list+=("warm-clip-s0|$STEPS|--seed 0 --save-frequency 0 ${CONFIGS[clip]} --init-from $ckpt")
jobs_list+=("warm-cloob-b8-s0|$STEPS|--seed 0 --save-frequency 0 ${CONFIGS[cloob-b8]} --init-from $ckpt")
for j in "${jobs_list[@]}"; do
  IFS='|' read -r name steps flags <<< "$j"
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 2; done
  # shellcheck disable=SC2086
  run "$name" "$steps" $flags &
done
wait
echo "all runs done: python3 scripts/study/summarize.py $LOGS"
