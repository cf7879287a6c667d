"""Shared fixtures: small real images and a `tiny` model (no network, seconds)."""

import numpy as np
import pytest
import torch

from semlib import data
from semlib.models import ResBlock, build_model, save_model


@pytest.fixture(scope="session")
def kodak_dir():
    return data.find_dataset("kodak")


@pytest.fixture(scope="session")
def photo(kodak_dir) -> np.ndarray:
    """A 96 x 128 crop of kodim23 (parrots): real texture, odd block count."""
    return data.load_image(kodak_dir / "kodim23.png")[200:296, 300:428].copy()


def random_tiny(seed: int = 0):
    """A `tiny` model with random weights whose gamma conditioning is switched on
    (modulations are zero at initialisation, which would make gamma a no-op)."""
    torch.manual_seed(seed)
    model = build_model("tiny")
    for m in model.modules():
        if isinstance(m, ResBlock):
            torch.nn.init.normal_(m.modulation.weight, std=0.3)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model():
    return random_tiny(0)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_model(tiny_model, path, note="random weights for tests")
    return path
