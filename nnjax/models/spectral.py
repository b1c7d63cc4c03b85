"""Spectral normalisation (Miyato et al. 2018): a kernel divided by its largest singular value.

``spectral_normalize`` is the pure function: K steps of power iteration on the kernel reshaped to a
matrix [prod(leading dims), F] from a running right singular vector estimate ``u`` [F], then the
kernel divided by the estimated sigma. ``SpectralNorm`` wraps any layer whose parameters include a
``kernel`` (``nnjax.models.layers.Conv2D``, ``flax.linen.Dense``, ...) and keeps ``u`` in the
``batch_stats`` collection: that is the collection ``TrainState`` already carries, checkpoints and
threads through ``mutable=['batch_stats']``, so a spectral-normed critic needs no new state
plumbing; ``u`` is written back only when ``update_stats`` is True (training).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

COLLECTION = "batch_stats"


def _l2_normalize(x: jax.Array, eps: float) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.sum(x * x) + eps)


def spectral_normalize(
    kernel: jax.Array, u_F: jax.Array, n_steps: int = 1, eps: float = 1e-12
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(kernel / sigma, u', sigma)`` after ``n_steps`` >= 1 power iterations from ``u`` [F].

    The kernel [..., F] is viewed as the matrix W [M, F] (M = product of the leading dims, as the
    layer multiplies input patches [M] by W). Each iteration is v = W u / |W u|, u = W^T v / |W^T v|;
    sigma = v^T W u estimates W's largest singular value (exactly it once u has converged to the top
    right singular vector). ``u'`` and ``v`` are constants for the gradient (``stop_gradient``), so
    the gradient flows through W in both the kernel and sigma, as in the paper.
    """
    if kernel.ndim < 2 or u_F.shape != kernel.shape[-1:] or n_steps < 1:
        raise ValueError(
            f"spectral_normalize needs a kernel [..., F] with ndim >= 2, u [F] and n_steps >= 1; "
            f"got kernel {kernel.shape}, u {u_F.shape}, n_steps {n_steps}"
        )
    w_MxF = kernel.reshape(-1, kernel.shape[-1])

    u = u_F
    for _ in range(n_steps):
        v = _l2_normalize(w_MxF @ u, eps)
        u = _l2_normalize(w_MxF.T @ v, eps)
    u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
    sigma = v @ w_MxF @ u
    return kernel / jnp.where(sigma != 0, sigma, 1.0), u, sigma


class SpectralNorm(nn.Module):
    """``layer`` with its ``kernel`` replaced by ``spectral_normalize(kernel, u, n_steps)`` on every call.

    ``u`` [F] lives in ``batch_stats`` under this wrapper (``u``), drawn from a unit Gaussian at
    init; ``__call__(*args, update_stats=True)`` stores the iterated ``u`` (apply with
    ``mutable=['batch_stats']``), ``update_stats=False`` (evaluation, gradient penalty) leaves it.
    Both run the same iterations from the stored ``u``, so they use the same normalised kernel.
    The layer's other parameters (bias) are untouched.
    """

    layer: nn.Module
    n_steps: int = 1
    eps: float = 1e-12

    @nn.compact
    def __call__(self, *args: Any, update_stats: bool, **kwargs: Any) -> Any:
        def normalize(variables: dict) -> dict:
            params = dict(variables["params"])
            kernel = params["kernel"]
            u_var = self.variable(
                COLLECTION, "u", lambda: jax.random.normal(self.make_rng("params"), kernel.shape[-1:], kernel.dtype)
            )
            params["kernel"], u, _ = spectral_normalize(kernel, u_var.value, self.n_steps, self.eps)
            if update_stats and not self.is_initializing():
                u_var.value = u
            return {**variables, "params": params}

        return nn.map_variables(
            lambda layer: layer(*args, **kwargs),
            "params",
            trans_in_fn=normalize,
            init=self.is_initializing(),
            mutable=True,
        )(self.layer)
