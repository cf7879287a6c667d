#!/usr/bin/env bash
# Encoder-side refinement (--refine 20) of the shipped checkpoint on the first 8 Kodak images,
# real files, one thread (issue 12): refinement costs about 20 CPU s per image, so not all 24.
# Notebook 06 (section 10) sets these beside the plain encoder and the measured codecs on the
# same 8 images. About an hour on one core.
#   - a sweep over gamma 4, 16, ..., 4096 with --refine 20
#   - rate control to the paper's 0.75, 1.12, 1.25 bpp with --refine 20: uniform gamma, and --roi auto
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
mkdir -p results/refine
semlib eval --codec semlib --data kodak --limit 8 --quality 4,16,64,256,1024,4096 --refine 20 --no-progress -o results/refine/semlib-refine20.json
semlib eval --codec semlib --data kodak --limit 8 --roi auto --target-bpp 0.75,1.12,1.25 --refine 20 --no-progress -o results/refine/semlib-roi-refine20-target-bpp.json
semlib eval --codec semlib --data kodak --limit 8 --target-bpp 0.75,1.12,1.25 --refine 20 --no-progress -o results/refine/semlib-refine20-target-bpp.json
