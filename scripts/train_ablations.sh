#!/usr/bin/env bash
# The ablation models of the paper's Table 4 and Fig. 15 (issue 5), at a scaled-down budget:
#   - fixed-rate models at gamma 32, 128, 512, 2048 (beta as shipped): Fig. 15's "one model per rate"
#   - the fixed-rate baseline without the semantic loss (beta = 0) at gamma 128: Table 4's "Baseline",
#     against the beta > 0 fixed-rate model at the same gamma ("Baseline + semantic")
# Budget: STOP_AT steps (default 4000) of the recipe of the shipped model's runs 1-5 (128-pixel crops,
# batch 8, peak lr 5e-4, the cosine over 200,000 steps), i.e. the same steps and schedule as the
# snapshot small_step${STOP_AT}.pt of the main run, which is the variable-rate model to compare with.
# Two models train at a time, one thread each (about 25-30 minutes per model on this 2-core machine).
# Stop it at any time: running it again resumes every model where it stopped (--resume + --stop-at).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-/work/runs/ablation}
STOP_AT=${STOP_AT:-4000}
DATA=${DATA:-../shared/data/train}
mkdir -p "$RUNS" results/ablation

train() {  # name, then extra options
  local name=$1; shift
  local out="$RUNS/$name.pt" resume=()
  [[ -f "$out" ]] && resume=(--resume)
  semlib train --config small --data "$DATA" --steps 200000 --crop 128 --batch 8 --lr 5e-4 --warmup 500 \
    --out "$out" --val-every 0 --ckpt-every 250 --no-progress --num-threads 1 --stop-at "$STOP_AT" \
    --export "semlib/checkpoints/small_$name.pt" --export-fp16 "${resume[@]}" "$@" > "$RUNS/$name.out" 2>&1
}

pairs=("fixed_gamma32 --fixed-gamma 32" "fixed_gamma2048 --fixed-gamma 2048"
       "fixed_gamma128 --fixed-gamma 128" "fixed_gamma512 --fixed-gamma 512"
       "baseline_beta0_gamma128 --fixed-gamma 128 --beta 0")
for ((i = 0; i < ${#pairs[@]}; i += 2)); do
  # shellcheck disable=SC2086
  train ${pairs[i]} &
  if ((i + 1 < ${#pairs[@]})); then
    # shellcheck disable=SC2086
    train ${pairs[i + 1]} &
  fi
  wait
done

# Kodak, all 24 images, real files, each fixed-rate model at its own gamma; the variable-rate
# snapshot at the same budget over the whole sweep. (EVAL=0 skips this.)
[[ "${EVAL:-1}" == 0 ]] && exit 0
for spec in "${pairs[@]}"; do
  read -r name _ g _ <<< "$spec"
  semlib eval --codec "semlib/checkpoints/small_$name.pt" --data kodak --quality "$g" --no-progress \
    -o "results/ablation/$name.json"
done
semlib eval --codec "/work/runs/small/small_step${STOP_AT}.pt" --data kodak --no-progress \
  -o "results/ablation/variable_step${STOP_AT}.json"
