"""Image files as RGB arrays, ImageNet inference preprocessing (seed 004 slide 14) and top-k decoding, on HWC arrays.

``preprocess`` is torchvision's ``Resize(256) -> CenterCrop(224) -> ToTensor() -> Normalize(mean,
std)`` in NHWC float32. One difference: torchvision resizes the PIL image in uint8 (PIL's
antialiased bilinear filter, fixed-point weights, rounded to uint8 after each of its two passes),
while ``resize_shorter`` resizes float pixels (``jax.image.resize``'s antialiased triangle
filter, the same kernel) without rounding, so pixels differ by about one uint8 level at most
(tests/test_images.py measures it against PIL).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.errors import DataUnavailableError, FileFormatError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def sample_image_path() -> str:
    """The path of scikit-learn's sample photo ``china.jpg`` (what ``load_sample_image('china.jpg')`` reads)."""
    import sklearn.datasets

    return os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "china.jpg")


def load_rgb(path: str) -> np.ndarray:
    """An image file (any mode PIL reads: grey, palette, RGBA, ...) as uint8 RGB [H, W, 3]."""
    from PIL import Image

    if not os.path.isfile(path):
        raise DataUnavailableError(f"image file {path} does not exist")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:  # PIL: UnidentifiedImageError (an OSError), truncated data
        raise FileFormatError(f"image file {path} is not an image PIL can read ({type(err).__name__})") from err


def _check_hwc(image: np.ndarray | jax.Array, name: str) -> None:
    if np.ndim(image) != 3:
        raise ValueError(f"{name} expects an image [height, width, channels], got shape {np.shape(image)}")


def to_float(image_HxWxC: np.ndarray | jax.Array) -> jax.Array:
    """``ToTensor``'s scaling: uint8 [0, 255] -> float32 [0, 1]; floating images are cast unchanged."""
    image = jnp.asarray(image_HxWxC)
    if image.dtype == jnp.uint8:
        return image.astype(jnp.float32) / 255.0
    return image.astype(jnp.float32)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision's ``Resize(size)`` output (h, w): the shorter side becomes ``size``, the longer
    ``int(size * long / short)`` (truncated)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def resize_shorter(image_HxWxC: np.ndarray | jax.Array, size: int = 256) -> jax.Array:
    """Bilinear, antialiased resize so the shorter side is ``size`` -> float32 [h, w, C] (``resized_shape``).

    uint8 input is scaled to [0, 1] first (``to_float``); the values stay unrounded floats.
    """
    _check_hwc(image_HxWxC, "resize_shorter")
    image = to_float(image_HxWxC)
    h, w = resized_shape(image.shape[0], image.shape[1], size)
    return jax.image.resize(image, (h, w, image.shape[2]), method="linear", antialias=True)


def center_crop(image_HxWxC: np.ndarray | jax.Array, size: int = 224) -> jax.Array:
    """The central ``size`` x ``size`` window -> [size, size, C], offsets as torchvision's
    ``CenterCrop``: ``round((H - size) / 2)`` (Python's round, halves to even). ValueError if the
    image is smaller than ``size`` (torchvision would zero-pad)."""
    _check_hwc(image_HxWxC, "center_crop")
    h, w = np.shape(image_HxWxC)[:2]
    if h < size or w < size:
        raise ValueError(f"center_crop: image {h}x{w} is smaller than the crop {size}x{size}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return jnp.asarray(image_HxWxC)[top : top + size, left : left + size]


def imagenet_normalize(image_HxWxC: jax.Array) -> jax.Array:
    """``(x - mean) / std`` per channel with ImageNet's statistics; ``x`` float in [0, 1], C == 3."""
    if np.shape(image_HxWxC)[-1] != 3:
        raise ValueError(f"imagenet_normalize expects 3 (RGB) channels last, got shape {np.shape(image_HxWxC)}")
    return (image_HxWxC - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def preprocess(image_HxWxC: np.ndarray | jax.Array, resize: int = 256, crop: int = 224) -> jax.Array:
    """An RGB image (uint8 or float in [0, 1]) -> the network input float32 [crop, crop, 3]:
    resize the shorter side to ``resize``, centre-crop ``crop``, ImageNet-normalise."""
    return imagenet_normalize(center_crop(resize_shorter(image_HxWxC, resize), crop))


def top_k(logits_C: np.ndarray | jax.Array, k: int = 5, class_names: Sequence[str] | None = None) -> list[dict]:
    """The ``k`` most likely classes of one logit vector [C], most likely first:
    ``[{'index', 'label', 'probability'}, ...]`` (softmax probability; label ``class_<index>``
    when ``class_names`` is None). Ties keep the lower index first."""
    logits = np.asarray(logits_C, dtype=np.float64)
    if logits.ndim != 1:
        raise ValueError(f"top_k expects one logit vector [classes], got shape {logits.shape}")
    if not 1 <= k <= logits.size:
        raise ValueError(f"k must be in [1, {logits.size}], got {k}")
    if class_names is not None and len(class_names) != logits.size:
        raise ValueError(f"{len(class_names)} class names for {logits.size} logits")
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-logits, kind="stable")[:k]
    return [
        {
            "index": int(i),
            "label": class_names[i] if class_names is not None else f"class_{i}",
            "probability": float(probs[i]),
        }
        for i in order
    ]
