"""Training (docs/METHOD.md §5-6): the loss is R + gamma*D, tiny learns, resume is exact, checkpoints
are never half-written, and a trained checkpoint is a working codec."""

import json
import math
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from semlib import codec, data, metrics
from semlib.errors import CheckpointError, SemlibError
from semlib.models import GAMMA_RANGE, build_model, fingerprint, load_model
from semlib import train as T

THREADS = 1   # the test machine is small and shared: one thread is the fastest here


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory, photo_paths):
    """Six 96 x 128 photo crops in nested folders, mixed-case extensions, and one image
    smaller than a 64 x 64 crop (it gets upscaled)."""
    root = tmp_path_factory.mktemp("train_images")
    (root / "sub" / "deeper").mkdir(parents=True)
    names = ["a.png", "b.PNG", "sub/c.jpg", "sub/d.JPEG", "sub/deeper/e.png", "sub/deeper/f.Png"]
    for k, name in enumerate(names):
        image = data.load_image(photo_paths[k])[100:196, 200:328]
        Image.fromarray(image).save(root / name, quality=95)
    Image.fromarray(data.load_image(photo_paths[0])[:40, :48]).save(root / "small.png")
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("importance_cache")


def args_for(image_dir, cache_dir, out, steps, **kw):
    options = dict(config="tiny", crop=64, batch=4, num_threads=THREADS, progress=False, log_every=10,
                   val_every=0, cache_dir=str(cache_dir), lr=1e-3, warmup=5)
    options.update(kw)
    return T.training_args(image_dir, steps, out, **options)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, image_dir, cache_dir):
    """tiny trained for 40 steps at one gamma (the loss of a fixed gamma is comparable over steps)."""
    out = tmp_path_factory.mktemp("run") / "tiny.pt"
    summary = T.train(args_for(image_dir, cache_dir, out, 40, fixed_gamma=256.0, val_every=20,
                               val_data=str(image_dir / "sub" / "deeper")))
    return out, summary


# --------------------------------------------------------------------------- the loss


def _outputs(seed=0, n=2, size=64):
    torch.manual_seed(seed)
    x = torch.rand(n, 3, size, size)
    model = build_model("tiny").train()
    return x, model(x, 100.0)


def test_uniform_gamma_map_gives_the_loss_of_the_scalar_gamma():
    x, out = _outputs()
    imp = torch.rand(2, 64, 64)
    a = T.rate_distortion_loss(out, x, 300.0, beta=0.1, importance=imp)
    b = T.rate_distortion_loss(out, x, torch.full((2, 8, 8), 300.0), beta=0.1, importance=imp)
    c = T.rate_distortion_loss(out, x, torch.tensor([300.0, 300.0]), beta=0.1, importance=imp)
    assert torch.allclose(a["loss"], b["loss"], rtol=1e-6) and torch.allclose(a["loss"], c["loss"], rtol=1e-6)


def test_beta_zero_is_rate_plus_gamma_times_mse_on_minus_one_to_one():
    x, out = _outputs()
    nats = sum(float(-lik.detach().double().log().sum()) for lik in out["likelihoods"].values())
    mse_pm1 = float(((out["x_hat"].detach().double() - x.double()) * 2).pow(2).mean())   # images on [-1, 1]
    got = T.rate_distortion_loss(out, x, 500.0, beta=0.0)
    assert float(got["loss"].detach()) == pytest.approx(nats / (2 * 3 * 64 * 64) + 500.0 * mse_pm1, rel=1e-5)
    assert float(got["bpp"]) == pytest.approx(nats / math.log(2) / (2 * 64 * 64), rel=1e-5)


def test_beta_adds_gamma_times_one_minus_si_ssim():
    x, out = _outputs()
    imp = torch.rand(2, 64, 64)
    plain = T.rate_distortion_loss(out, x, 500.0, beta=0.0)
    mixed = T.rate_distortion_loss(out, x, 500.0, beta=0.2, importance=imp)
    si = metrics.si_ssim(x, out["x_hat"].float(), imp, reduction="none").detach()
    assert float((mixed["loss"] - plain["loss"]).detach()) == pytest.approx(float(0.2 * 500.0 * (1 - si).mean()), rel=1e-4)


