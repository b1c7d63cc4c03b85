"""Several processes, one run (``nnjax.distributed``, ``python -m nnjax.launch``), on 127.0.0.1 only.

One launch of 2 processes x 4 CPU devices trains every case in ``CASES`` (mnist_cnn under ``--parallel jit``,
the char LM under ``pmap`` and sharded under ``--parallel fsdp`` on a 4 x 2 mesh: each parallel mode once, on
the model whose path it exercises most), so the processes start and connect once, and ends with one more run in which process 1 is SIGKILLed (a second launch
resumes it). Each case must give the same per-step losses, test metrics and final parameters (1e-5) as this
process with its 8 devices and with one (which also checks one process's jit, pmap and fsdp against one device).
"""

import contextlib
import io
import json
import os
import shutil
import sys
import time

import chex
import numpy as np
import pytest
from conftest import run_experiment

from nnjax import distributed
from nnjax.errors import ConfigError
from nnjax.launch import launch
from nnjax.train import read_checkpoint

DIGITS = ("--data", "digits", "--batch-size", "64", "--eval-batch-size", "200", "--steps", "6",
          "--log-every-steps", "1", "--checkpoint-every-steps", "3")
LM = ("--block-size", "8", "--d-model", "16", "--num-heads", "2", "--num-layers", "1", "--batch-size", "8",
      "--eval-batch-size", "64", "--steps", "4", "--log-every-steps", "1", "--checkpoint-every-steps", "2",
      "--num-samples", "0")
CASES = {  # name: (experiment, its flags, its parallelism flags)
    "mnist_jit": ("experiments.mnist_cnn", DIGITS, ("--parallel", "jit")),
    "lm_pmap": ("experiments.char_lm", LM, ("--parallel", "pmap")),
    "lm_fsdp": ("experiments.char_lm", LM, ("--parallel", "fsdp", "--model-parallel", "2")),
}
PROGRAM = """
import importlib, json, os, signal, sys
from nnjax import cli
from nnjax.train import checkpoint
root, cases = sys.argv[1], json.loads(sys.argv[2])
kill_case = sys.argv[3] if len(sys.argv) > 3 else None  # the last case, in which process 1 dies after checkpoint 3
save = checkpoint.Checkpointer.save
def save_then_die(self, host_state, step):  # SIGKILL: no cleanup, once checkpoint 3 is complete
    save(self, host_state, step)
    if step == 3:
        self._manager.wait_until_finished()
        os.kill(os.getpid(), signal.SIGKILL)
for name, (module, flags) in cases.items():
    if name == kill_case and os.environ["JAX_PROCESS_ID"] == "1":
        checkpoint.Checkpointer.save = save_then_die
    experiment = importlib.import_module(module)
    code = cli.run(experiment.main, experiment.Config, [*flags, "--workdir", f"{root}/{name}"], prog=name)
    if code:
        sys.exit(code)
"""
KILLED = "mnist_killed"  # mnist_jit's run, in which process 1 is SIGKILLed right after its step-3 checkpoint


def _case_flags(name: str, text_file: str, parallel: tuple[str, ...] | None = None) -> list[str]:
    """The flags of case ``name``, with other parallelism flags if given."""
    module, flags, case_parallel = CASES[name]
    flags = [*flags, *(case_parallel if parallel is None else parallel)]
    return [*flags, "--text-file", text_file] if module == "experiments.char_lm" else flags


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "play.txt"
    path.write_text("KING.\nthe crown and the sword\nQUEEN.\nthe heart and the night\n" * 40, encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, text_file):
    """(root, last stderr line, end time): the run directories of every case trained by 2 processes x 4 CPU
    devices in one launch, which then ends as process 1 dies in the ``KILLED`` run."""
    root = tmp_path_factory.mktemp("two_processes")
    cases = {name: (CASES[name][0], _case_flags(name, text_file)) for name in CASES}
    cases[KILLED] = cases["mnist_jit"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        # grace=2: process 1 dies once checkpoint 3 is final, and process 0, blocked in a collective with it, outlives
        # SIGTERM (jax.distributed's preemption notifier takes the signal) until the launcher's SIGKILL.
        code = launch([sys.executable, "-c", PROGRAM, str(root), json.dumps(cases), KILLED], processes=2,
                      cpu_devices=4, timeout=240, grace=2)
    ended = time.time()
    sys.stderr.write(err.getvalue())  # shown with a failure
    last = err.getvalue().strip().splitlines()[-1]
    assert code != 0 and last.startswith("nnjax.launch: process 1 exited with code -9"), (
        "the 2-process launch failed before its kill (its output is above)")
    return root, last, ended


def _rows(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _final_params(workdir):
    step, state = read_checkpoint(os.path.join(workdir, "checkpoints"))
    return step, state["params"]


def _without_key_bias(params):
    """The params without attention key biases: their exact gradient is 0 (a key bias adds the same q . b to every
    score of a query, which the softmax ignores), so Adam turns float rounding (~1e-10, in any summation order)
    into steps of the learning rate's size and those leaves hold noise that no two device counts share."""
    from flax import traverse_util

    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: v for k, v in flat.items() if k[-2:] != ("key", "bias")})


