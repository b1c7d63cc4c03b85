"""Every kind of bad input is one line on stderr and exit code 2, within seconds (the README's table).

The run-directory rows (a workdir that is a file, read-only, without permission, in use, holding another
run) are in ``test_rundir.py``.
"""

import dataclasses
import errno
import importlib
import json
import os
import pkgutil
import socket
import time
import typing

import numpy as np
import pytest
from conftest import run_experiment
from hypothesis import given, settings
from hypothesis import strategies as st

import experiments
from nnjax.config import TrainConfig, _scalar_type, field_metadata, make_workdir, parse_config
from nnjax.data import sources
from nnjax.errors import ConfigError, DataUnavailableError, WorkdirError

CONFIGS = {
    module.name: importlib.import_module(f"experiments.{module.name}").Config
    for module in pkgutil.iter_modules(experiments.__path__)
}


def int_fields(config_cls) -> list[tuple[str, int]]:
    """(name, least accepted value) of every int field of ``config_cls``."""
    hints = typing.get_type_hints(config_cls)
    fields = [field.name for field in dataclasses.fields(config_cls) if _scalar_type(hints[field.name]) is int]
    return [(name, 1 if (least := field_metadata(config_cls, name, "minimum")) is None else least) for name in fields]


def one_line_error(module: str, *args: str, message: str, seconds: float = 10.0) -> str:
    """Run experiment ``module`` with ``args`` (in process, as ``python -m``): it must exit 2 within ``seconds``
    with one stderr line (log lines aside) holding ``message``; returns that line."""
    start = time.perf_counter()
    done = run_experiment(module, *args)
    elapsed = time.perf_counter() - start
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("[nnjax")]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    return lines[0]


def test_every_experiment_has_int_fields_to_check():
    assert len(CONFIGS) >= 35
    assert sum(len(int_fields(cls)) for cls in CONFIGS.values()) > 200


@pytest.mark.parametrize("name", sorted(CONFIGS))
@settings(max_examples=8, deadline=None)
@given(below=st.integers(1, 10**12))
def test_every_size_field_refuses_values_below_its_minimum(name, below):
    """Every int field of every experiment: its minimum (1 unless the field says 0 is a sentinel) passes the
    field check, anything below it is a ConfigError naming the flag, before any data or model is touched."""
    config_cls = CONFIGS[name]
    for field, least in int_fields(config_cls):
        flag = field.replace("_", "-")
        dataclasses.replace(config_cls(), **{field: least})
        with pytest.raises(ConfigError, match=f"^--{flag} must be >= {least}"):
            parse_config(config_cls, [f"--{flag}={least - below}"])


@pytest.mark.parametrize(
    "args, message",
    [
        (("--hidden", "0"), "--hidden must be >= 1, got 0"),
        (("--conv-features", "-3"), "--conv-features must be >= 1, got -3"),
        (("--steps", "-1"), "--steps must be >= 0 (0: train --epochs whole epochs"),
    ],
)
def test_size_flags_are_one_line(args, message):
    one_line_error("experiments.mnist_cnn", *args, "--workdir", "/tmp/nnjax-never-written", message=message)
    assert not os.path.exists("/tmp/nnjax-never-written")


@pytest.mark.parametrize("code, problem", [(errno.EROFS, "it is on a read-only file system"),
                                           (errno.ENOSPC, "no space left on the device")])
def test_workdir_on_a_read_only_or_full_file_system_is_one_line(tmp_path, monkeypatch, code, problem):
    """No read-only mount exists in CI, so the file system's answer is what is faked."""
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "makedirs", refuse)
    with pytest.raises(WorkdirError, match=f"cannot be used: {problem}$"):
        make_workdir(TrainConfig(workdir=str(tmp_path / "run")), "test")


@pytest.fixture(scope="module")
def resnet18_npz(tmp_path_factory):
    """A ResNet-18 state_dict (torch names and layouts, 10 classes) as a numpy .npz, made without torch."""
    import jax
    import jax.numpy as jnp

    from nnjax.models.resnet import resnet
    from nnjax.models.torch_import import resnet_params_to_torch

    variables = jax.eval_shape(resnet("resnet18", 10).init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    zeros = jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), variables)
    path = tmp_path_factory.mktemp("weights") / "resnet18.npz"
    np.savez(path, **resnet_params_to_torch(zeros))
    return str(path)


def test_classify_image_refuses_a_text_file_as_weights(tmp_path):
    text = tmp_path / "weights.pth"
    text.write_text("not weights\n")
    one_line_error("experiments.classify_image", "--weights", str(text), seconds=5,
                   message="is neither a PyTorch state_dict (torch.save) nor a numpy .npz archive")


def test_classify_image_names_the_architecture_resnet18_weights_belong_to(resnet18_npz):
    line = one_line_error("experiments.classify_image", "--weights", resnet18_npz, seconds=30,
                          message="resnet50 expects")
    assert line.endswith("these are resnet18 weights (pass --arch resnet18)")


