"""Mixup, CutMix and stochastic depth (drop path) as pure, jittable functions (seed 002 slides 8, 13).

``mixup`` and ``cutmix`` map ``(key, batch) -> batch`` for batches ``{'x': [B, ...], 'y': int [B]}``:
they return the mixed ``'x'``, the original integer ``'y'`` (for accuracy) and soft targets
``'y_soft'`` [B, K] (which ``nnjax.losses.classification`` trains on). ``augmentation(...)`` builds
such a function for ``nnjax.tasks.fit(..., augment=...)``, which applies it inside the jitted train
step; evaluation batches are never augmented.

Both mix every example ``i`` with example ``perm[i]`` of one random permutation of the batch, with
one ``lam ~ Beta(alpha, alpha)`` per batch, as the seed does.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from nnjax.scratch.normalization import check_rate

Batch = dict[str, jax.Array]
Augment = Callable[[jax.Array, Batch], Batch]

METHODS = ("none", "mixup", "cutmix")


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not alpha > 0:
        raise ValueError(f"alpha (the Beta(alpha, alpha) concentration) must be > 0, got {alpha}")
    return alpha


def soft_targets(batch: Batch, num_classes: int) -> jax.Array:
    """``batch['y_soft']`` if present (so augmentations compose), else one-hot ``batch['y']``: [B, K] float32."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if "y_soft" in batch:
        return batch["y_soft"].astype(jnp.float32)
    return jax.nn.one_hot(batch["y"], num_classes, dtype=jnp.float32)


def mixup_with(batch: Batch, lam: jax.Array, perm_B: jax.Array, num_classes: int) -> Batch:
    """Mixup with a given weight: ``x~ = lam x_i + (1 - lam) x_perm[i]`` and the same mix of targets.

    ``lam`` is a scalar in [0, 1], ``perm_B`` a permutation of the batch indices.
    """
    x = batch["x"]
    t_BxK = soft_targets(batch, num_classes)
    lam_x = jnp.asarray(lam, x.dtype)
    x_mixed = lam_x * x + (1 - lam_x) * x[perm_B]
    lam_t = jnp.asarray(lam, jnp.float32)
    return {**batch, "x": x_mixed, "y_soft": lam_t * t_BxK + (1 - lam_t) * t_BxK[perm_B]}


def mixup(key: jax.Array, batch: Batch, num_classes: int, alpha: float = 1.0) -> Batch:
    """Mixup (Zhang et al. 2018): ``lam ~ Beta(alpha, alpha)``, one random pairing of the batch.

    Returns ``{**batch, 'x': mixed x (same shape/dtype), 'y': original labels,
    'y_soft': lam * onehot(y) + (1 - lam) * onehot(y[perm])}``.
    """
    alpha = _check_alpha(alpha)
    lam_key, perm_key = jax.random.split(key)
    lam = jax.random.beta(lam_key, alpha, alpha)
    perm_B = jax.random.permutation(perm_key, batch["x"].shape[0])
    return mixup_with(batch, lam, perm_B, num_classes)


def cutmix_box(key: jax.Array, height: int, width: int, lam: jax.Array) -> jax.Array:
    """Boolean [H, W] mask of a box of about ``(1 - lam) H W`` pixels at a uniform random centre.

    The box has sides ``floor(H sqrt(1 - lam))`` by ``floor(W sqrt(1 - lam))`` centred on a uniform
    pixel and is clipped to the image, so its actual area can be smaller than ``(1 - lam) H W``;
    it is built by comparing coordinates (no dynamic slicing), so it jits with traced ``lam``.
    """
    cy_key, cx_key = jax.random.split(key)
    cut_rat = jnp.sqrt(1.0 - lam)
    cut_h = jnp.floor(height * cut_rat).astype(jnp.int32)
    cut_w = jnp.floor(width * cut_rat).astype(jnp.int32)
    cy = jax.random.randint(cy_key, (), 0, height)
    cx = jax.random.randint(cx_key, (), 0, width)
    top, left = cy - cut_h // 2, cx - cut_w // 2
    rows_H = jnp.arange(height)
    cols_W = jnp.arange(width)
    in_rows_H = (rows_H >= jnp.clip(top, 0, height)) & (rows_H < jnp.clip(top + cut_h, 0, height))
    in_cols_W = (cols_W >= jnp.clip(left, 0, width)) & (cols_W < jnp.clip(left + cut_w, 0, width))
    return in_rows_H[:, None] & in_cols_W[None, :]