def _losses(rows) -> list[tuple]:
    return [(row["kind"], row["step"], row.get("train_loss", row.get("test_loss", row.get("val_loss"))))
            for row in rows]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """``run(module, flags) -> workdir``: the run in this process (8 devices), each distinct run once."""
    done_runs = {}

    def run(module: str, flags: list[str]) -> str:
        key = (module, *flags)
        if key not in done_runs:
            workdir = str(tmp_path_factory.mktemp("one_process"))
            done = run_experiment(module, *flags, "--workdir", workdir)
            assert done.returncode == 0, done.stderr
            done_runs[key] = workdir
        return done_runs[key]

    return run


@pytest.mark.parametrize("name", sorted(CASES))
def test_two_processes_train_exactly_as_one_process_with_eight_devices_and_with_one(name, two_processes, text_file,
                                                                                     one_process, eight_devices):
    root, *_ = two_processes
    module, _, parallel = CASES[name]
    references = {" ".join(flags): one_process(module, _case_flags(name, text_file, flags))
                  for flags in (parallel, ("--parallel", "none"))}
    ours = _rows(root / name)
    for mode, workdir in references.items():
        theirs = _rows(workdir)
        assert [r[:2] for r in _losses(ours)] == [r[:2] for r in _losses(theirs)]
        np.testing.assert_allclose([r[2] for r in _losses(ours)], [r[2] for r in _losses(theirs)], atol=1e-5,
                                   err_msg=f"{name} vs one process, {mode}")
        (step, params), (their_step, their_params) = _final_params(root / name), _final_params(workdir)
        assert step == their_step
        chex.assert_trees_all_close(_without_key_bias(params), _without_key_bias(their_params), atol=1e-5)


def test_only_the_main_process_writes_the_run_files(two_processes):
    root, *_ = two_processes
    workdir = root / "mnist_jit"
    rows = _rows(workdir)
    assert [row["step"] for row in rows if row["kind"] == "train"] == [1, 2, 3, 4, 5, 6], "one row per step, not two"
    assert {p.name for p in workdir.iterdir()} >= {"config.json", "metrics.jsonl", "learning_curves.png", "checkpoints"}
    assert json.loads((workdir / "config.json").read_text())["parallel"] == "jit"


def test_a_two_process_sharded_checkpoint_resumes_in_one_process(two_processes, text_file, tmp_path, eight_devices):
    """The fsdp run's step-2 checkpoint, whose shards 2 processes x 4 devices wrote each their own, resumed by this
    process alone: restored into this topology's shardings (one 4 x 2 mesh over 8 local devices), its checksums
    (computed on the devices of 2 processes when saved, on this host now) agree, and it ends as the uninterrupted
    2-process run."""
    root, *_ = two_processes
    workdir = tmp_path / "resumed"
    shutil.copytree(root / "lm_fsdp", workdir)
    shutil.rmtree(workdir / "checkpoints" / "4")
    rows = [row for row in _rows(workdir) if row["step"] <= 2]
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    saved = workdir / "checkpoints" / "2" / "state"
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= {p.name for p in saved.iterdir()}, "each process wrote its shards"
    done = run_experiment("experiments.char_lm", *_case_flags("lm_fsdp", text_file), "--workdir", str(workdir))
    assert done.returncode == 0, done.stderr
    assert "resumed from checkpoint step 2" in done.stderr
    np.testing.assert_allclose([r[2] for r in _losses(_rows(workdir))], [r[2] for r in _losses(_rows(root / "lm_fsdp"))],
                               atol=1e-5)
    (step, params), (_, uninterrupted) = _final_params(workdir), _final_params(root / "lm_fsdp")
    assert step == 4
    chex.assert_trees_all_close(_without_key_bias(params), _without_key_bias(uninterrupted), atol=1e-5)


