"""Experiment scripts as a user runs them: CLI errors, determinism, SIGKILL + resume, and a real run."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO_ROOT, run_cli, run_experiment

from experiments import mlp_mnist, mnist_cnn
from nnjax import cli
from nnjax.config import TrainConfig, parse_config
from nnjax.train import read_checkpoint

FAST = ("--data", "digits", "--batch-size", "32", "--eval-batch-size", "120")


def _final_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args, message",
    [
        (("--data", "nope"), "--data must be one of auto, mnist"),
        (("--batch-size", "abc"), "argument --batch-size: invalid int value: 'abc'"),
        (("--epochs", "0"), "--epochs must be >= 1, got 0"),
        (("--parallel", "tpu"), "argument --parallel: invalid choice: 'tpu'"),
        (("--learning-rate", "-1"), "--learning-rate must be > 0"),
        (("--data", "mnist", "--data-dir", "/nonexistent-nnjax-data"), "rerun with --download"),
        (("--parallel", "jit", "--batch-size", "30"), "not divisible by the"),
    ],
)
def test_user_errors_are_one_line_exit_2_and_fast(args, message, capsys):
    """In process (``cli.run`` as ``python -m`` calls it); ``test_bad_mlp_widths_are_a_one_line_error``
    checks the same contract on a real process's exit code and stderr."""
    start = time.perf_counter()
    try:
        code = cli.run(mnist_cnn.main, mnist_cnn.Config, [*args, "--workdir", "/tmp/nnjax-never-written"])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[nnjax")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert elapsed < 5, f"took {elapsed:.1f} s"
    assert not os.path.exists("/tmp/nnjax-never-written")


def test_help_lists_every_common_flag():
    done = run_experiment("experiments.mlp_mnist", "--help")
    assert done.returncode == 0
    for flag in ("--seed", "--epochs", "--batch-size", "--learning-rate", "--workdir", "--data", "--parallel", "--download"):
        assert flag in done.stdout


def test_parse_config_overrides_and_keeps_defaults():
    config = parse_config(TrainConfig, ["--batch-size", "64", "--no-scan-epoch", "--data-dir", "/d"])
    assert (config.batch_size, config.scan_epoch, config.data_dir, config.epochs) == (64, False, "/d", 5)


def test_resuming_with_another_model_fails_cleanly(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    assert cli.run(mlp_mnist.main, mlp_mnist.Config, [*FAST, "--epochs", "1", "--workdir", workdir]) == 0
    capsys.readouterr()
    assert cli.run(mnist_cnn.main, mnist_cnn.Config, [*FAST, "--epochs", "1", "--workdir", workdir]) == 2
    err = capsys.readouterr().err
    assert "use a new --workdir" in err and "Traceback" not in err


def _latest_checkpoint(workdir: str) -> int:
    directory = os.path.join(workdir, "checkpoints")
    steps = [int(d) for d in os.listdir(directory) if d.isdigit()] if os.path.isdir(directory) else []
    return max(steps, default=0)


def _restore_params(workdir: str):
    step, state = read_checkpoint(os.path.join(workdir, "checkpoints"))
    return step, state["params"]


KILL_AFTER_CHECKPOINT = """
import os, runpy, signal, sys
from nnjax.train import checkpoint
kill_at, module, sys.argv = int(sys.argv[1]), sys.argv[2], sys.argv[2:]
save = checkpoint.Checkpointer.save
def save_then_kill(self, host_state, step):
    save(self, host_state, step)
    if step == kill_at:
        self._manager.wait_until_finished()
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.Checkpointer.save = save_then_kill
runpy.run_module(module, run_name="__main__")
"""


def test_sigkill_then_resume_is_bit_identical_to_uninterrupted(tmp_path):
    args = (*FAST, "--epochs", "3", "--checkpoint-every-steps", "7", "--log-every-steps", "7")  # 35 steps per epoch: one chunk length, one compile
    reference, interrupted = str(tmp_path / "reference"), str(tmp_path / "interrupted")
    done = run_experiment("experiments.mlp_mnist", *args, "--workdir", reference)
    assert done.returncode == 0, done.stderr
    total_steps = _final_json(done.stdout)["steps"]

    # One seed, the reference and the resume in this process and the interrupted run in its own: the resumed
    # run's metrics.jsonl equals the reference's byte for byte below, so a run is also deterministic across
    # processes.
    # The interrupted run SIGKILLs itself as soon as its step-14 checkpoint is on disk: an event the run
    # writes, not a time, so the kill lands mid-run (before step 15) on a machine of any speed.
    done = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_CHECKPOINT, "14", "experiments.mlp_mnist", *args, "--workdir", interrupted],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == -signal.SIGKILL and done.stdout == "", done.stderr[-2000:]
    killed_at = _latest_checkpoint(interrupted)
    assert killed_at == 14 < total_steps
    with open(os.path.join(interrupted, "metrics.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f] == [7, 14], "the run went on past its kill"

    done = run_experiment("experiments.mlp_mnist", *args, "--workdir", interrupted)
    assert done.returncode == 0, done.stderr
    assert f"resumed from checkpoint step {killed_at}" in done.stderr
    assert _final_json(done.stdout)["steps"] == total_steps
    (step_a, params_a), (step_b, params_b) = _restore_params(reference), _restore_params(interrupted)
    assert step_a == step_b == total_steps
    for name in params_a:
        for leaf in params_a[name]:
            np.testing.assert_array_equal(params_b[name][leaf], params_a[name][leaf])
    read = lambda w: open(os.path.join(w, "metrics.jsonl")).read()  # noqa: E731
    assert read(interrupted) == read(reference)


@pytest.mark.slow
def test_mnist_cnn_default_run_learns_real_digits(tmp_path):
    done = run_cli("experiments.mnist_cnn", "--data", "mnist5k", "--workdir", str(tmp_path / "run"), optimized=True)
    assert done.returncode == 0, done.stderr
    result = _final_json(done.stdout)
    assert result["data"] == "mnist5k" and result["epochs"] == 5
    assert result["test_accuracy"] > 0.88, result
    assert result["process_compile_s"] > result["compile_s"] > 0  # the process also compiles the model's init
    assert (tmp_path / "run" / "learning_curves.png").stat().st_size > 10_000


def test_bad_mlp_widths_are_a_one_line_error():
    done = run_cli("experiments.mlp_mnist", "--hidden", "128,x", "--workdir", "/tmp/nnjax-never-written")
    assert done.returncode == 2 and "argument --hidden: must be >= 1 comma-separated positive widths" in done.stderr
    assert "Traceback" not in done.stderr


def test_final_line_is_standard_json_with_nan_as_null(capsys):
    from nnjax.config import RunConfig

    result = {"sharpe": float("nan"), "curve": [1.0, float("inf")], "nested": {"x": float("-inf")}}
    assert cli.run(lambda config: result, RunConfig, []) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(line) == {"sharpe": None, "curve": [1.0, None], "nested": {"x": None}, "process_compile_s": 0.0}
    assert "NaN" not in line and "Infinity" not in line


def test_compile_clock_counts_overlapping_spans_once_and_only_while_entered():
    import jax
    import jax.numpy as jnp

    from nnjax.cache import COMPILE_EVENTS, CompileClock

    durations = []

    def record(event, seconds, **_):
        if event in COMPILE_EVENTS:
            durations.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(record)
    try:
        with CompileClock() as clock:
            start = time.perf_counter()
            jax.jit(lambda x: jnp.sin(x).sum())(jnp.ones(17)).block_until_ready()
            wall = time.perf_counter() - start
    finally:
        jax.monitoring.unregister_event_duration_listener(record)
    assert 0 < clock.seconds <= wall and clock.seconds == pytest.approx(sum(durations), rel=1e-6)  # disjoint spans

    with CompileClock() as spans:  # a trace nested in another's (as a jit inside a jit's trace) counts once
        trace, lower, compile_ = COMPILE_EVENTS
        jax.monitoring.record_event_time_span(trace, 10.0, 14.0)
        jax.monitoring.record_event_time_span(trace, 11.0, 12.0)
        jax.monitoring.record_event_time_span(lower, 13.5, 15.0)
        jax.monitoring.record_event_time_span(compile_, 20.0, 22.5)
        jax.monitoring.record_event_time_span("/jax/some/other/event", 30.0, 40.0)
    assert spans.seconds == pytest.approx(5.0 + 2.5)
    jax.monitoring.record_event_time_span(compile_, 50.0, 60.0)  # after exit: not counted
    assert spans.seconds == pytest.approx(7.5)
