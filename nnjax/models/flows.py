"""Planar normalising flows and a VAE whose posterior they refine (seed 000 slide 12).

Rezende & Mohamed (2015), "Variational Inference with Normalizing Flows": a planar flow

    f(z) = z + û h(wᵀz + b),   h = tanh,   log|det ∂f/∂z| = log|1 + h'(wᵀz + b) ûᵀw|

is invertible when ``wᵀû >= -1``. The seed used the raw ``u`` (so a step could fold space and its
log-det could be ``log 0``); here ``u`` is re-parameterised as

    û = u + (m(wᵀu) - wᵀu) w / ||w||²,   m(a) = -1 + softplus(a),

so ``wᵀû = m(wᵀu) > -1`` for every ``u``, and the Jacobian determinant ``1 + h' m(wᵀu)`` is
positive (``0 <= h' <= 1``). The flow parameters are global (shared by all examples), as in the seed.

``FlowVAE`` returns everything the ELBO (``nnjax.losses.flow_vae_elbo``) needs: Bernoulli logits,
``z0``, ``zK``, the posterior ``mu``/``log_var`` and the summed log-det.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nnjax import losses

NORM_EPS = 1e-12
"""Added to ``||w||²`` so that ``w = 0`` (where the flow is the identity) gives ``û = u``, not NaN."""
DET_FLOOR = 1e-7
"""Lower bound on the Jacobian determinant ``1 + h' wᵀû``: mathematically > 0, but in float32 it
rounds to 0 when ``wᵀu`` is very negative (softplus underflows, ``wᵀû = -1``) at ``h' = 1``."""

Params = dict[str, jax.Array]


def constrained_u(u_D: jax.Array, w_D: jax.Array) -> jax.Array:
    """û [D]: ``u`` moved along ``w`` so that ``wᵀû = -1 + softplus(wᵀu) > -1`` (invertible flow)."""
    w_dot_u = jnp.dot(w_D, u_D)
    m = -1.0 + jax.nn.softplus(w_dot_u)
    return u_D + (m - w_dot_u) * w_D / (jnp.dot(w_D, w_D) + NORM_EPS)


