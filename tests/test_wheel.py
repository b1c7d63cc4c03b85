"""The wheel built from the repository holds everything the ``nnjax`` command needs, in a fresh venv.

The venv sees this interpreter's packages (``--system-site-packages``: jax and the rest are not installed
again, so no network is needed) but its own nnjax, from the wheel, comes first; it runs outside the
repository, so nothing is found through the working directory.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile

from conftest import REPO_ROOT

SOURCES = ("pyproject.toml", "README.md", "nnjax", "experiments")  # what the build reads; the wheel is the test


def test_a_wheel_in_a_fresh_venv_lists_and_runs_experiments_from_any_directory(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if os.path.isdir(os.path.join(REPO_ROOT, name)) else shutil.copy
        copy(os.path.join(REPO_ROOT, name), source / name,
             **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
          str(source)], tmp_path)
    (wheel,) = (tmp_path / "dist").iterdir()
    names = set(zipfile.ZipFile(wheel).namelist())
    experiments = sorted(f for f in os.listdir(os.path.join(REPO_ROOT, "experiments")) if f.endswith(".py"))
    assert {f"experiments/{f}" for f in experiments} <= names
    assert {"nnjax/__main__.py", "nnjax/data/records/__main__.py"} <= names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], tmp_path)
    python, nnjax = venv / "bin" / "python", venv / "bin" / "nnjax"
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp_path)
    where = _run([str(python), "-c", "import nnjax, experiments; print(nnjax.__file__); print(experiments.__file__)"],
                 tmp_path)
    assert all(line.startswith(str(venv)) for line in where.splitlines()), where
    listed = _run([str(nnjax), "list"], tmp_path)
    assert len(listed.splitlines()) == len(experiments) - 1  # all but __init__
    done = _run([str(nnjax), "run", "gradient_descent", "--steps", "3", "--workdir", str(tmp_path / "run")], tmp_path)
    assert json.loads(done.splitlines()[-1])["steps"] == 3


def _run(command: list[str], cwd) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout
