"""Encoder-side refinement (semlib.refine, codec.encode_image(refine=N)): files stay ordinary
.semc files, the objective never gets worse, and bad requests are refused."""

import numpy as np
import pytest
import torch

from semlib import SemlibError, codec, data, refine
from semlib.models import sga_round
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


def test_sga_becomes_rounding_as_the_temperature_falls():
    torch.manual_seed(0)
    r = (torch.rand(1000) * 6 - 3).requires_grad_(True)
    far = (r - torch.round(r)).abs() < 0.4                      # not at a rounding boundary
    cold = sga_round(r, 0.01)
    assert torch.equal(torch.round(cold[far]), torch.round(r[far]))
    assert float((cold[far] - torch.round(r[far])).abs().max().detach()) < 1e-3
    warm = sga_round(r, 0.5)
    assert float((warm - torch.round(r)).abs().max().detach()) > 0.1    # soft while warm
    warm.sum().backward()
    assert torch.isfinite(r.grad).all() and float(r.grad.abs().sum()) > 0


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
