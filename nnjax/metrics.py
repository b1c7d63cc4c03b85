"""Pure metric functions of arrays.

Classification metrics take integer class ids (``labels_B`` true, ``predictions_B`` predicted) and a
static ``num_classes`` K, so they jit with ``static_argnames=('num_classes', 'average')``. Their
conventions follow scikit-learn's ``precision_recall_fscore_support(..., labels=range(K))``: a ratio
whose denominator is zero (a class never predicted, or absent from the labels) is 0, as sklearn
returns with ``zero_division=0``. Regression metrics take predictions and targets of equal shape.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

AVERAGES = ("binary", "macro", "micro", "weighted", None)


def accuracy(logits_BxK: jax.Array, labels_B: jax.Array) -> jax.Array:
    """Per-example 0/1 correctness of the arg-max prediction: float32 [B]."""
    return (jnp.argmax(logits_BxK, axis=-1) == labels_B).astype(jnp.float32)


def _check_classes(labels_B: jax.Array, predictions_B: jax.Array, num_classes: int) -> None:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if labels_B.ndim != 1 or labels_B.shape != predictions_B.shape:
        raise ValueError(
            f"labels and predictions must be 1-D of equal length, got shapes {labels_B.shape} and {predictions_B.shape}"
        )


def confusion_matrix(labels_B: jax.Array, predictions_B: jax.Array, num_classes: int) -> jax.Array:
    """Counts int32 [K, K]: entry (i, j) is the number of examples of true class i predicted as j.

    Rows are true classes, columns predicted classes (as ``sklearn.metrics.confusion_matrix``). Ids
    outside ``[0, K)`` are not counted.
    """
    labels_B, predictions_B = jnp.asarray(labels_B), jnp.asarray(predictions_B)
    _check_classes(labels_B, predictions_B, num_classes)
    true_BxK = jax.nn.one_hot(labels_B, num_classes, dtype=jnp.int32)
    pred_BxK = jax.nn.one_hot(predictions_B, num_classes, dtype=jnp.int32)
    return true_BxK.T @ pred_BxK


def _ratio(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """``numerator / denominator`` as float32, 0 where the denominator is 0."""
    numerator, denominator = jnp.asarray(numerator, jnp.float32), jnp.asarray(denominator, jnp.float32)
    return jnp.where(denominator > 0, numerator / jnp.where(denominator > 0, denominator, 1.0), 0.0)


def precision_recall_f1(
    labels_B: jax.Array,
    predictions_B: jax.Array,
    num_classes: int,
    average: str | None = "binary",
    pos_label: int = 1,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(precision, recall, F1) of integer predictions against integer labels.

    Per class k: precision = TP/(TP+FP), recall = TP/(TP+FN), F1 = 2TP/(2TP+FP+FN), each 0 when its
    denominator is 0. ``average``:
      - ``None``: per-class float32 [K] arrays;
      - ``'binary'``: the scores of class ``pos_label`` (requires ``num_classes == 2``);
      - ``'micro'``: from TP, FP, FN summed over classes (precision = recall = accuracy);
      - ``'macro'``: unweighted mean over all K classes, absent classes included (as 0);
      - ``'weighted'``: mean over classes weighted by their true count (support).
    Scalars otherwise. Matches ``sklearn.metrics.precision_recall_fscore_support`` with
    ``labels=range(K)`` and ``zero_division=0``.
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    if average == "binary" and (num_classes != 2 or pos_label not in (0, 1)):
        raise ValueError(
            f"average='binary' needs num_classes=2 and pos_label in (0, 1), got num_classes={num_classes!r}, "
            f"pos_label={pos_label!r}; use average='macro', 'micro', 'weighted' or None"
        )
    cm_KxK = confusion_matrix(labels_B, predictions_B, num_classes)
    tp_K = jnp.diagonal(cm_KxK)
    predicted_K = cm_KxK.sum(axis=0)
    support_K = cm_KxK.sum(axis=1)
    if average == "micro":
        tp, predicted, support = tp_K.sum(), predicted_K.sum(), support_K.sum()
        return _ratio(tp, predicted), _ratio(tp, support), _ratio(2 * tp, predicted + support)
    precision_K = _ratio(tp_K, predicted_K)
    recall_K = _ratio(tp_K, support_K)
    f1_K = _ratio(2 * tp_K, predicted_K + support_K)
    if average is None:
        return precision_K, recall_K, f1_K
    if average == "binary":
        return precision_K[pos_label], recall_K[pos_label], f1_K[pos_label]
    weights_K = jnp.ones(num_classes, jnp.float32) if average == "macro" else support_K.astype(jnp.float32)
    total = weights_K.sum()
    return tuple(_ratio((weights_K * score_K).sum(), total) for score_K in (precision_K, recall_K, f1_K))


def threshold_predictions(probabilities_B: jax.Array, threshold: float = 0.5) -> jax.Array:
    """Binary class ids int32 [B]: 1 where the positive-class probability exceeds ``threshold``."""
    return (jnp.asarray(probabilities_B) > threshold).astype(jnp.int32)


def classification_report(
    labels_B: jax.Array, predictions_B: jax.Array, num_classes: int, average: str = "macro"
) -> dict[str, float]:
    """Python floats: ``accuracy``, averaged ``precision``/``recall``/``f1`` and ``support`` (N).

    ``average`` is one of 'binary', 'macro', 'micro', 'weighted' (see ``precision_recall_f1``).
    """
    if average is None:
        raise ValueError("average=None gives per-class arrays; classification_report needs an averaged score")
    cm_KxK = confusion_matrix(labels_B, predictions_B, num_classes)
    precision, recall, f1 = precision_recall_f1(labels_B, predictions_B, num_classes, average)
    total = cm_KxK.sum()
    return {
        "accuracy": float(_ratio(jnp.trace(cm_KxK), total)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "support": float(total),
    }


def binary_classification_report(
    labels_B: jax.Array, probabilities_B: jax.Array, threshold: float = 0.5
) -> dict[str, float]:
    """``classification_report`` of thresholded probabilities (positive class 1) plus counts tn, fp, fn, tp."""
    predictions_B = threshold_predictions(probabilities_B, threshold)
    report = classification_report(labels_B, predictions_B, 2, average="binary")
    (tn, fp), (fn, tp) = confusion_matrix(labels_B, predictions_B, 2).tolist()
    return {**report, "tn": float(tn), "fp": float(fp), "fn": float(fn), "tp": float(tp)}


def _check_pair(predictions: Any, targets: Any) -> tuple[jax.Array, jax.Array]:
    predictions, targets = jnp.asarray(predictions, jnp.float32), jnp.asarray(targets, jnp.float32)
    if predictions.shape != targets.shape or predictions.size == 0:
        raise ValueError(
            f"predictions and targets must be non-empty with equal shapes, got {predictions.shape} and {targets.shape}"
        )
    return predictions, targets


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error over all elements: float32 scalar."""
    predictions, targets = _check_pair(predictions, targets)
    return jnp.mean((predictions - targets) ** 2)


