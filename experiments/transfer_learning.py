"""Seed 003 slide 12 / seed 004 slide 13: transfer learning with a frozen backbone and a new head.

A small ResNet is pretrained on a source task (MNIST digits 0-4), then its backbone is frozen
(parameters *and* BatchNorm statistics: ``ResNet(frozen_backbone=True)`` plus
``nnjax.optim.freeze``) and a new 5-way ``fc`` head is trained on a target task with few labels
(digits 5-9, ``--target-labels`` labelled examples) at ``--head-learning-rate``. The same network
trained from scratch on those labels (at ``--learning-rate``) is the baseline. All three runs use
``nnjax.tasks.fit`` and write their run directories under ``--workdir``: pretrain/, transfer/, scratch/.

    python -m experiments.transfer_learning                        # mnist5k, small ResNet, 300 labels
    python -m experiments.transfer_learning --weights resnet18.pth --arch resnet18   # torchvision backbone

With ``--weights`` (a torchvision ResNet state_dict, see ``nnjax.models.torch_import``) the
pretrained backbone comes from that file instead of the source task: digits are repeated to RGB
and ImageNet-normalised, and the from-scratch baseline is the same torchvision architecture.

``--seeds N`` runs every phase with N seeds at once: seed k's head (and scratch network) starts from
seed k's initialisation on the backbone seed k pretrained (with ``--weights``: the file's, shared), and
each accuracy is reported as the mean with ``_std`` and ``_per_seed``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nnjax import cli, losses
from nnjax.config import TrainConfig, check_positive, format_widths, make_workdir, option, prepare_workdir
from nnjax.data import Dataset, load_dataset
from nnjax.data.images import imagenet_normalize
from nnjax.data.transforms import split_tasks
from nnjax.errors import ConfigError
from nnjax.models.resnet import STEMS, VARIANTS, ResNet, resnet
from nnjax.models.torch_import import WarmStart, drop, load_torch_state_dict, resnet_params_from_torch
from nnjax.optim import freeze, make_optimizer, parameter_counts
from nnjax.tasks import fit
from nnjax.train import RunResult


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    """Pretrain on digits 0-4, transfer a frozen backbone + new head to digits 5-9 with few labels, vs scratch."""

    data: str = "mnist5k"
    epochs: int = option(30, "target-task epochs, transfer and scratch alike")
    batch_size: int = 32
    pretrain_epochs: int = option(3, "source-task epochs (without --weights)")
    head_learning_rate: float = option(1e-2, "learning rate of the new head on frozen features (a convex problem)")
    target_labels: int = option(300, "labelled target examples (before --validation-fraction is held out)")
    split_class: int = option(5, "source task: labels < split_class; target: labels >= split_class (shifted to 0..)")
    stage_sizes: tuple[int, ...] = option((1, 1, 1), "residual blocks per stage, as many stages as --widths")
    widths: tuple[int, ...] = option((16, 32, 64), "channels per stage; the stem has the first")
    stem: str = option("cifar", "ResNet stem: cifar (3x3 convolution) or imagenet (7x7 convolution, max pool)",
                       choices=STEMS)
    weights: str | None = option(None, "torchvision ResNet state_dict (.pth) to transfer from instead of pretraining")
    arch: str = option("resnet18", "ResNet variant of --weights", choices=tuple(VARIANTS))

    def validate(self) -> None:
        super().validate()
        check_positive(self, "head_learning_rate")
        if len(self.stage_sizes) != len(self.widths):
            raise ConfigError(
                f"--stage-sizes {format_widths(self.stage_sizes)} and --widths {format_widths(self.widths)} "
                "must list as many stages"
            )


def imagenet_inputs(data: Dataset) -> Dataset:
    """Grey or RGB images in [0, 1] -> 3-channel ImageNet-normalised inputs (for torchvision weights)."""

    def convert(x):
        rgb = np.broadcast_to(x, (*x.shape[:-1], 3)) if x.shape[-1] == 1 else x
        return np.asarray(imagenet_normalize(jnp.asarray(rgb)))

    return dataclasses.replace(data, train={**data.train, "x": convert(data.train["x"])},
                               test={**data.test, "x": convert(data.test["x"])})


def _phase(config: Config, workdir: str, name: str, **changes) -> Config:
    return dataclasses.replace(config, workdir=os.path.join(workdir, name), **changes)


def _head_only(path: tuple[str, ...]) -> bool:
    return path[0] == "fc"


def _accuracy(phase: str, fitted: RunResult) -> dict[str, Any]:
    """A phase's ``test_accuracy`` (with ``_std`` and ``_per_seed`` under ``--seeds``) as ``<phase>_test_accuracy*``."""
    return {f"{phase}_{k}": v for k, v in fitted.summary.items() if k.startswith("test_accuracy")}


def main(config: Config) -> dict:
    workdir = make_workdir(config, "transfer_learning")  # config.json once every phase ran: one refused keeps it
    data = load_dataset(config.data, config.data_dir, config.download)
    source, target = split_tasks(data, config.split_class, config.target_labels, config.seed)
    result = {"data": data.name, "target_labels": config.target_labels}
    phases = []

    if config.weights:
        make = lambda frozen: resnet(config.arch, target.num_classes, frozen_backbone=frozen)  # noqa: E731
        pretrained = resnet_params_from_torch(load_torch_state_dict(config.weights), config.arch)
        target = imagenet_inputs(target)
        result |= {"backbone": f"{config.arch} from {config.weights}"}
    else:
        make = lambda frozen: ResNet(  # noqa: E731
            config.stage_sizes, "basic", config.widths, config.stem, stem_width=config.widths[0],
            num_classes=target.num_classes, frozen_backbone=frozen,
        )
        pretrain = fit(_phase(config, workdir, "pretrain", epochs=config.pretrain_epochs), make(False), source,
                       losses.classification, experiment="transfer_learning/pretrain", multi_seed=True)
        phases.append(pretrain)
        pretrained = {"params": pretrain.state.params, "batch_stats": pretrain.state.batch_stats}
        shape = f"{format_widths(config.stage_sizes)} x {format_widths(config.widths)}"
        result |= {"backbone": f"ResNet {shape} pretrained on {source.name}", **_accuracy("source", pretrain)}

    model = make(True)
    shapes = jax.eval_shape(lambda k, x: model.init(k, x), jax.random.PRNGKey(0), target.train["x"][:1])
    counts = parameter_counts(shapes["params"], _head_only)
    tx = freeze(make_optimizer(config.optimizer, config.head_learning_rate), shapes["params"], _head_only)
    warm = WarmStart(model, drop(pretrained, "fc"), per_seed=config.seeds > 1 and not config.weights)
    transfer = fit(_phase(config, workdir, "transfer"), warm, target, losses.classification,
                   experiment="transfer_learning/transfer", tx=tx, multi_seed=True)
    scratch = fit(_phase(config, workdir, "scratch"), make(False), target, losses.classification,
                  experiment="transfer_learning/scratch", multi_seed=True)
    phases += [transfer, scratch]
    prepare_workdir(dataclasses.replace(config, workdir=workdir), "transfer_learning")
    return result | {
        **_accuracy("transfer", transfer),
        **_accuracy("scratch", scratch),
        "trainable_params": counts["trainable"],
        "frozen_params": counts["frozen"],
        "target_train_examples": transfer.summary["train_examples"],
        "epochs": config.epochs,
        "compile_s": round(sum(phase.summary["compile_s"] for phase in phases), 2),
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="transfer_learning"))
