"""Full-batch descent on small problems: many optimizer steps in one ``lax.scan``.

The scratch demos (XOR, f(x) = x² + 5 sin x, optimizer paths on x² + y², the training-loop demo)
all minimise a function of a small params pytree with an ``optax.GradientTransformation``;
``minimize`` is that loop, written once. Data-set training goes through ``nnjax.tasks.fit``.
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
    steps: int | None = None,
    keep_path: bool = False,
    batches: Any = None,
) -> Descent:
    """Apply updates of ``tx`` using ``value_and_grad(params) -> (loss, grads)``, in one jitted ``lax.scan``.

    ``value_and_grad`` is ``jax.value_and_grad(loss_fn)`` or a hand-written equivalent (manual
    backprop). Without ``batches`` it runs ``steps`` full-batch steps. With ``batches`` (a pytree of
    arrays with a leading step axis T) step ``t`` calls ``value_and_grad(params, batch_t)``, and
    ``steps`` defaults to T.
    """
    if batches is not None:
        num_batches = {leaf.shape[0] for leaf in jax.tree.leaves(batches)}
        if len(num_batches) != 1:
            raise ValueError(f"batches must share one leading step axis, got lengths {sorted(num_batches)}")
        (t,) = num_batches
        if steps not in (None, t):
            raise ValueError(f"steps={steps} does not match the {t} batches given")
        steps = t
    if steps is None or steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return _minimize(value_and_grad, tx, steps, keep_path, params, batches)


@jax.jit(static_argnums=(0, 1, 2, 3))
def _minimize(value_and_grad, tx, steps, keep_path, params, batches):
    def step(carry, batch):
        params, opt_state = carry
        loss, grads = value_and_grad(params) if batches is None else value_and_grad(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        return (new_params, opt_state), (loss, params if keep_path else None)

    (params_final, _), (loss_T, visited) = jax.lax.scan(step, (params, tx.init(params)), batches, length=steps)
    path = None
    if keep_path:
        path = jax.tree.map(lambda seq, last: jax.numpy.concatenate([seq, last[None]]), visited, params_final)
    return Descent(params_final, loss_T, path)
