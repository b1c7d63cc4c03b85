"""Environments in pure JAX (reset/step functions that run under ``jit``, ``vmap`` and ``lax.scan``)."""