def test_the_gamma_map_weights_the_error_of_each_block():
    x = torch.zeros(1, 3, 64, 64)
    x_hat = x.clone()
    x_hat[..., :8, :8] = 0.1                     # an error in the top-left block only
    out = {"x_hat": x_hat, "likelihoods": {"z0": torch.ones(1, 1, 1, 1)}}
    gm = torch.full((1, 8, 8), 100.0)
    low = T.rate_distortion_loss(out, x, gm, beta=0.0)["loss"]
    gm[0, 0, 0] = 1000.0
    high = T.rate_distortion_loss(out, x, gm, beta=0.0)["loss"]
    assert float((high / low).detach()) == pytest.approx(10.0, rel=1e-5)


# --------------------------------------------------------------------------- data and gamma


def test_images_are_found_recursively_and_small_ones_upscaled(image_dir, cache_dir):
    ds = T.TrainingSet(image_dir, 64, "uniform", cache_dir, progress=False)
    assert len(ds) == 7 and "sub/deeper/f.Png" in ds.names
    small = ds.images[ds.names.index("small.png")]
    assert min(small.shape[:2]) == 64 and small.shape[:2] == ds.maps[ds.names.index("small.png")].shape


def test_empty_or_missing_folders_are_refused(tmp_path):
    with pytest.raises(SemlibError, match="no images"):
        T.TrainingSet(tmp_path, 64, "uniform", tmp_path)
    with pytest.raises(SemlibError, match="not found"):
        T.TrainingSet(tmp_path / "nope", 64, "uniform", tmp_path)


def test_unreadable_images_are_skipped_with_a_warning(tmp_path, image_dir):
    (tmp_path / "ok.png").write_bytes((image_dir / "a.png").read_bytes())
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="broken.jpg"):
        ds = T.TrainingSet(tmp_path, 64, "uniform", tmp_path / "cache", progress=False)
    assert ds.names == ["ok.png"]


def test_importance_maps_are_computed_once_and_cached(image_dir, cache_dir, monkeypatch):
    ds = T.TrainingSet(image_dir, 64, "gradcam", cache_dir, progress=False)
    cached = sorted(cache_dir.glob("*_gradcam.png"))
    assert len(cached) == 7
    assert any(m.std() > 10 for m in ds.maps)            # Grad-CAM maps are not flat

    def refuse(*a, **k):
        raise AssertionError("importance recomputed although cached")

    monkeypatch.setattr("semlib.importance.importance_map", refuse)
    again = T.TrainingSet(image_dir, 64, "gradcam", cache_dir, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(ds.maps, again.maps))


def test_a_batch_is_a_function_of_seed_and_step(image_dir, cache_dir):
    ds = T.TrainingSet(image_dir, 64, "gradcam", cache_dir, progress=False)
    a = T.make_batch(ds, 0, 5, 4, map_prob=1.0)
    b = T.make_batch(ds, 0, 5, 4, map_prob=1.0)
    c = T.make_batch(ds, 0, 6, 4, map_prob=1.0)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_crops_of_image_and_importance_stay_aligned(image_dir, cache_dir):
    ds = T.TrainingSet(image_dir, 64, "uniform", cache_dir, progress=False)
    ds.maps = [im[..., 0].copy() for im in ds.images]    # the map is the red channel
    for step in range(10):
        x, imp, _ = T.make_batch(ds, 1, step, 4, map_prob=0.0)
        assert torch.equal(x[:, 0], imp)


def test_every_image_is_seen_once_per_epoch(image_dir, cache_dir):
    ds = T.TrainingSet(image_dir, 64, "uniform", cache_dir, progress=False)
    seen = [i for step in range(7) for i in ds.indices(3, step, 1)]
    assert sorted(seen) == list(range(7))
    ranks = [ds.indices(3, 0, 2, rank=r, world=2) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])             # processes share out the global batch


