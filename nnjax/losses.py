"""Pure loss functions.

Trainer objectives have the signature ``objective(outputs, batch) -> dict[str, Array[B]]``: per-example
values with at least ``'loss'``; the trainer averages them (exactly, with padding masks, in evaluation).

The other losses are pure functions of arrays (predictions first, then targets, as in optax) with an
explicit ``reduction``:

* ``'mean'`` (default): the mean of the per-element (or, for categorical losses, per-example) values;
  for weighted losses the weighted mean ``Σ w_i ℓ_i / Σ w_i``;
* ``'sum'``: their sum (weighted: ``Σ w_i ℓ_i``);
* ``'none'``: the values themselves, shaped like the predictions (categorical: without the class axis).

Regularizers (``l1_penalty``, ``l2_penalty``) map a params pytree to a scalar that the caller scales by
λ and adds to a data loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import xlogy

from nnjax import metrics

REDUCTIONS = ("mean", "sum", "none")
DEFAULT_EPS = 1e-7
"""Probability clipping for the probability-space losses. The seeds' 1e-15 only works in float64: in
float32, ``1 - 1e-15`` rounds to 1, so ``log(1 - p)`` would still be ``log 0``; the binary losses
therefore never clip closer to 0 or 1 than the input dtype can represent below 1 (see ``_clip_probs``)."""


def softmax_cross_entropy(logits_BxK: jax.Array, labels_B: jax.Array) -> jax.Array:
    """Per-example categorical cross-entropy of integer labels under softmax(logits): [B]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxK, labels_B)


