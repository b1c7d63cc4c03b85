"""A run directory is one run: identity check on resume, --restart, damaged checkpoints, the lock, lost history,
and workdirs that cannot be written (issue 15, section 1). Oracle: an uninterrupted run of the same settings."""

import json
import logging
import os
import subprocess
import sys

import chex
import jax
import pytest
from conftest import blob_dataset

from nnjax import losses
from nnjax.config import TrainConfig, make_workdir
from nnjax.errors import WorkdirError
from nnjax.models import MLP
from nnjax.tasks import fit
from nnjax.train.rundir import open_run_directory

DATA = blob_dataset(n_train=96, n_test=32)


def _config(workdir, **overrides):
    """76 training examples (after the validation split) in batches of 16: 4 steps an epoch."""
    fields = dict(epochs=2, batch_size=16, log_every_steps=2, checkpoint_every_steps=3, eval_batch_size=32,
                  workdir=str(workdir))
    return TrainConfig(**(fields | overrides))


def _fit(workdir, **overrides):
    return fit(_config(workdir, **overrides), MLP(features=(8, 4)), DATA, losses.classification, "test")


def _same_state(a, b):
    chex.assert_trees_all_equal(*(jax.tree.leaves(jax.device_get(r.state)) for r in (a, b)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 3-epoch run (12 steps; checkpoints every 3 steps and every epoch)."""
    return _fit(tmp_path_factory.mktemp("reference") / "run", epochs=3)


def test_changed_settings_are_refused_and_config_json_kept(tmp_path):
    _fit(tmp_path, epochs=1)
    before = (tmp_path / "config.json").read_text()
    with pytest.raises(WorkdirError) as err:
        _fit(tmp_path, epochs=2, batch_size=32, learning_rate=0.01)
    message = str(err.value)
    assert "--batch-size 16 there, 32 now" in message and "--learning-rate 0.001 there, 0.01 now" in message
    assert "--epochs" not in message and "new --workdir" in message and "--restart" in message
    assert "\n" not in message
    assert (tmp_path / "config.json").read_text() == before


def test_more_epochs_and_other_intervals_resume_into_the_uninterrupted_run(tmp_path, reference):
    _fit(tmp_path, epochs=1, log_every_steps=5, checkpoint_every_steps=0, keep_checkpoints=1, eval_batch_size=16)
    resumed = _fit(tmp_path, epochs=3)
    _same_state(resumed, reference)
    assert resumed.summary["test_accuracy"] == reference.summary["test_accuracy"]
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 3


def test_fewer_steps_than_trained_are_refused(tmp_path):
    _fit(tmp_path, epochs=2)
    with pytest.raises(WorkdirError, match="has trained 8 steps, more than the 4 this run asks for"):
        _fit(tmp_path, epochs=1)


def test_restart_discards_the_earlier_run(tmp_path, reference):
    _fit(tmp_path, epochs=1, batch_size=32)
    restarted = _fit(tmp_path, epochs=3, restart=True)
    _same_state(restarted, reference)
    assert [row["step"] for row in restarted.history] == [row["step"] for row in reference.history]


def test_checkpoints_without_config_json_are_refused(tmp_path):
    _fit(tmp_path, epochs=1)
    os.remove(tmp_path / "config.json")
    with pytest.raises(WorkdirError, match="has checkpoints but no config.json"):
        _fit(tmp_path, epochs=2)


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    else:
        for i in range(len(data) // 3, len(data) // 3 + 8):
            data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_run_ends_as_uninterrupted(tmp_path, reference, how, caplog):
    _fit(tmp_path, epochs=2)  # checkpoints 4, 6, 8 kept
    newest = tmp_path / "checkpoints" / "8" / "state"
    for file in sorted(p for p in newest.rglob("*") if p.is_file() and p.stat().st_size > 100):
        _damage(file, how)  # every data file of the newest checkpoint: whichever orbax reads is damaged
    with caplog.at_level(logging.WARNING, logger="nnjax"):
        resumed = _fit(tmp_path, epochs=3)
    warnings = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("checkpoint step 8 is damaged"), warnings
    assert (tmp_path / "checkpoints_damaged" / "8").is_dir()
    _same_state(resumed, reference)
    assert resumed.history == reference.history


def test_a_second_run_in_a_locked_directory_exits_at_once_naming_the_holder(tmp_path):
    with open_run_directory(_config(tmp_path, epochs=1), "test", data_source=DATA.source):
        with pytest.raises(WorkdirError, match=f"is in use by process {os.getpid()} on"):
            _fit(tmp_path, epochs=1)
    _fit(tmp_path, epochs=1)  # the lock file stays, unlocked: it blocks nothing


def test_a_stale_lock_of_a_killed_process_does_not_block_a_resume(tmp_path):
    code = ("import os, sys; sys.path.insert(0, 'tests'); from nnjax.config import TrainConfig; "
            "from nnjax.train.rundir import open_run_directory; "
            f"open_run_directory(TrainConfig(workdir={str(tmp_path)!r}), 'test').__enter__(); os.kill(os.getpid(), 9)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    assert "process" in (tmp_path / ".lock").read_text()
    os.remove(tmp_path / "config.json")  # the killed holder's config (the defaults), not this run's
    _fit(tmp_path, epochs=1)


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_lost_history_is_one_warning_line(tmp_path, damage, caplog):
    _fit(tmp_path, epochs=1)
    metrics = tmp_path / "metrics.jsonl"
    if damage == "delete":
        metrics.unlink()
    else:
        metrics.write_text(metrics.read_text()[:-20])
    with caplog.at_level(logging.WARNING, logger="nnjax"):
        resumed = _fit(tmp_path, epochs=2)
    lost = [r.getMessage() for r in caplog.records if "metrics.jsonl holds" in r.getMessage()]
    assert len(lost) == 1, lost
    assert f"for {0 if damage == 'delete' else 4} of the 4 steps before the resumed step 4" in lost[0]
    assert (damage == "truncate") == ("unreadable lines skipped" in lost[0])
    assert [row["step"] for row in resumed.history if row["kind"] == "train"][-1] == 8


def test_workdir_that_is_a_file_or_under_a_file_is_one_line(tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    for workdir, problem in ((file, "it is a file"), (file / "run", "a part of its path is a file")):
        with pytest.raises(WorkdirError, match=f"--workdir {workdir} cannot be used: {problem}"):
            make_workdir(TrainConfig(workdir=str(workdir)), "test")


def test_workdir_without_write_permission_is_one_line(tmp_path):
    """As a non-root user (root ignores permissions; a root process becomes 'nobody' after its imports)."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    os.chmod(tmp_path, 0o755)
    code = ("import os\nfrom nnjax.config import TrainConfig, make_workdir\n"
            "from nnjax.errors import WorkdirError\n"
            "if os.geteuid() == 0:\n    os.seteuid(65534)\n"
            f"try:\n    make_workdir(TrainConfig(workdir={str(locked / 'run')!r}), 'test')\n"
            "except WorkdirError as err:\n    print(err)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == f"--workdir {locked / 'run'} cannot be used: no permission to write there", out
