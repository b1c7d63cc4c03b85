"""Seed 004 slide 14: classify one image with a pretrained ResNet-50 (or ResNet-18).

torchvision's recipe: Resize(256) -> CenterCrop(224) -> ToTensor -> ImageNet Normalize -> model in
eval mode -> argmax, here with ``nnjax.data.images.preprocess`` and a torchvision ``state_dict``
converted by ``nnjax.models.torch_import``. Weights cannot be downloaded here; make the file on a
machine with network access:

    python -c "import torch, torchvision; torch.save(torchvision.models.resnet50(weights='IMAGENET1K_V2').state_dict(), 'resnet50.pth')"
    python -m experiments.classify_image --weights resnet50.pth                # scikit-learn's china.jpg
    python -m experiments.classify_image --weights resnet18.pth --arch resnet18 --image cat.jpg --labels imagenet_classes.txt

Prints the top-k classes, then one JSON line. Class names come from ``--labels`` (one per line),
else torchvision's ImageNet category list if torchvision imports, else ``class_<index>``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

import jax

from nnjax import cli
from nnjax.config import RunConfig, option
from nnjax.data.images import load_rgb, preprocess, sample_image_path, top_k
from nnjax.errors import ConfigError, DataUnavailableError
from nnjax.models.resnet import VARIANTS, resnet
from nnjax.models.torch_import import load_torch_state_dict, resnet_params_from_torch

log = logging.getLogger("nnjax.classify_image")


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """Top-k ImageNet classes of one image with a torchvision ResNet state_dict (Resize 256, CenterCrop 224)."""

    weights: str | None = option(None, "torchvision ResNet state_dict (.pth) to classify with; required")
    arch: str = option("resnet50", "ResNet variant of --weights", choices=tuple(VARIANTS))
    image: str | None = option(None, "image file to classify; default: scikit-learn's china.jpg")
    labels: str | None = option(None, "class names, one per line; default: torchvision's ImageNet names, else class_<index>")
    top_k: int = option(5, "most probable classes reported")
    resize: int = option(256, "shorter image side after resizing, in pixels")
    crop: int = option(224, "side of the centre crop the model sees, in pixels (<= --resize)")

    def validate(self) -> None:
        super().validate()
        if self.crop > self.resize:
            raise ConfigError(f"--crop must be <= --resize ({self.resize}), got {self.crop}")


def class_names(labels_path: str | None, num_classes: int) -> list[str] | None:
    """Names from ``labels_path`` (one per line), else torchvision's ImageNet categories for 1000
    classes when torchvision imports, else None."""
    if labels_path:
        if not os.path.isfile(labels_path):
            raise DataUnavailableError(f"--labels {labels_path} is not a file")
        with open(labels_path, encoding="utf-8", errors="replace") as f:
            names = [line.strip() for line in f if line.strip()]
        if len(names) != num_classes:
            raise ConfigError(f"--labels {labels_path} has {len(names)} names; the model has {num_classes} classes")
        return names
    if num_classes == 1000:
        try:
            from torchvision.models._meta import _IMAGENET_CATEGORIES

            return list(_IMAGENET_CATEGORIES)
        except Exception:  # noqa: BLE001 - missing or broken torchvision: fall back to indices
            log.info("torchvision not importable: classes are named by index")
    return None


def main(config: Config) -> dict:
    if not config.weights:
        raise DataUnavailableError(
            "--weights is required (no pretrained weights can be downloaded here); on a networked machine run "
            "python -c \"import torch, torchvision; torch.save(torchvision.models.resnet50(weights='IMAGENET1K_V2')"
            ".state_dict(), 'resnet50.pth')\" and pass --weights resnet50.pth"
        )
    variables = resnet_params_from_torch(load_torch_state_dict(config.weights), config.arch)
    num_classes = variables["params"]["fc"]["bias"].shape[0]
    image_path = config.image or sample_image_path()
    x_HxWx3 = preprocess(load_rgb(image_path), config.resize, config.crop)
    logits = jax.jit(resnet(config.arch, num_classes).apply)(variables, x_HxWx3[None])[0]
    ranked = top_k(logits, min(config.top_k, num_classes), class_names(config.labels, num_classes))
    for rank, entry in enumerate(ranked, 1):
        print(f"{rank}. {entry['label']:<30} {entry['probability']:.4f}  (class {entry['index']})")
    return {
        "arch": config.arch,
        "image": image_path,
        "predicted": ranked[0]["label"],
        "predicted_index": ranked[0]["index"],
        f"top{len(ranked)}": ranked,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="classify_image"))
