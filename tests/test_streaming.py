"""Streaming input (``nnjax.data.records``): records on disk give the same rows, batches and training as memory.

Records are written from small in-memory splits (synthetic blobs, the digits through the CLI tool), so every
check compares against the arrays they came from: round trip, ``fit`` bit-identical to ``fit`` in memory (its
loop path and its scan path), a resume landing on the next batch, a changed record set refused, one-line
errors for damaged directories, and 2 processes x 2 devices reading disjoint rows whose union is the epoch.
"""

import json
import os
import sys
from pathlib import Path

import chex
import numpy as np
import pytest
from conftest import nnjax_logger_kept, blob_dataset, run_experiment

from benchmarks import streaming
from nnjax import losses
from nnjax.config import TrainConfig
from nnjax.data import epoch_batch_indices, load_dataset, records, split_validation, take
from nnjax.data.records.__main__ import main as records_main
from nnjax.errors import ConfigError, DataUnavailableError, FileFormatError, WorkdirError
from nnjax.launch import launch
from nnjax.models import MnistCNN
from nnjax.tasks import fit
from nnjax.train import read_checkpoint

MODEL = MnistCNN(num_classes=4, conv_features=4, hidden=8)
STEPS = 12  # two epochs of the 205 blob training rows (80 % of 256) in batches of 32: 6 steps each


def _write(directory, dataset, shard_bytes=records.SHARD_BYTES) -> str:
    records.write_records(str(directory), {name: records.chunks_of(getattr(dataset, name)) for name in records.SPLITS},
                          dataset.name, dataset.source, dataset.num_classes, shard_bytes=shard_bytes, progress=False)
    return str(directory)


@pytest.fixture(scope="module")
def blobs():
    return blob_dataset()


@pytest.fixture(scope="module")
def blob_records(blobs, tmp_path_factory):
    """The blobs as records in 6 training shards of 43 rows (so batches read across shards)."""
    return _write(tmp_path_factory.mktemp("blobs") / "records", blobs, shard_bytes=12_000)


def _config(workdir, **overrides) -> TrainConfig:
    fields = {"steps": STEPS, "batch_size": 32, "eval_batch_size": 50, "log_every_steps": 2, "workdir": str(workdir)}
    return TrainConfig(**fields | overrides)


def _train_losses(result) -> list[tuple[int, float]]:
    return [(row["step"], row["train_loss"]) for row in result.history if row["kind"] == "train"]


@pytest.fixture(scope="module")
def runs(blobs, blob_records, tmp_path_factory):
    """``fit`` on the records and on the same arrays in memory (loop path and scan path), uninterrupted."""
    data = load_dataset(f"records:{blob_records}")
    return {
        "records": fit(_config(tmp_path_factory.mktemp("records")), MODEL, data, losses.classification, "streaming"),
        "loop": fit(_config(tmp_path_factory.mktemp("loop"), scan_epoch=False), MODEL, blobs, losses.classification,
                    "streaming"),
        "scan": fit(_config(tmp_path_factory.mktemp("scan")), MODEL, blobs, losses.classification, "streaming"),
    }


def test_records_give_back_the_rows_they_were_written_from(blobs, blob_records):
    data = load_dataset(f"records:{blob_records}")
    assert len(data.train.files) == 6 and data.input_shape == (8, 8, 1) and data.num_classes == 4
    assert data.fingerprint.startswith("sha256 ") and "256 train, 64 test examples" in data.fingerprint
    rows = np.array([[255, 0, 3], [77, 77, 128]])
    for split in ("train", "test"):
        whole = getattr(data, split)[np.arange(len(getattr(blobs, split)["y"]))]
        for key, array in getattr(blobs, split).items():
            np.testing.assert_array_equal(whole[key], array)
            assert whole[key].dtype == array.dtype
    for key, array in take(data.train, rows).items():
        np.testing.assert_array_equal(array, blobs.train[key][rows])
    train, val = split_validation(data.train, 0.2, seed=3)
    memory_train, memory_val = split_validation(blobs.train, 0.2, seed=3)
    assert isinstance(train, records.RecordSplit) and isinstance(val, records.RecordSplit)
    for view, memory in ((train, memory_train), (val, memory_val)):
        np.testing.assert_array_equal(view[np.arange(len(view))]["x"], memory["x"])
    np.testing.assert_array_equal(train.subset(np.array([5, 1]))[np.array([1])]["y"], memory_train["y"][[1]])
    with pytest.raises(IndexError, match=r"\[0, 256\)"):
        data.train[np.array([256])]
    with pytest.raises(ConfigError, match="read from disk by row index"):
        data.train["x"]


