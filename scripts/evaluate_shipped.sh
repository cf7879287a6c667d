#!/usr/bin/env bash
# Evaluate the shipped checkpoint (semlib/checkpoints/small.pt) on all 24 Kodak images with
# real files, then rewrite its model card (issue 12). About 15 minutes on 2 CPU cores (the
# evaluations run two at a time, one thread each).
#   - a sweep over the powers of two of the model's trained gamma range (one RD curve of the one model)
#   - rate control to 0.4 and 2.0 bpp (the ends users ask for) and the paper's table rates 0.75, 1.12, 1.25
#   - rate control with --roi auto (the default two-level map: the 20 % most important blocks at
#     3x the gamma of the others) at 0.75, 1.12, 1.25, for the ROI comparison at equal bpp
#   - the same with the paper's map (--roi-top 0: gamma_i = gamma * (T_i / M)^kappa, kappa 1)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
semlib eval --codec semlib --data kodak --no-progress -o results/kodak/semlib.json &
semlib eval --codec semlib --data kodak --no-progress --target-bpp 0.4,0.75,1.12,1.25,2.0 -o results/kodak/semlib-target-bpp.json &
wait -n
semlib eval --codec semlib --data kodak --no-progress --roi auto --target-bpp 0.75,1.12,1.25 -o results/kodak/semlib-roi-target-bpp.json &
wait -n
semlib eval --codec semlib --data kodak --no-progress --roi auto --roi-top 0 --target-bpp 0.75,1.12,1.25 -o results/kodak/semlib-roi-k1-target-bpp.json &
wait
python scripts/model_card.py
