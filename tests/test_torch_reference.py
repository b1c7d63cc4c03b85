"""nnjax against PyTorch, in every CI run and without torch: each layer family's torch weights go through
nnjax's public import (``nnjax.models.torch_import``), and the outputs and gradients must equal the ones
PyTorch computed, stored in ``tests/torch_reference/*.npz`` by ``python -m tests.torch_reference.generate``.
Where torch is installed, the last test regenerates every file and checks it is the stored one.

Layouts: torch images are NCHW (nnjax NHWC), torch masks say where *not* to attend (nnjax's where to).
"""

import json
import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TV, needs_torchvision

from benchmarks import char_lm
from nnjax import losses
from nnjax.data.images import load_rgb, preprocess, sample_image_path
from nnjax.models import FPN, LSTM, BatchNorm, Conv2D, GATLayer, MultiHeadAttention, SimpleRNN
from nnjax.models.attention import scaled_dot_product_attention
from nnjax.models.graph import Graph, add_self_loops
from nnjax.models.layers import max_pool_2x2
from nnjax.models.resnet import resnet18
from nnjax.models import torch_import as ti
from nnjax.optim import step_lr
from nnjax.scratch import optimizers as scratch
from tests.torch_reference import generate

REFERENCE_DIR = os.path.join(os.path.dirname(__file__), "torch_reference")
NCHW_TO_NHWC = (0, 2, 3, 1)


def load(name: str) -> dict[str, np.ndarray]:
    with np.load(os.path.join(REFERENCE_DIR, f"{name}.npz")) as f:
        return {k: f[k] for k in f.files}


def close(ours, theirs, atol=1e-5, rtol=1e-5):
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=atol, rtol=rtol)


def vjp(fn, args, cotangents):
    """(outputs, gradients of sum(outputs * cotangents) with respect to ``args``)."""
    out, pullback = jax.vjp(fn, *args)
    return out, pullback(cotangents)


def test_reference_files_are_small_and_hold_what_the_tests_read():
    sizes = {name: os.path.getsize(os.path.join(REFERENCE_DIR, name)) for name in generate.FILES}
    assert sum(sizes.values()) < generate.MAX_TOTAL_BYTES, sizes
    for name in generate.FILES:
        meta = json.loads(str(load(name.removesuffix(".npz"))["meta"]))
        assert meta["torch"].startswith("2."), meta


@pytest.mark.parametrize("kind", ["lstm", "rnn"])
def test_lstm_and_rnn_equal_torch_with_initial_state_packing_and_gradients(kind):
    ref = load("recurrent")
    r = lambda key: ref[f"{kind}.{key}"]  # noqa: E731
    params = ti.recurrent_params_from_torch(ref, prefix=f"{kind}.sd.")
    model = (LSTM if kind == "lstm" else SimpleRNN)(5, return_sequences=True)
    initial = (r("c0")[0], r("h0")[0]) if kind == "lstm" else r("h0")[0]

    def run(params, x, initial, mask=None):
        y, state = model.apply({"params": params}, x, mask, initial_state=initial, return_state=True)
        c, h = state if kind == "lstm" else (None, state)
        return (y, h[None], c[None]) if kind == "lstm" else (y, h[None])

    cot = (r("cot.y"), r("cot.hn"), r("cot.cn")) if kind == "lstm" else (r("cot.y"), r("cot.hn"))
    outputs, (grad_params, grad_x, grad_initial) = vjp(run, (params, r("x"), initial), cot)
    close(outputs[0], r("y"))
    close(outputs[1], r("hn"))
    torch_grads = ti.recurrent_params_to_torch(grad_params)
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0"):
        close(torch_grads[name], r(f"grad.{name}"))
    close(grad_params["cell"]["b"], r("grad.bias_hh_l0"))  # both torch biases act through their sum
    close(grad_x, r("grad.x"))
    if kind == "lstm":
        close(outputs[2], r("cn"))
        close(grad_initial[0], r("grad.c0")[0])
        close(grad_initial[1], r("grad.h0")[0])
    else:
        close(grad_initial, r("grad.h0")[0])

    mask = np.arange(4)[None, :] < r("lengths")[:, None]  # pack_padded_sequence's lengths
    packed = run(params, r("x"), initial, mask)
    close(packed[0], r("packed.y"))
    close(packed[1], r("packed.hn"))
    if kind == "lstm":
        close(packed[2], r("packed.cn"))


