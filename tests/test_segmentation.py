"""Segmentation: metrics on hand-made masks (closed forms, scipy oracle), losses, data, U-Net, smoke run."""

import importlib.util
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import ndimage
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from nnjax import losses, metrics
from nnjax.data import segmentation
from nnjax.errors import DataUnavailableError, ShapeError
from nnjax.models.unet import UNet, UpConv2x2, flat_lecun_normal


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[top : top + side, left : left + side] = True
    return mask


# --- metrics ---------------------------------------------------------------------------------------

TOLERANCES = (0, 1, 2, 3)


@jax.jit
def all_scores(pred_BxHxW, true_BxHxW):
    """Every segmentation metric, plus boundary F1 at each of TOLERANCES as 'bf' [B, 4]: one compile per shape."""
    bf = jnp.stack([metrics.boundary_f1(pred_BxHxW, true_BxHxW, t) for t in TOLERANCES], axis=1)
    return {**metrics.segmentation_scores(pred_BxHxW, true_BxHxW), "bf": bf}


def test_metrics_perfect_empty_and_both_empty():
    empty, full, box = np.zeros((24, 24), bool), np.ones((24, 24), bool), square(24, 4, 4, 6)
    true = np.stack([box, box, empty, empty, full, empty])
    pred = np.stack([box, empty, empty, square(24, 1, 1, 3), full, full])
    want = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    scores = all_scores(pred, true)
    for name, values in scores.items():
        np.testing.assert_allclose(values.reshape(6, -1), np.broadcast_to(np.array(want)[:, None], values.reshape(6, -1).shape), err_msg=name)


def test_metrics_shifted_square_closed_form():
    s, k = 8, np.arange(6)  # example i: the square shifted right by k_i pixels
    true = np.stack([square(24, 6, 4, s)] * 6)
    pred = np.stack([square(24, 6, 4 + int(ki), s) for ki in k])
    scores = all_scores(pred, true)
    np.testing.assert_allclose(scores["dice"], (s - k) / s, rtol=1e-6)
    np.testing.assert_allclose(scores["iou"], (s - k) / (s + k), rtol=1e-6)
    np.testing.assert_allclose(scores["precision"], (s - k) / s, rtol=1e-6)
    np.testing.assert_allclose(scores["recall"], (s - k) / s, rtol=1e-6)
    tolerance = np.array(TOLERANCES)[None, :]
    bf = np.asarray(scores["bf"])
    np.testing.assert_allclose(bf[tolerance >= k[:, None]], 1.0)  # every contour pixel within the shift
    assert (bf[tolerance < k[:, None]] < 0.9).all()


def _boundary_f1_oracle(pred: np.ndarray, true: np.ndarray, tolerance: int) -> float:
    """BF score with scipy: inner contours by 3x3 erosion (border not a contour), matches by Euclidean distance."""
    def contour(m):
        return m & ~ndimage.binary_erosion(m, np.ones((3, 3)), border_value=1)

    pc, tc = contour(pred), contour(true)
    if not pc.any() and not tc.any():  # each mask all background or all foreground
        return float(np.array_equal(pred, true))
    if not pc.any() or not tc.any():
        return 0.0
    p = (ndimage.distance_transform_edt(~tc)[pc] <= tolerance).mean()
    r = (ndimage.distance_transform_edt(~pc)[tc] <= tolerance).mean()
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def test_boundary_f1_matches_scipy_oracle():
    rng = np.random.default_rng(0)
    true = ndimage.binary_opening(rng.random((6, 24, 24)) < 0.6, np.ones((1, 3, 3)))
    pred = ndimage.binary_dilation(true, np.ones((1, 2, 2))) ^ (rng.random(true.shape) < 0.03)
    bf = np.asarray(all_scores(pred, true)["bf"])
    want = [[_boundary_f1_oracle(p, t, tolerance) for tolerance in TOLERANCES] for p, t in zip(pred, true)]
    np.testing.assert_allclose(bf, want, rtol=1e-5)
    assert ((bf > 0) & (bf < 1)).mean() > 0.5


