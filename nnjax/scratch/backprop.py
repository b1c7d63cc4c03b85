"""Neurons and fully connected networks with hand-written backpropagation.

Seeds 004·1 (a neuron), 003·3 / 004·4 (forward propagation), 000·1–2, 001·1–2 and 003·6 (the
sigmoid network and its backprop). The slides store column vectors (``W @ a``); here examples are
rows, as everywhere in nnjax: layer ``l`` maps ``a_BxDin`` to ``z = a @ w_DinxDout + b``, then
``a' = g(z)``.

Params are a list of ``{'w': [Din, Dout], 'b': [Dout]}``. The backward pass is the textbook recursion

    dz = da ⊙ g'(z),   dW = a_prevᵀ dz,   db = Σ_batch dz,   da_prev = dz Wᵀ

and ``apply`` wires it into JAX as a ``custom_vjp``, so ``jax.grad`` (and the trainer) run the
hand-written backward pass instead of autodiff.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from nnjax.scratch import activations

Params = list[dict[str, jax.Array]]
Cache = list[tuple[jax.Array, jax.Array]]

ACTIVATIONS = {**activations.ACTIVATIONS, "linear": (lambda z: z, jnp.ones_like)}
"""Layer activations by name: ``name -> (g, g')``; ``'linear'`` is the identity."""

LOSSES = ("mse", "bce", "softmax_ce")


def neuron(inputs_D: jax.Array, weights_D: jax.Array, bias: jax.Array | float) -> jax.Array:
    """A single linear neuron (seed 004·1): ``inputs · weights + bias``, a scalar."""
    return jnp.dot(inputs_D, weights_D) + bias


def init_mlp(key: jax.Array, sizes: Sequence[int], scale: float | None = None) -> Params:
    """Random params for layer widths ``sizes`` (input first), e.g. ``(2, 4, 1)``.

    Weights are N(0, scale²) with ``scale = sqrt(1 / Din)`` by default (LeCun); the seeds' 0.01
    is available as ``scale=0.01`` but leaves sigmoid networks stuck near their symmetric start.
    Biases start at zero.
    """
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list at least two positive widths (input, ..., output), got {tuple(sizes)}")
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            "w": jax.random.normal(k, (d_in, d_out)) * (scale if scale is not None else d_in**-0.5),
            "b": jnp.zeros((d_out,)),
        }
        for k, d_in, d_out in zip(keys, sizes[:-1], sizes[1:])
    ]


def _activation_names(params: Params, hidden: str, output: str) -> list[str]:
    for name in (hidden, output):
        if name not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return [hidden] * (len(params) - 1) + [output]


def forward(params: Params, x_BxD: jax.Array, hidden: str = "sigmoid", output: str = "sigmoid") -> tuple[jax.Array, Cache]:
    """Forward propagation: the output activations [B, Dout] and the cache ``[(a_prev, z), ...]``.

    ``hidden`` names the activation of every hidden layer, ``output`` that of the last layer.
    The cache holds each layer's input activations and pre-activations, in layer order; the
    activations of all layers (seed 002·1) are ``[a for a, _ in cache] + [output]``.
    """
    if x_BxD.ndim != 2 or x_BxD.shape[1] != params[0]["w"].shape[0]:
        raise ValueError(f"x must be [batch, {params[0]['w'].shape[0]}], got shape {x_BxD.shape}")
    a = x_BxD
    cache = []
    for layer, name in zip(params, _activation_names(params, hidden, output)):
        z = a @ layer["w"] + layer["b"]
        cache.append((a, z))
        a = ACTIVATIONS[name][0](z)
    return a, cache


def backward(
    params: Params, cache: Cache, da_BxDout: jax.Array, hidden: str = "sigmoid", output: str = "sigmoid"
) -> tuple[Params, jax.Array]:
    """Backpropagate ``dL/da_out`` through the layers: ``(grads like params, dL/dx [B, Din])``."""
    names = _activation_names(params, hidden, output)
    grads: Params = [{} for _ in params]
    da = da_BxDout
    for i in reversed(range(len(params))):
        a_prev, z = cache[i]
        dz = da * ACTIVATIONS[names[i]][1](z)
        grads[i] = {"w": a_prev.T @ dz, "b": jnp.sum(dz, axis=0)}
        da = dz @ params[i]["w"].T
    return grads, da


def loss_and_grads(
    params: Params, x_BxD: jax.Array, y: jax.Array, loss: str = "mse", hidden: str = "sigmoid"
) -> tuple[jax.Array, Params]:
    """Batch-mean loss and its hand-written gradient.

    ``loss``:
      - ``'mse'``: sigmoid output, ``mean((a - y)²)`` over all entries; ``y`` [B, Dout].
      - ``'bce'``: sigmoid output, binary cross-entropy averaged over all entries; ``y`` [B, Dout]
        in {0, 1}. Its output delta simplifies to ``(a - y) / n`` (no σ' factor).
      - ``'softmax_ce'``: linear output (logits), softmax cross-entropy; ``y`` integer labels [B].
        Output delta ``(softmax(z) - onehot(y)) / B``.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    output = "linear" if loss == "softmax_ce" else "sigmoid"
    out, cache = forward(params, x_BxD, hidden, output)
    z_out = cache[-1][1]
    if loss == "mse":
        value = jnp.mean((out - y) ** 2)
        dz_out = 2.0 * (out - y) / out.size * activations.sigmoid_prime(z_out)
    elif loss == "bce":
        log_p, log_1mp = jax.nn.log_sigmoid(z_out), jax.nn.log_sigmoid(-z_out)
        value = -jnp.mean(y * log_p + (1.0 - y) * log_1mp)
        dz_out = (out - y) / out.size
    else:
        log_probs = jax.nn.log_softmax(z_out)
        onehot = jax.nn.one_hot(y, z_out.shape[-1], dtype=z_out.dtype)
        value = -jnp.mean(jnp.sum(onehot * log_probs, axis=-1))
        dz_out = (activations.softmax(z_out) - onehot) / z_out.shape[0]
    # Backward through the output layer's affine map (its activation's derivative is in dz_out);
    # "linear" keeps ``backward`` from multiplying by g'(z_out) a second time.
    grads, _ = backward(params, cache, dz_out, hidden, output="linear")
    return value, grads


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def apply(params: Params, x_BxD: jax.Array, hidden: str = "sigmoid", output: str = "linear") -> jax.Array:
    """Forward propagation whose derivative (``jax.grad``, ``jax.vjp``) is the hand-written ``backward``."""
    return forward(params, x_BxD, hidden, output)[0]


def _apply_fwd(params, x_BxD, hidden, output):
    out, cache = forward(params, x_BxD, hidden, output)
    return out, (params, cache)


def _apply_bwd(hidden, output, residuals, g_out):
    params, cache = residuals
    return backward(params, cache, g_out, hidden, output)


apply.defvjp(_apply_fwd, _apply_bwd)


def accuracy(params: Params, x_BxD: jax.Array, y: jax.Array, loss: str = "mse", hidden: str = "sigmoid") -> jax.Array:
    """Fraction of correct predictions: thresholded at 0.5 for sigmoid outputs, arg-max for logits."""
    output = "linear" if loss == "softmax_ce" else "sigmoid"
    out, _ = forward(params, x_BxD, hidden, output)
    if loss == "softmax_ce":
        return jnp.mean(jnp.argmax(out, axis=-1) == y)
    return jnp.mean((out > 0.5) == (y > 0.5))


def num_params(params: Any) -> int:
    """Total number of scalars in a params pytree."""
    return sum(leaf.size for leaf in jax.tree.leaves(params))