def test_recurrent_import_refuses_a_two_layer_lstm():
    ref = load("recurrent")
    weights = {k.removeprefix("lstm.sd."): v for k, v in ref.items() if k.startswith("lstm.sd.")}
    with pytest.raises(ti.WeightsError, match="one-layer, one-direction.*found 'bias_hh_l1'"):
        ti.recurrent_params_from_torch(weights | {k.replace("_l0", "_l1"): v for k, v in weights.items()})


def test_multihead_attention_equals_torch_with_padding_and_causal_masks():
    ref = load("attention")
    params = ti.attention_params_from_torch(ref, num_heads=2, prefix="mha.sd.")
    mha = MultiHeadAttention(num_heads=2)
    attend = jax.jit(lambda p, q, kv, mask: mha.apply({"params": p}, q, kv, mask=mask, return_weights=True))
    may_attend = {
        "pad": ~ref["mha.key_padding_mask"][:, None, None, :],
        "causal": ~ref["mha.causal_mask"][None, None],
        "both": ~ref["mha.key_padding_mask"][:, None, None, :] & ~ref["mha.causal_mask"][None, None],
    }
    for case, mask in may_attend.items():
        out, weights = attend(params, ref["mha.x"], None, mask)
        close(out, ref[f"mha.{case}.out"])
        close(weights, ref[f"mha.{case}.weights"])
    out, weights = attend(params, ref["mha.cross.q"], ref["mha.cross.kv"], None)
    close(out, ref["mha.cross.out"])
    close(weights, ref["mha.cross.weights"])

    self_attend = lambda p, x: mha.apply({"params": p}, x, mask=may_attend["pad"])  # noqa: E731
    _, (grad_params, grad_x) = vjp(self_attend, (params, ref["mha.x"]), ref["mha.cot.pad"])
    close(grad_x, ref["mha.grad.x"])
    for name, grad in ti.attention_params_to_torch(grad_params).items():
        close(grad, ref[f"mha.grad.{name}"])
    for name, value in ti.attention_params_to_torch(params).items():  # the export is the import's inverse
        np.testing.assert_array_equal(value, ref[f"mha.sd.{name}"])


def test_scaled_dot_product_attention_equals_torch():
    ref = load("attention")
    out, weights = scaled_dot_product_attention(ref["sdpa.q"], ref["sdpa.k"], ref["sdpa.v"], ref["sdpa.mask"])
    close(out, ref["sdpa.out"])
    close(weights.sum(-1), np.ones(weights.shape[:-1]))


def test_batchnorm2d_equals_torch_in_train_and_eval_with_its_unbiased_running_variance():
    ref = load("normalization")
    variables = ti.batchnorm_variables_from_torch(ref, prefix="bn.sd.")
    x = ref["bn.x"].transpose(NCHW_TO_NHWC)
    to_nchw = lambda y: np.asarray(y).transpose(0, 3, 1, 2)  # noqa: E731
    torch_like = BatchNorm(momentum=0.9, epsilon=1e-5, unbiased_running_var=True)
    close(to_nchw(torch_like.apply(variables, x, use_running_average=True)), ref["bn.eval.y"])

    def train(params, x):
        y, updates = torch_like.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                                      use_running_average=False, mutable=["batch_stats"])
        return y, updates["batch_stats"]

    (y, stats), pullback = jax.vjp(train, variables["params"], x)
    close(to_nchw(y), ref["bn.train.y"])
    close(stats["mean"], ref["bn.train.running_mean"])
    close(stats["var"], ref["bn.train.running_var"])
    grad_params, grad_x = pullback((ref["bn.cot"].transpose(NCHW_TO_NHWC), jax.tree.map(jnp.zeros_like, stats)))
    close(to_nchw(grad_x), ref["bn.grad.x"], atol=1e-4)
    close(grad_params["scale"], ref["bn.grad.weight"], atol=1e-4)
    close(grad_params["bias"], ref["bn.grad.bias"], atol=1e-4)

    flax_like = BatchNorm(momentum=0.9, epsilon=1e-5)  # the default: the biased variance, as flax.linen.BatchNorm
    _, biased = flax_like.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    _, oracle = nn.BatchNorm(momentum=0.9, epsilon=1e-5).apply(variables, x, use_running_average=False,
                                                                mutable=["batch_stats"])
    chex.assert_trees_all_close(biased, oracle, atol=1e-6)
    n = x.size // x.shape[-1]
    close((stats["var"] - 0.9 * variables["batch_stats"]["var"]) * (n - 1) / n,
          biased["batch_stats"]["var"] - 0.9 * variables["batch_stats"]["var"])