def test_metrics_validate_shapes_and_tolerance():
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        metrics.dice(np.ones((4, 4)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="tolerance"):
        metrics.boundary_f1(np.ones((1, 4, 4)), np.ones((1, 4, 4)), -1)


# --- losses ----------------------------------------------------------------------------------------


def test_soft_dice_loss_closed_form_and_gradient():
    rng = np.random.default_rng(1)
    probs = rng.random((3, 5, 5)).astype(np.float32)
    targets = (rng.random((3, 5, 5)) < 0.4).astype(np.float32)
    overlap, total = (probs * targets).sum(axis=(1, 2)), probs.sum(axis=(1, 2)) + targets.sum(axis=(1, 2))
    want = 1 - (2 * overlap + 1) / (total + 1)
    np.testing.assert_allclose(losses.soft_dice_loss(probs, targets, reduction="none"), want, rtol=1e-5)
    np.testing.assert_allclose(losses.soft_dice_loss(targets, targets, reduction="none"), 0.0, atol=1e-7)
    # d/dp_i of -(2O + 1)/(T + 1) = -(2 y_i (T + 1) - (2O + 1)) / (T + 1)^2
    grad = jax.grad(lambda p: losses.soft_dice_loss(p, targets, reduction="sum"))(probs)
    want_grad = -(2 * targets * (total + 1)[:, None, None] - (2 * overlap + 1)[:, None, None]) / (total + 1)[:, None, None] ** 2
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)


def test_segmentation_objective_terms():
    rng = np.random.default_rng(2)
    y = np.stack([square(8, 2, 1, 4), np.zeros((8, 8), bool)]).astype(np.float32)
    logits = rng.normal(size=(2, 8, 8, 1)).astype(np.float32)
    boundary = rng.normal(size=(2, 8, 8, 1)).astype(np.float32)
    objective = jax.jit(losses.segmentation_objective(dice_weight=0.5, boundary_weight=3.0, boundary_head_weight=0.25))
    out = objective({"mask": logits, "boundary": boundary}, {"y": y})
    for value in out.values():
        chex.assert_shape(value, (2,))
    bce = np.asarray(optax.sigmoid_binary_cross_entropy(logits[..., 0], y))
    dilated = ndimage.grey_dilation(y, size=(1, 3, 3), mode="nearest")
    eroded = ndimage.grey_erosion(y, size=(1, 3, 3), mode="nearest")
    band = (dilated != eroded).astype(np.float32)
    weights = 1 + 3.0 * band
    want_bce = (weights * bce).sum(axis=(1, 2)) / weights.sum(axis=(1, 2))
    want_boundary = np.asarray(optax.sigmoid_binary_cross_entropy(boundary[..., 0], band)).mean(axis=(1, 2))
    p = 1 / (1 + np.exp(-logits[..., 0]))
    want_dice = 1 - (2 * (p * y).sum(axis=(1, 2)) + 1) / (p.sum(axis=(1, 2)) + y.sum(axis=(1, 2)) + 1)
    np.testing.assert_allclose(out["bce"], want_bce, rtol=1e-5)
    np.testing.assert_allclose(out["boundary_bce"], want_boundary, rtol=1e-5)
    np.testing.assert_allclose(out["loss"], want_bce + 0.5 * want_dice + 0.25 * want_boundary, rtol=1e-5)
    np.testing.assert_allclose(out["dice"], metrics.dice(logits[..., 0] > 0, y))


# --- data ------------------------------------------------------------------------------------------


def test_synthetic_shapes_masks_are_exact_and_seeded():
    x, y = segmentation.synthetic_shapes(6, size=24, noise=0.0, seed=3)
    chex.assert_shape((x, y), [(6, 24, 24, 1), (6, 24, 24)])
    rows, cols = np.meshgrid(np.arange(24), np.arange(24), indexing="ij")
    design = np.stack([np.ones(24 * 24), rows.ravel(), cols.ravel()], axis=1)
    for image, mask in zip(x[..., 0], y.astype(bool)):
        assert mask.any() and not mask.all()
        outside = ~mask.ravel()  # background + linear illumination: a plane, fitted on unmasked pixels
        plane, *_ = np.linalg.lstsq(design[outside], image.ravel()[outside], rcond=None)
        residual = image - (design @ plane).reshape(24, 24)
        np.testing.assert_allclose(residual[~mask], 0.0, atol=1e-5)
        assert residual[mask].min() >= 0.25 - 1e-5 and residual[mask].max() <= 0.65 + 1e-5
    again, _ = segmentation.synthetic_shapes(6, size=24, noise=0.0, seed=3)
    other, _ = segmentation.synthetic_shapes(6, size=24, noise=0.0, seed=4)
    np.testing.assert_array_equal(x, again)
    assert not np.array_equal(x, other)


