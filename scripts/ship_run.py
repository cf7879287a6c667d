"""Ship a campaign run that was warm-started from the shipped model (``semlib train --init``).

Such a run counts its steps from 0 (its learning-rate schedule is its own), so the campaign's
history has to be joined by hand. This script:

1. exports the run's EMA weights (float16) to ``semlib/checkpoints/small.pt``, with ``steps``
   counted on from the model it started from (``--step-offset``) and its trained gamma range;
2. appends the run's log to ``results/training/small.jsonl``, steps and wall time offset the
   same way, so the learning curve of the model card continues;
3. appends the run's commands to ``results/training/small_runs.json``.

    python scripts/ship_run.py /work/runs/campaign/small.pt --step-offset 30000 --runs runs7.json

The run may also be given as its exported model (format semlib-model, e.g. one kept in
``results/campaign/``) with ``--log`` naming the run's log; its weights are shipped as they are.

``--runs``: a JSON list of {"date", "from_step", "to_step", "machine", "command"} with the run's
own step numbers (offset here). Then run scripts/evaluate_shipped.sh.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="the run's training checkpoint (format semlib-train), or its exported model")
    p.add_argument("--log", default=None, help="the run's log (default: beside the checkpoint, .jsonl)")
    p.add_argument("--step-offset", type=int, required=True, help="steps of the model the run started from")
    p.add_argument("--runs", required=True, help="JSON list of the run's command records")
    p.add_argument("--out", default=str(ROOT / "semlib" / "checkpoints" / "small.pt"))
    a = p.parse_args()
    from semlib.models import load_model, save_model
    from semlib.train import export_model, log_path_for, read_log

    shipped_log = ROOT / "results" / "training" / "small.jsonl"
    old = read_log(shipped_log)
    wall0 = max(r["wall_s"] for r in old if r.get("kind") == "train")
    last_step = max(r["step"] for r in old)
    if last_step != a.step_offset:
        raise SystemExit(f"the shipped log ends at step {last_step}, not at --step-offset {a.step_offset}")

    import torch

    fmt = torch.load(a.checkpoint, map_location="cpu", weights_only=True).get("format")
    if fmt == "semlib-train":
        export_model(a.checkpoint, a.out, fp16=True)
        model = load_model(a.out)
    elif fmt == "semlib-model":
        if a.log is None:
            raise SystemExit(f"{a.checkpoint} is an exported model: name the run's log with --log")
        model = load_model(a.checkpoint)
    else:
        raise SystemExit(f"{a.checkpoint}: neither a training checkpoint nor an exported model")
    meta = dict(model.meta)
    meta.update(steps=int(meta["steps"]) + a.step_offset, warm_start_step=a.step_offset,
                wall_s=float(meta.get("wall_s", 0.0)) + wall0)
    save_model(model.half(), a.out, **meta)

    wall_at = {}
    lines = []
    for r in read_log(a.log or log_path_for(a.checkpoint)):
        r = dict(r, step=r["step"] + a.step_offset)
        if "wall_s" in r:
            r["wall_s"] += wall0
            wall_at[r["step"]] = r["wall_s"]
        lines.append(json.dumps(r))
    with open(shipped_log, "a") as f:
        f.write("\n".join(lines) + "\n")

    runs_path = ROOT / "results" / "training" / "small_runs.json"
    runs = json.loads(runs_path.read_text())
    for r in json.loads(Path(a.runs).read_text()):
        runs.append(dict(r, from_step=r["from_step"] + a.step_offset, to_step=r["to_step"] + a.step_offset))
    runs_path.write_text(json.dumps(runs, indent=1) + "\n")
    print(f"shipped {a.out}: step {meta['steps']}, {meta['wall_s'] / 3600:.2f} h of training steps; "
          f"{len(lines)} log lines appended")


if __name__ == "__main__":
    main()