def test_gammas_are_log_uniform_and_maps_stay_in_the_trained_range(image_dir, cache_dir):
    ds = T.TrainingSet(image_dir, 64, "gradcam", cache_dir, progress=False)
    scalars = torch.cat([T.make_batch(ds, 0, s, 4, map_prob=0.0)[2] for s in range(100)])
    assert scalars.min() >= GAMMA_RANGE[0] and scalars.max() <= GAMMA_RANGE[1]
    logs = scalars.log()
    mid = math.log(math.sqrt(GAMMA_RANGE[0] * GAMMA_RANGE[1]))
    assert abs(float((logs < mid).float().mean()) - 0.5) < 0.1   # half below the geometric middle
    maps = torch.cat([T.make_batch(ds, 0, s, 4, map_prob=1.0)[2] for s in range(30)])
    assert maps.shape[1:] == (8, 8)
    assert maps.min() >= GAMMA_RANGE[0] and maps.max() <= GAMMA_RANGE[1]
    varying = (maps.amax(dim=(1, 2)) / maps.amin(dim=(1, 2)) > 1.5).float().mean()
    assert 0.3 < float(varying) < 1.0                    # spatial maps, and some constant ones
    fixed = T.make_batch(ds, 0, 0, 4, map_prob=1.0, fixed_gamma=128.0)[2]
    assert torch.equal(fixed, torch.full((4,), 128.0))


