"""Shared fixtures: small real images and a `tiny` model (no network, seconds)."""

import numpy as np
import pytest
from PIL import Image

from semlib import data
from semlib.models import random_model, save_model


@pytest.fixture(scope="session")
def kodak_dir():
    return data.find_dataset("kodak")


@pytest.fixture(scope="session")
def photo(kodak_dir) -> np.ndarray:
    """A 96 x 128 crop of kodim23 (parrots): real texture, odd block count."""
    return data.load_image(kodak_dir / "kodim23.png")[200:296, 300:428].copy()


@pytest.fixture()
def photo_png(tmp_path, photo):
    """``photo`` written as a PNG file, for the command-line tests."""
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    return path


def random_tiny(seed: int = 0):
    """A `tiny` model with random weights whose gamma conditioning is switched on."""
    return random_model("tiny", seed)


@pytest.fixture(scope="session")
def tiny_model():
    return random_tiny(0)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_model(tiny_model, path, note="random weights for tests")
    return path
