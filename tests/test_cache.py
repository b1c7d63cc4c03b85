"""nnjax's cache directory and JAX's persistent compilation cache in it (``nnjax.cache``, ``--compile-cache``)."""

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from nnjax import cli
from nnjax.cache import cache_dir
from nnjax.config import RunConfig


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
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "NNJAX_COMPILE_CACHE"} | {"NNJAX_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-m", "experiments.mlp_mnist", "--data", "digits", "--steps", "2",
                           "--workdir", str(tmp_path / "run"), "--compile-cache"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    kept = sorted(os.listdir(cache / "jax"))
    assert any(name.startswith("jit_") for name in kept), kept  # e.g. the train chunk's executable


@pytest.mark.parametrize("flags, environ, enabled", [
    ([], {}, False),
    (["--compile-cache"], {}, True),
    ([], {"NNJAX_COMPILE_CACHE": "1"}, True),
])
def test_the_cache_is_off_unless_the_flag_or_the_environment_asks(monkeypatch, flags, environ, enabled):
    """The wiring in ``cli.run`` (the test above shows that an enabled cache really keeps programs)."""
    calls = []
    monkeypatch.delenv("NNJAX_COMPILE_CACHE", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli, "enable_compilation_cache", lambda: calls.append(True))
    assert cli.run(lambda config: {}, RunConfig, [*flags, "--workdir", "/tmp/nnjax-never-written"]) == 0
    assert calls == ([True] if enabled else [])