def test_learning_rate_warms_up_then_decays_to_the_floor():
    lrs = [T.learning_rate(s, 100, 1e-3, 10) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[100] == pytest.approx(T.LR_FLOOR * 1e-3)


# --------------------------------------------------------------------------- training


def test_tiny_learns(trained):
    out, summary = trained
    log = T.read_log(T.log_path_for(out))
    losses = [r["loss"] for r in log if r["kind"] == "train"]
    assert summary["step"] == 40 and not summary["interrupted"] and len(losses) == 4
    assert losses[-1] < 0.75 * losses[0]
    vals = [r for r in log if r["kind"] == "val"]
    assert {r["gamma"] for r in vals} == set(T.VAL_GAMMAS) and {r["step"] for r in vals} == {20, 40}
    assert all(r["bpp"] > 0 and 5 < r["psnr"] < 60 for r in vals)


def test_the_ema_model_beats_a_fresh_one_on_a_fixed_batch(trained, image_dir, cache_dir):
    out, _ = trained
    ds = T.TrainingSet(image_dir, 64, "gradcam", cache_dir, progress=False)
    x, imp, g = T.make_batch(ds, 123, 0, 7, map_prob=0.0, fixed_gamma=256.0)

    def loss(model):
        with torch.no_grad():
            return float(T.rate_distortion_loss(model.eval()(x, g), x, g, T.DEFAULT_BETA, imp)["loss"])

    assert loss(load_model(out)) < 0.75 * loss(build_model("tiny"))


def test_the_checkpoint_loads_with_weights_only(trained):
    out, _ = trained
    blob = torch.load(out, weights_only=True)
    assert blob["format"] == "semlib-train" and blob["step"] == 40
    assert blob["args"]["fixed_gamma"] == 256.0 and blob["config"]["name"] == "tiny"
    assert {"model", "ema", "optimizer", "meta"} <= set(blob)


def _states(path):
    blob = torch.load(path, weights_only=True)
    tensors = {f"model.{k}": v for k, v in blob["model"].items()}
    tensors.update({f"ema.{k}": v for k, v in blob["ema"].items()})
    for i, s in blob["optimizer"]["state"].items():
        tensors.update({f"adam.{i}.{k}": v for k, v in s.items()})
    return blob["step"], tensors


def test_resume_continues_bit_for_bit(tmp_path, image_dir, cache_dir):
    """N steps, stop, resume N more == 2N steps straight (bf16 autocast, channels-last, maps)."""
    common = dict(map_prob=0.7, ckpt_every=2, seed=7)
    T.train(args_for(image_dir, cache_dir, tmp_path / "straight.pt", 12, **common))
    first = T.train(args_for(image_dir, cache_dir, tmp_path / "resumed.pt", 12, stop_after=6, **common))
    assert first["step"] == 6 and first["interrupted"]
    T.train(args_for(image_dir, cache_dir, tmp_path / "resumed.pt", 12, resume=True, **common))
    (step_a, a), (step_b, b) = _states(tmp_path / "straight.pt"), _states(tmp_path / "resumed.pt")
    assert step_a == step_b == 12 and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    # the last log line covers steps 11-12 in both runs: it agrees on all but the timings
    la, lb = (T.read_log(tmp_path / f"{n}.jsonl")[-1] for n in ("straight", "resumed"))
    drop = ("sec_per_step", "wall_s", "time")
    assert {k: v for k, v in la.items() if k not in drop} == {k: v for k, v in lb.items() if k not in drop}


def test_stop_at_ends_every_run_at_the_same_step(tmp_path, image_dir, cache_dir):
    """--stop-at is a step of the whole run: a resumed run with it does nothing more, one without it goes on."""
    out = tmp_path / "budget.pt"
    first = T.train(args_for(image_dir, cache_dir, out, 10, stop_at=4, ckpt_every=100, export=str(tmp_path / "m.pt")))
    assert first["step"] == 4 and first["interrupted"]
    assert load_model(tmp_path / "m.pt").meta["steps"] == 4          # the model at the budget is exported
    assert T.train(args_for(image_dir, cache_dir, out, 10, stop_at=4, resume=True))["step"] == 4
    assert T.train(args_for(image_dir, cache_dir, out, 10, resume=True))["step"] == 10
    with pytest.raises(SemlibError, match="--stop-at"):
        T.train(args_for(image_dir, cache_dir, tmp_path / "bad.pt", 10, stop_at=0))


def test_a_signal_stops_the_run_with_a_checkpoint_that_resumes(tmp_path, image_dir, cache_dir, monkeypatch):
    real = T.make_batch

    def batch_then_signal(ds, seed, step, *a, **k):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)      # what `kill` or a cluster scheduler sends
        return real(ds, seed, step, *a, **k)

    monkeypatch.setattr(T, "make_batch", batch_then_signal)
    out = tmp_path / "sig.pt"
    summary = T.train(args_for(image_dir, cache_dir, out, 10, ckpt_every=100))
    assert summary["signal"] == signal.SIGTERM and summary["step"] == 4
    assert torch.load(out, weights_only=True)["step"] == 4
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL      # the handler is put back
    monkeypatch.setattr(T, "make_batch", real)
    assert T.train(args_for(image_dir, cache_dir, out, 10, resume=True))["step"] == 10


def test_a_failed_write_never_replaces_the_previous_checkpoint(tmp_path, image_dir, cache_dir, monkeypatch):
    out = tmp_path / "keep.pt"
    T.train(args_for(image_dir, cache_dir, out, 6, stop_after=3))
    before = out.read_bytes()
    real_save = torch.save

    def save_half_then_fail(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        T.train(args_for(image_dir, cache_dir, out, 6, resume=True, ckpt_every=1))
    monkeypatch.setattr(torch, "save", real_save)
    assert out.read_bytes() == before and torch.load(out, weights_only=True)["step"] == 3
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_an_existing_output_is_not_overwritten_without_resume(tmp_path, image_dir, cache_dir):
    out = tmp_path / "x.pt"
    out.write_bytes(b"precious")
    with pytest.raises(SemlibError, match="--resume"):
        T.train(args_for(image_dir, cache_dir, out, 2))
    with pytest.raises(SemlibError, match="does not exist"):
        T.train(args_for(image_dir, cache_dir, tmp_path / "none.pt", 2, resume=True))
    assert out.read_bytes() == b"precious"


# --------------------------------------------------------------------------- the trained codec


def test_the_trained_checkpoint_is_a_bit_exact_codec(trained, photo):
    out, _ = trained
    enc = codec.encode_image(photo, gamma=256.0, model=load_model(out))
    decoded = codec.decode(enc.data, model=load_model(out))      # a fresh load: same weights, same priors
    assert np.array_equal(decoded, enc.x_hat)
    flat = np.full_like(photo, int(round(photo.mean())))                # the photo's mean grey
    assert metrics.psnr(photo, decoded) > metrics.psnr(photo, flat)     # 40 steps learn more than a mean


def test_export_writes_the_ema_weights(trained, tmp_path):
    out, _ = trained
    exported = T.export_model(out, tmp_path / "tiny-model.pt")
    assert torch.load(exported, weights_only=True)["format"] == "semlib-model"
    assert fingerprint(load_model(exported)) == fingerprint(load_model(out))
    half = T.export_model(out, tmp_path / "tiny-fp16.pt", fp16=True)
    assert half.stat().st_size < 0.6 * exported.stat().st_size
    m16, m32 = load_model(half), load_model(exported)
    assert all(p.dtype == torch.float32 for p in m16.parameters())
    assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-4) for a, b in zip(m16.parameters(), m32.parameters()))
    assert m16.meta["steps"] == 40 and m16.meta["dtype"] == "float16"


