"""nnjax's cache directory and JAX's persistent compilation cache in it (``nnjax.cache``, ``--compile-cache``)."""

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from nnjax.cache import cache_dir


@pytest.mark.parametrize("environ, expected", [
    ({"NNJAX_CACHE_DIR": "/c/nnjax", "XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/c/nnjax/jax"),
    ({"XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/x/nnjax/jax"),
    ({"HOME": "/h"}, "/h/.cache/nnjax/jax"),
])
def test_the_cache_directory_honours_nnjax_cache_dir_then_xdg_cache_home(monkeypatch, environ, expected):
    for name in ("NNJAX_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert cache_dir("jax") == expected


def test_a_run_keeps_its_compiled_programs_when_asked(tmp_path):
    def run(cache, *flags):
        env = {k: v for k, v in os.environ.items() if k != "NNJAX_COMPILE_CACHE"} | {"NNJAX_CACHE_DIR": str(cache)}
        done = subprocess.run([sys.executable, "-m", "experiments.mlp_mnist", "--data", "digits", "--steps", "2",
                               "--workdir", str(tmp_path / f"run_{cache.name}"), *flags],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return sorted(os.listdir(cache / "jax")) if (cache / "jax").is_dir() else []

    kept = run(tmp_path / "on", "--compile-cache")
    assert any(name.startswith("jit_") for name in kept), kept  # e.g. the train chunk's executable
    assert run(tmp_path / "off") == [], "off by default"
