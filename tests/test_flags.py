"""Flags that explain themselves: every experiment's flags have help texts, width flags are tuples, the three
families of common flags are what the README says, and log lines go around the progress bar."""

import dataclasses
import importlib
import json
import logging
import pkgutil
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tqdm.auto import tqdm

import experiments
from experiments import cifar_cnn, gan_1d, mlp_mnist, network_diagram
from nnjax import cli, distributed
from nnjax.config import (
    IMAGE_DATA_HELP,
    ResumableConfig,
    RunConfig,
    TrainConfig,
    build_parser,
    field_metadata,
    option,
    parse_config,
)
from nnjax.data import DIGITS_AUTO, available
from nnjax.errors import ConfigError, WorkdirError
from nnjax.tasks.adversarial import AdversarialConfig
from nnjax.train.rundir import open_run_directory

EXPERIMENTS = sorted(m.name for m in pkgutil.iter_modules(experiments.__path__) if not m.name.startswith("_"))

# The README's "Command line" section, as data: the flags of each family's base class, and its experiments.
FAMILY_FLAGS = {
    RunConfig: "--seed --workdir --compile-cache",
    ResumableConfig: "--seed --workdir --compile-cache --restart",
    TrainConfig: "--seed --workdir --compile-cache --restart --epochs --steps --batch-size --learning-rate --optimizer --data "
    "--data-dir --download --parallel --model-parallel --validation-fraction --eval-batch-size --log-every-steps "
    "--checkpoint-every-epochs --checkpoint-every-steps --keep-checkpoints --scan-epoch --grad-accum-steps "
    "--precision --prefetch --seeds",
}
FAMILY_MEMBERS = {
    RunConfig: "activations chain_rule classify_image conv_edges gradient_descent loss_functions lr_schedule "
    "network_diagram neurons optimizer_paths quantum_bell signal_features training_loop word2vec xor_backprop",
    ResumableConfig: "dcgan gan_1d gat_karate ppo_cartpole",
    TrainConfig: "backprop_digits batchnorm_dropout char_lm cifar_cnn dynamic_network flow_vae gradient_accumulation "
    "lstm_forecast mlp_mnist mnist_cnn regularization sentiment_bow sentiment_lstm sentiment_transformer "
    "stock_forecast timeseries_transformer transfer_learning unet_segmentation",
}


def _config(name: str) -> type:
    return importlib.import_module(f"experiments.{name}").Config


def _flags(config_cls: type) -> list[str]:
    """The long flags of ``config_cls``'s parser, in order, without --help."""
    return [a.option_strings[0] for a in build_parser(config_cls)._actions if a.dest != "help"]


def _family(config_cls: type) -> type:
    """The most specific of the three family classes that ``config_cls`` subclasses."""
    return next(family for family in (TrainConfig, ResumableConfig, RunConfig) if issubclass(config_cls, family))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_flag_of_every_experiment_has_a_help_text(name):
    config_cls = _config(name)
    for action in build_parser(config_cls, prog=name)._actions:
        if action.dest == "help":
            continue
        meaning = field_metadata(config_cls, action.dest, "help")
        assert meaning and meaning.strip(), f"{name} {action.option_strings[0]} has no help text"
        assert action.help.startswith(meaning.replace("%", "%%")), (name, action.dest, action.help)
    workdir = next(a for a in build_parser(config_cls)._actions if a.dest == "workdir")
    assert "runs/<experiment>/<time>" in workdir.help


def test_data_help_lists_every_registered_data_set_and_the_auto_order():
    assert field_metadata(TrainConfig, "data", "help") == IMAGE_DATA_HELP
    for name in available():
        assert name in IMAGE_DATA_HELP, name
    assert "records:DIR" in IMAGE_DATA_HELP
    assert f"the first of {', '.join(DIGITS_AUTO)} available offline" in IMAGE_DATA_HELP


def test_a_subclass_that_only_changes_a_default_keeps_the_parents_help():
    parsers = {cls: {a.dest: a.help for a in build_parser(cls)._actions} for cls in (cifar_cnn.Config, gan_1d.Config)}
    assert parsers[cifar_cnn.Config]["data"] == f"{IMAGE_DATA_HELP} (default: cifar10)"
    assert vars(gan_1d.Config)["gp_one_sided"] is True  # the subclass sets the bool field again, without metadata
    parent = field_metadata(AdversarialConfig, "gp_one_sided", "help")
    assert parsers[gan_1d.Config]["gp_one_sided"] == f"{parent} (default: --gp-one-sided)"


def test_choices_given_to_option_are_enforced_and_listed():
    with pytest.raises(ConfigError, match="--optimizer must be one of adam, adamw, sgd, momentum"):
        TrainConfig(optimizer="lion")
    optimizer = next(a for a in build_parser(TrainConfig)._actions if a.dest == "optimizer")
    assert optimizer.choices == ("adam", "adamw", "sgd", "momentum")
    assert "{adam,adamw,sgd,momentum}" in build_parser(TrainConfig).format_help()