# --------------------------------------------------------------------------- the command line


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        T.main_train(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for option in ("--config", "--data", "--steps", "--out", "--resume", "--beta", "--fixed-gamma",
                   "--crop", "--batch", "--lr", "--seed", "--log-every", "--ckpt-every", "--val-every",
                   "--num-threads"):
        assert option in text


def test_bad_options_exit_with_one_line(tmp_path, image_dir, capsys):
    with pytest.raises(SystemExit) as e:
        T.main_train(["--config", "tiny", "--data", str(image_dir), "--steps", "2",
                      "--out", str(tmp_path / "o.pt"), "--crop", "100"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "multiple of 64" in err and len(err.splitlines()) == 1


def test_the_command_line_trains_and_writes_its_log(tmp_path, image_dir, cache_dir, capsys):
    out = tmp_path / "cli.pt"
    code = T.main_train(["--config", "tiny", "--data", str(image_dir), "--steps", "3", "--out", str(out),
                         "--crop", "64", "--batch", "2", "--log-every", "1", "--val-every", "0",
                         "--num-threads", "1", "--cache-dir", str(cache_dir), "--no-progress",
                         "--export", str(tmp_path / "model.pt")])
    assert code == 0 and "step 3/3" in capsys.readouterr().out
    lines = (tmp_path / "cli.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    assert load_model(tmp_path / "model.pt").config.name == "tiny"


def test_balance_weights_make_every_gamma_pull_equally():
    w = T.balance_weights(torch.tensor([32.0, 2048.0]), 2)
    assert torch.allclose(w, torch.tensor([256.0 / 32.0, 256.0 / 2048.0]))
    maps = torch.stack([torch.full((8, 8), 64.0), torch.cat([torch.full((4, 8), 32.0), torch.full((4, 8), 96.0)])])
    assert torch.allclose(T.balance_weights(maps, 2), torch.tensor([4.0, 4.0]))
    x, out = _outputs()
    plain = T.rate_distortion_loss(out, x, torch.tensor([32.0, 2048.0]), beta=0.0)["loss"]
    weighted = T.rate_distortion_loss(out, x, torch.tensor([32.0, 2048.0]), beta=0.0, weights=torch.ones(2))["loss"]
    assert torch.allclose(plain, weighted)


def test_the_gamma_range_option_bounds_the_samples(image_dir, cache_dir):
    ds = T.TrainingSet(image_dir, 64, "uniform", cache_dir, progress=False)
    for map_prob in (0.0, 1.0):
        g = torch.cat([T.make_batch(ds, 0, s, 4, map_prob, gamma_range=(4.0, 16.0))[2].flatten() for s in range(20)])
        assert g.min() >= 4.0 and g.max() <= 16.0


def test_init_warm_starts_from_exported_weights_with_a_fresh_optimizer(trained, tmp_path, image_dir, cache_dir):
    """--init loads an exported model (float16 too) into model and EMA; the schedule starts at --start-step."""
    out, _ = trained
    half = T.export_model(out, tmp_path / "tiny-fp16.pt", fp16=True)
    run = tmp_path / "warm.pt"
    T.train(args_for(image_dir, cache_dir, run, 45, init=str(half), start_step=40, fixed_gamma=256.0))
    blob = torch.load(run, weights_only=True)
    assert blob["step"] == 45
    # 5 Adam steps (t counts from the warm start) on top of the exported weights: close to them, not equal
    assert all(int(s["step"]) == 5 for s in blob["optimizer"]["state"].values())
    start = load_model(half).state_dict()
    moved = [k for k, v in blob["model"].items() if v.is_floating_point() and k in start
             and not torch.equal(v, start[k])]
    assert moved
    assert max(float((blob["model"][k] - start[k]).abs().max()) for k in moved) < 0.05


def test_init_refuses_another_configuration_or_a_foreign_file(tmp_path, image_dir, cache_dir, tiny_ckpt):
    with pytest.raises(SemlibError, match="holds a 'tiny' model"):
        T.train(args_for(image_dir, cache_dir, tmp_path / "a.pt", 2, config="small", init=str(tiny_ckpt)))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        T.train(args_for(image_dir, cache_dir, tmp_path / "b.pt", 2, init=str(junk)))


def test_snapshots_export_the_ema_every_n_steps(tmp_path, image_dir, cache_dir):
    out = tmp_path / "snap.pt"
    T.train(args_for(image_dir, cache_dir, out, 6, snapshot_every=3))
    snaps = sorted(p.name for p in tmp_path.glob("snap_step*.pt"))
    assert snaps == ["snap_step3.pt", "snap_step6.pt"]
    m = load_model(tmp_path / "snap_step3.pt")
    assert m.meta["steps"] == 3 and m.meta["dtype"] == "float16"


def test_stratified_sampling_puts_one_gamma_in_every_stratum(image_dir, cache_dir):
    ds = T.TrainingSet(image_dir, 64, "uniform", cache_dir, progress=False)
    lo, hi = 8.0, 8192.0
    for step in range(10):
        g = T.make_batch(ds, 0, step, 4, 0.0, gamma_range=(lo, hi), stratify=True)[2]
        strata = sorted(int(4 * (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))) for v in g.tolist())
        assert strata == [0, 1, 2, 3]
    plain = [sorted(int(4 * (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)))
                    for v in T.make_batch(ds, 0, s, 4, 0.0, gamma_range=(lo, hi))[2].tolist()) for s in range(10)]
    assert any(p != [0, 1, 2, 3] for p in plain)       # without it, batches miss parts of the range


def test_gain_residual_warm_start_resets_the_gains_to_the_law(trained, tmp_path, image_dir, cache_dir):
    """A freely-learned model started with --gain-residual: its gain layers restart at zero (the law),
    everything else is carried over, and the result says which gain law it has."""
    out, _ = trained
    run = tmp_path / "law.pt"
    T.train(args_for(image_dir, cache_dir, run, 41, init=str(out), start_step=40, fixed_gamma=256.0,
                     gain_residual=0.5, lr=1e-9))
    blob = torch.load(run, weights_only=True)
    assert blob["config"]["gain_residual"] == 0.5
    start = torch.load(out, weights_only=True)["model"]           # one step at lr 1e-9 moves nothing visible
    gains = [k for k in blob["model"] if ".gain." in k]
    assert gains and all(float(blob["model"][k].abs().max()) < 1e-6 for k in gains)
    assert any(float(start[k].abs().max()) > 0.1 for k in gains)
    others = [k for k in blob["model"] if ".gain." not in k and blob["model"][k].is_floating_point()]
    assert max(float((blob["model"][k] - start[k]).abs().max()) for k in others) < 1e-6
    model = load_model(run)
    assert model.config.gain_residual == 0.5
    with pytest.raises(SemlibError, match="gain_residual"):     # resuming it as a free-gain model is refused
        T.train(args_for(image_dir, cache_dir, run, 42, resume=True, fixed_gamma=256.0))
    with pytest.raises(SemlibError, match="--gain-residual"):
        T.train(args_for(image_dir, cache_dir, tmp_path / "bad.pt", 2, gain_residual=-1.0))


def test_wider_latents_start_as_the_narrower_model(trained, tmp_path, image_dir, cache_dir, photo):
    """--init into a model with more latent channels (--z-dims): the new channels are unused at
    first, so the reconstruction is the old model's and the rate barely moves."""
    out, _ = trained
    run = tmp_path / "wide.pt"
    T.train(args_for(image_dir, cache_dir, run, 41, init=str(out), start_step=40, fixed_gamma=256.0,
                     z_dims=[8, 8, 16, 12], lr=1e-9))
    old, new = load_model(out), load_model(run)       # both with their raw weights (the EMA moved a step)
    old.load_state_dict(torch.load(out, weights_only=True)["model"], strict=False)
    new.load_state_dict(torch.load(run, weights_only=True)["model"], strict=False)
    assert new.config.z_dims == (8, 8, 16, 12)
    x = codec._pad(data.to_tensor(photo))
    with torch.no_grad():
        a, b = old(x, 256.0), new(x, 256.0)
    assert float((a["x_hat"] - b["x_hat"]).abs().max()) < 1e-4
    bits = lambda o: float(sum(-torch.log2(l).sum() for l in o["likelihoods"].values()))  # noqa: E731
    assert bits(b) == pytest.approx(bits(a), rel=0.02)
    with pytest.raises(SemlibError, match="z_dims"):
        T.train(args_for(image_dir, cache_dir, run, 42, resume=True, fixed_gamma=256.0))


# --------------------------------------------------------------------------- never the test set


def test_a_training_set_refuses_a_test_image(tmp_path, photo, monkeypatch):
    path = tmp_path / "kodim99.png"
    Image.fromarray(photo).save(path)
    Image.fromarray(photo[::-1].copy()).save(tmp_path / "other.png")
    refused = frozenset({data.sha256_file(path)})
    monkeypatch.setattr(T, "test_set_sums", lambda: refused)
    with pytest.raises(SemlibError, match="kodim99.png is a Kodak test image"):
        T.TrainingSet(tmp_path, crop=64, importance="uniform", cache_dir=tmp_path / "cache", progress=False)
    path.unlink()
    assert len(T.TrainingSet(tmp_path, crop=64, importance="uniform", cache_dir=tmp_path / "cache",
                                 progress=False)) == 1


def test_the_pinned_kodak_sums_are_the_refused_ones():
    sums = T.test_set_sums()
    assert len(sums) == 24 and all(len(s) == 64 for s in sums)


def test_training_photos_fall_back_to_scikit_image_never_to_kodak(tmp_path, monkeypatch):
    def missing(name, download=True):
        raise FileNotFoundError(f"dataset {name!r} not found; looked in: nowhere")

    monkeypatch.setattr(data, "find_dataset", missing)
    with pytest.raises(SemlibError, match="no training photos: dataset"):
        T.training_photos()
    folder, where = T.training_photos(fallback=tmp_path / "photos")
    names = sorted(p.name for p in data.list_images(folder))
    assert "astronaut.png" in names and not any(n.startswith("kodim") for n in names)
    assert "scikit-image" in where and "unavailable" in where
    assert not (T.test_set_sums() & {data.sha256_file(folder / n) for n in names})


def test_beta_ratios_are_the_loss_terms_of_jpeg(photo):
    g = np.ones(photo.shape[:2], np.float32)
    rows = T.beta_ratios([photo], [g], qualities=(20, 90))
    assert rows.shape == (2, 2)
    assert rows[1, 0] > rows[0, 0]                      # quality 90 has the higher PSNR
    assert np.all(rows[:, 1] > 0) and np.all(np.isfinite(rows))


def test_amp_by_default_only_where_bf16_is_native(monkeypatch):
    """--amp unset: on for CUDA; on a CPU only with AVX512-BF16 or AMX-BF16 among the flags
    (emulated bf16 is slower than float32); an explicit --amp / --no-amp wins."""
    assert T.cpu_has_bf16("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n") is False
    assert T.cpu_has_bf16("flags\t\t: fpu avx512f avx512_bf16\n") is True
    assert T.cpu_has_bf16("flags\t\t: fpu amx_bf16 amx_tile\n") is True
    assert T.cpu_has_bf16("") is False
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(T, "cpu_has_bf16", lambda: False)
    assert T.use_amp(cpu, None) is False and T.use_amp(cuda, None) is True
    assert T.use_amp(cpu, True) is True and T.use_amp(cuda, False) is False
    assert T.autocast_for(cpu, None)[0].__class__.__name__ == "nullcontext"
    monkeypatch.setattr(T, "cpu_has_bf16", lambda: True)
    assert T.use_amp(cpu, None) is True
    assert T.training_args("d", 1, "o").amp is None


def test_compile_trains_the_same_model_with_the_same_checkpoint(tmp_path, image_dir, cache_dir, monkeypatch):
    """--compile (torch.compile; TorchInductor's C++ build swapped for the same tracing without it,
    to keep the suite fast) follows the eager run's losses and writes the same checkpoint keys,
    per-image gammas and gamma maps alike; resuming a compiled run works."""
    monkeypatch.setattr(T, "COMPILE_BACKEND", "aot_eager")
    common = dict(map_prob=0.5, seed=3, amp=False, ckpt_every=3, log_every=3)
    T.train(args_for(image_dir, cache_dir, tmp_path / "eager.pt", 6, **common))
    T.train(args_for(image_dir, cache_dir, tmp_path / "compiled.pt", 6, compile=True, stop_after=3, **common))
    T.train(args_for(image_dir, cache_dir, tmp_path / "compiled.pt", 6, compile=True, resume=True, **common))
    (step_a, a), (step_b, b) = _states(tmp_path / "eager.pt"), _states(tmp_path / "compiled.pt")
    assert step_a == step_b == 6 and a.keys() == b.keys()
    assert not any("_orig_mod" in k for k in b)
    la, lb = (T.read_log(tmp_path / f"{n}.jsonl") for n in ("eager", "compiled"))
    assert [r["step"] for r in la] == [r["step"] for r in lb]
    for ra, rb in zip(la, lb):
        assert math.isclose(ra["loss"], rb["loss"], rel_tol=1e-3), (ra, rb)
    assert all(torch.allclose(a[k].float(), b[k].float(), rtol=1e-3, atol=1e-5) for k in a)


def test_compile_without_a_cxx_compiler_is_one_clear_error(tmp_path, image_dir, cache_dir, monkeypatch):
    monkeypatch.setattr(T, "cxx_compiler", lambda: None)
    with pytest.raises(SemlibError, match="--compile on the CPU needs a C.. compiler"):
        T.train(args_for(image_dir, cache_dir, tmp_path / "c.pt", 2, compile=True))
    assert T.training_args("d", 1, "o").compile is False


def test_fused_adam_steps_like_adam_and_their_states_are_interchangeable():
    torch.manual_seed(0)
    w = [torch.nn.Parameter(torch.randn(5, 4)) for _ in range(2)]
    v = [torch.nn.Parameter(p.detach().clone()) for p in w]
    a, b = T.adam(w, 1e-2), T.adam(v, 1e-2, fused=True)
    assert not a.defaults.get("fused")
    for _ in range(3):
        for opt, ps in ((a, w), (b, v)):
            opt.zero_grad()
            sum((p ** 2).sum() for p in ps).backward()
            opt.step()
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(w, v))
    T.adam(v, 1e-2).load_state_dict(b.state_dict())       # a fused run resumes without --compile, and back
    T.adam(w, 1e-2, fused=True).load_state_dict(a.state_dict())
