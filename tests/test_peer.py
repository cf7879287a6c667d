"""The fixed-rate peer (semlib.peer): CompressAI's loss, our data and loop, exact resume, real
bitstreams, and a results file that semlib.evaluate reads like any other."""

import json

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

matplotlib.use("Agg")

from semlib import data, evaluate, metrics
from semlib import peer as P
from semlib import train as T
from semlib.errors import CheckpointError, FormatError, SemlibError

SMALL = dict(N=16, M=24, crop=64, batch=2, num_threads=1, progress=False, val_every=0, amp=False, warmup=2,
             lr=1e-3, log_every=10)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory, photo_paths):
    """Four 96 x 128 photo crops."""
    root = tmp_path_factory.mktemp("peer_images")
    for k in range(4):
        image = data.load_image(photo_paths[k])[100:196, 200:328]
        Image.fromarray(image).save(root / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, image_dir):
    """A tiny peer (N=16, M=24) trained for 40 steps on 64 x 64 crops."""
    out = tmp_path_factory.mktemp("peer_run") / "peer.pt"
    summary = P.train_peer(P.peer_args(image_dir, out, steps=40, **SMALL))
    return out, summary


@pytest.fixture(scope="module")
def parrots():
    """176 x 190 (not a multiple of 64: padded and cropped back; MS-SSIM is defined)."""
    return data.sample_image("astronaut")[100:276, 150:340].copy()


# --------------------------------------------------------------------------- model and loss


def test_the_loss_is_compressai_rate_distortion_loss():
    from compressai.losses import RateDistortionLoss

    torch.manual_seed(0)
    model = P.build_peer(16, 24).train()
    x = torch.rand(2, 3, 64, 64)
    out = model(x)
    ours = P.peer_loss(out, x, 0.0483)
    theirs = RateDistortionLoss(lmbda=0.0483)(out, x)
    assert torch.allclose(ours["loss"], theirs["loss"], rtol=1e-5)
    assert torch.allclose(ours["bpp"], theirs["bpp_loss"], rtol=1e-5)
    assert ours["bpp"] > 0 and 0 < ours["psnr"] < 60


def test_only_the_quantiles_are_auxiliary_and_the_main_loss_leaves_them_alone():
    model = P.build_peer(16, 24).train()
    main, aux = P.parameter_groups(model)
    assert len(aux) == 1 and aux[0] is model.entropy_bottleneck.quantiles
    assert len(main) + 1 == len(list(model.parameters()))
    x = torch.rand(1, 3, 64, 64)
    P.peer_loss(model(x), x, 0.01)["loss"].backward()
    assert aux[0].grad is None
    model.aux_loss().backward()
    assert aux[0].grad is not None and aux[0].grad.abs().sum() > 0


def test_the_peer_sees_the_crops_our_model_sees(image_dir):
    """make_batch's images do not depend on the gamma sampling, so both runs see the same crops."""
    ds = T.TrainingSet(image_dir, 64, "uniform", progress=False)
    for step in (0, 5):
        ours, _, _ = T.make_batch(ds, 0, step, 3, map_prob=0.5)
        peers, _, _ = T.make_batch(ds, 0, step, 3, map_prob=0.0, fixed_gamma=1.0)
        assert torch.equal(ours, peers)


# --------------------------------------------------------------------------- the loop


def test_the_peer_learns_and_records_its_wall_clock(trained):
    out, summary = trained
    assert summary["step"] == 40 and not summary["interrupted"]
    log = [r for r in T.read_log(summary["log"]) if r["kind"] == "train"]
    assert [r["step"] for r in log] == [10, 20, 30, 40]
    assert log[-1]["loss"] < 0.5 * log[0]["loss"]
    assert log[-1]["psnr"] > log[0]["psnr"] + 3
    blob = torch.load(out, weights_only=True)
    assert blob["step"] == 40 and blob["format"] == P.PEER_FORMAT
    assert blob["meta"]["wall_s"] == pytest.approx(summary["wall_s"]) and blob["meta"]["wall_s"] > 0
    assert blob["meta"]["wall_s"] == pytest.approx(log[-1]["wall_s"])
    assert blob["args"]["lmbda"] == P.DEFAULT_LMBDA and blob["architecture"] == {"name": "MeanScaleHyperprior",
                                                                                  "N": 16, "M": 24}


def _states(path):
    blob = torch.load(path, weights_only=True)
    return blob["model"], blob["ema"], blob["optimizer"]["state"], blob["aux_optimizer"]["state"], blob["step"]


def test_resume_continues_bit_for_bit(tmp_path, image_dir):
    straight, split = tmp_path / "straight.pt", tmp_path / "split.pt"
    P.train_peer(P.peer_args(image_dir, straight, steps=8, **SMALL))
    first = P.train_peer(P.peer_args(image_dir, split, steps=8, stop_after=3, **SMALL))
    assert first["step"] == 3 and first["interrupted"]
    second = P.train_peer(P.peer_args(image_dir, split, steps=8, resume=True, **SMALL))
    assert second["step"] == 8 and not second["interrupted"]
    a, b = _states(straight), _states(split)
    assert a[4] == b[4] == 8
    for sa, sb in zip(a[:2], b[:2]):
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
    for oa, ob in zip(a[2:4], b[2:4]):
        for i in oa:
            for k in oa[i]:
                assert torch.equal(oa[i][k], ob[i][k])


def test_a_time_limit_stops_with_a_checkpoint(tmp_path, image_dir):
    out = tmp_path / "p.pt"
    s = P.train_peer(P.peer_args(image_dir, out, steps=50, time_limit=1e-6, **SMALL))
    assert s["step"] == 1 and s["interrupted"]
    assert torch.load(out, weights_only=True)["step"] == 1
    assert [r["step"] for r in T.read_log(s["log"])] == [1]      # the partial average is logged too
    assert s["last"]["bpp"] > 0


