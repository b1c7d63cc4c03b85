"""From-scratch building blocks in pure JAX: each is a plain function over arrays or a params pytree,
checked in the tests against an independent oracle (``jax.grad``, optax, flax, closed forms).

Import the submodule you need (``from nnjax.scratch import backprop``); nothing here imports
models, data or the trainer.
"""