def test_fit_on_records_is_bit_identical_to_fit_in_memory_on_both_paths(runs):
    """Same batches, same steps: losses and final parameters equal bit for bit, against fit's loop path (one
    jitted step per batch, as streaming runs) and its default scan path; the records never use the scan."""
    ours = runs["records"]
    for path in ("loop", "scan"):
        theirs = runs[path]
        assert _train_losses(ours) == _train_losses(theirs), path
        chex.assert_trees_all_equal(ours.state.params, theirs.state.params)
        assert ours.summary["test_loss"] == theirs.summary["test_loss"]
    config, memory_config = (json.loads((Path(r.summary["workdir"]) / "config.json").read_text())
                             for r in (ours, runs["loop"]))
    assert config["data_fingerprint"].startswith("sha256 ") and "data_fingerprint" not in memory_config


def test_a_resumed_run_reads_the_next_batch_and_ends_as_the_uninterrupted_one(runs, blob_records, tmp_path):
    data = load_dataset(f"records:{blob_records}")
    first = fit(_config(tmp_path, steps=4), MODEL, data, losses.classification, "streaming")
    assert first.state.step == 4
    resumed = fit(_config(tmp_path), MODEL, data, losses.classification, "streaming")  # from step 4, into epoch 2
    assert _train_losses(resumed) == _train_losses(runs["records"])
    chex.assert_trees_all_equal(resumed.state.params, runs["records"].state.params)


def test_a_resume_over_other_records_is_refused(blobs, tmp_path):
    directory = _write(tmp_path / "records", blobs)
    data = load_dataset(f"records:{directory}")
    fit(_config(tmp_path / "run", steps=2), MODEL, data, losses.classification, "streaming")
    other = blob_dataset(seed=1)
    for name in os.listdir(directory):
        os.remove(os.path.join(directory, name))
    _write(directory, other)  # same path, same --data, other rows
    with pytest.raises(WorkdirError, match=r"holds a different run \(data_fingerprint 'sha256 "):
        fit(_config(tmp_path / "run", steps=4), MODEL, load_dataset(f"records:{directory}"), losses.classification,
            "streaming")


