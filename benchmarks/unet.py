"""Training-step throughput of the seed U-Net and of the DCGAN (WGAN-GP) step: nnjax vs PyTorch eager.

    pip install -e ".[bench]" && python -m benchmarks.unet

Two workloads, each the training step its experiment runs, in both frameworks with the same models:

- ``unet``: ``nnjax.models.unet.UNet`` (``--base 64``: the seed's widths 64/128/256/512, with the
  boundary-refinement head) as ``experiments.unet_segmentation`` trains it: 64x64x1 tiles, batch 16,
  random dihedral flips inside the step, BCE + soft Dice + 0.5 x the boundary head's BCE
  (``losses.segmentation_objective``), Adam 1e-3. nnjax runs the library's step on the trainer's
  scan path (``nnjax.train.parallel.Parallel('none', ...).train_chunk``: ``--chunk`` steps per jitted
  ``lax.scan`` over device-resident tiles, as ``nnjax.tasks.fit`` runs it); its objective also computes
  the hard-mask scores the trainer logs (Dice, IoU, precision, recall, boundary F1: elementwise work
  on 16x64x64 masks), which the PyTorch loop does not.
- ``dcgan``: ``experiments.dcgan``'s step (``--channels 16``, latent 100, batch 32): 5 critic updates,
  each on fresh real and generated images with the WGAN-GP gradient penalty (weight 10) through the
  spectral-normed critic, then one generator update; Adam 1e-4, betas (0, 0.9), one per network.
  nnjax runs ``nnjax.tasks.adversarial.Adversarial.train_chunk`` (the experiment's jitted
  ``lax.scan`` over ``--chunk`` steps of ``make_adversarial_step``).

PyTorch is the same architecture in ``torch.nn``, eager, NCHW (``torch_unet``, ``torch_generator``,
``torch_critic``: same parameter counts; tests load nnjax's weights into them and get the same outputs
and losses). Its loops do what nnjax's steps do, as a PyTorch user writes them: the gradient penalty
by ``torch.autograd.grad(..., create_graph=True)`` of the summed scores, spectral normalisation by
one power iteration from the stored vector per critic update, the critic frozen for the generator's
update.

Throughput is training steps/s (and examples/s: U-Net tiles, or the real images the 5 critic updates
of a DCGAN step see, 5 x 32). Each worker runs ``--warmup`` untimed steps (nnjax: compilation
included, reported apart as ``nnjax_compile_s``) and ``--steps`` timed steps in blocks of ``--chunk``
and reports the median block; the frameworks alternate ``--repeats`` times in their own subprocesses,
one after another (never two timed workloads at once), and each one's best run is reported with the
1-minute load average when it started. FLOPs per step are XLA's cost analysis of nnjax's step
(``lowered_flops``: ``jax.jit(step).lower(...).cost_analysis()``, the DCGAN's critic scan unrolled, as
XLA counts a loop's body once); achieved GFLOP/s divides that one count by each framework's seconds per
step. The last stdout line is one JSON object, one entry per model.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from benchmarks.workers import alternate, launch_worker

FRAMEWORKS = ("nnjax", "torch")
MODELS = ("unet", "dcgan")


def experiment_default(experiment: str, name: str):
    """A factory of ``experiments.<experiment>.Config``'s default for field ``name``: the benchmark times the
    step of the experiment's defaults, read from it (imported on first use, no backend started)."""

    def default():
        return getattr(importlib.import_module(f"experiments.{experiment}").Config(), name)

    return field(default_factory=default)


segmentation_default = functools.partial(experiment_default, "unet_segmentation")
dcgan_default = functools.partial(experiment_default, "dcgan")


@dataclass(frozen=True)
class UNetSize:
    """The seed U-Net (``base=64``) with ``experiments.unet_segmentation``'s tile, batch, loss weights and
    learning rate (its defaults)."""

    base: int = 64
    tile: int = segmentation_default("tile")
    batch_size: int = segmentation_default("batch_size")
    learning_rate: float = segmentation_default("learning_rate")
    dice_weight: float = segmentation_default("dice_weight")
    boundary_head_weight: float = segmentation_default("boundary_head_weight")
    tolerance: int = segmentation_default("tolerance")
    tiles: int = 64  # synthetic training tiles the batches are drawn from


@dataclass(frozen=True)
class GANSize:
    """``experiments.dcgan``'s networks and WGAN-GP step (its defaults)."""

    channels: int = dcgan_default("channels")
    latent_dim: int = dcgan_default("latent_dim")
    batch_size: int = dcgan_default("batch_size")
    n_critic: int = dcgan_default("n_critic")
    gp_weight: float = dcgan_default("gp_weight")
    learning_rate: float = dcgan_default("learning_rate")
    adam_b1: float = dcgan_default("adam_b1")
    adam_b2: float = dcgan_default("adam_b2")
    images: int = 1024  # synthetic real images the critic's batches are drawn from