def rmse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Root mean squared error over all elements: float32 scalar."""
    return jnp.sqrt(mse(predictions, targets))


def mae(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean absolute error over all elements: float32 scalar."""
    predictions, targets = _check_pair(predictions, targets)
    return jnp.mean(jnp.abs(predictions - targets))


# --- segmentation (seed 002 slide 12) ------------------------------------------------------------------
#
# Binary masks [B, H, W] (bool, or numbers where nonzero is foreground); every metric is per example: [B].
# Empty masks: a ratio whose denominator is 0 is 1.0 when both masks are empty (nothing to find and
# nothing found is a perfect answer) and 0.0 otherwise; e.g. an empty prediction of a non-empty mask
# scores 0 on every metric, and a non-empty prediction of an empty mask scores 0 on every metric.


def _mask_pair(pred_BxHxW: Any, true_BxHxW: Any) -> tuple[jax.Array, jax.Array]:
    pred_BxHxW, true_BxHxW = jnp.asarray(pred_BxHxW), jnp.asarray(true_BxHxW)
    if pred_BxHxW.ndim != 3 or pred_BxHxW.shape != true_BxHxW.shape:
        raise ValueError(
            f"pred and true masks must both have shape [B, H, W], got {pred_BxHxW.shape} and {true_BxHxW.shape}"
        )
    return pred_BxHxW != 0, true_BxHxW != 0


def _segmentation_ratio(numerator_B: jax.Array, denominator_B: jax.Array, both_empty_B: jax.Array) -> jax.Array:
    """``numerator / denominator`` per example; 1.0 where both masks are empty, else 0 where denominator is 0."""
    return jnp.where(both_empty_B, 1.0, _ratio(numerator_B, denominator_B))


def _counts(pred_BxHxW: Any, true_BxHxW: Any) -> tuple[jax.Array, ...]:
    """(TP, FP, FN, both_empty) per example, float32 [B] (both_empty bool)."""
    pred, true = _mask_pair(pred_BxHxW, true_BxHxW)
    tp = jnp.sum(pred & true, axis=(1, 2), dtype=jnp.float32)
    fp = jnp.sum(pred & ~true, axis=(1, 2), dtype=jnp.float32)
    fn = jnp.sum(~pred & true, axis=(1, 2), dtype=jnp.float32)
    return tp, fp, fn, (tp + fp + fn) == 0


def dice(pred_BxHxW: Any, true_BxHxW: Any) -> jax.Array:
    """Dice coefficient ``2|P ∩ T| / (|P| + |T|)`` per example (= pixel F1): float32 [B]."""
    tp, fp, fn, both_empty = _counts(pred_BxHxW, true_BxHxW)
    return _segmentation_ratio(2 * tp, 2 * tp + fp + fn, both_empty)


