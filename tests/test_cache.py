"""nnjax's cache directory and JAX's persistent compilation cache in it (``nnjax.cache``, on by default where the
machine check passes, ``--no-compile-cache``)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from nnjax import cache as nnjax_cache
from nnjax import cli
from nnjax.cache import cache_dir, compilation_cache_fault
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


def test_a_run_checks_the_machine_once_then_keeps_its_compiled_programs_by_default(tmp_path, monkeypatch):
    """The real probe (a child process) and a real run: programs are kept where the machine passes the check,
    and where it does not (jaxlib 0.10.1 on some CPUs) the run says why and keeps none."""
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "NNJAX_COMPILE_CACHE"} | {"NNJAX_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-m", "experiments.mlp_mnist", "--data", "digits", "--steps", "2",
                           "--workdir", str(tmp_path / "run")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "checking once that this machine's XLA loads the programs it caches" in done.stderr
    (verdict,) = [name for name in os.listdir(cache / "jax.probe") if name.startswith("verdict-")]
    fault = json.loads((cache / "jax.probe" / verdict).read_text())["fault"]
    if fault is None:
        kept = sorted(os.listdir(cache / "jax"))
        assert any(name.startswith("jit_") for name in kept), kept  # e.g. the train chunk's executable
    else:
        assert f"compiled programs are not cached on this machine: {fault}" in done.stderr
        assert not os.path.exists(cache / "jax")
    monkeypatch.setattr(nnjax_cache.subprocess, "run", lambda *a, **k: pytest.fail("probed a second time"))
    assert compilation_cache_fault(str(cache / "jax")) == fault  # read from the verdict
    monkeypatch.undo()  # a new verdict (a new jaxlib or CPU) probes again: the first probe's program must not count
    os.remove(cache / "jax.probe" / verdict)
    assert compilation_cache_fault(str(cache / "jax")) == fault


def _fake_probe(monkeypatch, stderr: str, stdout: str = "1\n", returncode: int = 0) -> list:
    calls = []

    def run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, returncode, stdout, stderr)

    monkeypatch.setattr(nnjax_cache.subprocess, "run", run)
    return calls


@pytest.mark.parametrize("stderr, stdout, returncode, fault", [
    ("", "1\n", 0, None),
    ("E1207 23:48:04.921813  7675 cpu_aot_loader.cc:195] Loading XLA:CPU AOT result. Target machine feature "
     "+prefer-no-gather is not supported on the host machine.\n", "1\n", 0, "openxla/xla#44565"),
    ("", "0\n", 0, "did not load the program it had just cached"),
    ("Traceback ...\nRuntimeError: broken\n", "", 1, "the probe failed: RuntimeError: broken"),
])
def test_the_machine_verdict_is_kept_and_a_fault_leaves_the_cache_off(monkeypatch, tmp_path, stderr, stdout,
                                                                      returncode, fault):
    calls = _fake_probe(monkeypatch, stderr, stdout, returncode)
    enabled = []
    monkeypatch.setattr(nnjax_cache, "enable_compilation_cache", lambda directory: enabled.append(directory) or directory)
    directory = str(tmp_path / "jax")
    for _ in range(2):  # the second call reads the verdict: no second probe
        got = nnjax_cache.default_compilation_cache(directory)
        assert (got is None) == (fault is not None)
        verdict = nnjax_cache.compilation_cache_fault(directory)
        assert verdict is None if fault is None else fault in verdict
    assert len(calls) == 1 and not os.path.exists(calls[0][-1])  # the probe's scratch cache: a temporary directory
    assert enabled == ([] if fault else [directory, directory])


@pytest.mark.parametrize("flags, environ, probed, forced", [
    ([], {}, True, False),
    (["--compile-cache"], {}, True, False),
    (["--no-compile-cache"], {}, False, False),
    ([], {"NNJAX_COMPILE_CACHE": "0"}, False, False),
    ([], {"NNJAX_COMPILE_CACHE": "1"}, False, True),
    (["--no-compile-cache"], {"NNJAX_COMPILE_CACHE": "1"}, False, False),
])
def test_the_cache_is_on_by_default_unless_the_flag_or_the_environment_turns_it_off(monkeypatch, flags, environ,
                                                                                   probed, forced):
    """The wiring in ``cli.run`` (the tests above show what the default and a forced cache do)."""
    calls = []
    monkeypatch.delenv("NNJAX_COMPILE_CACHE", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli, "default_compilation_cache", lambda: calls.append("default"))
    monkeypatch.setattr(cli, "enable_compilation_cache", lambda: calls.append("forced"))
    assert cli.run(lambda config: {}, RunConfig, [*flags, "--workdir", "/tmp/nnjax-never-written"]) == 0
    assert calls == ["default"] * probed + ["forced"] * forced


def test_a_verdict_that_cannot_be_kept_is_checked_again_and_the_run_goes_on(monkeypatch, tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    directory = str(blocked / "jax")  # its .probe directory cannot be made
    calls = _fake_probe(monkeypatch, "")
    monkeypatch.setattr(nnjax_cache, "enable_compilation_cache", lambda directory: directory)
    with caplog.at_level("INFO", logger="nnjax.cache"):
        assert nnjax_cache.default_compilation_cache(directory) == directory
        assert nnjax_cache.default_compilation_cache(directory) == directory
    assert len(calls) == 2 and "could not keep the verdict" in caplog.text