def _conv2d_arguments(case: str) -> dict:
    """``models.Conv2D`` arguments of a torch case in ``generate.CONV_CASES``."""
    pre_pad, torch_args = generate.CONV_CASES[case]
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    padding = torch_args.get("padding", 0)
    if pre_pad is not None:  # F.pad's (left, right, top, bottom), then an unpadded convolution
        left, right, top, bottom = pre_pad
        padding = ((top, bottom), (left, right))
    elif padding == "same":
        padding = "SAME"
    return {"features": torch_args["out_channels"], "kernel_size": pair(torch_args["kernel_size"]),
            "strides": pair(torch_args.get("stride", 1)), "padding": padding, "use_bias": torch_args.get("bias", True)}


@pytest.mark.parametrize("impl", ["im2col", "xla"])
@pytest.mark.parametrize("case", sorted(generate.CONV_CASES))
def test_conv2d_equals_torch_with_its_integer_pair_per_side_and_same_padding(case, impl):
    ref = load("conv")
    params = ti.conv_params_from_torch(ref, prefix=f"conv.{case}.sd.")
    conv = Conv2D(**_conv2d_arguments(case), impl=impl)
    apply = lambda p, x: conv.apply({"params": p}, x)  # noqa: E731
    y, (grad_params, grad_x) = vjp(apply, (params, ref["conv.x"].transpose(NCHW_TO_NHWC)),
                                   ref[f"conv.{case}.cot"].transpose(NCHW_TO_NHWC))
    close(np.asarray(y).transpose(0, 3, 1, 2), ref[f"conv.{case}.y"])
    close(np.asarray(grad_x).transpose(0, 3, 1, 2), ref[f"conv.{case}.grad.x"], atol=1e-4)
    for name, grad in ti.conv_params_to_torch(grad_params).items():
        close(grad, ref[f"conv.{case}.grad.{name}"], atol=1e-4)
    for name, value in ti.conv_params_to_torch(params).items():
        np.testing.assert_array_equal(value, ref[f"conv.{case}.sd.{name}"])


def test_max_pool_equals_torch():
    ref = load("pool")
    x = ref["pool.x"].transpose(NCHW_TO_NHWC)
    pools = {
        "a": max_pool_2x2,  # MaxPool2d(2): the odd last row dropped
        "b": lambda x: nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))),  # MaxPool2d(3, 2, 1)
    }
    for case, pool in pools.items():
        y, (grad_x,) = vjp(pool, (x,), ref[f"pool.{case}.cot"].transpose(NCHW_TO_NHWC))
        close(np.asarray(y).transpose(0, 3, 1, 2), ref[f"pool.{case}.y"])
        close(np.asarray(grad_x).transpose(0, 3, 1, 2), ref[f"pool.{case}.grad.x"])


def test_losses_and_their_gradients_equal_torch():
    ref = load("losses")
    logits, targets, weight = ref["loss.logits"], ref["loss.targets"], ref["loss.class_weight"]
    one_hot = jax.nn.one_hot(targets, logits.shape[-1])
    b_targets, target, kl_target = ref["loss.b_targets"], ref["loss.target"], ref["loss.kl_target"]
    cases = {  # name: (the input torch differentiated, nnjax's loss of it)
        "ce": ("logits", lambda z: jnp.mean(losses.softmax_cross_entropy(z, targets))),
        "ce_smooth": ("logits", lambda z: losses.categorical_cross_entropy_with_logits(z, 0.9 * one_hot + 0.1 / 5)),
        "ce_weight": ("logits", lambda z: jnp.sum(weight[targets] * losses.softmax_cross_entropy(z, targets))
                      / jnp.sum(weight[targets])),
        "nll": ("logits", lambda z: jnp.mean(losses.softmax_cross_entropy(z, targets))),
        "bce_logits": ("b_logits", lambda z: losses.binary_cross_entropy_with_logits(z, b_targets)),
        "bce": ("b_logits", lambda z: losses.binary_cross_entropy(jax.nn.sigmoid(z), b_targets)),
        "mse": ("pred", lambda p: losses.mse(p, target)),
        "l1": ("pred", lambda p: losses.l1(p, target)),
        "smooth_l1": ("pred", lambda p: losses.huber(p, target, delta=1.0)),  # beta 1: Huber with delta 1
        "huber": ("pred", lambda p: losses.huber(p, target, delta=1.5)),
        "kl_div": ("logits", lambda z: losses.kl_divergence(jax.nn.log_softmax(z), kl_target)),
    }
    for name, (argument, loss) in cases.items():
        value, grad = jax.value_and_grad(loss)(ref[f"loss.{argument}"])
        close(value, ref[f"loss.{name}.value"], atol=1e-6)
        close(grad, ref[f"loss.{name}.grad"], atol=1e-6)


