"""Seed 002 slide 7: a network whose set of active stages is chosen per call (conditional depth).

``DynamicNetwork`` has ``max_depth`` stages of conv3x3 -> BatchNorm -> ReLU at widths
``base_channels * 2**i``, with a 1x1 "adaptation" convolution between stage ``i`` and stage ``i+1``
that projects width ``base * 2**i`` to ``base * 2**(i+1)``. A call names the stages that run
(``active_layers``, a sorted tuple of unique stage indices); **an inactive stage is the identity**,
and the adaptation projection after it still runs, so widths always line up and the output has
``base * 2**(max_depth-1)`` channels whatever the active set.

The seed skipped the adaptation convolution together with an inactive stage, so the next active
stage received ``base * 2**i`` channels where it expects ``base * 2**j``: any active set with a gap
(its own example ``[0, 2, 4]``) crashes. The seed also fed the input straight to stage 0, which
expects ``base_channels`` channels; here a 3x3 ``stem`` convolution maps the input channels to
``base_channels`` first.

``active_layers`` is a static argument: Python decides which stages are traced, so under
``jax.jit(..., static_argnames='active_layers')`` every set compiles once to a program that does
only its own stages' work, and inactive stages' parameters get exactly zero gradient. Every set
shares one variables tree: initialisation always builds every stage, whatever ``active_layers`` says.

``stage_drop_rate`` > 0 is stochastic depth at the stage level for training: with ``train=True``
each active stage is skipped (made the identity) for the whole batch with that probability, drawn
from the ``dropout`` RNG stream, so a network trained this way keeps working when stages are
switched off at inference. A skipped stage is still computed (a traced ``where`` picks its input
instead of its output), so it saves no training compute; only a static ``active_layers`` does.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nnjax.errors import ConfigError, ShapeError
from nnjax.models.layers import Conv2D

BN_MOMENTUM = 0.9  # PyTorch BatchNorm2d's momentum=0.1 in Flax's convention
BN_EPSILON = 1e-5


def stage_widths(base_channels: int, max_depth: int) -> tuple[int, ...]:
    """The widths of the stages: ``base_channels * 2**i`` for ``i < max_depth``."""
    return tuple(base_channels * 2**i for i in range(max_depth))


def validate_active_layers(active_layers: tuple[int, ...], max_depth: int) -> tuple[int, ...]:
    """``active_layers`` unchanged if it is a tuple of sorted, unique ints in [0, max_depth); else ValueError."""
    ok = (
        isinstance(active_layers, tuple)
        and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < max_depth for i in active_layers)
        and list(active_layers) == sorted(set(active_layers))
    )
    if not ok:
        raise ValueError(
            f"active_layers must be a tuple of sorted, unique stage indices in [0, {max_depth}) "
            f"(e.g. (0, 2, 4)), got {active_layers!r}"
        )
    return active_layers


def parse_active_layers(text: str, max_depth: int, flag: str = "active-layers") -> tuple[int, ...]:
    """'0,2,4' -> (0, 2, 4), validated against ``max_depth``; ``ConfigError`` naming ``--flag`` otherwise.

    An empty string (or 'none') is the empty set: every stage inactive.
    """
    try:
        stages = tuple(int(s) for s in text.split(",") if s.strip()) if text.strip().lower() != "none" else ()
        return validate_active_layers(stages, max_depth)
    except ValueError:
        raise ConfigError(
            f"--{flag} must be sorted, unique, comma-separated stage indices in [0, {max_depth}) "
            f"like 0,2,4 (or 'none'), got {text!r}"
        ) from None


def evaluation_sets(max_depth: int, chosen: tuple[int, ...] | None = None) -> list[tuple[int, ...]]:
    """Active stage sets to compare at inference, duplicates dropped: all stages first, then ``chosen``
    if given, else each drop-one set, every other stage and none."""
    every = tuple(range(max_depth))
    if chosen is not None:
        sets = [every, validate_active_layers(chosen, max_depth)]
    else:
        sets = [every, *(every[:i] + every[i + 1 :] for i in every), every[::2], ()]
    return list(dict.fromkeys(sets))


class ConvBNReLU(nn.Module):
    """One stage: conv3x3 (no bias: BatchNorm's shift replaces it) -> BatchNorm -> ReLU, width kept."""

    features: int

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array, train: bool) -> jax.Array:
        """[B, H, W, features] -> [B, H, W, features]."""
        x = Conv2D(self.features, (3, 3), padding="SAME", use_bias=False, name="conv")(x_BxHxWxC)
        x = nn.BatchNorm(
            use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name="bn"
        )(x)
        return nn.relu(x)


