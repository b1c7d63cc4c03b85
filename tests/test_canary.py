"""Canary for a miscompiling jaxlib: jax-ml/jax#39103.

jaxlib 0.10.2 compiles ``jit`` of a vmapped mat-vec followed by a sum wrongly on CPU: with 32,769 rows the
last row's value comes back as 1065369600.0 instead of 1073741824.0. nnjax pins jax/jaxlib to 0.10.1
(``pyproject.toml``); this test fails CI if an upgrade brings a jaxlib that computes it wrongly, instead of
silently changing every result that goes through such a pattern. It checks the compiler twice: as the tests
configure it (LLVM -O0, see ``conftest``) and, in a fresh process, with the XLA flags a user runs with.
"""

import os
import subprocess
import sys

from conftest import USER_XLA_FLAGS

# |I r|^2 per row for the rows (i, 0, 0), i < 32,769: jit against eager and the closed form i^2 (exact in
# float32 up to 2^24). A string, so that a fresh process runs it without the test session's setup.
CHECK = """
import jax
import jax.numpy as jnp
import numpy as np

m = jnp.eye(3)
f = lambda x_Nx3: jax.vmap(lambda r: jnp.sum((m @ r) ** 2))(x_Nx3)
x = np.zeros((32_769, 3), np.float32)
x[:, 0] = np.arange(32_769, dtype=np.float32)
compiled, eager = np.asarray(jax.jit(f)(x)), np.asarray(f(x))
assert eager[-1] == 1073741824.0
np.testing.assert_array_equal(compiled, eager, err_msg="jit differs from eager: miscompiling jaxlib (jax-ml/jax#39103)")
np.testing.assert_allclose(compiled, np.arange(32_769, dtype=np.float64) ** 2, rtol=1e-7)
"""


def test_jit_of_vmapped_matvec_sum_matches_eager_and_closed_form():
    exec(CHECK, {})


def test_the_same_with_the_users_xla_flags():
    done = subprocess.run(
        [sys.executable, "-c", CHECK], env={**os.environ, "XLA_FLAGS": USER_XLA_FLAGS},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