def iou(pred_BxHxW: Any, true_BxHxW: Any) -> jax.Array:
    """Intersection over union (Jaccard) ``|P ∩ T| / |P ∪ T|`` per example: float32 [B]."""
    tp, fp, fn, both_empty = _counts(pred_BxHxW, true_BxHxW)
    return _segmentation_ratio(tp, tp + fp + fn, both_empty)


def pixel_precision(pred_BxHxW: Any, true_BxHxW: Any) -> jax.Array:
    """Pixel precision ``|P ∩ T| / |P|`` per example: float32 [B]."""
    tp, fp, _, both_empty = _counts(pred_BxHxW, true_BxHxW)
    return _segmentation_ratio(tp, tp + fp, both_empty)


def pixel_recall(pred_BxHxW: Any, true_BxHxW: Any) -> jax.Array:
    """Pixel recall (sensitivity) ``|P ∩ T| / |T|`` per example: float32 [B]."""
    tp, _, fn, both_empty = _counts(pred_BxHxW, true_BxHxW)
    return _segmentation_ratio(tp, tp + fn, both_empty)


def mask_boundary(mask_BxHxW: Any) -> jax.Array:
    """bool [B, H, W]: foreground pixels with a background pixel among their 8 neighbours.

    The inner contour, one pixel wide (``mask & ~erode(mask, 3x3)``). Pixels outside the image do
    not count as background, so the image border is not a boundary (as in
    ``nnjax.losses.boundary_weights``): a mask cut by a tile edge gets no contour along the cut.
    """
    foreground = jnp.asarray(mask_BxHxW) != 0
    if foreground.ndim != 3:
        raise ValueError(f"mask must have shape [B, H, W], got {foreground.shape}")
    eroded = jax.lax.reduce_window(foreground.astype(jnp.float32), jnp.inf, jax.lax.min, (1, 3, 3), (1, 1, 1), "SAME")
    return foreground & (eroded == 0)


def _disk_offsets(radius: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1) if dy * dy + dx * dx <= radius * radius]


def _dilate_disk(mask_BxHxW: jax.Array, radius: int) -> jax.Array:
    """bool [B, H, W]: pixels within Euclidean distance ``radius`` of a True pixel of ``mask``."""
    _, h, w = mask_BxHxW.shape
    padded = jnp.pad(mask_BxHxW, ((0, 0), (radius, radius), (radius, radius)))
    out = jnp.zeros_like(mask_BxHxW)
    for dy, dx in _disk_offsets(radius):
        out = out | padded[:, radius + dy : radius + dy + h, radius + dx : radius + dx + w]
    return out


def boundary_f1(pred_BxHxW: Any, true_BxHxW: Any, tolerance: int = 2) -> jax.Array:
    """Boundary F1 (the BF score of Csurka et al. 2013) per example: float32 [B].

    The contours (``mask_boundary``) of both masks are compared: a predicted contour pixel is correct
    if a true contour pixel lies within Euclidean distance ``tolerance`` pixels (``tolerance=0``: the
    same pixel), and vice versa. ``P`` = matched fraction of the predicted contour, ``R`` = matched
    fraction of the true contour, BF = ``2PR / (P + R)``. One contour empty -> 0.0. Both empty (each
    mask all background or all foreground) -> 1.0 if the masks are equal (both empty or both full), else 0.0.
    ``tolerance`` is a static non-negative int.
    """
    if not isinstance(tolerance, int) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative int (pixels), got {tolerance!r}")
    pred, true = _mask_pair(pred_BxHxW, true_BxHxW)
    pred_edge, true_edge = mask_boundary(pred), mask_boundary(true)
    pred_count = jnp.sum(pred_edge, axis=(1, 2), dtype=jnp.float32)
    true_count = jnp.sum(true_edge, axis=(1, 2), dtype=jnp.float32)
    precision = _ratio(jnp.sum(pred_edge & _dilate_disk(true_edge, tolerance), axis=(1, 2)), pred_count)
    recall = _ratio(jnp.sum(true_edge & _dilate_disk(pred_edge, tolerance), axis=(1, 2)), true_count)
    no_contours = (pred_count + true_count) == 0  # each mask all background or all foreground
    score = _segmentation_ratio(2 * precision * recall, precision + recall, jnp.zeros_like(no_contours))
    return jnp.where(no_contours, jnp.all(pred == true, axis=(1, 2)).astype(jnp.float32), score)


def segmentation_scores(pred_BxHxW: Any, true_BxHxW: Any, tolerance: int = 2) -> dict[str, jax.Array]:
    """``{'dice', 'iou', 'precision', 'recall', 'boundary_f1'}`` per example, each float32 [B]."""
    return {
        "dice": dice(pred_BxHxW, true_BxHxW),
        "iou": iou(pred_BxHxW, true_BxHxW),
        "precision": pixel_precision(pred_BxHxW, true_BxHxW),
        "recall": pixel_recall(pred_BxHxW, true_BxHxW),
        "boundary_f1": boundary_f1(pred_BxHxW, true_BxHxW, tolerance),
    }