class DynamicNetwork(nn.Module):
    """Stem conv3x3 -> ``max_depth`` stages (each active or the identity) with 1x1 adaptations between.

    Defaults are the seed's (``DynamicNetwork(64)``, ``max_depth=5``). See the module docstring.
    """

    base_channels: int = 64
    max_depth: int = 5
    stage_drop_rate: float = 0.0

    @nn.compact
    def __call__(
        self, x_BxHxWxC: jax.Array, train: bool = False, active_layers: tuple[int, ...] | None = None
    ) -> tuple[jax.Array, list[jax.Array]]:
        """Images [B, H, W, C] -> (output [B, H, W, base * 2**(max_depth-1)], features of the active stages).

        ``features[k]`` is the output [B, H, W, base * 2**i] of the k-th active stage ``i`` (before its
        adaptation). ``active_layers=None`` runs every stage.
        """
        if self.max_depth < 1 or self.base_channels < 1 or not 0.0 <= self.stage_drop_rate < 1.0:
            raise ValueError(
                "DynamicNetwork needs max_depth >= 1, base_channels >= 1 and stage_drop_rate in [0, 1), got "
                f"{self.max_depth}, {self.base_channels}, {self.stage_drop_rate}"
            )
        if x_BxHxWxC.ndim != 4:
            raise ShapeError(f"DynamicNetwork expects images [batch, height, width, channels], got {x_BxHxWxC.shape}")
        every = tuple(range(self.max_depth))
        active = every if active_layers is None else validate_active_layers(active_layers, self.max_depth)
        if self.is_initializing():
            active = every  # one variables tree for every active set
        widths = stage_widths(self.base_channels, self.max_depth)
        drop = train and self.stage_drop_rate > 0 and not self.is_initializing()

        x = Conv2D(widths[0], (3, 3), padding="SAME", name="stem")(x_BxHxWxC)
        features = []
        for i, width in enumerate(widths):
            if i in active:
                y = ConvBNReLU(width, name=f"stage{i}")(x, train)
                if drop:
                    keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - self.stage_drop_rate)
                    y = jnp.where(keep, y, x)
                features.append(y)
                x = y
            if i + 1 < self.max_depth:
                x = Conv2D(widths[i + 1], (1, 1), padding="VALID", name=f"adapt{i}")(x)
        return x, features


class DynamicClassifier(nn.Module):
    """``DynamicNetwork`` -> global average pool -> Dense(num_classes): logits [B, num_classes]."""

    num_classes: int = 10
    base_channels: int = 64
    max_depth: int = 5
    stage_drop_rate: float = 0.0

    @nn.compact
    def __call__(
        self, x_BxHxWxC: jax.Array, train: bool = False, active_layers: tuple[int, ...] | None = None
    ) -> jax.Array:
        """Images [B, H, W, C] -> logits [B, num_classes], running only the stages in ``active_layers``."""
        out_BxHxWxD, _ = DynamicNetwork(self.base_channels, self.max_depth, self.stage_drop_rate, name="backbone")(
            x_BxHxWxC, train, active_layers
        )
        return nn.Dense(self.num_classes, name="head")(out_BxHxWxD.mean(axis=(1, 2)))