def test_shape_primitives():
    rectangle = segmentation.polygon_mask(8, 8, np.array([[1.5, 2.5], [1.5, 6.5], [5.5, 6.5], [5.5, 2.5]]))
    np.testing.assert_array_equal(rectangle, square(8, 2, 3, 4))
    rows, cols = np.mgrid[:41, :41] - 20
    disk = segmentation.ellipse_mask(41, 41, (20.0, 20.0), (12.5, 12.5), 0.3)  # no pixel centre at distance 12.5
    np.testing.assert_array_equal(disk, rows**2 + cols**2 <= 12.5**2)
    ellipse = segmentation.ellipse_mask(41, 41, (20.0, 20.0), (4.5, 9.5), 0.0)
    np.testing.assert_array_equal(ellipse, (rows / 4.5) ** 2 + (cols / 9.5) ** 2 <= 1)


@pytest.fixture
def fake_stardist(tmp_path, monkeypatch):
    """A fake copy of stardist's files: a 64x64 image and instance labels 0..5."""
    import tifffile

    images = tmp_path / "stardist" / "data" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(5)
    labels = np.zeros((64, 64), np.uint16)
    for i, (r, c) in enumerate(rng.integers(0, 56, (5, 2)), start=1):
        labels[r : r + 8, c : c + 8] = i
    image = (labels > 0) * 200 + rng.integers(0, 20, (64, 64))
    tifffile.imwrite(images / "img2d.tif", image.astype(np.uint16))
    tifffile.imwrite(images / "mask2d.tif", labels)
    monkeypatch.setattr(segmentation, "files_dir", lambda name: str(tmp_path / "stardist") if name == "nuclei" else None)
    return labels


def test_nuclei_tiles_split_by_columns(fake_stardist):
    train, test = segmentation.nuclei_tiles(size=16, train_stride=8, test_fraction=0.25)
    chex.assert_shape((train.x, train.y, test.x, test.y), [(35, 16, 16, 1), (35, 16, 16), (4, 16, 16, 1), (4, 16, 16)])
    assert train.origins[:, 1].max() + 16 <= 48 and test.origins[:, 1].min() == 48  # disjoint columns
    mask = (fake_stardist > 0).astype(np.float32)
    for tiles in (train, test):
        assert set(np.unique(tiles.y)) <= {0.0, 1.0}
        for (r, c), y in zip(tiles.origins, tiles.y):
            np.testing.assert_array_equal(y, mask[r : r + 16, c : c + 16])
    np.testing.assert_allclose(np.percentile(train.x, [1, 99.8]), [0, 1], atol=0.05)
    data = segmentation.load_nuclei(size=16)
    assert data.name == "nuclei" and data.train["x"].shape == (35, 16, 16, 1)


def test_nuclei_unavailable_says_how_to_fetch(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(DataUnavailableError, match="nnjax data fetch nuclei"):
        segmentation.load_nuclei()


def test_dihedral_augment_moves_image_and_mask_together():
    x = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6, 1) % 37
    batch = {"x": x, "y": (x[..., 0] > 18).astype(np.float32), "mask": np.ones(2, np.float32)}
    seen = set()
    for seed in range(6):
        out = jax.jit(segmentation.dihedral_augment)(jax.random.PRNGKey(seed), batch)
        np.testing.assert_array_equal(out["y"], out["x"][..., 0] > 18)
        for i in range(2):
            variants = [np.rot90(t, r) for t in (x[i, ..., 0], x[i, ..., 0].T) for r in range(4)]
            matches = [j for j, v in enumerate(variants) if np.array_equal(v, out["x"][i, ..., 0])]
            assert len(matches) == 1
            seen.add(matches[0])
    assert len(seen) >= 4


# --- model -----------------------------------------------------------------------------------------


def test_upconv_equals_lax_conv_transpose():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    kernel, bias = rng.normal(size=(2, 2, 5, 6)).astype(np.float32), rng.normal(size=6).astype(np.float32)
    got = UpConv2x2(6).apply({"params": {"kernel": kernel, "bias": bias}}, x)
    want = jax.lax.conv_transpose(x, kernel[::-1, ::-1], (2, 2), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    chex.assert_trees_all_close(got, want + bias, atol=1e-5)


def test_unet_shapes_widths_and_validation():
    model = UNet(base=64)
    x = jnp.zeros((2, 16, 24, 3))
    outputs, variables = jax.eval_shape(lambda k: model.init_with_output(k, x), jax.random.PRNGKey(0))
    for name in ("mask", "boundary", "coarse"):
        assert outputs[name].shape == (2, 16, 24, 1)
    params = variables["params"]
    widths = [params[f"encoder_{i}"]["Conv2D_1"]["kernel"].shape[-1] for i in range(4)]
    assert widths == [64, 128, 256, 512]  # the seed's encoder
    assert params["decoder_0"]["Conv2D_0"]["kernel"].shape == (3, 3, 128, 64)  # skip 64 + upsampled 64
    with pytest.raises(ShapeError, match="divisible by 8"):
        jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 20, 16, 1))), jax.random.PRNGKey(0))