def cutmix_with(batch: Batch, box_HxW: jax.Array, perm_B: jax.Array, num_classes: int) -> Batch:
    """Paste the ``box_HxW`` region of image ``perm[i]`` into image ``i`` (NHWC ``x``).

    Labels are mixed by the pasted pixel fraction: ``y_soft = lam t_i + (1 - lam) t_perm[i]`` with
    ``lam = 1 - mean(box_HxW)``, the weight of the pixels each image keeps.
    """
    x = batch["x"]
    if x.ndim != 4 or x.shape[1:3] != box_HxW.shape:
        raise ValueError(f"cutmix needs NHWC images matching box {box_HxW.shape}, got x of shape {x.shape}")
    t_BxK = soft_targets(batch, num_classes)
    x_mixed = jnp.where(box_HxW[None, :, :, None], x[perm_B], x)
    lam = 1.0 - jnp.mean(box_HxW.astype(jnp.float32))
    return {**batch, "x": x_mixed, "y_soft": lam * t_BxK + (1 - lam) * t_BxK[perm_B]}


def cutmix(key: jax.Array, batch: Batch, num_classes: int, alpha: float = 1.0) -> Batch:
    """CutMix (Yun et al. 2019): paste one random box from a paired image, labels by pasted area.

    ``lam ~ Beta(alpha, alpha)`` sets the box size (``cutmix_box``); the label weight is
    recomputed from the clipped box actually pasted. ``x`` is NHWC; returns
    ``{**batch, 'x': mixed x (same shape/dtype), 'y': original labels, 'y_soft': [B, K]}``.
    """
    alpha = _check_alpha(alpha)
    x = batch["x"]
    if x.ndim != 4:
        raise ValueError(f"cutmix needs NHWC images x of rank 4, got shape {x.shape}")
    lam_key, perm_key, box_key = jax.random.split(key, 3)
    lam = jax.random.beta(lam_key, alpha, alpha)
    perm_B = jax.random.permutation(perm_key, x.shape[0])
    box_HxW = cutmix_box(box_key, x.shape[1], x.shape[2], lam)
    return cutmix_with(batch, box_HxW, perm_B, num_classes)


def augmentation(method: str, num_classes: int, alpha: float = 1.0) -> Augment | None:
    """``augment(key, batch) -> batch`` for ``method`` in ``METHODS`` (``None`` for 'none')."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "none":
        return None
    alpha = _check_alpha(alpha)
    mix = mixup if method == "mixup" else cutmix
    return lambda key, batch: mix(key, batch, num_classes, alpha)


def drop_path(key: jax.Array, x: jax.Array, rate: float, train: bool) -> jax.Array:
    """Stochastic depth for a residual branch ``x`` [B, ...]: drop it for whole examples.

    Each example's branch is zeroed with probability ``rate`` and otherwise scaled by
    ``1 / (1 - rate)``, so ``E[drop_path(x)] = x``; evaluation (``train=False``) and rate 0 are the
    identity. Use as ``h + drop_path(key, branch(h), rate, train)``. ``rate`` is a static float
    in [0, 1).
    """
    rate = check_rate(rate)
    if not train or rate == 0.0:
        return x
    keep_prob = 1.0 - rate
    keep_B = jax.random.bernoulli(key, p=keep_prob, shape=(x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(keep_B, x / keep_prob, jnp.zeros_like(x))