@dataclass(frozen=True)
class Timing:
    """Untimed and timed steps, and steps per timed block (nnjax: per jitted ``lax.scan``)."""

    warmup: int
    steps: int
    chunk: int


# Sized on the 2-core CPU, where the whole default run took 81 s on a quiet machine (about twice that under a load
# of 2): a base-64 U-Net step took 1.4 s in PyTorch and 3.1 s in nnjax (plus 9.5 s compilation), a DCGAN step
# 0.19 s and 0.18 s (plus 5.8 s).
DEFAULT_TIMING = {"unet": Timing(warmup=1, steps=5, chunk=1), "dcgan": Timing(warmup=5, steps=30, chunk=5)}


# --- data -----------------------------------------------------------------------------------------


def synthetic_tiles(size: UNetSize, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tiles float32 [N, T, T, 1] (a few bright discs on noise) and their masks float32 [N, T, T] (1 in a disc)."""
    rng = np.random.default_rng(seed)
    n, t = size.tiles, size.tile
    centers_NxDx2 = rng.uniform(0, t, (n, 4, 2))
    radii_NxD = rng.uniform(t / 16, t / 5, (n, 4))
    rows, cols = np.mgrid[:t, :t]
    distance_NxDxTxT = np.hypot(rows - centers_NxDx2[..., 0, None, None], cols - centers_NxDx2[..., 1, None, None])
    y = (distance_NxDxTxT < radii_NxD[..., None, None]).any(axis=1).astype(np.float32)
    x = 0.2 + 0.6 * y + rng.normal(0, 0.1, y.shape)
    return x[..., None].astype(np.float32), y


def synthetic_images(size: GANSize, seed: int = 0) -> np.ndarray:
    """Real images for the critic: float32 [N, 32, 32, 1] uniform in [-1, 1] (the generator's range)."""
    return np.random.default_rng(seed).uniform(-1, 1, (size.images, 32, 32, 1)).astype(np.float32)


def batch_indices(num_steps: int, batch_size: int, num_rows: int, seed: int = 1) -> np.ndarray:
    """Row indices int32 [steps, batch] of every U-Net step's batch (identical for both frameworks)."""
    return np.random.default_rng(seed).integers(0, num_rows, (num_steps, batch_size)).astype(np.int32)


# --- nnjax --------------------------------------------------------------------------------------


def adversarial_config(size: GANSize):
    """``nnjax.tasks.adversarial.AdversarialConfig`` with the DCGAN experiment's step settings."""
    from nnjax.tasks.adversarial import AdversarialConfig

    return AdversarialConfig(batch_size=size.batch_size, latent_dim=size.latent_dim, n_critic=size.n_critic,
                             gp_weight=size.gp_weight, learning_rate=size.learning_rate, adam_b1=size.adam_b1,
                             adam_b2=size.adam_b2)


def nnjax_unet_parts(size: UNetSize):
    """(model, objective, optimizer) as ``experiments.unet_segmentation.main`` builds them."""
    from nnjax import losses
    from nnjax.models.unet import UNet
    from nnjax.optim import make_optimizer

    objective = losses.segmentation_objective(size.dice_weight, 0.0, size.boundary_head_weight, size.tolerance)
    return UNet(base=size.base), objective, make_optimizer("adam", size.learning_rate)


def nnjax_gan_networks(size: GANSize):
    """(generator, critic) as ``experiments.dcgan.main`` builds them."""
    from nnjax.models.gan import Discriminator, Generator

    return Generator(size.latent_dim, size.channels, image_channels=1), Discriminator(size.channels, 1)


def lowered_flops(fn, *args) -> float:
    """XLA's FLOP count of ``jax.jit(fn)`` lowered for ``args``, with every ``jax.lax.scan`` inside unrolled.

    XLA's cost analysis counts a loop's body once, so the DCGAN step's ``n_critic`` critic updates (a
    ``lax.scan``) are traced unrolled here (the timed step keeps its scan). The count is of the lowered
    HLO: compiling it as well (``.compile().cost_analysis()``) costs a compilation per model (~15 s for
    the unrolled DCGAN step on 2 cores) and counted 0.6 % (U-Net) and 0.8 % (DCGAN) more.
    """
    import functools

    import jax

    scan = jax.lax.scan
    jax.lax.scan = functools.partial(scan, unroll=True)
    try:
        return float(jax.jit(fn).lower(*args).cost_analysis()["flops"])
    finally:
        jax.lax.scan = scan


def run_nnjax_unet(size: UNetSize, idx_NxCxB: np.ndarray, warmup_blocks: int) -> dict:
    """The segmentation experiment's step on the trainer's scan path, one ``train_chunk`` per block of C steps.

    ``idx_NxCxB`` holds N blocks of C steps' batch rows; the first ``warmup_blocks`` (compilation
    included) are untimed. Returns the timed blocks' seconds, compile seconds, parameter count and
    FLOPs per step (``lowered_flops`` of the step).
    """
    import jax

    from nnjax.data import dihedral_augment
    from nnjax.train.parallel import Parallel
    from nnjax.train.state import create_train_state
    from nnjax.train.steps import make_train_step

    model, objective, tx = nnjax_unet_parts(size)
    x, y = synthetic_tiles(size)
    parallel = Parallel("none", objective, size.batch_size, size.batch_size, dihedral_augment)
    state = parallel.place_state(create_train_state(model, tx, x[: size.batch_size], jax.random.key(0)))
    data = parallel.place_data({"x": x, "y": y})
    batch = jax.tree.map(lambda a: a[: size.batch_size], data)
    step_flops = lowered_flops(make_train_step(objective, augment=dihedral_augment), state, batch)
    seconds = []
    for i, idx_CxB in enumerate(idx_NxCxB):
        start = time.perf_counter()
        state, metrics = parallel.train_chunk(state, data, idx_CxB)
        jax.block_until_ready(metrics)
        if i >= warmup_blocks:
            seconds.append(time.perf_counter() - start)
    params = sum(leaf.size for leaf in jax.tree.leaves(state.params))
    return {"seconds": seconds, "compile_s": parallel.compile_seconds, "params": params, "flops_per_step": step_flops}


def run_nnjax_dcgan(size: GANSize, timing: Timing) -> dict:
    """The DCGAN experiment's ``Adversarial.train_chunk``, one call per block of ``timing.chunk`` steps.

    The first ``timing.warmup`` steps (compilation included) are untimed. Returns the timed blocks'
    seconds, compile seconds, parameter count (both networks) and FLOPs per step (``lowered_flops`` of
    ``make_adversarial_step``).
    """
    import jax

    from nnjax.tasks import adversarial

    config = adversarial_config(size)
    generator, critic = nnjax_gan_networks(size)
    task = adversarial.Adversarial(config, generator, critic, synthetic_images(size), adversarial.sample_rows,
                                   (32, 32, 1))
    state = task.place(task.init_state())
    step_flops = lowered_flops(adversarial.make_adversarial_step(config, adversarial.sample_rows), state, task.data)
    seconds = []
    for i in range((timing.warmup + timing.steps) // timing.chunk):
        start = time.perf_counter()
        state, metrics = task.train_chunk(state, i * timing.chunk, (i + 1) * timing.chunk)
        jax.block_until_ready(metrics)
        if i >= timing.warmup // timing.chunk:
            seconds.append(time.perf_counter() - start)
    params = sum(leaf.size for leaf in jax.tree.leaves((state.generator.params, state.critic.params)))
    return {"seconds": seconds, "compile_s": task.compiled.seconds, "params": params, "flops_per_step": step_flops}


# --- PyTorch ------------------------------------------------------------------------------------


def torch_unet(base: int):
    """``UNet(base)`` as a ``torch.nn.Module``: images [B, 1, H, W] -> logits {'mask', 'boundary', 'coarse'}, each
    [B, 1, H, W]. BatchNorm momentum 0.1 (flax's 0.9), epsilon 1e-5; ``UpConv2x2`` is
    ``ConvTranspose2d(C, F, 2, stride=2)``; the correction's 1x1 kernel starts at zero, as nnjax's."""
    import torch
    from torch import nn

    def conv_block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                             nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())

    class Refinement(nn.Module):
        def __init__(self):
            super().__init__()
            self.coarse, self.block = nn.Conv2d(base, 1, 1), conv_block(base + 1, base)
            self.correction, self.boundary = nn.Conv2d(base, 1, 1), nn.Conv2d(base, 1, 1)
            nn.init.zeros_(self.correction.weight)

        def forward(self, f):
            coarse = self.coarse(f)
            h = self.block(torch.cat([f, coarse], dim=1))
            return {"mask": coarse + self.correction(h), "boundary": self.boundary(h), "coarse": coarse}

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [base * 2**i for i in range(4)]
            self.encoders = nn.ModuleList(conv_block(c_in, c_out) for c_in, c_out in zip([1, *widths], widths))
            self.ups = nn.ModuleList(nn.ConvTranspose2d(2 * w, w, 2, stride=2) for w in widths[:3])
            self.decoders = nn.ModuleList(conv_block(2 * w, w) for w in widths[:3])
            self.refine = Refinement()

        def forward(self, x):
            skips = []
            for level, encoder in enumerate(self.encoders):
                x = encoder(nn.functional.max_pool2d(x, 2) if level else x)
                skips.append(x)
            for level in reversed(range(3)):
                x = self.decoders[level](torch.cat([skips[level], self.ups[level](x)], dim=1))
            return self.refine(x)

    return UNet()


def torch_unet_state_dict(variables: dict) -> dict[str, np.ndarray]:
    """nnjax ``UNet`` variables ({'params', 'batch_stats'}) as a ``torch_unet`` state dict of numpy arrays:
    kernels [Kh, Kw, C, F] -> [F, C, Kh, Kw], transposed-convolution kernels -> [C, F, 2, 2]."""
    params, stats = variables["params"], variables["batch_stats"]

    def conv_block(name: str, p: dict, s: dict) -> dict[str, np.ndarray]:
        state = {}
        for i, (conv, norm) in enumerate(((0, 1), (3, 4))):
            kernel = np.asarray(p[f"Conv2D_{i}"]["kernel"])
            bn, bn_stats = p[f"BatchNorm_{i}"], s[f"BatchNorm_{i}"]
            state |= {f"{name}.{conv}.weight": kernel.transpose(3, 2, 0, 1), f"{name}.{norm}.weight": bn["scale"],
                      f"{name}.{norm}.bias": bn["bias"], f"{name}.{norm}.running_mean": bn_stats["mean"],
                      f"{name}.{norm}.running_var": bn_stats["var"]}
        return state

    def conv1x1(name: str, p: dict) -> dict[str, np.ndarray]:
        return {f"{name}.weight": np.asarray(p["kernel"]).transpose(3, 2, 0, 1), f"{name}.bias": p["bias"]}

    state = {}
    for level in range(4):
        state |= conv_block(f"encoders.{level}", params[f"encoder_{level}"], stats[f"encoder_{level}"])
    for level in range(3):
        up = params[f"up_{level}"]
        state |= {f"ups.{level}.weight": np.asarray(up["kernel"]).transpose(2, 3, 0, 1), f"ups.{level}.bias": up["bias"]}
        state |= conv_block(f"decoders.{level}", params[f"decoder_{level}"], stats[f"decoder_{level}"])
    refine = params["refine"]
    state |= conv_block("refine.block", refine["ConvBlock_0"], stats["refine"]["ConvBlock_0"])
    for head in ("coarse", "correction", "boundary"):
        state |= conv1x1(f"refine.{head}", refine[head])
    return _float32(state)


def torch_segmentation_loss(outputs: dict, y_BxHxW, size: UNetSize):
    """``losses.segmentation_objective``'s batch-mean loss: BCE + dice_weight · soft Dice (smooth 1) of the mask
    logits + boundary_head_weight · BCE of the boundary logits against the 3x3 boundary band of ``y``."""
    import torch
    from torch.nn import functional as F

    mask, boundary = outputs["mask"][:, 0], outputs["boundary"][:, 0]
    bce_B = F.binary_cross_entropy_with_logits(mask, y_BxHxW, reduction="none").mean(dim=(1, 2))
    probs = torch.sigmoid(mask)
    overlap, total = (probs * y_BxHxW).sum(dim=(1, 2)), probs.sum(dim=(1, 2)) + y_BxHxW.sum(dim=(1, 2))
    dice_B = 1.0 - (2.0 * overlap + 1.0) / (total + 1.0)
    y = y_BxHxW[:, None]
    band = (F.max_pool2d(y, 3, 1, 1) != -F.max_pool2d(-y, 3, 1, 1))[:, 0].float()  # dilation != erosion
    boundary_B = F.binary_cross_entropy_with_logits(boundary, band, reduction="none").mean(dim=(1, 2))
    return (bce_B + size.dice_weight * dice_B + size.boundary_head_weight * boundary_B).mean()


def torch_dihedral(x_BxCxHxW, y_BxHxW):
    """``nnjax.data.dihedral_augment`` in NCHW: each example flipped left-right, up-down and transposed, each with
    probability 1/2, image and mask alike."""
    import torch

    flips_Bx3 = torch.rand(x_BxCxHxW.shape[0], 3) < 0.5
    y = y_BxHxW[:, None]
    for i, op in enumerate((lambda a: a.flip(-1), lambda a: a.flip(-2), lambda a: a.transpose(-1, -2))):
        pick = flips_Bx3[:, i, None, None, None]
        x_BxCxHxW, y = torch.where(pick, op(x_BxCxHxW), x_BxCxHxW), torch.where(pick, op(y), y)
    return x_BxCxHxW, y[:, 0]


def run_torch_unet(size: UNetSize, idx_NxCxB: np.ndarray, warmup_blocks: int) -> dict:
    """PyTorch eager U-Net steps (augment, forward, loss, backward, Adam), timed per block of C steps.

    The first ``warmup_blocks`` are untimed. Returns the timed blocks' seconds and the parameter count.
    """
    import torch

    torch.manual_seed(0)
    model = torch_unet(size.base)
    optimizer = torch.optim.Adam(model.parameters(), lr=size.learning_rate)
    x, y = synthetic_tiles(size)
    images, masks = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y)
    seconds = []
    for i, idx_CxB in enumerate(torch.from_numpy(idx_NxCxB).long()):
        start = time.perf_counter()
        for idx_B in idx_CxB:
            x_B, y_B = torch_dihedral(images[idx_B], masks[idx_B])
            loss = torch_segmentation_loss(model(x_B), y_B, size)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if i >= warmup_blocks:
            seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "params": sum(p.numel() for p in model.parameters())}


