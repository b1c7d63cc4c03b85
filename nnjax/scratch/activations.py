"""Activation functions and their hand-written derivatives (seeds 001·5, 003·2, 004·3).

Each derivative is a function of the pre-activation ``z`` and is elementwise, except softmax,
whose derivative is a Jacobian (``softmax_jacobian``) or, in backprop, a vector-Jacobian product
(``softmax_vjp``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sigmoid(z: jax.Array) -> jax.Array:
    """1 / (1 + exp(-z)), computed without overflow for large |z|."""
    return jax.nn.sigmoid(z)


def sigmoid_prime(z: jax.Array) -> jax.Array:
    """d sigmoid / dz = sigmoid(z) (1 - sigmoid(z))."""
    s = sigmoid(z)
    return s * (1.0 - s)


def tanh(z: jax.Array) -> jax.Array:
    """Hyperbolic tangent."""
    return jnp.tanh(z)


def tanh_prime(z: jax.Array) -> jax.Array:
    """d tanh / dz = 1 - tanh(z)²."""
    return 1.0 - jnp.tanh(z) ** 2


def relu(z: jax.Array) -> jax.Array:
    """max(0, z)."""
    return jnp.where(z > 0, z, 0.0)


def relu_prime(z: jax.Array) -> jax.Array:
    """1 where z > 0, else 0 (the subgradient 0 at z = 0, which ``jax.grad`` of ``relu`` also gives)."""
    return (z > 0).astype(z.dtype)


def leaky_relu(z: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """z for z > 0, ``negative_slope`` · z otherwise."""
    return jnp.where(z > 0, z, negative_slope * z)


def leaky_relu_prime(z: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """1 for z > 0, ``negative_slope`` otherwise."""
    return jnp.where(z > 0, 1.0, negative_slope).astype(z.dtype)


def elu(z: jax.Array, alpha: float = 1.0) -> jax.Array:
    """z for z > 0, alpha (exp(z) - 1) otherwise (``expm1`` keeps small z accurate)."""
    return jnp.where(z > 0, z, alpha * jnp.expm1(jnp.where(z > 0, 0.0, z)))


def elu_prime(z: jax.Array, alpha: float = 1.0) -> jax.Array:
    """1 for z > 0, alpha exp(z) otherwise."""
    return jnp.where(z > 0, 1.0, alpha * jnp.exp(jnp.where(z > 0, 0.0, z))).astype(z.dtype)


def softmax(z_xK: jax.Array) -> jax.Array:
    """exp(z) / sum exp(z) over the last axis, shifted by the max so large logits cannot overflow."""
    shifted = z_xK - jax.lax.stop_gradient(jnp.max(z_xK, axis=-1, keepdims=True))
    e = jnp.exp(shifted)
    return e / jnp.sum(e, axis=-1, keepdims=True)


def softmax_jacobian(z_K: jax.Array) -> jax.Array:
    """d softmax(z)_i / d z_j = s_i (δ_ij - s_j) for one vector z [K]: [K, K]."""
    s = softmax(z_K)
    return jnp.diag(s) - jnp.outer(s, s)


def softmax_vjp(z_xK: jax.Array, g_xK: jax.Array) -> jax.Array:
    """gᵀ J for every row: s ⊙ (g - <g, s>), without forming the K×K Jacobian: [..., K]."""
    s = softmax(z_xK)
    return s * (g_xK - jnp.sum(g_xK * s, axis=-1, keepdims=True))


ACTIVATIONS = {
    "sigmoid": (sigmoid, sigmoid_prime),
    "tanh": (tanh, tanh_prime),
    "relu": (relu, relu_prime),
    "leaky_relu": (leaky_relu, leaky_relu_prime),
    "elu": (elu, elu_prime),
}
"""Elementwise activations by name: ``name -> (f, f')``."""
