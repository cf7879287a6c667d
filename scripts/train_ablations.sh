#!/usr/bin/env bash
# The ablation models of the paper's Table 4 and Fig. 15 (issue 5), at a scaled-down budget:
#   - fixed-rate models at gamma 32, 128, 512, 2048 (beta as shipped): Fig. 15's "one model per rate"
#   - the fixed-rate baseline without the semantic loss (beta = 0) at gamma 128: Table 4's "Baseline",
#     against the beta > 0 fixed-rate model at the same gamma ("Baseline + semantic")
# Budget: STOP_AT steps (default 4000) of the recipe of the shipped model's runs 1-5 (128-pixel crops,
# batch 8, peak lr 5e-4, the cosine over 200,000 steps), i.e. the same steps and schedule as the
# snapshot small_step${STOP_AT}.pt of the main run. That snapshot is not in git, so the variable-rate
# model to compare with is trained here too, by the same command without --fixed-gamma ("variable").
# Two models train at a time, one thread each (30-40 minutes per model on this 2-core machine).
# The models are exported (fp16) into $RUNS, not into the repository: their Kodak results are what
# is committed (results/ablation/), and notebook 06 reads those.
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
    --export "$RUNS/small_$name.pt" --export-fp16 "${resume[@]}" "$@" >> "$RUNS/$name.out" 2>&1
}

# Table 4's pair first, then the variable-rate model beside the lowest fixed rate, then the rest.
pairs=("baseline_beta0_gamma128 --fixed-gamma 128 --beta 0" "fixed_gamma128 --fixed-gamma 128"
       "variable" "fixed_gamma32 --fixed-gamma 32"
       "fixed_gamma512 --fixed-gamma 512" "fixed_gamma2048 --fixed-gamma 2048")
running=0
for spec in "${pairs[@]}"; do   # two at a time: the next model starts as soon as one finishes
  if ((running == 2)); then
    wait -n
    running=1
  fi
  # shellcheck disable=SC2086
  train $spec &
  running=$((running + 1))
done
wait

# Kodak, all 24 images, real files, each fixed-rate model at its own gamma; the variable-rate
# snapshot at the same budget over the whole sweep. (EVAL=0 skips this; a results file that is
# newer than its model is kept.)
[[ "${EVAL:-1}" == 0 ]] && exit 0
evaluate() {  # model name, results file, then options of semlib eval
  local model="$RUNS/small_$1.pt" out=$2; shift 2
  [[ -f "$out" && "$out" -nt "$model" ]] && return 0
  semlib eval --codec "$model" --no-progress -o "$out" "$@"
}
for spec in "${pairs[@]}"; do
  read -r name _ g _ <<< "$spec"
  [[ "$name" == variable ]] && continue
  evaluate "$name" "results/ablation/$name.json" --data kodak --quality "$g"
done
evaluate variable "results/ablation/variable_step${STOP_AT}.json" --data kodak
# Table 4's other two rows: the paper's Tecnick and CLIC 2022 sets; here the one Tecnick image and the
# 5-photo CLIC sample of ../shared/data (not the test sets), for the two models of Table 4 only.
for name in baseline_beta0_gamma128 fixed_gamma128; do
  for ds in tecnick clic_sample; do
    evaluate "$name" "results/ablation/$name-$ds.json" --data "$ds" --quality 128
  done
done
