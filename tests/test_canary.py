"""Canary for a miscompiling jaxlib: jax-ml/jax#39103.

jaxlib 0.10.2 compiles ``jit`` of a vmapped mat-vec followed by a sum wrongly on CPU: with 32,769 rows the
last row's value comes back as 1065369600.0 instead of 1073741824.0. nnjax pins jax/jaxlib to 0.10.1
(``pyproject.toml``); this test fails CI if an upgrade brings a jaxlib that computes it wrongly, instead of
silently changing every result that goes through such a pattern.
"""

import jax
import jax.numpy as jnp
import numpy as np


def _rows(n: int) -> np.ndarray:
    """``n`` rows ``(i, 0, 0)`` in float32, shape ``[n, 3]``."""
    x = np.zeros((n, 3), np.float32)
    x[:, 0] = np.arange(n, dtype=np.float32)
    return x


def test_jit_of_vmapped_matvec_sum_matches_eager_and_closed_form():
    m = jnp.eye(3)

    def f(x_Nx3):
        return jax.vmap(lambda r: jnp.sum((m @ r) ** 2))(x_Nx3)

    x = _rows(32_769)
    compiled = np.asarray(jax.jit(f)(x))
    eager = np.asarray(f(x))
    expected = np.arange(32_769, dtype=np.float64) ** 2  # |I r|^2 = i^2, exact in float32 up to 2^24
    assert eager[-1] == 1073741824.0
    np.testing.assert_array_equal(compiled, eager, err_msg="jit differs from eager: miscompiling jaxlib (jax-ml/jax#39103)")
    np.testing.assert_allclose(compiled, expected, rtol=1e-7)