def test_classify_image_refuses_a_file_that_is_not_an_image(resnet18_npz, tmp_path):
    text = tmp_path / "cat.jpg"
    text.write_text("meow\n")
    weights = ("--weights", resnet18_npz, "--arch", "resnet18")
    one_line_error("experiments.classify_image", *weights, "--image", str(text), seconds=30,
                   message=f"image file {text} is not an image PIL can read")
    one_line_error("experiments.classify_image", *weights, "--labels", str(tmp_path / "missing.txt"), seconds=30,
                   message=f"--labels {tmp_path / 'missing.txt'} is not a file")


@pytest.mark.parametrize("prompt, message", [("\\x", "--prompt has the unknown escape \\x; the escapes are"),
                                             ("KING\\", "--prompt has a trailing \\")])
def test_char_lm_prompt_escapes_are_checked_before_anything_runs(prompt, message):
    one_line_error("experiments.char_lm", "--sample", "--workdir", "/tmp/nnjax-never-written", "--prompt", prompt,
                   message=message, seconds=5)


@pytest.fixture(scope="module")
def accented_run(tmp_path_factory):
    """A tiny char LM trained on a text with accented characters (2 steps: only its vocabulary matters)."""
    root = tmp_path_factory.mktemp("accented")
    text = root / "text.txt"
    text.write_text("Café crème, naïve façade.\n" * 40, encoding="utf-8")
    workdir = str(root / "run")
    done = run_experiment(
        "experiments.char_lm", "--text-file", str(text), "--workdir", workdir, "--steps", "2", "--block-size", "16",
        "--d-model", "16", "--num-heads", "2", "--num-layers", "1", "--batch-size", "4", "--num-samples", "0",
        "--eval-batch-size", "64",
    )
    assert done.returncode == 0, done.stderr
    return str(text), workdir


def test_char_lm_prompts_are_text_with_escapes(accented_run):
    """'Café' reaches the model as the four characters typed (not 'CafÃ©'), and \\n is a newline."""
    _, workdir = accented_run
    done = run_experiment("experiments.char_lm", "--sample", "--workdir", workdir, "--prompt", "Café\\nnaïve",
                          "--max-new-tokens", "3", "--num-samples", "2")
    assert done.returncode == 0, done.stderr
    samples = json.loads(done.stdout.strip().splitlines()[-1])["samples"]
    assert len(samples) == 2 and all(s.startswith("Café\nnaïve") and len(s) == 13 for s in samples), samples


def test_char_lm_a_prompt_character_outside_the_vocabulary_is_one_line(accented_run):
    text, workdir = accented_run
    one_line_error("experiments.char_lm", "--sample", "--workdir", workdir, "--prompt", "Zürich",
                   message="--prompt has the character 'Z' (U+005A) that the model's")
    one_line_error("experiments.char_lm", "--text-file", text, "--workdir", workdir + "-new", "--prompt", "ü",
                   message="--prompt has the character 'ü' (U+00FC)")
    assert not os.path.exists(os.path.join(workdir + "-new", "checkpoints")), "refused before training"


def test_network_probe_answers_within_its_timeout(monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert sources.network_reachable(server.getsockname(), timeout_s=2.0)
        closed_port = server.getsockname()
    assert not sources.network_reachable(closed_port, timeout_s=2.0)
    def hang(*args, **kwargs):  # a name lookup that hangs for longer than the timeout
        time.sleep(5)
        raise OSError("no answer")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    assert not sources.network_reachable(("nnjax.invalid", 443), timeout_s=0.5)
    assert time.perf_counter() - start < 1.5


def test_download_without_network_is_one_line_within_seconds(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "network_reachable", lambda: False)
    data_dir = tmp_path / "tfds"
    one_line_error("experiments.mnist_cnn", "--data", "mnist", "--download", "--data-dir", str(data_dir),
                   "--workdir", str(tmp_path / "run"),
                   message="--download needs network, and storage.googleapis.com:443 cannot be reached")
    assert not data_dir.exists() or not any(data_dir.rglob("*"))


def test_a_failed_download_leaves_nothing_half_written(tmp_path, monkeypatch):
    """The download is cut off after writing part of its files: the data directory is as it was before."""
    import tensorflow_datasets as tfds

    data_dir = tmp_path / "tfds"
    (data_dir / "other").mkdir(parents=True)
    (data_dir / "other" / "kept.txt").write_text("a data set prepared earlier")
    monkeypatch.setattr(sources, "network_reachable", lambda: True)

    def cut_off(self, download_dir=None, **kwargs):
        partial = os.path.join(self.data_dir, "incomplete.ABC123")
        os.makedirs(partial)
        with open(os.path.join(partial, "mnist-train.array_record-00000-of-00001"), "wb") as f:
            f.write(b"\0" * 1000)
        os.makedirs(download_dir, exist_ok=True)
        open(os.path.join(download_dir, "train-images-idx3-ubyte.gz.tmp"), "wb").close()
        raise ConnectionError("Connection reset by peer\nmore lines of the library's own")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", cut_off)
    with pytest.raises(DataUnavailableError, match=r"--download of 'mnist' failed \(ConnectionError: Connection reset "
                                                   r"by peer\); nothing was written to"):
        sources.download_tfds("mnist", str(data_dir))
    assert sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*")) == ["other", "other/kept.txt"]
