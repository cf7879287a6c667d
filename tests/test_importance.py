"""Grad-CAM importance maps (docs/METHOD.md §1): semlib.importance."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from semlib import importance as imp
from semlib.data import sample_image
from semlib.errors import ImageError

# Boxes in skimage's 512x512 `astronaut` (rows, cols), drawn by eye over the photo.
SHUTTLE_BOX = (slice(0, 285), slice(350, 470))  # the space-shuttle model, top right
FLAG_BOX = (slice(0, 300), slice(0, 95))  # the US flag, top left


@pytest.fixture(scope="module")
def clf():
    return imp.load_classifier("efficientnet_lite0")


@pytest.fixture(scope="module")
def chelsea_at_model_size(clf):
    """chelsea already resized to the classifier's input size, so no resize happens inside."""
    x = imp.preprocess(sample_image("chelsea"), clf)
    mean = torch.tensor(clf.mean).view(1, 3, 1, 1)
    std = torch.tensor(clf.std).view(1, 3, 1, 1)
    a = (x * std + mean).clamp(0, 1)[0].permute(1, 2, 0).mul(255).round().byte().numpy()
    return np.ascontiguousarray(a)


def mass_fraction(m, box):
    return float(m[box].sum() / m.sum())


# --- the classifier: weights, padding, preprocessing -------------------------------

