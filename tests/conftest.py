"""Shared fixtures: small real images and a `tiny` model (no network, no data sets beside the clone, seconds).

The photos ship with scikit-image (``skimage.data``), so a fresh clone has them."""

import numpy as np
import pytest
from PIL import Image

from semlib import data
from semlib.models import random_model, save_model

# RGB photos bundled with scikit-image, all at least 300 x 451
SAMPLES = ("chelsea", "coffee", "rocket", "astronaut", "immunohistochemistry", "hubble_deep_field")


@pytest.fixture(scope="session")
def photo_paths(tmp_path_factory) -> list:
    """The scikit-image photos of :data:`SAMPLES`, written as PNG files, in that order."""
    root = tmp_path_factory.mktemp("photos")
    paths = []
    for name in SAMPLES:
        paths.append(root / f"{name}.png")
        Image.fromarray(data.sample_image(name)).save(paths[-1])
    return paths


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A 96 x 128 crop of scikit-image's coffee cup (rim, spoon, table grain): real texture,
    odd block count."""
    return data.sample_image("coffee")[140:236, 220:348].copy()


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
