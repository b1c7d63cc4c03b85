"""Binary segmentation data: synthetic shapes with exact masks, and the stardist nuclei image.

Both give ``nnjax.data.Dataset`` objects whose splits hold images ``'x'`` float32 [N, H, W, 1] and
masks ``'y'`` float32 [N, H, W] (1 = foreground); ``num_classes`` is 2.

- ``synthetic_shapes``: random filled ellipses and polygons drawn on pixel centres (the mask is
  exactly the set of pixels painted), with a random background level, per-shape intensities, a
  smooth illumination gradient and additive Gaussian noise. Seeded numpy.
- ``load_nuclei``: the 512x512 fluorescence image of nuclei (2018 Kaggle Data Science Bowl, Caicedo
  et al. 2019) and its instance labels that the ``stardist`` package ships (``nnjax.data.packaged``:
  fetched once, never installed or imported: its import needs TensorFlow), read with ``tifffile``. Labels are binarised (> 0). The right
  ``test_fraction`` of the image's columns is held out whole: training tiles come only from the left
  part, test tiles only from the right, so no test pixel is ever seen in training.
- ``dihedral_augment``: random flips and transposes of square tiles (image and mask together) for
  ``nnjax.tasks.fit(..., augment=...)``.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.data.registry import Dataset
from nnjax.data.packaged import files_dir
from nnjax.errors import DataUnavailableError

NUCLEI_FILES = ("data/images/img2d.tif", "data/images/mask2d.tif")


# --- synthetic shapes ---------------------------------------------------------------------------------


def _pixel_centres(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates of every pixel centre, each float64 [H, W]."""
    return np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")


def ellipse_mask(height: int, width: int, centre: tuple[float, float], radii: tuple[float, float], angle: float) -> np.ndarray:
    """bool [H, W]: pixel centres inside the ellipse with ``centre`` (row, col), semi-axes ``radii``
    (along the rotated row and column axes) and rotation ``angle`` (radians)."""
    rows, cols = _pixel_centres(height, width)
    dr, dc = rows - centre[0], cols - centre[1]
    u = dr * np.cos(angle) + dc * np.sin(angle)
    v = -dr * np.sin(angle) + dc * np.cos(angle)
    return (u / radii[0]) ** 2 + (v / radii[1]) ** 2 <= 1.0


def polygon_mask(height: int, width: int, vertices_Vx2: np.ndarray) -> np.ndarray:
    """bool [H, W]: pixel centres strictly inside the polygon with vertices (row, col) [V, 2]."""
    from matplotlib.path import Path

    rows, cols = _pixel_centres(height, width)
    points = np.stack([rows.ravel(), cols.ravel()], axis=1)
    return Path(np.asarray(vertices_Vx2, dtype=np.float64)).contains_points(points).reshape(height, width)


def _random_shape(rng: np.random.Generator, size: int) -> np.ndarray:
    """The mask of one random ellipse or star-shaped polygon (3-7 vertices) inside a ``size`` square."""
    centre = rng.uniform(0.15 * size, 0.85 * size, 2)
    if rng.random() < 0.5:
        radii = rng.uniform(0.06 * size, 0.2 * size, 2)
        return ellipse_mask(size, size, tuple(centre), tuple(radii), rng.uniform(0, np.pi))
    num_vertices = rng.integers(3, 8)
    angles = np.sort(rng.uniform(0, 2 * np.pi, num_vertices))
    radius = rng.uniform(0.08 * size, 0.25 * size) * rng.uniform(0.6, 1.0, num_vertices)
    vertices = centre + np.stack([radius * np.sin(angles), radius * np.cos(angles)], axis=1)
    return polygon_mask(size, size, vertices)