def test_every_weight_is_used_once_with_matching_shapes():
    model = imp.build_efficientnet_lite0()
    src = torch.load(imp.lite0_weights_path(), map_location="cpu", weights_only=True)
    out = imp.convert_lite0_state_dict(src, model)
    assert len(out) == len(src) == len(model.state_dict())
    assert set(out) == set(model.state_dict())
    bad = dict(src)
    bad["_fc.bias"] = torch.zeros(999)
    with pytest.raises(ValueError, match="shape"):
        imp.convert_lite0_state_dict(bad, model)
    extra = dict(src)
    extra["_blocks.99._bn1.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="unexpected key"):
        imp.convert_lite0_state_dict(extra, model)


def test_tf_same_padding_puts_the_odd_pixel_bottom_right():
    conv = nn.Conv2d(1, 1, 3, stride=2, padding=0, bias=False)
    x = torch.ones(1, 1, 8, 8)
    (padded,) = imp.tf_same_padding(conv, (x,))
    # n=8, k=3, s=2: total = (4-1)*2 + 3 - 8 = 1 -> 0 before, 1 after
    assert padded.shape[-2:] == (9, 9)
    assert padded[0, 0, 0, 0] == 1 and padded[0, 0, -1, :].abs().sum() == 0 and padded[0, 0, :, -1].abs().sum() == 0
    (padded,) = imp.tf_same_padding(conv, (torch.ones(1, 1, 7, 7),))
    # n=7: total = 2 -> 1 before, 1 after
    assert padded.shape[-2:] == (9, 9) and padded[0, 0, 0].abs().sum() == 0 and padded[0, 0, -1].abs().sum() == 0


def test_feature_map_is_stride_32_for_any_size(clf):
    for h, w in [(224, 224), (225, 301), (33, 97)]:
        f, z = imp.features_and_logits(clf, torch.zeros(1, 3, h, w))
        assert f.shape == (1, 1280, -(-h // 32), -(-w // 32)) and z.shape == (1, 1000)


def test_class_names_are_imagenet():
    names = imp.class_names()
    assert len(names) == 1000 and names[285] == "Egyptian cat" and names[967] == "espresso"


def test_predictions_on_sample_photos_are_sensible(clf):
    cats = {"tiger cat", "Egyptian cat", "tabby"}
    top = imp.predict(sample_image("chelsea"), topk=5)
    assert top[0][1] in cats and len(cats & {name for _, name, _ in top}) == 3
    assert all(top[i][2] >= top[i + 1][2] for i in range(4))
    idx, name, p = imp.predict(sample_image("coffee"), topk=1)[0]
    assert (idx, name) == (967, "espresso") and p > 0.3


# --- Grad-CAM equals the grad-cam package ------------------------------------------

@pytest.mark.parametrize("c", [285, 281])  # Egyptian cat, tabby
def test_equals_pytorch_grad_cam(clf, chelsea_at_model_size, c):
    """Same model, layer (features[-1]), class and normalised input tensor.

    grad-cam rescales min-max ((m - min) / (1e-7 + max), applied twice), where docs/METHOD.md §1
    only divides by the max; so its scale_cam_image is applied to our map before comparing.
    F and dZ_c/dF are compared as they are.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    image = chelsea_at_model_size
    x = imp.preprocess(image, clf)
    assert x.shape[-2:] == image.shape[:2]  # no resize inside, so both see the same tensor
    # the input requires grad only so that the library's backward works on our frozen model
    with GradCAM(model=clf.model, target_layers=[clf.target_layer]) as lib:
        ref = lib(x.clone().requires_grad_(True), targets=[ClassifierOutputTarget(c)])[0]
        ref_f = lib.activations_and_grads.activations[0]
        ref_g = lib.activations_and_grads.gradients[0]

    f, z = imp.features_and_logits(clf, x)
    g = imp.class_gradient(z, f, c)
    assert torch.allclose(f.detach(), ref_f, atol=1e-5) and torch.allclose(g, ref_g, atol=1e-7)

    r = imp.gradcam(image, target=c)
    assert r.index == c and r.map.shape == ref.shape
    ours = scale_cam_image(scale_cam_image(r.map[None]))[0]
    assert np.abs(ours - ref).max() < 1e-4


# --- the map's contract -------------------------------------------------------------

@pytest.mark.parametrize("shape", [(7, 13), (1, 1), (64, 500), (1, 3000), (300, 451)])
def test_map_is_float32_image_sized_in_unit_range(clf, shape):
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    m = imp.importance_map(image)
    assert m.dtype == np.float32 and m.shape == shape
    assert np.isfinite(m).all() and m.min() >= 0 and m.max() == pytest.approx(1.0)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 20000), st.integers(1, 20000), st.sampled_from([32, 224, 320]))
def test_model_input_size_keeps_short_side_and_bounds(h, w, short):
    mh, mw = imp.model_input_size(h, w, short)
    assert min(mh, mw) >= imp.MIN_INPUT_SIDE
    assert mh * mw <= imp.MAX_INPUT_AREA_FACTOR * short**2 or min(mh, mw) == imp.MIN_INPUT_SIDE
    if max(h, w) / min(h, w) <= imp.MAX_INPUT_AREA_FACTOR:
        assert min(mh, mw) == short and abs(mh / mw - h / w) < 0.02 * h / w + 1 / min(mh, mw)


def test_tensor_and_array_inputs_agree(clf):
    a = sample_image("coffee")[::4, ::4].copy()
    t = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
    assert np.array_equal(imp.importance_map(a), imp.importance_map(t))


def toy_classifier(sign: float) -> imp.Classifier:
    """conv -> ReLU (F >= 0) -> GAP -> linear: class 0 weights all `sign`, class 1 all +1."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4, padding=1), nn.ReLU())
    head = nn.Linear(4, 2)
    with torch.no_grad():
        head.weight[0] = sign
        head.weight[1] = 1.0
    model = nn.Sequential(body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()
    return imp.Classifier("toy", model, body, (0.5,) * 3, (0.5,) * 3, short_side=32, categories=["neg", "pos"])


def test_no_positive_evidence_gives_uniform_map():
    """Class 0 has negative weights on non-negative features: alpha < 0, H_c = ReLU(<= 0) = 0."""
    clf = toy_classifier(-1.0)
    image = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    r = imp.gradcam(image, classifier=clf, target=0)
    assert r.cam.max() == 0  # really no positive evidence
    assert r.map.dtype == np.float32 and np.array_equal(r.map, np.ones((40, 60), np.float32))
    r1 = imp.gradcam(image, classifier=clf, target="pos")
    assert r1.cam.max() > 0 and r1.map.min() < 1


def test_scale_to_unit_of_zeros_is_ones():
    assert torch.equal(imp.scale_to_unit(torch.zeros(3, 4)), torch.ones(3, 4))


def test_maps_are_class_specific_on_astronaut(clf):
    image = sample_image("astronaut")
    top = imp.gradcam(image)
    shuttle = imp.gradcam(image, target="space shuttle")
    assert shuttle.index == imp.class_names().index("space shuttle") and top.index != shuttle.index
    # ImageNet has no astronaut: the top class sits on the suit; "space shuttle" on the model shuttle
    assert mass_fraction(shuttle.map, SHUTTLE_BOX) > 0.3
    assert mass_fraction(shuttle.map, SHUTTLE_BOX) > 3 * mass_fraction(top.map, SHUTTLE_BOX)
    assert mass_fraction(shuttle.map, FLAG_BOX) < mass_fraction(top.map, FLAG_BOX)


def test_target_by_name_equals_target_by_index(clf):
    image = sample_image("chelsea")[::3, ::3].copy()
    a = imp.gradcam(image, target="tabby")
    b = imp.gradcam(image, target=281)
    assert a.index == b.index == 281 and a.name == "tabby" and np.array_equal(a.map, b.map)


def test_topk_is_the_probability_weighted_sum_of_unit_maps(clf):
    image = sample_image("chelsea")[::3, ::3].copy()
    top3 = imp.predict(image, topk=3)
    r = imp.gradcam(image, topk=3)
    assert [c for c, _, _ in r.classes] == [c for c, _, _ in top3] and r.index == top3[0][0]
    probs = np.array([p for _, _, p in top3])
    singles = [imp.gradcam(image, target=c).cam for c, _, _ in top3]
    expected = sum(p / probs.sum() * s / s.max() for p, s in zip(probs, singles))
    assert np.allclose(r.cam, expected, atol=1e-5)
    assert np.array_equal(imp.gradcam(image, topk=1).map, imp.gradcam(image).map)
    assert not np.allclose(r.map, imp.gradcam(image).map, atol=1e-3)


# --- a user mask in place of Grad-CAM ----------------------------------------------

def test_mask_array_is_resized_and_scaled(clf):
    image = np.zeros((40, 60, 3), np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[:, 15:] = 200
    mask[:, :15] = 50
    m = imp.importance_map(image, mask=mask)
    assert m.shape == (40, 60) and m.dtype == np.float32
    assert m[:, -5:] == pytest.approx(1.0) and m[:, :5] == pytest.approx(0.25)  # ratios kept
    assert np.array_equal(imp.importance_map(image, mask=np.full((4, 6), 7.0)), np.ones((40, 60), np.float32))
    assert np.array_equal(imp.importance_map(image, mask=np.zeros((40, 60))), np.ones((40, 60), np.float32))
    b = imp.importance_map(image, mask=np.arange(40 * 60).reshape(40, 60) % 2 == 0)
    assert set(np.unique(b)) == {0.0, 1.0}


def test_mask_from_grey_png_8_and_16_bit(tmp_path):
    image = np.zeros((30, 50, 3), np.uint8)
    grey = np.tile(np.linspace(0, 255, 50).round().astype(np.uint8), (30, 1))
    Image.fromarray(grey).save(tmp_path / "m8.png")
    m8 = imp.importance_map(image, mask=tmp_path / "m8.png")
    assert np.allclose(m8, grey / 255.0, atol=1e-6)
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "m16.png")
    m16 = imp.importance_map(image, mask=str(tmp_path / "m16.png"))
    assert np.allclose(m16, m8, atol=1e-6)


@pytest.mark.parametrize("bad", [
    np.zeros((4, 4, 3)), np.zeros(10), np.zeros((0, 5)), np.full((4, 4), np.nan),
    -np.ones((4, 4)), np.array([["a", "b"]]), "/no/such/mask.png",
])
def test_bad_masks_are_rejected(bad):
    with pytest.raises(ValueError):
        imp.importance_map(np.zeros((8, 8, 3), np.uint8), mask=bad)


# --- bad input ------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"target": 1000}, "out of range"),
    ({"target": -1}, "out of range"),
    ({"target": 2.5}, "class index or a class name"),
    ({"target": "astronaut"}, "unknown class name"),
    ({"topk": 0}, "topk"),
    ({"target": 3, "topk": 2}, "either target or topk"),
    ({"classifier": "alexnet"}, "unknown classifier"),
    ({"mask": np.ones((4, 4)), "target": 1}, "mask replaces"),
])
def test_bad_arguments_name_the_problem(clf, kwargs, match):
    with pytest.raises(ValueError, match=match):
        imp.importance_map(np.zeros((16, 16, 3), np.uint8), **kwargs)


def test_nan_images_are_rejected(clf):
    a = np.full((8, 8, 3), 0.5)
    a[2, 2, 1] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        imp.importance_map(a)
    with pytest.raises(ImageError, match="NaN"):
        imp.importance_map(torch.from_numpy(a).permute(2, 0, 1).float())


# --- optional torchvision classifiers, built without weights (no download) -----------

@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_torchvision_classifiers_without_weights(monkeypatch, name):
    def no_download(*args, **kwargs):
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    c = imp.load_classifier(name, pretrained=False)
    assert c.mean == imp.IMAGENET_MEAN and c.short_side == 224
    image = np.random.default_rng(2).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    r = imp.gradcam(image, classifier=c, short_side=64)
    assert r.map.shape == (48, 40) and r.map.dtype == np.float32 and 0 <= r.map.min() <= r.map.max() <= 1
    f, _ = imp.features_and_logits(c, imp.preprocess(image, c, short_side=64))  # input 77 x 64
    # VGG-16: the fifth conv stage, before its max-pool (stride 16); ResNet-50: layer4 (stride 32)
    assert tuple(f.shape[1:]) == {"vgg16": (512, 4, 4), "resnet50": (2048, 3, 2)}[name]
