"""The folder tree is the architecture (DESIGN.md): imports point one way, scripts stay thin.

Each rule reads the source with ``ast`` (nothing is imported), so a violation names the file and
the import that breaks it.
"""

import ast
import os
import sys

import pytest

from conftest import REPO_ROOT

MAX_EXPERIMENT_LINES = 150

# folder -> the nnjax folders it may import (besides itself and the modules at nnjax's top: config, cli,
# distributed, errors, launch, logical_axes, losses, metrics, optim, plots, which import no folder). The
# README's layout lists the folders in this order: each uses only folders above it.
ALLOWED = {
    "nnjax.scratch": (),
    "nnjax.models": ("nnjax.scratch",),
    "nnjax.apps": (),
    "nnjax.data": ("nnjax.apps",),
    "nnjax.envs": (),
    "nnjax.train": ("nnjax.scratch",),
    "nnjax.tasks": ("nnjax.scratch", "nnjax.models", "nnjax.apps", "nnjax.data", "nnjax.envs", "nnjax.train"),
    "nnjax": (),
}
# The ``nnjax`` command (``nnjax/__main__.py``) sits above the library, as the experiments do: it may use any
# folder (it shows the data sets) and runs the experiments by name, never by import.
COMMAND = "nnjax.__main__"

def _python_files(folder: str) -> list[str]:
    """Repository-relative paths of the .py files under ``folder``."""
    found = []
    for root, _, files in os.walk(os.path.join(REPO_ROOT, folder)):
        found += [os.path.relpath(os.path.join(root, f), REPO_ROOT) for f in files if f.endswith(".py")]
    return sorted(found)


def _module_name(path: str) -> str:
    parts = path[: -len(".py")].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: str) -> set[str]:
    """Every module ``path`` imports, absolute, with ``from pkg import name`` also giving ``pkg.name``."""
    with open(os.path.join(REPO_ROOT, path), encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = _module_name(path).rsplit(".", 1)[0] if not path.endswith("__init__.py") else _module_name(path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def _is_within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _folder(module: str) -> str:
    """The entry of ``ALLOWED`` a module belongs to: its nnjax sub-package, or ``nnjax`` for the top (the command
    aside)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and ".".join(parts[:2]) in ALLOWED else "nnjax"


def test_every_library_folder_is_ruled():
    folders = {f"nnjax.{name}" for name in os.listdir(os.path.join(REPO_ROOT, "nnjax"))
               if os.path.isfile(os.path.join(REPO_ROOT, "nnjax", name, "__init__.py"))}
    assert folders | {"nnjax"} == set(ALLOWED)


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_imports_point_one_way(folder):
    paths = [p for p in _python_files("nnjax") if _folder(_module_name(p)) == folder and _module_name(p) != COMMAND]
    assert paths
    broken = [
        f"{path} imports {name}"
        for path in paths
        for name in sorted(_imports(path))
        if _is_within(name, "nnjax") and _folder(name) not in (folder, "nnjax", *ALLOWED[folder])
    ]
    assert not broken, "; ".join(broken)


def test_library_never_imports_scripts():
    broken = [
        f"{path} imports {name}"
        for path in _python_files("nnjax")
        for name in sorted(_imports(path))
        if _is_within(name, "experiments") or _is_within(name, "benchmarks")
    ]
    assert not broken, "; ".join(broken)


def test_experiments_are_thin_scripts_on_nnjax():
    paths = [p for p in _python_files("experiments") if not p.endswith("__init__.py")]
    assert len(paths) > 30
    too_long, importing = [], []
    for path in paths:
        with open(os.path.join(REPO_ROOT, path), encoding="utf-8") as f:
            lines = f.read().count("\n")
        if lines > MAX_EXPERIMENT_LINES:
            too_long.append(f"{path} ({lines} lines)")
        importing += [f"{path} imports {name}" for name in sorted(_imports(path)) if _is_within(name, "experiments")]
    assert not too_long, f"experiments over {MAX_EXPERIMENT_LINES} lines: {', '.join(too_long)}"
    assert not importing, "; ".join(importing)


def test_module_names_are_unique_and_not_standard_library():
    seen: dict[str, str] = {}
    clashes = []
    for path in _python_files("nnjax"):
        name = os.path.basename(path)[: -len(".py")]
        if name in ("__init__", "__main__"):  # a package's own entry points, found by their package's name
            continue
        if name in sys.stdlib_module_names:
            clashes.append(f"{path} has the name of a standard-library module")
        if name in seen:
            clashes.append(f"{path} and {seen[name]} share the name {name!r}")
        seen[name] = path
    assert not clashes, "; ".join(clashes)


def test_import_reader_sees_every_form():
    """The checker itself: absolute, from-, relative and package-member imports are all found."""
    names = _imports(os.path.join("tests", "test_layout.py"))
    assert {"ast", "os", "sys", "pytest", "conftest", "conftest.REPO_ROOT"} <= names
