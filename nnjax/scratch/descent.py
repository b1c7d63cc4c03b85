"""Full-batch descent on small problems: many optimizer steps in one ``lax.scan``.

The scratch demos (XOR, f(x) = x² + 5 sin x, optimizer paths on x² + y², the training-loop demo)
all minimise a function of a small params pytree with an ``optax.GradientTransformation``;
``minimize`` is that loop, written once. Data-set training goes through ``nnjax.train.fit``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import optax

Params = Any
ValueAndGrad = Callable[[Params], tuple[jax.Array, Params]]


class Descent(NamedTuple):
    """Result of ``minimize``: final params, the loss before each step [T], and the visited params.

    ``path`` stacks the params before each step and after the last one (leading axis T + 1);
    it is ``None`` unless ``keep_path=True``.
    """

    params: Params
    loss_T: jax.Array
    path: Params | None


def minimize(
    value_and_grad: ValueAndGrad,
    params: Params,
    tx: optax.GradientTransformation,
    steps: int,
    keep_path: bool = False,
) -> Descent:
    """Apply ``steps`` updates of ``tx`` using ``value_and_grad(params) -> (loss, grads)``.

    ``value_and_grad`` is ``jax.value_and_grad(loss_fn)`` or a hand-written equivalent (manual
    backprop). Runs as one jitted ``lax.scan``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return _minimize(value_and_grad, tx, steps, keep_path, params)


@jax.jit(static_argnums=(0, 1, 2, 3))
def _minimize(value_and_grad, tx, steps, keep_path, params):
    def step(carry, _):
        params, opt_state = carry
        loss, grads = value_and_grad(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        return (new_params, opt_state), (loss, params if keep_path else None)

    (params_final, _), (loss_T, visited) = jax.lax.scan(step, (params, tx.init(params)), length=steps)
    path = None
    if keep_path:
        path = jax.tree.map(lambda seq, last: jax.numpy.concatenate([seq, last[None]]), visited, params_final)
    return Descent(params_final, loss_T, path)