def test_flat_lecun_normal_has_lecun_variance():
    kernel = np.asarray(flat_lecun_normal(jax.random.PRNGKey(0), (3, 3, 32, 64)))
    assert kernel.shape == (3, 3, 32, 64)
    np.testing.assert_allclose(kernel.std(), np.sqrt(1 / (3 * 3 * 32)), rtol=0.03)  # Var = 1 / fan_in
    assert np.abs(kernel).max() <= 2 * np.sqrt(1 / (3 * 3 * 32)) / 0.8796 + 1e-6  # truncated at 2 sd


# --- experiment ------------------------------------------------------------------------------------


def _pixel_scores_oracle(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Dice (= pixel F1), IoU (Jaccard), precision and recall of one mask pair by scikit-learn; 1.0 when
    both masks are empty, else 0.0 for an empty denominator (an empty prediction has precision 0)."""
    p, t = pred.ravel(), true.ravel().astype(bool)
    if not p.any() and not t.any():
        return dict.fromkeys(("dice", "iou", "precision", "recall"), 1.0)
    return {"dice": f1_score(t, p, zero_division=0.0), "iou": jaccard_score(t, p, zero_division=0.0),
            "precision": precision_score(t, p, zero_division=0.0), "recall": recall_score(t, p, zero_division=0.0)}


@pytest.mark.slow
def test_unet_experiment_smoke(tmp_path, monkeypatch):
    """A few real training steps end to end (XLA's native convolutions: ~40% faster to compile than im2col);
    the reported scores are recomputed with scikit-learn and scipy from the run's own hard test masks."""
    from experiments import unet_segmentation

    predicted, predict_masks = [], unet_segmentation.predict_masks

    def recording_predict_masks(*args, **kwargs):  # the script's hard test masks, recorded on the way
        predicted.append(predict_masks(*args, **kwargs))
        return predicted[-1]

    monkeypatch.setattr(unet_segmentation, "predict_masks", recording_predict_masks)
    config = unet_segmentation.Config(
        data="shapes", tile=16, base=4, conv_impl="xla", shapes_train=48, shapes_test=8, steps=6, batch_size=8,
        eval_batch_size=8, log_every_steps=3, learning_rate=3e-2, overlay_examples=2, workdir=str(tmp_path),
    )  # lr 3e-2: after 6 steps the hard masks are partly right (at 3e-3 they are all empty, every score 0)
    config.validate()
    summary = unet_segmentation.main(config)
    true = unet_segmentation.load_data(config).test["y"]
    (pred,) = predicted
    assert pred.shape == true.shape and pred.dtype == bool
    assert pred.any(axis=(1, 2)).all() and 0.01 < pred.mean() < 0.5  # neither empty nor full: the oracle has work
    per_tile = [_pixel_scores_oracle(p, t) | {"boundary_f1": _boundary_f1_oracle(p, t.astype(bool), config.tolerance)}
                for p, t in zip(pred, true)]
    for name in ("dice", "iou", "precision", "recall", "boundary_f1"):
        want = np.mean([scores[name] for scores in per_tile])
        np.testing.assert_allclose(summary[f"test_{name}"], want, atol=1e-4, err_msg=name)
    pooled = _pixel_scores_oracle(pred, true)
    np.testing.assert_allclose(summary["test_pooled_dice"], pooled["dice"], atol=1e-4)
    np.testing.assert_allclose(summary["test_pooled_iou"], pooled["iou"], atol=1e-4)
    assert summary["steps"] == 6 and summary["data"] == "shapes"
    assert os.path.exists(tmp_path / "overlay.png") and os.path.exists(tmp_path / "learning_curves.png")
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    chunks = [row["train_loss"] for row in rows if row["kind"] == "train"]
    assert len(chunks) == 2 and chunks[1] < chunks[0]