def _trajectory(tx: optax.GradientTransformation, ref: dict, steps: int = 12) -> np.ndarray:
    X, Y = ref["opt.X"], ref["opt.Y"]
    grad = jax.grad(lambda w: jnp.mean((X @ w - Y) ** 2))
    w, state, path = jnp.asarray(ref["opt.w0"]), tx.init(ref["opt.w0"]), [ref["opt.w0"]]
    for _ in range(steps):
        updates, state = tx.update(grad(w), state, w)
        w = optax.apply_updates(w, updates)
        path.append(w)
    return np.stack(path)


def test_optimizer_trajectories_and_step_lr_equal_torch():
    """nnjax's from-scratch optimizers and the optax ones nnjax trains with follow torch.optim step for step."""
    ref = load("optim")
    l2 = lambda wd, tx: optax.chain(optax.add_decayed_weights(wd), tx)  # noqa: E731  torch's coupled weight_decay
    optimizers = {
        "sgd": [scratch.sgd(0.1), optax.sgd(0.1)],
        "momentum": [scratch.momentum(0.1, 0.9), optax.sgd(0.1, momentum=0.9)],
        "nesterov": [scratch.momentum(0.1, 0.9, nesterov=True), optax.sgd(0.1, momentum=0.9, nesterov=True)],
        "sgd_wd": [l2(0.05, scratch.momentum(0.1, 0.9)), l2(0.05, optax.sgd(0.1, momentum=0.9))],
        "rmsprop": [scratch.rmsprop(0.01, 0.99, 1e-8), optax.rmsprop(0.01, decay=0.99, eps=1e-8, eps_in_sqrt=False)],
        "rmsprop_momentum": [optax.rmsprop(0.01, decay=0.9, eps=1e-8, eps_in_sqrt=False, momentum=0.5)],
        "adam": [scratch.adam(0.05), optax.adam(0.05)],
        "adam_l2": [l2(0.1, scratch.adam(0.05)), l2(0.1, optax.adam(0.05))],
        "adamw": [optax.adamw(0.05, weight_decay=0.1)],
        "steplr": [scratch.momentum(step_lr(0.1, 4, 0.5), 0.9), optax.sgd(step_lr(0.1, 4, 0.5), momentum=0.9)],
    }
    assert set(optimizers) == set(generate.OPTIMIZERS)
    for name, txs in optimizers.items():
        for tx in txs:
            close(_trajectory(tx, ref), ref[f"opt.{name}.traj"], atol=1e-5)
    close(jax.vmap(step_lr(0.1, 4, 0.5))(jnp.arange(12)), ref["opt.steplr.lr"], atol=1e-7)


@pytest.mark.parametrize("case", ["concat", "mean"])
def test_gat_layer_equals_pyg_gatconv_with_its_attention_weights(case):
    ref = load("graph")
    params = ti.gat_params_from_torch(ref, prefix=f"gat.{case}.sd.")
    senders, receivers = add_self_loops(ref["gat.edge_index"][0], ref["gat.edge_index"][1], 6)
    layer = GATLayer(3, heads=2, concat=case == "concat")
    apply = lambda p, x: layer.apply({"params": p}, Graph(x, senders, receivers), return_weights=True)  # noqa: E731
    (out, alpha), pullback = jax.vjp(apply, params, ref["gat.x"])
    close(out, ref[f"gat.{case}.out"])
    close(alpha, ref[f"gat.{case}.alpha"])
    grad_params, grad_x = pullback((ref[f"gat.{case}.cot"], jnp.zeros_like(alpha)))
    close(grad_x, ref[f"gat.{case}.grad.x"])
    close(grad_params["proj"]["kernel"].T, ref[f"gat.{case}.grad.lin.weight"])
    for name in ("att_src", "att_dst", "bias"):
        close(grad_params[name], ref[f"gat.{case}.grad.{name}"].reshape(np.shape(grad_params[name])))