def planar_flow(params: Params, z_xD: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One planar flow step on points ``z_xD`` [..., D] with params ``{'u': [D], 'w': [D], 'b': []}``.

    Returns ``(f(z) [..., D], log|det ∂f/∂z| [...])`` with the invertibility constraint applied to ``u``.
    """
    u_hat = constrained_u(params["u"], params["w"])
    activation = z_xD @ params["w"] + params["b"]
    h = jnp.tanh(activation)
    det = 1.0 + (1.0 - h**2) * jnp.dot(params["w"], u_hat)  # 1 + h'(a) wᵀû, with h' = 1 - tanh²
    return z_xD + h[..., None] * u_hat, jnp.log(jnp.maximum(det, DET_FLOOR))


class PlanarFlow(nn.Module):
    """A planar flow step with learnt global ``u``, ``w`` [D] and ``b`` (see ``planar_flow``)."""

    init_scale: float = 0.1

    @nn.compact
    def __call__(self, z_xD: jax.Array) -> tuple[jax.Array, jax.Array]:
        """z [..., D] -> (f(z) [..., D], log|det J| [...])."""
        dim = z_xD.shape[-1]
        init = nn.initializers.normal(self.init_scale)
        params = {
            "u": self.param("u", init, (dim,)),
            "w": self.param("w", init, (dim,)),
            "b": self.param("b", nn.initializers.zeros, ()),
        }
        return planar_flow(params, z_xD)


class NormalizingFlow(nn.Module):
    """``num_flows`` planar steps in sequence; their log-dets are summed (0 flows: identity, log-det 0)."""

    num_flows: int = 4

    @nn.compact
    def __call__(self, z_xD: jax.Array) -> tuple[jax.Array, jax.Array]:
        """z0 [..., D] -> (zK [..., D], Σ_k log|det J_k| [...])."""
        log_det = jnp.zeros(z_xD.shape[:-1], z_xD.dtype)
        for k in range(self.num_flows):
            z_xD, step_log_det = PlanarFlow(name=f"planar{k}")(z_xD)
            log_det = log_det + step_log_det
        return z_xD, log_det


class FlowVAE(nn.Module):
    """Encoder x -> 512 -> (mu, log_var) [latent]; z0 = mu + σ ε; K planar flows -> zK; decoder
    zK -> 512 -> Bernoulli logits over the flattened pixels. Seed sizes: 784 pixels, latent 20, K = 4, hidden 512.

    Noise ε: in training (``train=True``) drawn from the ``'dropout'`` RNG stream (the one the trainer
    supplies). In evaluation (``train=False``) it is drawn from the fixed key ``PRNGKey(eval_seed)``,
    so the evaluated ELBO is a deterministic fixed-noise single-sample Monte-Carlo estimate (unbiased
    per example; the same ε rows are reused by every evaluation batch). ``eps`` [..., B, latent]
    overrides both, e.g. with S samples per example for ``importance_weighted_bound``.
    """

    pixels: int = 784
    latent_dim: int = 20
    hidden: int = 512
    num_flows: int = 4
    eval_seed: int = 0

    def setup(self) -> None:
        self.encoder_hidden = nn.Dense(self.hidden)
        self.encoder_out = nn.Dense(2 * self.latent_dim)
        self.flow = NormalizingFlow(self.num_flows)
        self.decoder_hidden = nn.Dense(self.hidden)
        self.decoder_out = nn.Dense(self.pixels)

    def encode(self, x_BxP: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Flattened images [B, P] -> posterior mean and log-variance [B, latent] each."""
        h = nn.relu(self.encoder_hidden(x_BxP))
        mu_BxD, log_var_BxD = jnp.split(self.encoder_out(h), 2, axis=-1)
        return mu_BxD, log_var_BxD

    def decode(self, z_xD: jax.Array) -> jax.Array:
        """Latents [..., latent] -> Bernoulli logits [..., P] over the pixels."""
        return self.decoder_out(nn.relu(self.decoder_hidden(z_xD)))

    def __call__(self, x: jax.Array, train: bool = False, eps: jax.Array | None = None) -> dict[str, jax.Array]:
        """Images [B, ...] -> ``{'logits' [..., B, P], 'z0', 'zK' [..., B, latent], 'mu', 'log_var'
        [B, latent], 'log_det' [..., B]}``; leading axes ``...`` only when ``eps`` has them."""
        x_BxP = x.reshape(x.shape[0], -1)
        if x_BxP.shape[1] != self.pixels:
            raise ValueError(f"FlowVAE(pixels={self.pixels}) got images of {x_BxP.shape[1]} pixels ({x.shape})")
        mu_BxD, log_var_BxD = self.encode(x_BxP)
        if eps is None:
            key = self.make_rng("dropout") if train else jax.random.PRNGKey(self.eval_seed)
            eps = jax.random.normal(key, mu_BxD.shape, mu_BxD.dtype)
        elif eps.shape[-2:] != mu_BxD.shape:
            raise ValueError(f"eps must have shape [..., {mu_BxD.shape[0]}, {self.latent_dim}], got {eps.shape}")
        z0 = mu_BxD + jnp.exp(0.5 * log_var_BxD) * eps
        zK, log_det = self.flow(z0)
        return {"logits": self.decode(zK), "z0": z0, "zK": zK, "mu": mu_BxD, "log_var": log_var_BxD, "log_det": log_det}


def importance_weighted_bound(
    model: FlowVAE, variables: Any, x: jax.Array, key: jax.Array, num_samples: int = 100
) -> jax.Array:
    """The IWAE bound ``log (1/S) Σ_s w_s`` of each image, ``log w_s = log p(x, zK_s) - log q_K(zK_s|x)``:
    [B] nats. Its expectation is ``<= log p(x)`` and rises towards it as S grows (S = 1: the ELBO).

    Encodes ``x`` [B, ...] once and pushes S independent ε [S, B, latent] (from ``key``) through the flows
    and decoder; memory grows as S·B·P, so callers batch large sets.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    eps = jax.random.normal(key, (num_samples, x.shape[0], model.latent_dim))
    outputs = model.apply(variables, x, eps=eps)
    log_w_SxB = losses.flow_vae_log_weight(outputs, x)
    return jax.nn.logsumexp(log_w_SxB, axis=0) - math.log(num_samples)
