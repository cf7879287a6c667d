"""The speed-ups change no byte of a file and no pixel of a decoded image: the table indexes
by one binary search (semlib.entropy.build_indexes) are compressai's, and compress, which no
longer computes the likelihoods, still rounds to the same latents."""

import numpy as np
import pytest
import torch

from semlib import codec, entropy


def _compressai_indexes(conditional, scales):
    return type(conditional).build_indexes(conditional, scales)


def test_table_indexes_are_compressais(tiny_model):
    gc = tiny_model.entropy
    table = gc.scale_table.float()
    up, down = torch.full_like(table, 1e9), torch.zeros_like(table)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e-30, 1e30, 0.11, 0.1100001, 256.0])
    rng = torch.Generator().manual_seed(0)
    for v in (table, torch.nextafter(table, up), torch.nextafter(table, down), special,
              torch.exp(torch.randn(200_000, generator=rng) * 3)):
        v = v.reshape(1, 1, 1, -1)
        fast, slow = entropy.build_indexes(gc, v), _compressai_indexes(gc, v)
        assert fast.dtype == slow.dtype and fast.shape == slow.shape
        assert torch.equal(fast, slow)
    assert int(entropy.build_indexes(gc, special.reshape(1, -1))[0, 0]) == len(table) - 1     # NaN: the last table


@pytest.mark.parametrize("roi", [False, True])
def test_files_and_images_are_the_same_as_with_compressais_indexes(tiny_model, photo, monkeypatch, roi):
    mask = np.zeros(photo.shape[:2], np.float32)
    mask[10:60, 20:90] = 1.0
    kw = dict(gamma=200.0, model=tiny_model, importance=mask if roi else None)
    fast = codec.encode_image(photo, **kw)
    fast_out = codec.decode(fast.data, model=tiny_model)
    monkeypatch.setattr(entropy, "build_indexes", _compressai_indexes)
    slow = codec.encode_image(photo, **kw)
    assert slow.data == fast.data
    assert np.array_equal(codec.decode(slow.data, model=tiny_model), fast_out)
    assert np.array_equal(fast_out, fast.x_hat)


def test_compress_rounds_to_the_latents_of_the_eval_forward(tiny_model, photo):
    """forward (eval) still computes the likelihoods with the latents rounded as compress does;
    its reconstruction is compress's."""
    x = codec._pad(torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255)
    with torch.no_grad():
        ref = tiny_model.eval()(x, 200.0)["x_hat"].clamp(0, 1)
    out = tiny_model.compress(x, 200.0)
    assert torch.equal(out["x_hat"], ref)