def classification(logits_BxK: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Trainer objective for K-way classification: per-example loss and accuracy.

    The loss is cross-entropy against the integer labels ``batch['y']``, or against the soft
    targets ``batch['y_soft']`` [B, K] when present (mixup / cutmix); accuracy is always against
    ``batch['y']``.
    """
    if "y_soft" in batch:
        loss = optax.softmax_cross_entropy(logits_BxK, batch["y_soft"])
    else:
        loss = softmax_cross_entropy(logits_BxK, batch["y"])
    return {"loss": loss, "accuracy": metrics.accuracy(logits_BxK, batch["y"])}


# --- regression -------------------------------------------------------------------------------------


def mse(predictions: jax.Array, targets: jax.Array, reduction: str = "mean") -> jax.Array:
    """Squared error ``(ŷ - y)²`` of same-shaped arrays, reduced (default: ``mean((y - ŷ)²)``, seeds 003·7, 004·6)."""
    predictions, targets = _pair(predictions, targets, "predictions", "targets")
    return _reduce(jnp.square(predictions - targets), reduction)


def half_mse(predictions_Mx: jax.Array, targets_Mx: jax.Array) -> jax.Array:
    """The seed 001·3 form ``1/(2m) Σ (ŷ - y)²``: scalar.

    ``m = predictions.shape[0]`` is the number of examples (examples on the leading axis; the seed
    stored them as columns of a [1, m] array); the sum runs over every element. For one output per
    example (shape [m] or [m, 1]) this is exactly ``mse / 2``; with D outputs it is ``D · mse / 2``.

    The factor 2: d/dŷ of ``(ŷ - y)²/2`` is ``ŷ - y``, so the ½ cancels the exponent's 2 and the
    gradient is ``(ŷ - y)/m`` instead of ``2(ŷ - y)/m``. Same minimiser, half the gradient (the same as
    halving the learning rate). The seed's docstring writes ``1/m`` but its code computes ``1/(2m)``,
    so its printed "MSE Loss" is half the mean squared error.
    """
    predictions_Mx, targets_Mx = _pair(predictions_Mx, targets_Mx, "predictions", "targets")
    if predictions_Mx.ndim == 0:
        raise ValueError("predictions must have a leading example axis (shape [m, ...]), got a scalar")
    m = predictions_Mx.shape[0]
    return jnp.sum(jnp.square(predictions_Mx - targets_Mx)) / (2 * m)


def l1(predictions: jax.Array, targets: jax.Array, reduction: str = "mean") -> jax.Array:
    """Absolute error ``|ŷ - y|`` of same-shaped arrays, reduced (torch's ``l1_loss``)."""
    predictions, targets = _pair(predictions, targets, "predictions", "targets")
    return _reduce(jnp.abs(predictions - targets), reduction)


def huber(predictions: jax.Array, targets: jax.Array, delta: float = 1.0, reduction: str = "mean") -> jax.Array:
    """Huber loss of the residual ``r = ŷ - y``: ``r²/2`` where ``|r| <= delta``, else ``delta (|r| - delta/2)``.

    Quadratic (half the squared error) near the target, linear with slope ``delta`` (L1-like) far from
    it, continuous with a continuous derivative at ``|r| = delta``. Same values as ``optax.huber_loss``.
    ``delta`` may be a traced scalar (it is only range-checked when it is a Python number).
    """
    if isinstance(delta, (int, float)) and not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    predictions, targets = _pair(predictions, targets, "predictions", "targets")
    abs_r = jnp.abs(predictions - targets)
    quadratic = jnp.minimum(abs_r, delta)
    return _reduce(0.5 * quadratic**2 + delta * (abs_r - quadratic), reduction)


# --- classification ---------------------------------------------------------------------------------


def binary_cross_entropy(
    probs: jax.Array, targets: jax.Array, eps: float = DEFAULT_EPS, reduction: str = "mean"
) -> jax.Array:
    """``-[y log p + (1 - y) log(1 - p)]`` on probabilities clipped to ``[eps, 1 - eps]`` (seed 001·3).

    Clipping keeps the loss finite (at most ``-log eps``) and its gradient finite (zero outside the
    clip range) at ``p = 0`` or ``1``. Prefer ``binary_cross_entropy_with_logits`` when logits exist.
    """
    probs, targets = _pair(probs, targets, "probs", "targets")
    p = _clip_probs(probs, eps)
    return _reduce(-(targets * jnp.log(p) + (1.0 - targets) * jnp.log1p(-p)), reduction)


def binary_cross_entropy_with_logits(logits: jax.Array, targets: jax.Array, reduction: str = "mean") -> jax.Array:
    """Binary cross-entropy of ``sigmoid(logits)`` in log-sigmoid form, stable for any finite logit.

    ``-[y log σ(x) + (1 - y) log σ(-x)]`` with ``log σ`` computed as ``-softplus(-x)``; equals
    ``optax.sigmoid_binary_cross_entropy``.
    """
    logits, targets = _pair(logits, targets, "logits", "targets")
    values = -(targets * jax.nn.log_sigmoid(logits) + (1.0 - targets) * jax.nn.log_sigmoid(-logits))
    return _reduce(values, reduction)


def categorical_cross_entropy(
    probs_xK: jax.Array, targets_xK: jax.Array, eps: float = DEFAULT_EPS, reduction: str = "mean"
) -> jax.Array:
    """Per-example ``-Σ_k y_k log p_k`` over the last (class) axis, probabilities clipped below at ``eps``.

    ``targets_xK`` are one-hot or soft targets; ``reduction`` acts on the per-example values [...].
    """
    probs_xK, targets_xK = _pair(probs_xK, targets_xK, "probs", "targets")
    p = jnp.clip(probs_xK, _check_eps(eps), 1.0)
    return _reduce(-jnp.sum(targets_xK * jnp.log(p), axis=-1), reduction)


def categorical_cross_entropy_with_logits(
    logits_xK: jax.Array, targets_xK: jax.Array, reduction: str = "mean"
) -> jax.Array:
    """Per-example ``-Σ_k y_k log softmax(logits)_k`` via ``log_softmax`` (stable); equals ``optax.softmax_cross_entropy``."""
    logits_xK, targets_xK = _pair(logits_xK, targets_xK, "logits", "targets")
    return _reduce(-jnp.sum(targets_xK * jax.nn.log_softmax(logits_xK, axis=-1), axis=-1), reduction)


def kl_divergence(log_probs_xK: jax.Array, target_probs_xK: jax.Array, reduction: str = "mean") -> jax.Array:
    """Per-example ``KL(target || model) = Σ_k t_k (log t_k - log q_k)`` over the last axis from the model's
    log-probabilities, with ``0 log 0 = 0``; the mean over examples is torch's ``kl_div(log_q, t,
    reduction='batchmean')``."""
    log_probs_xK, target_probs_xK = _pair(log_probs_xK, target_probs_xK, "log_probs", "target_probs")
    values = jnp.sum(xlogy(target_probs_xK, target_probs_xK) - target_probs_xK * log_probs_xK, axis=-1)
    return _reduce(values, reduction)


# --- segmentation (seed 002·13) ---------------------------------------------------------------------


def boundary_weights(mask_xHxW: jax.Array, boundary_weight: float = 4.0, window: int = 3) -> jax.Array:
    """Per-pixel weights from a binary mask: ``1 + boundary_weight`` on the boundary band, 1 elsewhere.

    ``mask_xHxW`` [..., H, W] is foreground where nonzero. A pixel is on the boundary when the
    ``window × window`` dilation and erosion of the mask differ there, i.e. its neighbourhood holds
    both foreground and background (a band on both sides of every edge). The image border is not a
    boundary: the windows only look at pixels inside the image. Returns float32 [..., H, W].
    ``boundary_weight`` may be a traced scalar (range-checked only when it is a Python number).
    """
    mask_xHxW = jnp.asarray(mask_xHxW)
    if mask_xHxW.ndim < 2:
        raise ValueError(f"mask must have shape [..., H, W], got shape {mask_xHxW.shape}")
    if isinstance(boundary_weight, (int, float)) and not boundary_weight >= 0:
        raise ValueError(f"boundary_weight must be >= 0, got {boundary_weight}")
    if window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd size >= 3, got {window}")
    foreground = (mask_xHxW != 0).astype(jnp.float32)
    dims = (1,) * (foreground.ndim - 2) + (window, window)
    strides = (1,) * foreground.ndim
    dilated = jax.lax.reduce_window(foreground, -jnp.inf, jax.lax.max, dims, strides, "SAME")
    eroded = jax.lax.reduce_window(foreground, jnp.inf, jax.lax.min, dims, strides, "SAME")
    return 1.0 + boundary_weight * (dilated != eroded).astype(jnp.float32)


def boundary_weighted_bce(
    probs: jax.Array,
    targets: jax.Array,
    weights: jax.Array | None = None,
    boundary_weight: float = 4.0,
    eps: float = DEFAULT_EPS,
    reduction: str = "mean",
) -> jax.Array:
    """Seed 002·13: ``-Σ_i w_i [y_i log p_i + (1 - y_i) log(1 - p_i)]`` on clipped probabilities.

    ``targets`` [..., H, W] is the binary mask; ``weights`` default to ``boundary_weights(targets,
    boundary_weight)``. Normalisation: ``'mean'`` divides by ``Σ w_i`` (a weighted mean, so the scale
    does not grow with the number of boundary pixels), ``'sum'`` is the seed's formula, ``'none'``
    returns the per-pixel ``w_i ℓ_i``.
    """
    values = binary_cross_entropy(probs, targets, eps, reduction="none")
    return _reduce(values, reduction, _weights(weights, targets, values, boundary_weight))


def boundary_weighted_bce_with_logits(
    logits: jax.Array,
    targets: jax.Array,
    weights: jax.Array | None = None,
    boundary_weight: float = 4.0,
    reduction: str = "mean",
) -> jax.Array:
    """``boundary_weighted_bce`` on ``sigmoid(logits)``, computed stably in log-sigmoid form."""
    values = binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return _reduce(values, reduction, _weights(weights, targets, values, boundary_weight))


def soft_dice_loss(probs_BxHxW: jax.Array, targets_BxHxW: jax.Array, smooth: float = 1.0, reduction: str = "mean") -> jax.Array:
    """Soft Dice loss ``1 - (2 Σ p y + s) / (Σ p + Σ y + s)`` per example, summed over all but the first axis.

    ``probs`` are foreground probabilities in [0, 1] shaped like the binary ``targets`` [B, ...];
    ``smooth`` s > 0 keeps the loss finite on empty masks (an empty target predicted empty scores 0)
    and smooths the gradient. ``reduction`` acts on the per-example values [B] (``'none'`` returns them).
    """
    probs_BxHxW, targets_BxHxW = _pair(probs_BxHxW, targets_BxHxW, "probs", "targets")
    if probs_BxHxW.ndim < 2:
        raise ValueError(f"probs must have shape [B, ...] with at least one axis per example, got {probs_BxHxW.shape}")
    if isinstance(smooth, (int, float)) and not smooth > 0:
        raise ValueError(f"smooth must be > 0, got {smooth}")
    axes = tuple(range(1, probs_BxHxW.ndim))
    overlap = jnp.sum(probs_BxHxW * targets_BxHxW, axis=axes)
    total = jnp.sum(probs_BxHxW, axis=axes) + jnp.sum(targets_BxHxW, axis=axes)
    return _reduce(1.0 - (2.0 * overlap + smooth) / (total + smooth), reduction)


def segmentation_objective(
    dice_weight: float = 1.0, boundary_weight: float = 0.0, boundary_head_weight: float = 0.5, tolerance: int = 2
) -> Callable[[Any, dict[str, jax.Array]], dict[str, jax.Array]]:
    """Trainer objective for binary segmentation: per-example ``BCE + dice_weight · soft Dice``.

    The returned ``objective(outputs, batch)`` takes mask logits ``outputs`` [B, H, W, 1] (or [B, H, W]),
    or a dict with logits ``'mask'`` and optionally ``'boundary'`` (``nnjax.models.unet.UNet``), and the
    binary masks ``batch['y']`` [B, H, W]. Per example [B]:

    - ``bce``: ``boundary_weighted_bce_with_logits`` normalised by the example's weights
      (``boundary_weights(y, boundary_weight)``: pixels of the boundary band count ``1 + boundary_weight``
      times; 0 gives plain BCE);
    - ``soft_dice``: ``soft_dice_loss(sigmoid(mask), y)``;
    - ``boundary_bce`` (dict outputs with ``'boundary'``): BCE of the boundary logits against the
      boundary band of ``y``, weighted by ``boundary_head_weight`` in the loss;
    - ``loss`` = bce + dice_weight · soft_dice [+ boundary_head_weight · boundary_bce];
    - hard-mask scores of ``mask > 0`` (``nnjax.metrics.segmentation_scores``): ``dice``, ``iou``,
      ``precision``, ``recall``, ``boundary_f1`` (within ``tolerance`` pixels).
    """
    for name, value in (("dice_weight", dice_weight), ("boundary_weight", boundary_weight),
                        ("boundary_head_weight", boundary_head_weight)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")

    def objective(outputs: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        logits = outputs["mask"] if isinstance(outputs, dict) else outputs
        targets_BxHxW = _as_float(batch["y"])
        logits_BxHxW = _squeeze_channel(logits, targets_BxHxW.shape)
        weights_BxHxW = boundary_weights(targets_BxHxW, boundary_weight)
        weighted_BxHxW = boundary_weighted_bce_with_logits(logits_BxHxW, targets_BxHxW, weights_BxHxW, reduction="none")
        bce_B = weighted_BxHxW.sum(axis=(1, 2)) / weights_BxHxW.sum(axis=(1, 2))
        dice_B = soft_dice_loss(jax.nn.sigmoid(logits_BxHxW), targets_BxHxW, reduction="none")
        terms = {"bce": bce_B, "soft_dice": dice_B}
        loss_B = bce_B + dice_weight * dice_B
        if isinstance(outputs, dict) and "boundary" in outputs:
            band_BxHxW = boundary_weights(targets_BxHxW, 1.0) - 1.0
            boundary_logits = _squeeze_channel(outputs["boundary"], targets_BxHxW.shape)
            terms["boundary_bce"] = binary_cross_entropy_with_logits(boundary_logits, band_BxHxW, "none").mean(axis=(1, 2))
            loss_B = loss_B + boundary_head_weight * terms["boundary_bce"]
        scores = metrics.segmentation_scores(logits_BxHxW > 0, targets_BxHxW, tolerance)
        return {"loss": loss_B, **terms, **scores}

    return objective


def _squeeze_channel(logits: jax.Array, shape_BxHxW: tuple[int, ...]) -> jax.Array:
    """Logits [B, H, W, 1] or [B, H, W] as [B, H, W], checked against the masks' shape."""
    logits = _as_float(logits)
    if logits.ndim == 4 and logits.shape[-1] == 1:
        logits = logits[..., 0]
    if logits.shape != tuple(shape_BxHxW) or logits.ndim != 3:
        raise ValueError(f"mask logits must have shape [B, H, W, 1] or [B, H, W] matching masks {shape_BxHxW}, got {logits.shape}")
    return logits


# --- multitask (seed 002·5) ---------------------------------------------------------------------------


def multitask_uncertainty_loss(losses_T: jax.Array | Sequence[jax.Array], log_vars_T: jax.Array) -> jax.Array:
    """Homoscedastic-uncertainty weighting of T task losses: ``Σ_i exp(-s_i) L_i + s_i``: scalar.

    ``log_vars_T`` are learned log-variances ``s_i = log σ_i²``: a task with a larger loss learns a
    larger ``s_i`` and so a smaller weight ``exp(-s_i)``; the ``+ s_i`` term stops every weight from
    collapsing to 0. For fixed ``L_i > 0`` each term is minimised at ``s_i = log L_i`` (where
    ``d/ds_i = 1 - exp(-s_i) L_i = 0``), with minimum ``1 + log L_i``.
    """
    losses_T = jnp.stack(losses_T) if isinstance(losses_T, (list, tuple)) else jnp.asarray(losses_T)
    log_vars_T = jnp.asarray(log_vars_T)
    if losses_T.ndim != 1 or losses_T.shape != log_vars_T.shape:
        raise ValueError(
            f"losses and log_vars must both have shape [T], got {losses_T.shape} and {log_vars_T.shape}"
        )
    return jnp.sum(jnp.exp(-log_vars_T) * losses_T + log_vars_T)


# --- regularizers (seed 003·8) ----------------------------------------------------------------------


def l1_penalty(params: Any) -> jax.Array:
    """Lasso penalty ``Σ |w|`` over every leaf of a params pytree: scalar (scale by λ yourself)."""
    return sum((jnp.sum(jnp.abs(leaf)) for leaf in jax.tree.leaves(params)), jnp.zeros((), jnp.float32))


def l2_penalty(params: Any) -> jax.Array:
    """Ridge penalty ``Σ w²`` over every leaf of a params pytree: scalar (scale by λ yourself).

    No ½: this is the seed's term, twice ``Σ optax.l2_loss(w)``; its gradient is ``2w``.
    """
    return sum((jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(params)), jnp.zeros((), jnp.float32))


# --- helpers ----------------------------------------------------------------------------------------


def _as_float(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _pair(a: jax.Array, b: jax.Array, name_a: str, name_b: str) -> tuple[jax.Array, jax.Array]:
    """Both arrays as floats, checked to have the same shape."""
    a, b = _as_float(a), _as_float(b)
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def _check_eps(eps: float) -> float:
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    return eps


def _clip_probs(probs: jax.Array, eps: float) -> jax.Array:
    """``probs`` clipped to ``[lo, 1 - lo]``: ``1 - eps`` rounded to the probs' dtype and capped below 1 gives
    the upper bound, and ``lo = max(eps, 1 - upper)``, so both ends are clipped alike (in float32,
    ``eps = 1e-7`` becomes ``lo = 2⁻²³ ≈ 1.19e-7``) and ``BCE(p, y) == BCE(1 - p, 1 - y)``."""
    hi = min(float(np.asarray(1.0 - _check_eps(eps)).astype(probs.dtype)), 1.0 - float(jnp.finfo(probs.dtype).epsneg))
    return jnp.clip(probs, max(eps, 1.0 - hi), hi)


def _weights(weights: jax.Array | None, targets: jax.Array, values: jax.Array, boundary_weight: float) -> jax.Array:
    if weights is None:
        return boundary_weights(targets, boundary_weight)
    weights = _as_float(weights)
    if weights.shape != values.shape:
        raise ValueError(f"weights must have the shape of targets {values.shape}, got {weights.shape}")
    return weights


def _reduce(values: jax.Array, reduction: str, weights: jax.Array | None = None) -> jax.Array:
    """Apply ``reduction`` (see the module docstring) to ``values``, optionally weighted."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if weights is not None:
        weighted = weights * values
        if reduction == "mean":
            return jnp.sum(weighted) / jnp.sum(weights)
        values = weighted
    if reduction == "mean":
        return jnp.mean(values)
    if reduction == "sum":
        return jnp.sum(values)
    return values


def regression(predictions_BxK: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Trainer objective for real-valued targets ``batch['y']`` (shaped like the predictions):
    per-example squared error, the mean of ``(ŷ - y)²`` over each example's outputs: ``{'loss': [B]}``."""
    predictions_BxK, targets_BxK = _pair(predictions_BxK, batch["y"], "predictions", "batch['y']")
    squared = jnp.square(predictions_BxK - targets_BxK)
    return {"loss": squared.reshape(squared.shape[0], -1).mean(axis=1)}


def binary_classification(logits_Bx1: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Trainer objective for two classes scored by one logit (positive class 1, seed 003·15).

    ``logits_Bx1`` [B, 1] (or [B]) against 0/1 labels ``batch['y']`` [B]: per-example
    ``optax.sigmoid_binary_cross_entropy`` and 0/1 accuracy of ``logit > 0`` (probability > 0.5).
    """
    logits_B = jnp.asarray(logits_Bx1).reshape(logits_Bx1.shape[0], -1)
    if logits_B.shape[1] != 1:
        raise ValueError(f"logits must have shape [B, 1] or [B], got {logits_Bx1.shape}")
    logits_B = logits_B[:, 0]
    labels_B = batch["y"]
    loss = optax.sigmoid_binary_cross_entropy(logits_B, labels_B.astype(logits_B.dtype))
    return {"loss": loss, "accuracy": ((logits_B > 0) == (labels_B == 1)).astype(jnp.float32)}


def next_token(logits_BxTxV: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Language-model objective: per-sequence mean next-token cross-entropy (nats) and accuracy, [B] each.

    ``batch['y']`` int [B, T] holds the target token of every position; bits per token = loss / ln 2.
    """
    labels_BxT = batch["y"]
    loss_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV.astype(jnp.float32), labels_BxT)
    correct_BxT = (jnp.argmax(logits_BxTxV, axis=-1) == labels_BxT).astype(jnp.float32)
    return {"loss": loss_BxT.mean(axis=1), "accuracy": correct_BxT.mean(axis=1)}


# --- variational autoencoders (seed 000 slide 12) ---------------------------------------------------

LOG_2PI = float(np.log(2.0 * np.pi))


def standard_normal_log_density(z_xD: jax.Array) -> jax.Array:
    """``log N(z; 0, I)`` summed over the last axis: [...]."""
    return -0.5 * jnp.sum(jnp.square(z_xD) + LOG_2PI, axis=-1)


def diagonal_normal_log_density(z_xD: jax.Array, mu_xD: jax.Array, log_var_xD: jax.Array) -> jax.Array:
    """``log N(z; mu, diag(exp(log_var)))`` summed over the last axis (arguments broadcast): [...]."""
    return -0.5 * jnp.sum(jnp.square(z_xD - mu_xD) * jnp.exp(-log_var_xD) + log_var_xD + LOG_2PI, axis=-1)


def gaussian_kl(mu_BxD: jax.Array, log_var_BxD: jax.Array) -> jax.Array:
    """Closed-form ``KL(N(mu, diag σ²) || N(0, I)) = ½ Σ (σ² + mu² - 1 - log σ²)``: [B]."""
    return 0.5 * jnp.sum(jnp.exp(log_var_BxD) + jnp.square(mu_BxD) - 1.0 - log_var_BxD, axis=-1)


def flow_vae_terms(outputs: dict[str, jax.Array], x_Bx: jax.Array) -> dict[str, jax.Array]:
    """The single-sample terms of a flow VAE's ELBO, each [..., B] (leading axes: samples per example).

    ``outputs`` is ``FlowVAE``'s dict (``logits`` [..., B, P], ``z0``/``zK`` [..., B, D], ``mu``/``log_var``
    [B, D], ``log_det`` [..., B]); ``x_Bx`` holds the binary targets [B, ...] (P values per example):

    * ``log_px``: ``log p(x | zK)``, Bernoulli with logits (minus the summed sigmoid cross-entropy);
    * ``log_pz``: ``log N(zK; 0, I)``, the prior;
    * ``log_q0``: ``log N(z0; mu, σ²)``, the base posterior;
    * ``log_det``: ``Σ_k log|det ∂f_k/∂z|``, so that ``log q_K(zK) = log_q0 - log_det``.
    """
    logits = outputs["logits"]
    targets = x_Bx.reshape(x_Bx.shape[0], -1).astype(logits.dtype)
    if logits.shape[-2:] != targets.shape:
        raise ValueError(f"logits must have shape [..., {targets.shape[0]}, {targets.shape[1]}], got {logits.shape}")
    return {
        "log_px": -jnp.sum(optax.sigmoid_binary_cross_entropy(logits, jnp.broadcast_to(targets, logits.shape)), axis=-1),
        "log_pz": standard_normal_log_density(outputs["zK"]),
        "log_q0": diagonal_normal_log_density(outputs["z0"], outputs["mu"], outputs["log_var"]),
        "log_det": outputs["log_det"],
    }


def flow_vae_log_weight(outputs: dict[str, jax.Array], x_Bx: jax.Array) -> jax.Array:
    """``log p(x, zK) - log q_K(zK | x) = log p(x|zK) + log p(zK) - log q0(z0) + Σ log|det J|``: [..., B].

    Its expectation under q is the ELBO; the log-mean-exp of S of them is the IWAE bound.
    """
    terms = flow_vae_terms(outputs, x_Bx)
    return terms["log_px"] + terms["log_pz"] - terms["log_q0"] + terms["log_det"]


def flow_vae_elbo(outputs: dict[str, jax.Array], batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Trainer objective for ``FlowVAE``: the single-sample Monte-Carlo ELBO of each image (nats), [B] each.

    ``elbo = log p(x|zK) + log p(zK) - log q0(z0) + Σ log|det J|``; ``loss = -elbo``;
    ``recon = -log p(x|zK)`` (summed Bernoulli cross-entropy) and ``kl = log q_K(zK) - log p(zK)``
    (the single-sample estimate of KL(q_K || p)), so ``loss = recon + kl``; ``log_det`` as summed.
    """
    terms = flow_vae_terms(outputs, batch["x"])
    recon = -terms["log_px"]
    kl = terms["log_q0"] - terms["log_det"] - terms["log_pz"]
    return {"loss": recon + kl, "elbo": -(recon + kl), "recon": recon, "kl": kl, "log_det": terms["log_det"]}
