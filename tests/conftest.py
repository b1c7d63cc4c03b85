"""Test session setup: 8 fake CPU devices (set before jax is imported) and shared helpers."""

import contextlib
import logging
import os
import subprocess
import sys
import tempfile

# The XLA flags of the process that started pytest: ``test_canary`` checks the compiler with these.
USER_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")
# Compilation is most of the suite's time. LLVM at -O0 without its expensive passes: the same HLO and the same
# XLA passes (fast math stays off, so float results do not change), ~30% less compile time. XLA:CPU's classic
# elemental IR emitter instead of its MLIR fusion emitters: at -O0 it compiles training programs ~2x faster
# (a small U-Net's step 13.6 -> 5.4 s); fused loops may sum in another order (last-bit differences).
os.environ["XLA_FLAGS"] = " ".join(
    [USER_XLA_FLAGS, "--xla_force_host_platform_device_count=8", "--xla_backend_optimization_level=0",
     "--xla_llvm_disable_expensive_passes=true", "--xla_cpu_use_fusion_emitters=false"]
).strip()
# Non-partitionable threefry (jax's default before 0.5): every random draw still comes from the same
# threefry generator, but XLA:CPU compiles the draws of a model init ~2x faster, and compilation is
# most of the suite's time. Set in the environment so CLI subprocesses and notebooks use it too.
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "false")
# Tests never fetch data (nnjax.data.packaged) and never see the user's cache: an empty one for the session,
# made by the first process (pytest-xdist's workers inherit it), so the workers share compiled programs.
os.environ["NNJAX_OFFLINE"] = "1"
os.environ.setdefault("NNJAX_TEST_CACHE_DIR", tempfile.mkdtemp(prefix="nnjax-test-cache-"))
os.environ["NNJAX_CACHE_DIR"] = os.environ["NNJAX_TEST_CACHE_DIR"]

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nnjax.cache import enable_compilation_cache  # noqa: E402
from nnjax.data import Dataset  # noqa: E402

# Tests compile the same small programs many times (every resume test trains 3 times): compile each once, in this
# process and in every process a test starts (NNJAX_COMPILE_CACHE=1: cli.run caches without the machine check).
os.environ["NNJAX_COMPILE_CACHE"] = "1"
enable_compilation_cache()

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def nnjax_logger_kept():
    """Undo ``cli.setup_logging`` on leaving (its handler writes to the stderr of the moment, and
    ``propagate=False`` would hide later logs from ``caplog``)."""
    logger = logging.getLogger("nnjax")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        yield
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture(autouse=True)
def _restore_nnjax_logger():
    """For tests that call ``cli.run`` in process themselves (``run_experiment`` restores on its own, so a
    module-scoped fixture that runs an experiment leaves the logger as it found it)."""
    with nnjax_logger_kept():
        yield


@pytest.fixture(scope="session")
def eight_devices():
    """The 8 fake CPU devices the data-parallel tests shard over."""
    devices = jax.devices()
    assert len(devices) == 8, f"expected 8 fake CPU devices, got {devices}"
    return devices


def blob_dataset(n_train: int = 256, n_test: int = 64, size: int = 8, num_classes: int = 4, seed: int = 0) -> Dataset:
    """A learnable synthetic image data set: each class is a noisy copy of its own random template."""
    rng = np.random.default_rng(seed)
    templates = rng.random((num_classes, size, size, 1), dtype=np.float32)

    def split(n):
        y = rng.integers(0, num_classes, n).astype(np.int32)
        x = np.clip(templates[y] + 0.3 * rng.standard_normal((n, size, size, 1)), 0, 1).astype(np.float32)
        return {"x": x, "y": y}

    return Dataset("blobs", "synthetic class templates + noise", split(n_train), split(n_test), num_classes)


def _torchvision():
    """(torch, torchvision), or None when either is missing or broken (a CUDA torchvision on a CPU torch
    raises RuntimeError on import, so any exception counts)."""
    try:
        import torch
        import torchvision

        return torch, torchvision
    except Exception:  # noqa: BLE001 - any import failure means: no usable torchvision here
        return None


TV = _torchvision()
needs_torchvision = pytest.mark.skipif(TV is None, reason="torch/torchvision missing or broken in this env")


def run_cli(*args: str, timeout: float = 300, optimized: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <args>`` from the repo root and capture its output. ``optimized``: with XLA's default
    optimisation instead of the suite's -O0 (for a run whose training, not its compile, takes the time)."""
    env = dict(os.environ, XLA_FLAGS=f"{USER_XLA_FLAGS} --xla_force_host_platform_device_count=8".strip()) if optimized else None
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def run_experiment(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run experiment ``module`` with command-line ``args`` in this process, as ``python -m module args``
    would (``cli.run`` on its ``main`` and ``Config``), and capture its exit code, stdout and stderr.
    In process, an experiment skips the ~4 s of imports a fresh interpreter pays; ``run_cli`` is for
    what only a real process shows (exit status, signals)."""
    import importlib
    import io

    from nnjax import cli

    experiment = importlib.import_module(module)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), nnjax_logger_kept():
        try:
            code = cli.run(experiment.main, experiment.Config, list(args), prog=module.rsplit(".", 1)[-1])
        except SystemExit as exit:  # argparse's own errors and --help
            code = exit.code
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())
