"""Training memory of ``TransformerLM`` under each rematerialisation policy, and what remat costs.

    python -m benchmarks.memory

For every ``remat`` policy of ``nnjax.models.transformer.REMAT_POLICIES`` (none, full, dots,
dots_no_batch), on one random batch of token ids:

* ``residual_bytes``: what autodiff keeps from the forward pass for the backward pass (the leaves
  of ``jax.vjp``'s closure, shapes only: activations plus the parameters the backward pass reads).
  This is what a policy decides, whatever the backend.
* XLA's compiled memory analysis of the library's training step (``make_train_step`` with AdamW,
  the state donated as ``nnjax.tasks.fit`` does): bytes of arguments, outputs, aliased (donated)
  buffers and temporaries, and the peak estimate ``argument + output - alias + temp``.
  Temporaries hold the live activations and scratch, so remat shrinks them only when the backend
  schedules each block's recomputation inside the backward pass. XLA:CPU's default scheduler
  places it next to the block's forward pass (both need only the block's input), so on a CPU the
  recomputed activations live as long as saved ones would and ``temp_bytes`` does not drop.
* ``step_s``: the median wall time of the compiled step (remat recomputes, so it costs time).
* ``grad_max_abs_diff``: the largest difference between this policy's gradients and the first
  policy's (remat must not change them beyond float rounding).

The default size (batch 16, block 256, width 256, 4 layers, 4 heads, vocabulary 65) makes
activations dominate the 3.2 M parameters while compiling in seconds on a CPU. The last stdout
line is one JSON object with these figures per policy and their ratios to the first policy.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.char_lm import Size, add_size_flags, lm_loss, size_of
from nnjax.models.transformer import REMAT_POLICIES, TransformerLM
from nnjax.train.state import TrainState, create_train_state
from nnjax.train.steps import make_train_step


DEFAULT_SIZE = Size(block_size=256, d_model=256, batch_size=16)  # activations dominate the step's memory


def model_of(size: Size, remat: str) -> TransformerLM:
    """``TransformerLM`` of this size with one remat policy (d_ff = 4·d_model, no dropout)."""
    return TransformerLM(size.vocab_size, size.block_size, size.d_model, size.num_heads, size.num_layers, remat=remat)


def random_batch(size: Size, seed: int = 0) -> dict[str, jax.Array]:
    """Random token ids ``x`` and targets ``y``, int32 [batch, block]."""
    x_key, y_key = jax.random.split(jax.random.key(seed))
    shape = (size.batch_size, size.block_size)
    return {"x": jax.random.randint(x_key, shape, 0, size.vocab_size), "y": jax.random.randint(y_key, shape, 0, size.vocab_size)}


def mean_loss_fn(size: Size, remat: str, batch: dict[str, jax.Array]):
    """``params -> scalar`` mean training loss of the model under ``remat`` on ``batch``."""
    model = model_of(size, remat)
    return lambda params: lm_loss(model.apply({"params": params}, batch["x"], train=True), batch)["loss"].mean()


def residual_bytes(loss_fn, params) -> int:
    """Bytes of the residuals ``jax.vjp(loss_fn, params)`` saves for the backward pass (traced, not run)."""
    residuals = jax.eval_shape(lambda p: jax.vjp(loss_fn, p)[1], params)
    return int(sum(np.prod(r.shape) * r.dtype.itemsize for r in jax.tree.leaves(residuals)))


def initial_state(size: Size, batch: dict[str, jax.Array]) -> TrainState:
    """AdamW train state of the model (its parameters are the same under every remat policy)."""
    return create_train_state(model_of(size, "none"), optax.adamw(1e-3), batch["x"], jax.random.key(0))


def compiled_step(state: TrainState, batch: dict[str, jax.Array]):
    """The library's train step for ``state``'s model, compiled for ``batch`` with the state donated."""
    return jax.jit(make_train_step(lm_loss), donate_argnums=0).lower(state, batch).compile()


def memory_figures(compiled) -> dict[str, int]:
    """Bytes of a compiled step's arguments, outputs, aliased buffers, temporaries and their peak."""
    stats = compiled.memory_analysis()
    figures = {
        "argument_bytes": stats.argument_size_in_bytes,
        "output_bytes": stats.output_size_in_bytes,
        "alias_bytes": stats.alias_size_in_bytes,
        "temp_bytes": stats.temp_size_in_bytes,
    }
    figures["peak_bytes"] = figures["argument_bytes"] + figures["output_bytes"] - figures["alias_bytes"] + figures["temp_bytes"]
    return figures


def step_seconds(state, step, batch: dict[str, jax.Array], steps: int) -> float:
    """Median wall seconds of one compiled training step over ``steps`` runs after one warm-up run."""
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def max_abs_diff(a, b) -> float:
    """Largest absolute elementwise difference between two pytrees of the same structure."""
    return float(max(np.max(np.abs(np.asarray(x) - np.asarray(y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)))


def policy_gradients(size: Size, policies: tuple[str, ...], params, batch: dict[str, jax.Array]) -> dict:
    """``{policy: gradients of the mean loss at params}``, all policies in one compiled function."""
    return jax.jit(lambda p: {remat: jax.grad(mean_loss_fn(size, remat, batch))(p) for remat in policies})(params)


def measure_policy(size: Size, remat: str, state: TrainState, batch: dict[str, jax.Array], steps: int) -> dict:
    """One policy's residual bytes, compiled memory figures and step time.

    ``state`` is left intact: the timed steps run on a copy (the step donates its input state).
    """
    state = jax.tree.map(jnp.copy, state).replace(apply_fn=model_of(size, remat).apply)
    step = compiled_step(state, batch)
    figures = {"residual_bytes": residual_bytes(mean_loss_fn(size, remat, batch), state.params), **memory_figures(step)}
    figures["step_s"] = round(step_seconds(state, step, batch, steps), 4)
    return figures


def measure(size: Size, policies: tuple[str, ...], steps: int) -> dict:
    """The JSON object: size, backend, and per policy its figures plus ratios to the first policy's."""
    batch = random_batch(size)
    state = initial_state(size, batch)
    grads = policy_gradients(size, policies, state.params, batch)
    result: dict[str, object] = {"benchmark": "memory", **asdict(size), "backend": jax.default_backend(),
                                 "num_params": sum(p.size for p in jax.tree.leaves(state.params))}
    base = policies[0]
    for remat in policies:
        figures = measure_policy(size, remat, state, batch, steps)
        figures["grad_max_abs_diff"] = max_abs_diff(grads[remat], grads[base])
        if remat != base:
            for key in ("residual_bytes", "temp_bytes", "peak_bytes", "step_s"):
                figures[f"{key}_ratio"] = round(figures[key] / result[base][key], 3)
        result[remat] = figures
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_size_flags(parser, DEFAULT_SIZE)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per policy (after one warm-up step)")
    parser.add_argument("--policies", default=",".join(REMAT_POLICIES), help="comma-separated; ratios are to the first")
    args = parser.parse_args(argv)
    policies = tuple(args.policies.split(","))
    unknown = set(policies) - set(REMAT_POLICIES)
    if unknown:
        parser.error(f"--policies must be drawn from {tuple(REMAT_POLICIES)}, got {sorted(unknown)}")
    print(json.dumps(measure(size_of(args), policies, args.steps)))


if __name__ == "__main__":
    main()