def test_fpn_equals_torchvision_feature_pyramid_network():
    ref = load("fpn")
    params = ti.fpn_params_from_torch(ref, prefix="fpn.sd.")
    features = [ref[f"fpn.x{i}"].transpose(NCHW_TO_NHWC) for i in range(3)]
    for i, level in enumerate(FPN(6).apply({"params": params}, features)):
        close(np.asarray(level).transpose(0, 3, 1, 2), ref[f"fpn.y{i}"])


def test_resnet18_logits_equal_torchvision_and_the_export_is_the_import_inverse():
    """ResNet-18's 11M weights are not stored: numpy draws them from the key names, and their digest must be
    the one the generator loaded into torchvision."""
    ref = load("resnet")
    shapes = {k: tuple(v) for k, v in json.loads(str(ref["resnet.shapes"])).items()}
    state_dict = generate.seeded_state_dict(shapes)
    assert generate.state_dict_sha256(state_dict) == str(ref["resnet.sha256"])
    variables = ti.resnet_params_from_torch(state_dict, "resnet18")
    logits = jax.jit(resnet18(num_classes=10).apply)(variables, ref["resnet.x"].transpose(NCHW_TO_NHWC))
    close(logits, ref["resnet.logits"], atol=1e-3, rtol=1e-4)
    exported = ti.resnet_params_to_torch(variables)
    assert list(exported) == [str(k) for k in ref["resnet.keys"]]  # torch's own key order
    for key, value in exported.items():
        np.testing.assert_array_equal(value, state_dict[key])


def test_gpt_logits_equal_the_benchmarks_torch_gpt():
    ref = load("gpt")
    size = char_lm.Size(**json.loads(str(ref["meta"]))["gpt"]["size"])
    params = char_lm.params_from_torch_gpt({k.removeprefix("gpt.sd."): v for k, v in ref.items() if k.startswith("gpt.sd.")},
                                           size)
    logits = char_lm.nnjax_lm(size).apply({"params": params}, ref["gpt.ids"].astype(np.int32))
    close(logits, ref["gpt.logits"], atol=1e-5, rtol=1e-4)
    exported = char_lm.torch_gpt_state_dict(params, size)
    for name, value in exported.items():
        np.testing.assert_array_equal(value, ref[f"gpt.sd.{name}"])


def test_image_preprocessing_equals_torchvision_transforms():
    """torchvision's PIL Resize rounds differently from a float resize: about one uint8 level per pixel."""
    ref = load("preprocess")
    image = load_rgb(sample_image_path())
    level = 1.5 / 255.0 / min(0.229, 0.224, 0.225)  # one and a half uint8 levels after ImageNet normalisation
    for key, (resize, crop) in (("pre.small", (64, 56)), ("pre.full", (256, 224))):
        ours = np.asarray(preprocess(image, resize, crop)).transpose(2, 0, 1)
        theirs = ref[key].astype(np.float32)
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() <= level + (0.01 if key == "pre.full" else 0.0)  # + float16 storage


@needs_torchvision
def test_the_stored_references_are_what_torch_computes_here():
    """With torch installed, every file is rebuilt by the generator and compared with the stored one."""
    torch, _ = TV
    torch.use_deterministic_algorithms(True)
    for name, build in generate.FILES.items():
        rebuilt, stored = build(), load(name.removesuffix(".npz"))
        assert set(rebuilt) == set(stored), name
        for key, value in rebuilt.items():
            if key == "meta":
                continue
            if value.dtype.kind in "fc":
                np.testing.assert_allclose(value, stored[key], atol=1e-5, rtol=1e-4, err_msg=f"{name}: {key}")
            else:
                np.testing.assert_array_equal(value, stored[key], err_msg=f"{name}: {key}")
