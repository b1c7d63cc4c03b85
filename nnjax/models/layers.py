"""Small layers shared by model families: max-pooling, convolution (im2col or XLA's), BatchNorm, masks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from nnjax.scratch.conv import same_padding

CONV_IMPLS = ("auto", "im2col", "xla")
# 'SAME', 'VALID', one int for every side (torch's ``padding=1``), (rows, columns) for both sides of each, or
# ((top, bottom), (left, right)).
Padding = Union[str, int, Sequence[int], Sequence[Sequence[int]]]
PAD_ID = 0  # the token id every text model treats as padding; nnjax.data.text's vocabularies put <pad> there


def max_pool_2x2(x_BxHxWxC: jax.Array) -> jax.Array:
    """2x2 max pooling, stride 2, 'VALID' (odd trailing rows/columns are dropped) -> [B, H//2, W//2, C].

    Same values as ``flax.linen.max_pool(x, (2, 2), strides=(2, 2))``, written as the maximum of
    four strided slices: on a 2-core CPU its backward pass is ~25x cheaper than ``reduce_window``'s
    (select-and-scatter) and ~3x cheaper than a reshape-and-max. Tied maxima share the gradient.
    """
    _, h, w, _ = x_BxHxWxC.shape
    x = x_BxHxWxC[:, : h // 2 * 2, : w // 2 * 2, :]
    top = jnp.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2])
    bottom = jnp.maximum(x[:, 1::2, 0::2], x[:, 1::2, 1::2])
    return jnp.maximum(top, bottom)


def conv_pads(padding: Padding, in_hw: Sequence[int], kernel_hw: Sequence[int], strides: Sequence[int]) -> tuple[
    tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) zero padding of a 2-D convolution from any ``Padding``.

    'SAME' is TensorFlow's/flax's (output ceil(size / stride), the odd row after: torch's ``padding='same'``
    at stride 1, even kernels included); 'VALID' none; an int ``p`` torch's ``padding=p``; (ph, pw)
    torch's ``padding=(ph, pw)``; ((top, bottom), (left, right)) as given (``F.pad`` then ``padding=0``).
    """
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID', an int or pairs of ints, got {padding!r}")
        if padding == "VALID":
            return (0, 0), (0, 0)
        (h, w), (kh, kw), (sh, sw) = in_hw, kernel_hw, strides
        return same_padding(h, kh, sh), same_padding(w, kw, sw)
    if isinstance(padding, int):
        pads = ((padding, padding), (padding, padding))
    elif len(padding) == 2 and all(isinstance(p, int) for p in padding):
        pads = ((padding[0], padding[0]), (padding[1], padding[1]))
    else:
        pads = tuple(tuple(p) if isinstance(p, Sequence) else (p,) for p in padding)
    if len(pads) != 2 or any(len(p) != 2 or not all(isinstance(v, int) and v >= 0 for v in p) for p in pads):
        raise ValueError(f"padding must be 'SAME', 'VALID', an int or pairs of ints >= 0, got {padding!r}")
    return pads


def im2col_conv(
    x_BxHxWxC: jax.Array, kernel_KhxKwxCxF: jax.Array, strides: tuple[int, int], padding: Padding
) -> jax.Array:
    """2-D convolution as patches @ kernel: [B, H, W, C] * [Kh, Kw, C, F] -> [B, H', W', F].

    Equal to ``lax.conv_general_dilated`` (NHWC/HWIO) with the zero padding ``conv_pads(padding)``. The
    patch matrix costs Kh*Kw times the input's memory, but every op is a slice, a concatenate or a matmul:
    XLA:CPU runs the weight gradient of its native convolution 10-60x slower inside ``lax.scan`` loops than this.
    """
    kh, kw, c, f = kernel_KhxKwxCxF.shape
    sh, sw = strides
    pads = conv_pads(padding, x_BxHxWxC.shape[1:3], (kh, kw), strides)
    if pads != ((0, 0), (0, 0)):
        x_BxHxWxC = jnp.pad(x_BxHxWxC, ((0, 0), *pads, (0, 0)))
    _, h, w, _ = x_BxHxWxC.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    patches = [
        x_BxHxWxC[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    cols_BxHxWxK = jnp.concatenate(patches, axis=-1) if len(patches) > 1 else patches[0]
    return cols_BxHxWxK @ kernel_KhxKwxCxF.reshape(kh * kw * c, f)


class Conv2D(nn.Module):
    """A 2-D convolution with the parameters of ``flax.linen.Conv`` ('kernel' [Kh, Kw, C, F], 'bias' [F]).

    ``impl='auto'`` uses ``im2col_conv`` on CPU (fast inside scanned training loops) and XLA's
    native convolution on GPU/TPU; 'im2col' and 'xla' force one. ``padding`` is any ``Padding``:
    'SAME', 'VALID', torch's int or (rows, columns), or per side ((top, bottom), (left, right)).
    """

    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    padding: Padding = "SAME"
    use_bias: bool = True
    impl: str = "auto"
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        """[B, H, W, C] -> [B, H', W', features]."""
        if self.impl not in CONV_IMPLS:
            raise ValueError(f"Conv2D: impl must be one of {CONV_IMPLS}, got {self.impl!r}")
        kernel = self.param("kernel", self.kernel_init, (*self.kernel_size, x_BxHxWxC.shape[-1], self.features))
        impl = self.impl if self.impl != "auto" else ("im2col" if jax.default_backend() == "cpu" else "xla")
        strides = tuple(self.strides)
        pads = conv_pads(self.padding, x_BxHxWxC.shape[1:3], self.kernel_size, strides)
        if impl == "im2col":
            y = im2col_conv(x_BxHxWxC, kernel, strides, pads)
        else:
            y = jax.lax.conv_general_dilated(
                x_BxHxWxC, kernel, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return y


class BatchNorm(nn.Module):
    """Batch normalization over every axis but the last, with the variables of ``flax.linen.BatchNorm``
    (params ``scale``/``bias``, ``batch_stats`` ``mean``/``var``) and its numbers by default.

    Train mode (``use_running_average=False``) normalizes with the batch mean and biased variance (as flax
    and torch both do) and updates ``running = momentum * running + (1 - momentum) * batch`` (flax's
    ``momentum=0.99`` weighs the old value; torch's ``momentum=0.1`` is this ``momentum=0.9``). The running
    variance follows the biased batch variance, as flax's; ``unbiased_running_var=True`` follows torch's
    ``BatchNorm2d`` instead, which feeds it the unbiased variance (times n / (n - 1), n the values per
    feature), so weights trained here behave in torch as they would have had they been trained there.
    Statistics are computed in float32 whatever the input dtype.
    """

    use_running_average: bool | None = None
    momentum: float = 0.99
    epsilon: float = 1e-5
    unbiased_running_var: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        """[..., C] -> [..., C]."""
        use_running_average = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            x32 = x.astype(jnp.float32)
            mean = x32.mean(axes)
            var = jnp.maximum((x32 * x32).mean(axes) - mean * mean, 0.0)  # flax's fast variance, the same numbers
            if not self.is_initializing():
                n = x.size // features
                running_var = var * (n / max(n - 1, 1)) if self.unbiased_running_var else var
                ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * running_var
        y = (x.astype(jnp.float32) - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
        return y.astype(x.dtype)


def padding_mask(ids_BxT: jax.Array) -> jax.Array:
    """bool [B, T]: True at real tokens (``ids != PAD_ID``); ValueError unless ``ids`` are integer [B, T]."""
    if ids_BxT.ndim != 2 or not jnp.issubdtype(ids_BxT.dtype, jnp.integer):
        raise ValueError(f"ids must be integer token ids [B, T], got {ids_BxT.dtype} {ids_BxT.shape}")
    return ids_BxT != PAD_ID


def masked_mean(x_BxTxD: jax.Array, mask_BxT: jax.Array) -> jax.Array:
    """[B, D]: the mean of ``x`` over the positions where ``mask`` is True (zeros for an all-False row)."""
    w_BxTx1 = mask_BxT[..., None].astype(x_BxTxD.dtype)
    return (x_BxTxD * w_BxTx1).sum(axis=1) / jnp.maximum(w_BxTx1.sum(axis=1), 1.0)