def synthetic_shapes(
    num: int, size: int = 64, max_shapes: int = 4, noise: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``num`` images float32 [N, size, size, 1] and exact masks float32 [N, size, size].

    Each image has 1..``max_shapes`` filled ellipses/polygons painted in turn over a background
    level in [0, 0.35] plus a linear illumination gradient (amplitude up to 0.15); each shape has
    its own intensity, 0.25-0.65 above the background. The mask is the union of the painted pixels,
    so, with ``noise=0``, a pixel differs from the background-plus-gradient image exactly where the
    mask is 1. Additive Gaussian noise of standard deviation ``noise`` comes last. Deterministic in ``seed``.
    """
    if num < 1 or size < 8 or max_shapes < 1 or noise < 0:
        raise ValueError(
            f"synthetic_shapes needs num >= 1, size >= 8, max_shapes >= 1 and noise >= 0; "
            f"got num={num}, size={size}, max_shapes={max_shapes}, noise={noise}"
        )
    rng = np.random.default_rng([seed, 7])
    rows, cols = _pixel_centres(size, size)
    images = np.empty((num, size, size, 1), np.float32)
    masks = np.zeros((num, size, size), np.float32)
    for i in range(num):
        direction = rng.uniform(0, 2 * np.pi)
        gradient = rng.uniform(0, 0.15) * ((rows * np.cos(direction) + cols * np.sin(direction)) / size)
        background = rng.uniform(0, 0.35) + gradient
        image = background.copy()
        for _ in range(rng.integers(1, max_shapes + 1)):
            shape = _random_shape(rng, size)
            image[shape] = background[shape] + rng.uniform(0.25, 0.65)
            masks[i][shape] = 1.0
        images[i, ..., 0] = image + noise * rng.standard_normal((size, size))
    return images, masks


def load_shapes(num_train: int = 256, num_test: int = 128, size: int = 64, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Synthetic shapes as a ``Dataset``; train and test images are drawn from different seeds."""
    x_train, y_train = synthetic_shapes(num_train, size, noise=noise, seed=2 * seed)
    x_test, y_test = synthetic_shapes(num_test, size, noise=noise, seed=2 * seed + 1)
    source = f"synthetic ellipses and polygons, {size}x{size}, noise sd {noise}"
    return Dataset("shapes", source, {"x": x_train, "y": y_train}, {"x": x_test, "y": y_test}, num_classes=2)


# --- stardist nuclei ---------------------------------------------------------------------------------


class Tiles(NamedTuple):
    """Square tiles cut from one image: ``x`` [N, T, T, 1], ``y`` [N, T, T], top-left ``origins`` int [N, 2]."""

    x: np.ndarray
    y: np.ndarray
    origins: np.ndarray


def stardist_nuclei_files() -> tuple[str, str]:
    """Paths of the nuclei image and its label image from the ``stardist`` package (``nnjax.data.packaged``:
    installed, cached or fetched once, never imported; DataUnavailableError if none can be)."""
    package = files_dir("nuclei")
    return tuple(os.path.join(package, name) for name in NUCLEI_FILES)


def read_nuclei() -> tuple[np.ndarray, np.ndarray]:
    """The nuclei image (as stored, [H, W]) and its binarised mask float32 [H, W] (labels > 0)."""
    import tifffile  # a dependency of nnjax, imported only here (it is slow to import)

    image_path, label_path = stardist_nuclei_files()
    image, labels = tifffile.imread(image_path), tifffile.imread(label_path)
    if image.ndim != 2 or image.shape != labels.shape:
        raise DataUnavailableError(
            f"expected a 2-D image and label image of equal shape in {os.path.dirname(image_path)}, "
            f"got {image.shape} and {labels.shape}"
        )
    return image, (labels > 0).astype(np.float32)


def tile(image_HxW: np.ndarray, mask_HxW: np.ndarray, size: int, stride: int, col_start: int, col_stop: int) -> Tiles:
    """All ``size`` x ``size`` tiles at multiples of ``stride`` (rows and columns) that lie wholly in
    columns [col_start, col_stop) of the image: ``Tiles`` in row-major order of their origins."""
    h = image_HxW.shape[0]
    origins = np.array(
        [(r, c) for r in range(0, h - size + 1, stride) for c in range(col_start, col_stop - size + 1, stride)],
        dtype=np.int32,
    ).reshape(-1, 2)
    x = np.stack([image_HxW[r : r + size, c : c + size] for r, c in origins])[..., None]
    y = np.stack([mask_HxW[r : r + size, c : c + size] for r, c in origins])
    return Tiles(x.astype(np.float32), y.astype(np.float32), origins)


def normalize_percentile(image: np.ndarray, reference: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """float32 ``(image - p_low) / (p_high - p_low)`` with percentiles of ``reference`` (csbdeep's normalisation)."""
    lo, hi = np.percentile(reference, [low, high])
    return ((image - lo) / max(hi - lo, 1e-8)).astype(np.float32)


def nuclei_tiles(size: int = 64, train_stride: int | None = None, test_fraction: float = 0.25) -> tuple[Tiles, Tiles]:
    """(train, test) tiles of the nuclei image, split by columns.

    The rightmost ``round(W * test_fraction)`` columns (snapped down to a multiple of ``size``) are the
    test region, cut into non-overlapping tiles; training tiles, at ``train_stride`` (default ``size // 2``,
    so they overlap each other), come only from the columns to its left. Intensities are normalised
    with the 1st/99.8th percentiles of the training region only.
    """
    image, mask = read_nuclei()
    h, w = image.shape
    stride = train_stride or size // 2
    test_cols = round(w * test_fraction) // size * size
    if size < 8 or stride < 1 or test_cols < size or w - test_cols < size or h < size:
        raise ValueError(
            f"cannot tile a {h}x{w} image into {size}x{size} tiles with stride {stride} and test fraction "
            f"{test_fraction}: need size >= 8 and at least one tile on each side of the split"
        )
    split = w - test_cols
    normalized = normalize_percentile(image.astype(np.float32), image[:, :split])
    return tile(normalized, mask, size, stride, 0, split), tile(normalized, mask, size, size, split, w)


def load_nuclei(size: int = 64, train_stride: int | None = None, test_fraction: float = 0.25) -> Dataset:
    """The stardist nuclei tiles (``nuclei_tiles``) as a ``Dataset``; ``DataUnavailableError`` if the image cannot be had."""
    train, test = nuclei_tiles(size, train_stride, test_fraction)
    source = (
        f"stardist nuclei image (2018 DSB), {len(train.x)} training tiles {size}x{size} from the left columns, "
        f"{len(test.x)} held-out tiles from the right {test_fraction:.0%}"
    )
    return Dataset("nuclei", source, {"x": train.x, "y": train.y}, {"x": test.x, "y": test.y}, num_classes=2)


# --- augmentation ------------------------------------------------------------------------------------


def dihedral_augment(key: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Each example's image ``'x'`` [B, T, T, C] and mask ``'y'`` [B, T, T] flipped left-right, flipped
    up-down and transposed, each with probability 1/2 (independently): one of the 8 symmetries of the
    square, uniformly. Other entries pass through. For ``fit(..., augment=dihedral_augment)``."""
    x, y = batch["x"], batch["y"]
    if x.shape[1] != x.shape[2] or y.shape != x.shape[:3]:
        raise ValueError(f"dihedral_augment needs square tiles x [B, T, T, C] and y [B, T, T], got {x.shape}, {y.shape}")
    flips_Bx3 = jax.random.bernoulli(key, 0.5, (x.shape[0], 3))
    y = y[..., None]
    for i, op in enumerate((lambda a: a[:, :, ::-1], lambda a: a[:, ::-1], lambda a: jnp.swapaxes(a, 1, 2))):
        pick = flips_Bx3[:, i, None, None, None]
        x, y = jnp.where(pick, op(x), x), jnp.where(pick, op(y), y)
    return {**batch, "x": x, "y": y[..., 0]}