def test_missing_unfinished_and_changed_directories_are_one_line_errors(blobs, tmp_path):
    with pytest.raises(DataUnavailableError, match="no such directory; write one with python -m nnjax.data.records"):
        load_dataset(f"records:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileFormatError, match="has no records.json"):
        load_dataset(f"records:{tmp_path / 'empty'}")
    directory = _write(tmp_path / "records", blobs)
    with pytest.raises(ConfigError, match="already holds records"):
        _write(directory, blobs)
    metadata_path = Path(directory) / records.METADATA_FILE
    metadata = json.loads(metadata_path.read_text())
    shard = Path(directory) / metadata["splits"]["train"]["shards"][0]["file"]
    raw = shard.read_bytes()

    edited = json.loads(json.dumps(metadata))
    edited["splits"]["train"]["sha256"] = "0" * 64
    metadata_path.write_text(json.dumps(edited))
    load_dataset(f"records:{directory}")  # opening checks sizes and counts only
    with pytest.raises(FileFormatError, match="the train records hash to .*, records.json says 0000"):
        records.verify(directory, progress=False)
    metadata_path.write_text(json.dumps(metadata))
    shard.write_bytes(raw[:200] + bytes(b ^ 0xFF for b in raw[200:264]) + raw[264:])  # in the first records
    with pytest.raises(FileFormatError, match="train records are damaged .*hash mismatch"):
        records.verify(directory, progress=False)
    middle = len(raw) // 2
    shard.write_bytes(raw[:middle])
    with pytest.raises(FileFormatError, match=f"has {middle} bytes, records.json says {len(raw)}"):
        load_dataset(f"records:{directory}")
    metadata_path.write_text("{not json")
    with pytest.raises(FileFormatError, match="records.json is not nnjax-records version 1 metadata"):
        load_dataset(f"records:{directory}")


@pytest.fixture(scope="module")
def digit_records(tmp_path_factory):
    """The digits written by the tool, as ``python -m nnjax.data.records write --data digits --out DIR`` does."""
    directory = str(tmp_path_factory.mktemp("digits") / "records")
    with nnjax_logger_kept():  # the tool sets up logging; later tests' caplog must still see nnjax's records
        assert records_main(["write", "--data", "digits", "--out", directory, "--shard-mb", "0.1"]) == 0
    return directory


def test_the_tool_writes_a_directory_that_load_dataset_reads(digit_records, capsys):
    digits, data = load_dataset("digits"), load_dataset(f"records:{digit_records}")
    assert (data.name, data.num_classes) == ("digits", digits.num_classes) and len(data.train.files) == 4
    for split in ("train", "test"):
        memory = getattr(digits, split)
        read = take(getattr(data, split), np.arange(len(memory["y"])))
        chex.assert_trees_all_equal(read, memory)
    capsys.readouterr()
    assert records_main(["verify", digit_records]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["train_examples"] == len(digits.train["y"])
    assert records_main(["write", "--data", "digits", "--out", digit_records]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


DIGIT_FLAGS = ("--batch-size", "64", "--eval-batch-size", "200", "--steps", "23", "--validation-fraction", "0",
               "--conv-features", "4", "--hidden", "8", "--log-every-steps", "10")
TWO_PROCESSES = """
import json, sys
from nnjax import cli
from nnjax.data.records import RecordSplit
from experiments import mnist_cnn
directory, workdir, reads_file = sys.argv[1:4]
reads, read = [], RecordSplit.__getitem__
def logged(self, indices):
    if self.name == "train":
        reads.append([int(i) for i in indices])
    return read(self, indices)
RecordSplit.__getitem__ = logged
code = cli.run(mnist_cnn.main, mnist_cnn.Config, ["--data", f"records:{directory}", "--parallel", "jit",
               "--workdir", workdir, *sys.argv[4:]], prog="mnist_cnn")
import jax
json.dump(reads, open(f"{reads_file}.{jax.process_index()}", "w"))
sys.exit(code)
"""


def test_two_processes_read_disjoint_rows_whose_union_is_the_epoch_and_train_as_one(digit_records, tmp_path):
    """2 processes x 2 CPU devices stream the digits (--parallel jit): each reads only its half of every global
    batch (init reads the first rows in both); the halves of a step are its batch and an epoch's are the epoch,
    and the run's losses and parameters match one device training on the digits in memory."""
    reads = str(tmp_path / "reads")
    code = launch([sys.executable, "-c", TWO_PROCESSES, digit_records, str(tmp_path / "run"), reads, *DIGIT_FLAGS],
                  processes=2, cpu_devices=2, timeout=120)
    assert code == 0, "the 2-process launch failed (its output is above)"
    first, second = (json.loads(Path(f"{reads}.{i}").read_text()) for i in range(2))
    assert first[0] == second[0] == list(range(64))  # init_state's sample batch
    n_train, steps = 1438, 23
    epochs = [epoch_batch_indices(n_train, 64, 0, e) for e in range(2)]
    batches = np.concatenate(epochs)[:steps]
    assert len(first) == len(second) == 1 + steps
    for step, (mine, theirs) in enumerate(zip(first[1:], second[1:])):
        assert len(mine) == len(theirs) == 32 and not set(mine) & set(theirs)
        assert mine + theirs == batches[step].tolist()
    epoch_rows = [i for reads_ in (first, second) for batch in reads_[1:23] for i in batch]
    assert sorted(epoch_rows) == sorted(epochs[0].reshape(-1).tolist())
    reference = run_experiment("experiments.mnist_cnn", "--data", "digits", "--parallel", "none", "--workdir",
                               str(tmp_path / "reference"), *DIGIT_FLAGS)
    assert reference.returncode == 0, reference.stderr

    def rows(workdir):
        return [(r["kind"], r["step"], r.get("train_loss", r.get("test_loss")))
                for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl")))]

    ours, theirs = rows(tmp_path / "run"), rows(tmp_path / "reference")
    assert [r[:2] for r in ours] == [r[:2] for r in theirs]
    np.testing.assert_allclose([r[2] for r in ours], [r[2] for r in theirs], atol=1e-5)
    params = [read_checkpoint(tmp_path / w / "checkpoints", steps)[1]["params"] for w in ("run", "reference")]
    chex.assert_trees_all_close(*params, atol=1e-5)


def test_benchmark_pieces_at_smoke_size(tmp_path):
    """The benchmark's write, its streaming worker (in this process) and its summary line. (``python -m
    benchmarks.streaming --smoke`` runs three workers in fresh interpreters: ~18 s, too slow for the suite.)"""
    size = streaming.SMOKE
    directory = str(tmp_path / "records")
    n_train = streaming.write_dataset(directory, size, streaming.bytes_per_record(str(tmp_path)))
    on_disk = sum(os.path.getsize(f) for f in load_dataset(f"records:{directory}").train.files)
    assert on_disk >= size.gb * 1e9
    worker = streaming.run_worker("streaming", directory, size, str(tmp_path / "run"))
    assert worker["train_examples"] == n_train and worker["examples_per_s"] > 0
    workers = dict.fromkeys(streaming.WORKERS, worker)
    summary = json.loads(json.dumps(streaming.summarize(size, on_disk, n_train, 1.0, workers)))
    assert summary["dataset_gb"] >= size.gb and summary["peak_rss_mb"] > 0 and summary["ratio"] > 0


def test_benchmark_refuses_in_one_line_without_the_disk_space(capsys):
    assert streaming.main(["--gb", "1e9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "GB free" in err
