#!/usr/bin/env bash
# One call of GPU training that fits a lent machine's 10-minute command limit (issue 12):
# train for at most MINUTES (default 9) wall-clock minutes, start-up included, then export.
#
#   scripts/gpu_train.sh OUTDIR                      # first call: starts from the shipped model
#   scripts/gpu_train.sh OUTDIR                      # later calls with OUTDIR/train.pt: --resume
#   CONFIG=tiny INIT= MINUTES=4 DATA=some/photos scripts/gpu_train.sh /tmp/gpu-check   # the CPU check
#   INIT=results/campaign/run28_unshipped.pt scripts/gpu_train.sh OUTDIR
#       # from a campaign export instead (same z_dims as the shipped model; results/campaign)
#
# Writes OUTDIR/train.pt (the full training state; pass it back to continue), OUTDIR/train.jsonl
# (the log), OUTDIR/model.pt (the EMA weights, float16, for semlib eval / the codec) and
# OUTDIR/run.json (the command, steps and seconds). Extra arguments go to `semlib train` and
# override the recipe below (the campaign's: see results/training/small_runs.json).
set -euo pipefail
OUTDIR=${1:?usage: scripts/gpu_train.sh OUTDIR [semlib train options]}
shift
CONFIG=${CONFIG:-small}
MINUTES=${MINUTES:-9}
DATA=${DATA:-../shared/data/train}
INIT=${INIT-semlib/checkpoints/small.pt}
STEPS=${STEPS:-20000}           # the schedule's length; a call stops at its time limit first
PY=${PYTHON:-python}
mkdir -p "$OUTDIR"
t0=$(date +%s)
if [ -f "$OUTDIR/train.pt" ]; then
  start=(--resume)
elif [ -n "$INIT" ]; then
  start=(--init "$INIT")
else
  start=()
fi
# The loop stops itself (with a checkpoint) a minute and a half before the hard limit, which
# leaves time to load the data (the first call also computes the Grad-CAM maps) and to export.
budget=$((MINUTES * 60))
[ "$budget" -ge 240 ] || { echo "MINUTES must be at least 4 (start-up and export need ~2.5 min)" >&2; exit 2; }
cmd=("$PY" -m semlib.cli train --config "$CONFIG" --data "$DATA" --steps "$STEPS" --out "$OUTDIR/train.pt"
     --crop 256 --batch 16 --lr 2e-4 --warmup 200 --balance-gammas --stratify-gammas --gamma-range 4 8192 --quantization mixed
     --device auto --ckpt-every 200 --val-every 1000 --val-images 6 --no-progress
     --time-limit $((budget - 150)) "${start[@]}" "$@")
echo "${cmd[*]}"
status=0
timeout -s TERM -k 30 $((budget - 40)) "${cmd[@]}" || status=$?
"$PY" - "$OUTDIR" "$t0" "$status" "${cmd[*]}" <<'EOF'
import json, sys, time
from pathlib import Path
from semlib.train import export_model, load_checkpoint
out, t0, status, command = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if not (out / "train.pt").is_file():
    sys.exit(f"no checkpoint in {out}: training failed before its first checkpoint (exit {status})")
export_model(out / "train.pt", out / "model.pt", fp16=True)
step = int(load_checkpoint(out / "train.pt")["step"])
(out / "run.json").write_text(json.dumps({"command": command, "exit": status, "step": step,
                                          "seconds": round(time.time() - t0, 1)}, indent=1))
print(f"step {step}, exit {status}, {time.time() - t0:.0f} s; model {out / 'model.pt'}")
EOF
