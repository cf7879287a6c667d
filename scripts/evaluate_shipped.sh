#!/usr/bin/env bash
# Evaluate the shipped checkpoint (semlib/checkpoints/small.pt) on all 24 Kodak images with
# real files, then rewrite its model card (issue 5). About 20-30 minutes on 2 CPU cores.
#   - a sweep over gamma 32..2048 (one RD curve of the one model)
#   - rate control to the paper's table rates 0.75, 1.12, 1.25 bpp, uniform gamma
#   - the same with --roi auto (block gammas from Grad-CAM), for the ROI comparison
set -euo pipefail
cd "$(dirname "$0")/.."
semlib eval --codec semlib --data kodak -o results/kodak/semlib.json
semlib eval --codec semlib --data kodak --target-bpp 0.75,1.12,1.25 -o results/kodak/semlib-target-bpp.json
semlib eval --codec semlib --data kodak --roi auto --target-bpp 0.75,1.12,1.25 -o results/kodak/semlib-roi-k1-target-bpp.json
python scripts/model_card.py