def test_outputs_are_not_overwritten_and_resume_checks_the_run(tmp_path, image_dir, trained):
    with pytest.raises(SemlibError, match="exists"):
        P.train_peer(P.peer_args(image_dir, trained[0], steps=40, **SMALL))
    with pytest.raises(SemlibError, match="does not exist"):
        P.train_peer(P.peer_args(image_dir, tmp_path / "none.pt", steps=40, resume=True, **SMALL))
    copy = tmp_path / "copy.pt"
    copy.write_bytes(trained[0].read_bytes())
    with pytest.raises(SemlibError, match="lambda"):
        P.train_peer(P.peer_args(image_dir, copy, steps=40, resume=True, **{**SMALL, "lmbda": 0.01}))
    with pytest.raises(SemlibError, match="crop"):
        P.train_peer(P.peer_args(image_dir, tmp_path / "x.pt", **{**SMALL, "crop": 96}))


# --------------------------------------------------------------------------- the codec


def test_the_bitstream_decodes_to_what_the_model_reconstructs(trained, parrots):
    model, _ = P.load_peer(trained[0])
    blob = P.peer_encode(model, parrots)
    rec = P.peer_decode(model, blob)
    assert rec.shape == parrots.shape and rec.dtype == np.uint8
    x = P._pad(data.to_tensor(parrots))
    with torch.no_grad():
        out = model(x)                                       # eval mode: rounded latents
    expected = data.to_uint8(out["x_hat"][..., :176, :190])
    assert np.abs(expected.astype(int) - rec.astype(int)).max() <= 1
    bits = float(sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values()))
    assert 0.9 * bits < 8 * len(blob) < 1.2 * bits + 8 * (P.HEADER.size + 16)   # real bytes ~ the estimate


def test_damaged_files_raise_format_errors(trained, parrots):
    model, _ = P.load_peer(trained[0])
    blob = P.peer_encode(model, parrots)
    for bad in (b"", blob[:5], b"JUNK" + blob[4:], blob[:8] + (10 ** 6).to_bytes(4, "little") + blob[12:]):
        with pytest.raises(FormatError):
            P.peer_decode(model, bad)


def test_non_finite_latents_raise_instead_of_hanging_the_coder(trained, parrots):
    model, _ = P.load_peer(trained[0])
    with torch.no_grad():
        model.g_a[0].bias.fill_(float("nan"))
    with pytest.raises(SemlibError, match="non-finite"):
        P.peer_encode(model, parrots)


def test_bad_checkpoints_are_refused(tmp_path, tiny_ckpt):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else", "model": {}}, other)
    for path in (junk, other, tiny_ckpt, tmp_path / "missing.pt"):
        with pytest.raises(CheckpointError):
            P.load_peer(path)
    with pytest.raises(SemlibError, match="weights"):
        P.load_peer(junk, weights="best")


# --------------------------------------------------------------------------- evaluation


def test_evaluation_writes_a_results_file_in_the_project_shape(trained, parrots, tmp_path):
    res = P.evaluate_peer(trained[0], {"parrots": parrots}, importance=None, progress=False, dataset="tiny")
    assert res["name"] == "peer-msh-0.0483"
    assert set(res) >= {"name", "description", "meta", "results", "per_image"}
    r = res["results"]
    assert r["quality"] == [P.DEFAULT_LMBDA] and all(len(r[k]) == 1 for k in evaluate.METRIC_KEYS)
    model, _ = P.load_peer(trained[0])
    blob = P.peer_encode(model, parrots)                    # encoding is deterministic
    assert r["bpp"][0] == pytest.approx(8 * len(blob) / (176 * 190))
    assert r["psnr-rgb"][0] == pytest.approx(float(metrics.psnr(parrots, P.peer_decode(model, blob))))
    assert 0 < r["ms-ssim-rgb"][0] <= 1
    assert res["meta"]["training"]["steps"] == 40 and res["meta"]["training"]["wall_s"] > 0
    path = evaluate.save_results(res, tmp_path / "peer.json")
    assert evaluate.load_results(path)["results"]["bpp"] == r["bpp"]
    ax = evaluate.plot_rd([path, evaluate.RESULTS_ROOT / "kodak" / "jpeg.json"])
    assert len(ax.lines) == 2
    rows = evaluate.bd_table(path, evaluate.RESULTS_ROOT / "kodak" / "jpeg.json")
    assert rows[0]["bd_rate"] is None and "at least 4" in rows[0]["error"]


def test_the_command_line_trains_and_evaluates(tmp_path, image_dir, capsys):
    out = tmp_path / "cli.pt"
    assert P.main(["train", "--data", str(image_dir), "--out", str(out), "--steps", "3", "--N", "16", "--M", "24",
                   "--crop", "64", "--batch", "2", "--val-every", "0", "--no-amp", "--no-progress",
                   "--num-threads", "1"]) == 0
    assert "step 3/3" in capsys.readouterr().out
    results = tmp_path / "r.json"
    assert P.main(["eval", "--checkpoint", str(out), "--data", str(image_dir), "--images", "2", "--importance",
                   "uniform", "--out", str(results), "--no-progress"]) == 0
    d = json.loads(results.read_text())
    assert d["meta"]["num_images"] == 2 and d["meta"]["training"]["steps"] == 3
    assert P.main(["eval", "--checkpoint", str(tmp_path / "nope.pt"), "--data", str(image_dir),
                   "--out", str(tmp_path / "n.json")]) == 2
    err = capsys.readouterr().err
    assert "no such checkpoint" in err and len(err.strip().splitlines()) == 1