def test_width_flags_parse_into_tuples_and_show_their_default_as_typed():
    assert parse_config(mlp_mnist.Config, ["--hidden", "256,256"]).hidden == (256, 256)
    assert parse_config(mlp_mnist.Config, []).hidden == mlp_mnist.Config().hidden == (128, 64)
    assert "(default: 128,64)" in build_parser(mlp_mnist.Config).format_help()
    assert parse_config(network_diagram.Config, ["--layers", "784,10"]).layers == (784, 10)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 4096), min_size=1, max_size=5))
def test_widths_round_trip_through_the_command_line(widths):
    assert parse_config(mlp_mnist.Config, ["--hidden", ",".join(map(str, widths))]).hidden == tuple(widths)


@pytest.mark.parametrize(
    "config_cls, argv, message",
    [
        (mlp_mnist.Config, ["--hidden", "128,x"], "argument --hidden: must be >= 1 comma-separated positive widths"),
        (mlp_mnist.Config, ["--hidden", "0"], "argument --hidden: must be >= 1 comma-separated positive widths"),
        (mlp_mnist.Config, ["--hidden", ","], "argument --hidden: must be >= 1 comma-separated positive widths"),
        (network_diagram.Config, ["--layers", "3"], "argument --layers: must be >= 2 comma-separated positive widths"),
    ],
)
def test_a_bad_width_flag_is_a_one_line_error_naming_it(config_cls, argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.run(lambda config: {}, config_cls, [*argv, "--workdir", "/tmp/nnjax-never-written"], prog="x")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit.value.code == 2 and len(lines) == 1 and message in lines[0], err


@pytest.mark.parametrize(
    "make, flag",
    [
        (lambda: mlp_mnist.Config(hidden=(0,)), "--hidden must be >= 1"),
        (lambda: mlp_mnist.Config(hidden="128,64"), "--hidden must be >= 1"),
        (lambda: mlp_mnist.Config(hidden=()), "--hidden must be >= 1"),
        (lambda: network_diagram.Config(layers=(3,)), "--layers must be >= 2"),
        (lambda: gan_1d.Config(hidden=(64, -1)), "--hidden must be >= 1"),
    ],
)
def test_configs_built_in_python_check_their_widths(make, flag):
    with pytest.raises(ConfigError, match=flag):
        make()


def test_a_resume_with_the_same_width_flag_matches_the_saved_config(tmp_path):
    argv = ["--hidden", "128,64", "--workdir", str(tmp_path)]
    with open_run_directory(parse_config(mlp_mnist.Config, argv), "mlp_mnist"):
        pass
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["hidden"] == [128, 64]
    with open_run_directory(parse_config(mlp_mnist.Config, argv), "mlp_mnist"):
        pass  # the same run: accepted
    other = parse_config(mlp_mnist.Config, ["--hidden", "256,256", "--workdir", str(tmp_path)])
    with pytest.raises(WorkdirError, match=r"--hidden \[128, 64\] there, \[256, 256\] now"):
        with open_run_directory(other, "mlp_mnist"):
            pass


@pytest.mark.parametrize("family", list(FAMILY_FLAGS))
def test_each_family_takes_exactly_the_flags_the_readme_lists(family):
    assert _flags(family) == FAMILY_FLAGS[family].split()


def test_every_experiment_is_in_the_family_the_readme_lists():
    members = {family: set(names.split()) for family, names in FAMILY_MEMBERS.items()}
    assert set().union(*members.values()) == set(EXPERIMENTS)
    for name in EXPERIMENTS:
        config_cls = _config(name)
        family = _family(config_cls)
        assert name in members[family], f"{name}'s Config is a {family.__name__}"
        assert set(FAMILY_FLAGS[family].split()) <= set(_flags(config_cls))


def test_log_lines_are_written_around_the_progress_bar(capsys):
    cli.setup_logging()
    bar = tqdm(total=10, file=sys.stderr)
    logging.getLogger("nnjax.test").info("between updates")
    bar.update(5)
    bar.close()
    err = capsys.readouterr().err
    assert "\r[nnjax.test] between updates\n" in err, repr(err)  # the bar was cleared first: the line stands alone


def test_other_processes_log_only_warnings(monkeypatch, capsys):
    monkeypatch.setattr(distributed, "is_main_process", lambda: False)

    def main(config):
        logging.getLogger("nnjax.test").info("info line")
        logging.getLogger("nnjax.test").warning("warning line")
        return {}

    assert cli.run(main, RunConfig, []) == 0
    captured = capsys.readouterr()
    assert "[nnjax.test] warning line" in captured.err and "info line" not in captured.err
    assert captured.out == ""  # only the main process prints the final line


def test_option_sets_the_fewest_widths_of_a_tuple_field():
    @dataclasses.dataclass(frozen=True)
    class Pairs(RunConfig):
        pairs: tuple[int, ...] = option((1, 2), "at least two widths", min_count=2)

    with pytest.raises(ConfigError, match="--pairs must be >= 2 comma-separated positive widths like 128,64"):
        Pairs(pairs=(1,))
    assert parse_config(Pairs, ["--pairs", "3,4,5"]).pairs == (3, 4, 5)
    assert "at least two widths (default: 1,2)" in build_parser(Pairs).format_help()