def test_a_killed_process_stops_the_run_in_one_line_and_two_processes_resume_it_exactly(two_processes, text_file):
    """Process 1 died after checkpoint 3: the launch ended in one line, and a second launch resumes the run to the
    uninterrupted run's parameters; in the same launch, an fsdp run whose newest checkpoint is truncated resumes
    from the checkpoint before, both processes agreeing that it is damaged."""
    root, last, ended = two_processes
    workdir = root / KILLED
    checkpoints = workdir / "checkpoints"
    assert max(int(d) for d in os.listdir(checkpoints) if d.isdigit()) == 3
    assert ended - os.path.getmtime(checkpoints / "3") < 60, "the launch outlived its dead process by a minute"
    assert last.endswith("the other processes were stopped"), last
    damaged = root / "lm_fsdp_damaged"  # the fsdp run, whose last checkpoint is truncated
    shutil.copytree(root / "lm_fsdp", damaged)
    for data_file in (damaged / "checkpoints" / "4" / "state").rglob("*"):
        if data_file.parent.name == "d":  # the array data, as each process wrote it and as orbax merged it
            data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])
    rows = [row for row in _rows(damaged) if row["step"] <= 2]
    (damaged / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    resume = {KILLED: ("experiments.mnist_cnn", _case_flags("mnist_jit", text_file)),
              damaged.name: ("experiments.char_lm", _case_flags("lm_fsdp", text_file))}
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = launch([sys.executable, "-c", PROGRAM, str(root), json.dumps(resume)], processes=2, cpu_devices=4,
                      timeout=120)
    sys.stderr.write(err.getvalue())  # shown with a failure
    assert code == 0, "the 2-process resume failed (its output is above)"
    assert [row["step"] for row in _rows(workdir) if row["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    (step, params), (uninterrupted_step, uninterrupted) = _final_params(workdir), _final_params(root / "mnist_jit")
    assert step == uninterrupted_step == 6
    chex.assert_trees_all_equal(params, uninterrupted)
    # Both processes set the damaged checkpoint aside (one moved it) and resumed from step 2, to the same end.
    assert sum("checkpoint step 4 is damaged" in line for line in err.getvalue().splitlines()) == 2
    assert (damaged / "checkpoints_damaged" / "4").is_dir() and "resumed from checkpoint step 2" in err.getvalue()
    chex.assert_trees_all_equal(_final_params(damaged), _final_params(root / "lm_fsdp"))


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, None),
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"},
         distributed.Settings("10.0.0.1:1234", 4, 3)),
        ({"SLURM_NTASKS": "8"}, distributed.Settings(None, None, None)),
        ({"SLURM_NTASKS": "1"}, None),
        ({"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3"}, distributed.Settings(None, None, None)),
        ({"TPU_WORKER_HOSTNAMES": "localhost"}, None),
    ],
)
def test_settings_come_from_the_standard_environment(environ, expected):
    assert distributed.settings_from_environment(environ) == expected


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, "need JAX_NUM_PROCESSES, JAX_PROCESS_ID as well"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, r"must be in \[0, "),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"}, "must be integers"),
    ],
)
def test_incomplete_settings_are_one_line(environ, message):
    with pytest.raises(ConfigError, match=message):
        distributed.settings_from_environment(environ)


FAIL_IN_PROCESS_1 = """
import os, sys, time
print("ready", flush=True)
if os.environ["JAX_PROCESS_ID"] == "1":
    time.sleep(0.5)
    sys.exit("process 1: something went wrong")
time.sleep(120)  # would hang without the launcher
"""


def test_a_failing_process_stops_the_others_at_once_with_its_message(capsys):
    start = time.perf_counter()
    code = launch([sys.executable, "-c", FAIL_IN_PROCESS_1], processes=2, grace=2)
    elapsed = time.perf_counter() - start
    captured = capsys.readouterr()
    assert code == 1 and elapsed < 15, (code, elapsed)
    assert "[0] ready" in captured.out and "[1] ready" in captured.out
    assert captured.err.strip().splitlines()[-1] == (
        "nnjax.launch: process 1 exited with code 1: process 1: something went wrong; the other processes were stopped"
    )


FAIL_AFTER_INITIALIZE = """
import os, sys
from nnjax import cli, distributed
from nnjax.config import RunConfig
from nnjax.errors import ConfigError
def main(config):
    if os.environ["JAX_PROCESS_ID"] == "1":
        if sys.argv[1] == "exit":
            sys.exit("process 1 gave up")
        raise ConfigError("process 1 is misconfigured") if sys.argv[1] == "config" else ValueError("process 1 crashed")
    distributed.barrier("never reached by process 1")
sys.exit(cli.run(main, RunConfig, [], prog="demo"))
"""


@pytest.mark.parametrize("failure, code, last_line", [
    ("config", 2, "demo: error: process 1 is misconfigured"), ("crash", 1, "ValueError: process 1 crashed"),
    ("exit", 1, "process 1 gave up")])
def test_a_process_failing_inside_a_distributed_run_exits_at_once_and_is_named(capsys, failure, code, last_line):
    """JAX's exit handler would keep the failed process in its shutdown barrier, waiting for process 0, which waits
    for it in a collective: the launch would end 30 s to 2 minutes later, naming process 0's timeout."""
    start = time.perf_counter()
    assert launch([sys.executable, "-c", FAIL_AFTER_INITIALIZE, failure], processes=2, timeout=100, grace=1) == code
    elapsed = time.perf_counter() - start
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"nnjax.launch: process 1 exited with code {code}: {last_line}; the other processes were stopped"
    assert elapsed < 40, elapsed


def test_the_launcher_bounds_the_whole_run(capsys):
    start = time.perf_counter()
    code = launch([sys.executable, "-c", "import time; time.sleep(60)"], processes=2, timeout=1.5, grace=1)
    assert code == 124 and time.perf_counter() - start < 10
    assert "took longer than --timeout 1.5 s" in capsys.readouterr().err


def test_every_argument_after_the_module_is_the_modules_own(capsys):
    """``--timeout 1`` after ``-m`` goes to the module (here json.tool, which takes it for its input file)."""
    from nnjax.launch import main

    assert main(["--processes", "1", "--timeout", "60", "-m", "json.tool", "--timeout", "1"]) == 2
    assert "can't open '1'" in capsys.readouterr().err
