"""Encoder-side refinement (semlib.refine, codec.encode_image(refine=N)): files stay ordinary
.semc files, the objective never gets worse, and bad requests are refused."""

import numpy as np
import pytest
import torch

from semlib import SemlibError, codec, data, refine
from tests.conftest import random_tiny


@pytest.fixture(scope="module")
def crop():
    """A 96 x 136 crop of scikit-image's astronaut: odd sizes, padding on both sides."""
    return data.sample_image("astronaut")[120:216, 180:316].copy()


@pytest.fixture(scope="module")
def model():
    return random_tiny(3)


def test_a_refined_file_decodes_to_what_the_encoder_reconstructed(crop, model):
    enc = codec.encode_image(crop, gamma=200.0, model=model, refine=4)
    assert np.array_equal(codec.decode(enc.data, model=model), enc.x_hat)


def test_refinement_keeps_the_better_of_start_and_end(crop, model):
    x = codec._pad(data.to_tensor(crop))
    h, w = crop.shape[:2]
    offsets, report = refine.refine_latents(model, x, 200.0, h, w, steps=8, lr=0.05)
    assert report["kept"] in ("refined", "start")
    kept_loss = min(report["loss_start"], report["loss_end"])
    with torch.no_grad():
        embs = model.embeddings(model.log_gamma_map(200.0, x))
        loss, _, _ = refine.objective(model, embs, x, refine.pixel_gamma(200.0, h, w), offsets, h, w)
    assert float(loss) == pytest.approx(kept_loss, rel=1e-6)
    # zero steps: the encoder's own latents, the same file as without refinement
    plain = codec.encode_image(crop, gamma=200.0, model=model)
    assert codec.encode_image(crop, gamma=200.0, model=model, refine=0).data == plain.data
    assert all(p.requires_grad for p in model.parameters())       # the model is left as it was


def test_refinement_follows_a_roi_gamma_map(crop, model):
    imp = np.zeros(crop.shape[:2], np.float32)
    imp[20:60, 30:90] = 1.0
    enc = codec.encode_image(crop, gamma=100.0, importance=imp, model=model, refine=3)
    assert enc.gamma_map is not None
    assert np.array_equal(codec.decode(enc.data, model=model), enc.x_hat)


@pytest.mark.parametrize("bad", [-1, 10**6, 2.5, True, "3"])
def test_bad_refinement_steps_are_refused(crop, model, bad):
    with pytest.raises(SemlibError, match="refine"):
        codec.encode_image(crop, gamma=100.0, model=model, refine=bad)


def test_refinement_lowers_the_true_objective_and_keeps_the_best_check(crop, model):
    x = codec._pad(data.to_tensor(crop))
    h, w = crop.shape[:2]
    torch.manual_seed(0)
    latents, report = refine.refine_latents(model, x, 200.0, h, w, steps=12, lr=0.05)
    assert report["kept"] == "refined" and report["loss_end"] < report["loss_start"]
    assert report["kept_step"] in {3, 6, 9, 12}           # one of the CHECKS = 4 measurements
    with torch.no_grad():
        embs = model.embeddings(model.log_gamma_map(200.0, x))
        feats = model.encode_features(x, embs)
        start = refine._posterior_means(model, embs, x, feats)
    assert len(latents) == len(start) and all(a.shape == b.shape for a, b in zip(latents, start))
    assert any(not torch.equal(a, b) for a, b in zip(latents, start))


def test_refinement_spends_where_the_roi_map_asks(crop, model):
    """With a block map that weighs the top half 50 times more, refinement lowers the error
    there more than in the bottom half (relative to the encoder's own latents)."""
    x = codec._pad(data.to_tensor(crop))
    h, w = crop.shape[:2]
    gmap = torch.full((x.shape[2] // 8, x.shape[3] // 8), 20.0)
    gmap[: h // 16] = 1000.0
    torch.manual_seed(0)
    latents, report = refine.refine_latents(model, x, gmap, h, w, steps=12, lr=0.05)
    assert report["kept"] == "refined"
    with torch.no_grad():
        embs = model.embeddings(model.log_gamma_map(gmap, x))
        start = refine._posterior_means(model, embs, x, model.encode_features(x, embs))
        shape = (1, x.shape[2] // 64, x.shape[3] // 64)
        err = [(model.top_down(embs, shape, mode="round", latents=lat)[0] - x)[..., :h, :w].pow(2) for lat in (start, latents)]
    top, bottom = slice(0, h // 2), slice(h // 2, h)
    assert float(err[1][..., top, :].mean() / err[0][..., top, :].mean()) < float(err[1][..., bottom, :].mean() / err[0][..., bottom, :].mean())


def test_block_gammas_are_clipped_to_the_models_own_trained_range(crop, model):
    imp = np.zeros(crop.shape[:2], np.float32)
    imp[:48] = 1.0
    model.meta = {"gamma_lo": 32.0, "gamma_hi": 2048.0}
    narrow = codec.encode_image(crop, gamma=32.0, importance=imp, kappa=2.0, model=model)
    model.meta = {"gamma_lo": 4.0, "gamma_hi": 2048.0}
    try:
        wide = codec.encode_image(crop, gamma=32.0, importance=imp, kappa=2.0, model=model)
        assert narrow.gamma_map.min() == pytest.approx(32.0)
        assert wide.gamma_map.min() < 32.0
        assert np.array_equal(codec.decode(wide.data, model=model), wide.x_hat)
    finally:
        del model.meta


def test_the_refined_search_lands_on_the_target_of_a_curve_below_the_searched_one():
    """secant_from: the searched curve is bpp = 0.2 g^0.3; the refined encoder's is 12 % lower
    and a little steeper. Three refined files are enough for 1 %."""
    from semlib import rate_control

    def plain(g):
        return g, 0.2 * g ** 0.3, None

    calls = []

    def refined(g):
        calls.append(g)
        return g, 0.88 * 0.2 * g ** 0.33, None

    best, tried = rate_control.search_log_gamma(plain, (4.0, 8192.0), 1.0, 0.01)
    got = rate_control.secant_from(refined, best, tried, (4.0, 8192.0), 1.0, 0.01, 3)
    assert abs(got.bpp - 1.0) <= 0.01 and len(calls) <= 3
    assert calls[0] == best.knob                                   # the first at the gamma found
    # a target below the refined curve's range ends at the end of the range, closest kept
    low = rate_control.secant_from(refined, tried[0], tried, (4.0, 8192.0), 0.01, 0.01, 3)
    assert low.knob == pytest.approx(4.0) and low.bpp == pytest.approx(0.88 * 0.2 * 4.0 ** 0.33)


def test_a_refined_file_at_a_target_bpp_says_whether_it_met_it(crop, model):
    enc = codec.encode_image(crop, target_bpp=1.0, model=model, refine=3, tolerance=0.05)
    assert enc.refinement is not None and enc.target_bpp == 1.0
    assert enc.met_target == (abs(enc.bpp - 1.0) <= 0.05)
    assert np.array_equal(codec.decode(enc.data, model=model), enc.x_hat)


def test_refinement_is_deterministic_and_leaves_the_callers_generator_alone(crop, model):
    torch.manual_seed(123)
    a = codec.encode_image(crop, gamma=300.0, model=model, refine=4)
    after = torch.rand(3)
    torch.manual_seed(123)
    torch.rand(7)                                               # another state before the call
    b = codec.encode_image(crop, gamma=300.0, model=model, refine=4)
    torch.manual_seed(123)
    assert a.data == b.data and torch.equal(after, torch.rand(3))
