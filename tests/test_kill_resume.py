"""Training survives a hard kill (docs/METHOD.md §9, ``semlib train --resume``): real ``semlib train``
processes are killed with SIGKILL -- no handler runs, nothing is flushed -- and

* the run resumed from the last checkpoint goes on from that checkpoint's step with the
  same batches, and ends with the same weights, bit for bit, as a run that never stopped;
* a process killed while it writes a checkpoint leaves the previous checkpoint as it was.

(tests/test_train.py covers the polite stops: SIGTERM, --stop-after, a failing write.)
Every wait has a deadline; a process still running when a test ends is killed.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from PIL import Image

from semlib import data
from semlib import train as T

DEADLINE_S = 120          # per wait; a healthy run needs a few seconds
TIMINGS = ("sec_per_step", "wall_s", "time")   # log fields that differ between runs


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory, photo_paths):
    """Four 96 x 128 photo crops."""
    root = tmp_path_factory.mktemp("kill_images")
    for k in range(4):
        crop = data.load_image(photo_paths[k + 1])[150:246, 300:428]
        Image.fromarray(crop).save(root / f"k{k}.png")
    return root


def train_command(image_dir, out, *extra):
    """``python -m semlib.cli train`` with tiny, 64-pixel crops, batches of 2, one thread,
    uniform importance, float32 (--no-amp), a checkpoint every 3 steps and a log line per
    step. --steps 400 fixes the learning-rate schedule; runs are cut short by a kill or
    --stop-after."""
    return [sys.executable, "-m", "semlib.cli", "train", "--config", "tiny", "--data", str(image_dir),
            "--steps", "400", "--out", str(out), "--crop", "64", "--batch", "2", "--importance", "uniform",
            "--no-amp", "--val-every", "0", "--no-progress", "--ckpt-every", "3", "--log-every", "1",
            "--num-threads", "1", "--seed", "5", "--map-prob", "0.7", "--lr", "1e-3", "--warmup", "5",
            "--cache-dir", str(out.parent / "cache"), *extra]


def start(cmd, tmp_path, name, **env):
    """Popen with stdout + stderr going to a file (read back in failure messages)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **env)
    log = open(tmp_path / f"{name}.out", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    log.close()
    return proc


def output_of(tmp_path, name) -> str:
    return (tmp_path / f"{name}.out").read_text(errors="replace")[-3000:]


def run(cmd, tmp_path, name):
    proc = start(cmd, tmp_path, name)
    try:
        code = proc.wait(timeout=DEADLINE_S)
    finally:
        stop(proc)
    assert code == 0, f"{name} exited with {code}:\n{output_of(tmp_path, name)}"


def stop(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


def wait_for(condition, proc, tmp_path, name, what):
    """Poll ``condition()`` every 10 ms until it holds; fail if the process ends first or
    the deadline passes."""
    t_end = time.monotonic() + DEADLINE_S
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"{name} ended (exit {proc.returncode}) before {what}:\n{output_of(tmp_path, name)}")
        if time.monotonic() > t_end:
            pytest.fail(f"{name}: no {what} within {DEADLINE_S} s:\n{output_of(tmp_path, name)}")
        time.sleep(0.01)


def log_steps(path) -> list[dict]:
    """The train records of a JSON-lines log written so far (none if there is no file yet);
    a last line still being written (no newline yet) is left for the next look."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        records.append(json.loads(line))
    return [r for r in records if r["kind"] == "train"]


def states(path):
    """step and every tensor of a training checkpoint: model, EMA and Adam state."""
    blob = T.load_checkpoint(path)
    tensors = {f"model.{k}": v for k, v in blob["model"].items()}
    tensors.update({f"ema.{k}": v for k, v in blob["ema"].items()})
    for i, s in blob["optimizer"]["state"].items():
        tensors.update({f"adam.{i}.{k}": v for k, v in s.items()})
    return blob["step"], tensors


def without_timings(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMINGS}


def test_sigkill_mid_run_resumes_from_the_checkpoint_with_the_same_batches(tmp_path, image_dir):
    out, log = tmp_path / "killed.pt", tmp_path / "killed.jsonl"
    straight, target = tmp_path / "straight.pt", 12
    # the run that never stops goes alongside (two processes start faster than one after the other)
    reference = start(train_command(image_dir, straight, "--stop-after", str(target)), tmp_path, "straight")
    proc = start(train_command(image_dir, out), tmp_path, "killed")
    try:
        # the checkpoint of step 3 is written right after the log line of step 3: step 4 logged
        # means a checkpoint exists and the run is in the middle of its next interval
        wait_for(lambda: len(log_steps(log)) >= 4, proc, tmp_path, "killed", "log line of step 4")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        assert reference.wait(timeout=DEADLINE_S) == 0, output_of(tmp_path, "straight")
    finally:
        stop(proc)
        stop(reference)
    killed_log = log_steps(log)
    last_logged = killed_log[-1]["step"]
    ckpt_step, _ = states(out)                   # loads: the kill left a complete checkpoint
    assert ckpt_step >= 3 and ckpt_step % 3 == 0 and ckpt_step <= last_logged < 400
    assert [r["step"] for r in killed_log] == list(range(1, last_logged + 1))
    if ckpt_step + 2 > target:                   # the kill came late (a very busy machine): go further
        target, straight = ckpt_step + 5, tmp_path / "straight2.pt"
        run(train_command(image_dir, straight, "--stop-after", str(target)), tmp_path, "straight2")

    run(train_command(image_dir, out, "--resume", "--stop-after", str(target - ckpt_step)), tmp_path, "resumed")

    # the resumed process logs from the step after the checkpoint, not after the last log line
    resumed_log = log_steps(log)[len(killed_log):]
    assert [r["step"] for r in resumed_log] == list(range(ckpt_step + 1, target + 1))
    # same data order: the steps the kill threw away are recomputed to the same values ...
    redone = {r["step"]: without_timings(r) for r in resumed_log}
    for r in killed_log:
        if r["step"] > ckpt_step:
            assert without_timings(r) == redone[r["step"]], f"step {r['step']} differs after resuming"
    # ... and killed + resumed logs the same values as the straight run at every step
    straight_log = {r["step"]: without_timings(r) for r in log_steps(straight.with_suffix(".jsonl"))}
    assert sorted(straight_log) == list(range(1, target + 1))
    for r in killed_log[:ckpt_step] + resumed_log:
        assert without_timings(r) == straight_log[r["step"]], f"step {r['step']} differs from the straight run"
    # and the final weights, EMA and Adam moments are bit for bit those of the straight run
    (step_a, a), (step_b, b) = states(straight), states(out)
    assert step_a == step_b == target and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


# A `semlib train` whose second checkpoint write stops half way: torch.save writes the first
# half of the real bytes into atomic_save's temporary file, fsyncs them, says so in a marker
# file, and hangs there until it is killed.
HANGING_TRAIN = textwrap.dedent("""
    import io, os, sys, time
    import torch
    from semlib import train

    real_save, calls = torch.save, []

    def save_half_then_hang(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real_save(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        half = buf.getvalue()[: len(buf.getvalue()) // 2]
        f.write(half)
        f.flush()
        os.fsync(f.fileno())
        with open(os.environ["MARKER"], "w") as m:
            m.write(f"{f.name}\\n{len(half)}\\n")
        time.sleep(3600)

    torch.save = save_half_then_hang
    sys.exit(train.main_train(sys.argv[1:]))
""")


def test_sigkill_while_a_checkpoint_is_written_keeps_the_previous_one(tmp_path, image_dir):
    out, marker = tmp_path / "ckpt.pt", tmp_path / "writing.txt"
    cmd = train_command(image_dir, out)
    cmd[1:4] = ["-c", HANGING_TRAIN]                   # same options, through the script above
    proc = start(cmd, tmp_path, "hanging", MARKER=str(marker))
    try:
        wait_for(lambda: marker.is_file() and marker.read_text().count("\n") == 2, proc, tmp_path, "hanging",
                 "half-written checkpoint")
        tmp_name, half = marker.read_text().split()
        tmp_file = tmp_path / os.path.basename(tmp_name)
        good = out.read_bytes()                        # the first checkpoint, complete
        assert tmp_file.name.startswith(f".{out.name}.") and tmp_file.stat().st_size == int(half) > 0
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        stop(proc)
    # the checkpoint is the previous one, byte for byte, and loads; the half file would not
    assert out.read_bytes() == good
    assert T.load_checkpoint(out)["step"] == 3
    with pytest.raises(Exception):
        torch.load(tmp_file, weights_only=True)
    # the killed process's temporary file stays behind (no handler runs on SIGKILL): harmless,
    # --resume reads only --out and writes its own temporary file
    assert tmp_file.is_file()
    run(train_command(image_dir, out, "--resume", "--stop-after", "3"), tmp_path, "after")
    assert T.load_checkpoint(out)["step"] == 6
    assert [r["step"] for r in log_steps(tmp_path / "ckpt.jsonl")][-3:] == [4, 5, 6]