def torch_generator(size: GANSize):
    """nnjax's DCGAN ``Generator`` as a ``torch.nn.Module``: z [B, latent] -> images [B, 1, 32, 32] in [-1, 1].

    Linear to 4·4·8C viewed as [B, 8C, 4, 4], then BatchNorm-ReLU-``ConvTranspose2d(·, ·, 4, 2, 1)`` three times
    (8C -> 4C -> 2C -> 1) and tanh. BatchNorm momentum 0.01 and epsilon 1e-5 (flax's defaults).
    ``forward(z, update_stats=False)`` normalises with batch statistics without touching the running
    averages, as nnjax's critic updates draw their fakes.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    c = size.channels

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(size.latent_dim, 4 * 4 * 8 * c)
            self.norms = nn.ModuleList(nn.BatchNorm2d(w, momentum=0.01) for w in (8 * c, 4 * c, 2 * c))
            self.ups = nn.ModuleList(nn.ConvTranspose2d(w_in, w_out, 4, 2, 1)
                                     for w_in, w_out in ((8 * c, 4 * c), (4 * c, 2 * c), (2 * c, 1)))

        def forward(self, z_BxL, update_stats: bool = True):
            x = self.dense(z_BxL).view(-1, 8 * c, 4, 4)
            for norm, up in zip(self.norms, self.ups):
                x = norm(x) if update_stats else F.batch_norm(x, None, None, norm.weight, norm.bias, True, eps=norm.eps)
                x = up(F.relu(x))
            return torch.tanh(x)

    return Generator()


def torch_critic(size: GANSize):
    """nnjax's spectral-normed DCGAN ``Discriminator`` as a ``torch.nn.Module``: images [B, 1, 32, 32] -> scores [B].

    ``Conv2d(·, ·, 4, 2, 1)`` + LeakyReLU(0.2) three times (1 -> 2C -> 4C -> 8C), then a 4x4 valid ``Conv2d`` to
    one score (nnjax's Dense on the flattened map). ``normalized_weights(update)`` divides each kernel, viewed
    as [F, M], by sigma from one power iteration from its buffer ``u_i`` [F] (the same iteration as
    ``nnjax.models.spectral``, with the gradient through the kernel and sigma), storing the new ``u`` when
    ``update``; ``forward(x, weights)`` runs the network with them.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    c = size.channels

    def l2_normalize(v):
        return v * torch.rsqrt((v * v).sum() + 1e-12)

    class Critic(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(w_in, w_out, 4, 2, 1) for w_in, w_out in ((1, 2 * c), (2 * c, 4 * c), (4 * c, 8 * c)))
            self.score = nn.Conv2d(8 * c, 1, 4)
            for i, layer in enumerate(self.layers()):
                self.register_buffer(f"u_{i}", l2_normalize(torch.randn(layer.out_channels)))

        def layers(self) -> list:
            return [*self.convs, self.score]

        def normalized_weights(self, update: bool) -> list:
            weights = []
            for i, layer in enumerate(self.layers()):
                w_FxM = layer.weight.flatten(1)
                with torch.no_grad():
                    v = l2_normalize(w_FxM.T @ getattr(self, f"u_{i}"))
                    u = l2_normalize(w_FxM @ v)
                    if update:
                        getattr(self, f"u_{i}").copy_(u)
                weights.append(layer.weight / (u @ w_FxM @ v))
            return weights

        def forward(self, x, weights):
            for conv, weight in zip(self.convs, weights):
                x = F.leaky_relu(F.conv2d(x, weight, conv.bias, stride=2, padding=1), 0.2)
            return F.conv2d(x, weights[-1], self.score.bias).flatten()

    return Critic()


def torch_generator_state_dict(variables: dict) -> dict[str, np.ndarray]:
    """nnjax ``Generator`` variables as a ``torch_generator`` state dict (numpy): the Dense's outputs reordered from
    (h, w, c) to (c, h, w); transposed-convolution kernels [4, 4, C, F] flipped and laid out [C, F, 4, 4]."""
    params, stats = variables["params"], variables["batch_stats"]
    dense = np.asarray(params["Dense_0"]["kernel"])
    latent, c8 = dense.shape[0], dense.shape[1] // 16
    state = {"dense.weight": dense.reshape(latent, 4, 4, c8).transpose(0, 3, 1, 2).reshape(latent, -1).T,
             "dense.bias": np.asarray(params["Dense_0"]["bias"]).reshape(4, 4, c8).transpose(2, 0, 1).reshape(-1)}
    for i in range(3):
        bn, bn_stats, up = params[f"BatchNorm_{i}"], stats[f"BatchNorm_{i}"], params[f"UpConv_{i}"]
        state |= {f"norms.{i}.weight": bn["scale"], f"norms.{i}.bias": bn["bias"],
                  f"norms.{i}.running_mean": bn_stats["mean"], f"norms.{i}.running_var": bn_stats["var"],
                  f"ups.{i}.weight": np.asarray(up["kernel"])[::-1, ::-1].transpose(2, 3, 0, 1), f"ups.{i}.bias": up["bias"]}
    return _float32(state)


def torch_critic_state_dict(variables: dict) -> dict[str, np.ndarray]:
    """nnjax ``Discriminator`` variables (or any tree of their structure, e.g. gradients with the written vectors)
    as a ``torch_critic`` state dict (numpy): kernels [4, 4, C, F] as [F, C, 4, 4], the Dense's [(h, w, c), 1] as
    the 4x4 convolution's [1, c, 4, 4], the spectral-norm vectors as ``u_i``."""
    params, stats = variables["params"], variables["batch_stats"]
    state = {f"u_{i}": stats[f"SpectralNorm_{i}"]["u"] for i in range(4)}
    for i in range(3):
        conv = params[f"DownConv_{i}"]
        state |= {f"convs.{i}.weight": np.asarray(conv["kernel"]).transpose(3, 2, 0, 1), f"convs.{i}.bias": conv["bias"]}
    score = np.asarray(params["Dense_0"]["kernel"])
    return _float32(state | {"score.weight": score.reshape(4, 4, -1, 1).transpose(3, 2, 0, 1),
                             "score.bias": params["Dense_0"]["bias"]})


def _float32(state: dict) -> dict[str, np.ndarray]:
    """``state``'s arrays as contiguous float32, with torch's ``num_batches_tracked`` (0) for each BatchNorm."""
    tracked = {k.replace("running_mean", "num_batches_tracked"): np.array(0, np.int64) for k in state if k.endswith("running_mean")}
    return {k: np.ascontiguousarray(v, np.float32) for k, v in state.items()} | tracked


def torch_gradient_penalty(critic, weights: list, real, fake, alpha_B):
    """WGAN-GP penalty: mean of (|d critic / d x_hat|_2 - 1)^2 at x_hat = a real + (1 - a) fake, a = ``alpha_B`` [B]
    (the gradient of the summed scores: the critic treats each sample on its own)."""
    import torch

    alpha = alpha_B[:, None, None, None]
    x_hat = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
    grads, = torch.autograd.grad(critic(x_hat, weights).sum(), x_hat, create_graph=True)
    return ((grads.flatten(1).pow(2).sum(dim=1) + 1e-12).sqrt() - 1.0).pow(2).mean()


def torch_critic_loss(critic, real, fake, alpha_B, size: GANSize):
    """One critic update's loss: E[D(fake)] - E[D(real)] + gp_weight · penalty, with the kernels normalised
    once (``normalized_weights(update=True)``) for both terms."""
    import torch

    weights = critic.normalized_weights(update=True)
    scores = critic(torch.cat([real, fake]), weights)
    wasserstein = scores[: len(real)].mean() - scores[len(real):].mean()
    return -wasserstein + size.gp_weight * torch_gradient_penalty(critic, weights, real, fake, alpha_B)


def run_torch_dcgan(size: GANSize, timing: Timing) -> dict:
    """PyTorch eager WGAN-GP steps: ``n_critic`` critic updates on fresh batches, then one generator update through
    the frozen critic; timed per block of ``timing.chunk`` steps after ``timing.warmup`` untimed ones.

    Returns the timed blocks' seconds and the parameter count (both networks).
    """
    import torch

    torch.manual_seed(0)
    generator, critic = torch_generator(size), torch_critic(size)
    g_optimizer, c_optimizer = (torch.optim.Adam(net.parameters(), lr=size.learning_rate, betas=(size.adam_b1, size.adam_b2))
                                for net in (generator, critic))
    images = torch.from_numpy(synthetic_images(size)).permute(0, 3, 1, 2).contiguous()
    b = size.batch_size
    seconds = []
    for i in range((timing.warmup + timing.steps) // timing.chunk):
        start = time.perf_counter()
        for _ in range(timing.chunk):
            critic.requires_grad_(True)
            for _ in range(size.n_critic):
                real = images[torch.randint(len(images), (b,))]
                with torch.no_grad():
                    fake = generator(torch.randn(b, size.latent_dim), update_stats=False)
                loss = torch_critic_loss(critic, real, fake, torch.rand(b), size)
                c_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                c_optimizer.step()
            critic.requires_grad_(False)
            g_loss = -critic(generator(torch.randn(b, size.latent_dim)), critic.normalized_weights(update=False)).mean()
            g_optimizer.zero_grad(set_to_none=True)
            g_loss.backward()
            g_optimizer.step()
        if i >= timing.warmup // timing.chunk:
            seconds.append(time.perf_counter() - start)
    params = sum(p.numel() for net in (generator, critic) for p in net.parameters())
    return {"seconds": seconds, "params": params}


# --- orchestration ------------------------------------------------------------------------------


def run_worker(model: str, framework: str, size: UNetSize | GANSize, timing: Timing) -> dict:
    """One framework's steps of one model: steps/s and examples/s of the median timed block, parameters,
    1-minute load average at the start and backend (nnjax: also compile seconds and FLOPs per step)."""
    load_avg = os.getloadavg()[0]
    if model == "unet":
        idx_NxCxB = batch_indices(timing.warmup + timing.steps, size.batch_size, size.tiles).reshape(
            -1, timing.chunk, size.batch_size)
        run = {"nnjax": run_nnjax_unet, "torch": run_torch_unet}[framework]
        figures = run(size, idx_NxCxB, timing.warmup // timing.chunk)
    else:
        figures = {"nnjax": run_nnjax_dcgan, "torch": run_torch_dcgan}[framework](size, timing)
    steps_per_s = timing.chunk / float(np.median(figures.pop("seconds")))
    backend = "cpu"
    if framework == "nnjax":
        import jax

        backend = jax.default_backend()
    return {**figures, "steps_per_s": steps_per_s, "examples_per_s": steps_per_s * examples_per_step(model, size),
            "load_avg": load_avg, "backend": backend}


def examples_per_step(model: str, size: UNetSize | GANSize) -> int:
    """U-Net: the batch's tiles; DCGAN: the real images its ``n_critic`` critic updates see."""
    return size.batch_size if model == "unet" else size.n_critic * size.batch_size


def best_of(runs: list[dict | None]) -> dict | None:
    """The run with the most steps/s (the least disturbed by other work), ``None`` if none succeeded."""
    succeeded = [run for run in runs if run is not None]
    return max(succeeded, key=lambda run: run["steps_per_s"]) if succeeded else None


def summarize_model(model: str, size: UNetSize | GANSize, timing: Timing, runs: dict[str, list[dict | None]]) -> dict:
    """One model's figures: its size and timing, each framework's best run (steps/s, examples/s, GFLOP/s from
    nnjax's FLOPs per step, parameters, load average, every run's steps/s; nnjax's compile seconds) and
    nnjax/torch. Raises ``AssertionError`` when both frameworks ran and their parameter counts differ."""
    result: dict[str, object] = {**asdict(size), **asdict(timing), "examples_per_step": examples_per_step(model, size)}
    best = {framework: best_of(framework_runs) for framework, framework_runs in runs.items()}
    flops_per_step = best["nnjax"]["flops_per_step"] if best.get("nnjax") else None
    result["flops_per_step"] = flops_per_step
    for framework, worker in best.items():
        result[f"{framework}_runs_steps_per_s"] = [run and round(run["steps_per_s"], 3) for run in runs[framework]]
        if worker is None:
            result[f"{framework}_steps_per_s"] = None
            continue
        result |= {
            f"{framework}_steps_per_s": round(worker["steps_per_s"], 3),
            f"{framework}_examples_per_s": round(worker["examples_per_s"], 1),
            f"{framework}_gflops_per_s": round(worker["steps_per_s"] * flops_per_step / 1e9, 1) if flops_per_step else None,
            f"{framework}_params": worker["params"],
            f"{framework}_load_avg": round(worker["load_avg"], 2),
            f"{framework}_backend": worker["backend"],
        }
        if framework == "nnjax":
            result["nnjax_compile_s"] = round(worker["compile_s"], 1)
    if best.get("nnjax") and best.get("torch"):
        nnjax, torch = best["nnjax"], best["torch"]
        assert nnjax["params"] == torch["params"], f"{model}: parameter counts differ: nnjax {nnjax['params']}, torch {torch['params']}"
        result["nnjax_over_torch"] = round(nnjax["steps_per_s"] / torch["steps_per_s"], 2)
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Flags; ``--steps``/``--warmup``/``--chunk`` left out take each model's ``DEFAULT_TIMING``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, help_text in (("steps", "timed steps, a multiple of --chunk"), ("warmup", "untimed steps first, a multiple of --chunk"),
                            ("chunk", "steps per timed block; nnjax: per jitted lax.scan")):
        defaults = ", ".join(f"{model} {getattr(DEFAULT_TIMING[model], name)}" for model in MODELS)
        parser.add_argument(f"--{name}", type=int, help=f"{help_text} (default: {defaults})")
    parser.add_argument("--repeats", type=int, default=1, help="runs per framework and model, alternating; the best is reported")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--base", type=int, default=UNetSize.base, help="U-Net width of the first level (the seed's 64)")
    parser.add_argument("--channels", type=int, help="DCGAN base width (default: experiments.dcgan's)")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for flag, values, choices in (("--models", args.models, MODELS), ("--frameworks", args.frameworks, FRAMEWORKS)):
        unknown = set(values.split(",")) - set(choices)
        if unknown:
            parser.error(f"{flag} must be drawn from {choices}, got {sorted(unknown)}")
    if args.worker and "," in args.models:
        parser.error("--worker runs one model")
    if args.repeats < 1 or args.base < 1 or (args.channels is not None and args.channels < 1):
        parser.error(f"--repeats, --base and --channels must be >= 1, got {args.repeats}, {args.base}, {args.channels}")
    for model in args.models.split(","):
        timing = timing_of(args, model)
        if timing.chunk < 1 or timing.steps < timing.chunk or timing.steps % timing.chunk or timing.warmup < timing.chunk \
                or timing.warmup % timing.chunk:
            parser.error(f"{model}: --steps ({timing.steps}) and --warmup ({timing.warmup}) must be multiples of --chunk "
                         f"({timing.chunk}), with at least one untimed and one timed chunk")
    return args


def timing_of(args: argparse.Namespace, model: str) -> Timing:
    """The model's ``DEFAULT_TIMING`` with the flags given."""
    given = {name: getattr(args, name) for name in ("warmup", "steps", "chunk") if getattr(args, name) is not None}
    return replace(DEFAULT_TIMING[model], **given)


def size_of(args: argparse.Namespace, model: str) -> UNetSize | GANSize:
    """The model's size with ``--base`` (U-Net) or ``--channels`` (DCGAN)."""
    if model == "unet":
        return UNetSize(base=args.base)
    return GANSize() if args.channels is None else GANSize(channels=args.channels)


def run_subprocess(model: str, framework: str, argv: list[str]) -> dict | None:
    """One framework's worker for one model in a fresh interpreter with the parent's flags; ``None`` if it failed."""
    return launch_worker("benchmarks.unet", [*argv, "--models", model, "--worker", framework], f"{model} {framework}",
                         lambda w: f"{model} {framework}: {w['steps_per_s']:.3f} steps/s (load average {w['load_avg']:.2f})")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    models, frameworks = args.models.split(","), args.frameworks.split(",")
    if args.worker:
        print(json.dumps(run_worker(models[0], args.worker, size_of(args, models[0]), timing_of(args, models[0]))))
        return
    runs = alternate(args.repeats, [(model, framework) for model in models for framework in frameworks],
                     lambda key: run_subprocess(*key, argv))
    result = {"benchmark": "unet", "date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count(), "repeats": args.repeats}
    for model in models:
        result[model] = summarize_model(model, size_of(args, model), timing_of(args, model),
                                        {framework: runs[model, framework] for framework in frameworks})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
