"""The chain rule, made visible with jax (seed 003·4).

Two views of the same rule:

* a composition of scalar functions ``F = f_n ∘ … ∘ f_1``: a forward pass records the intermediate
  values ``u_0 = x, u_k = f_k(u_{k-1})``; each local derivative ``f_k'(u_{k-1})`` comes from
  ``jax.grad`` of that single function; their product is ``F'(x)`` (``chain_derivative``);
* the seed's ``h(x, y, z) = exp(x² + y²) · sin(z)``, whose partials are derived by hand as products
  of local derivatives (``h_partials``), where the seed used SymPy.

Both are checked in the tests against ``jax.grad`` of the whole function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

ScalarFn = Callable[[jax.Array], jax.Array]

SCALAR_FUNCTIONS: dict[str, ScalarFn] = {
    "square": jnp.square,
    "sin": jnp.sin,
    "cos": jnp.cos,
    "exp": jnp.exp,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
}
"""Named scalar functions to build compositions from (``experiments.chain_rule --chain``)."""


class ChainTrace(NamedTuple):
    """Forward and backward quantities of ``F = f_n ∘ … ∘ f_1`` at one point ``x``.

    ``values_N1`` holds ``u_0 = x, u_1, …, u_n = F(x)`` ([n + 1]); ``local_derivatives_N`` holds
    ``f_k'(u_{k-1})`` for k = 1..n ([n]); ``derivative`` is their product, ``F'(x)`` (scalar).
    """

    values_N1: jax.Array
    local_derivatives_N: jax.Array
    derivative: jax.Array


def compose(fns: Sequence[ScalarFn]) -> ScalarFn:
    """``x -> f_n(…f_1(x))`` for ``fns = (f_1, …, f_n)`` (applied first to last)."""
    if not fns:
        raise ValueError("fns must hold at least one function, got an empty sequence")
    fns = tuple(fns)

    def composite(x: jax.Array) -> jax.Array:
        for f in fns:
            x = f(x)
        return x

    return composite


def chain_derivative(fns: Sequence[ScalarFn], x: jax.Array) -> ChainTrace:
    """Derivative of ``compose(fns)`` at scalar ``x`` as the product of local derivatives.

    Forward pass: ``u_k = f_k(u_{k-1})``. Each local derivative ``f_k'(u_{k-1})`` is ``jax.grad(f_k)``
    of that one function at its own input, so no derivative ever sees the whole composition; the
    chain rule is the product ``F'(x) = Π_k f_k'(u_{k-1})``. Works under ``jit`` and ``vmap``.
    """
    if not fns:
        raise ValueError("fns must hold at least one function, got an empty sequence")
    u = jnp.asarray(x, dtype=float)
    if u.ndim != 0:
        raise ValueError(f"x must be a scalar, got shape {u.shape}; vmap chain_derivative over arrays")
    values, local = [u], []
    for f in fns:
        local.append(jax.grad(f)(u))
        u = f(u)
        values.append(u)
    local_N = jnp.stack(local)
    return ChainTrace(jnp.stack(values), local_N, jnp.prod(local_N))


def h(x: jax.Array, y: jax.Array, z: jax.Array) -> jax.Array:
    """The seed's composite function ``h = f · g`` with ``f = exp(x² + y²)`` and ``g = sin(z)``."""
    return jnp.exp(x**2 + y**2) * jnp.sin(z)


def h_partials(x: jax.Array, y: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Hand-derived ``(∂h/∂x, ∂h/∂y, ∂h/∂z)`` by the chain and product rules.

    With ``u = x² + y²``, ``f = exp(u)``, ``g = sin(z)`` and ``h = f · g``:

    * ∂h/∂x = g · (df/du) · (∂u/∂x) = sin(z) · exp(x² + y²) · 2x
    * ∂h/∂y = g · (df/du) · (∂u/∂y) = sin(z) · exp(x² + y²) · 2y
    * ∂h/∂z = f · (dg/dz)           = exp(x² + y²) · cos(z)
    """
    f = jnp.exp(x**2 + y**2)
    df_du = f
    g = jnp.sin(z)
    return g * df_du * 2 * x, g * df_du * 2 * y, f * jnp.cos(z)
