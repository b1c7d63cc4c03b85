"""ResNet-18/50, FPN and the torchvision converter: shapes and counts against torchvision's published
figures, pooling/BN/upsampling against flax and numpy, converter errors; with a working torchvision
(e.g. /work/tvenv), logits and FPN outputs equal torch's."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnjax.models.fpn import FPN, ResNetFPN, nearest_indices, upsample_nearest
from nnjax.models.resnet import ResNet, max_pool_3x3, resnet50
from nnjax.models.torch_import import load_torch_state_dict, overlay, resnet_params_from_torch
from conftest import TV, needs_torchvision


def torchvision_resnet_shapes(stage_sizes, bottleneck, num_classes=1000):
    """torchvision ResNet state_dict key -> shape, written out from torchvision's architecture."""
    shapes = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix, c):
        shapes.update({f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")})
        shapes[f"{prefix}.num_batches_tracked"] = ()

    bn("bn1", 64)
    in_c = 64
    for i, (n, w) in enumerate(zip(stage_sizes, (64, 128, 256, 512))):
        for j in range(n):
            prefix, stride = f"layer{i + 1}.{j}", 2 if i > 0 and j == 0 else 1
            out = 4 * w if bottleneck else w
            convs = [(w, in_c, 1), (w, w, 3), (out, w, 1)] if bottleneck else [(w, in_c, 3), (w, w, 3)]
            for k, (o, c, ks) in enumerate(convs, 1):
                shapes[f"{prefix}.conv{k}.weight"] = (o, c, ks, ks)
                bn(f"{prefix}.bn{k}", o)
            if stride != 1 or in_c != out:
                shapes[f"{prefix}.downsample.0.weight"] = (out, in_c, 1, 1)
                bn(f"{prefix}.downsample.1", out)
            in_c = out
    shapes["fc.weight"], shapes["fc.bias"] = (num_classes, in_c), (num_classes,)
    return shapes


def random_state_dict(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) if s else np.array(7) for k, s in shapes.items()}


@pytest.fixture(scope="module")
def resnet18_state_dict():
    return random_state_dict(torchvision_resnet_shapes((2, 2, 2, 2), bottleneck=False))


def _count(tree):
    return sum(int(np.size(a)) for a in jax.tree.leaves(tree))


def test_converter_maps_every_resnet18_tensor(resnet18_state_dict):
    sd = resnet18_state_dict
    variables = resnet_params_from_torch(sd, "resnet18")
    assert _count(variables["params"]) == 11_689_512  # torchvision's published ResNet-18 size
    params, stats = variables["params"], variables["batch_stats"]
    np.testing.assert_array_equal(params["layer2_0"]["conv1"]["kernel"][2, 0, 5, 7], sd["layer2.0.conv1.weight"][7, 5, 2, 0])
    np.testing.assert_array_equal(params["layer3_0"]["downsample_conv"]["kernel"][0, 0], sd["layer3.0.downsample.0.weight"][:, :, 0, 0].T)
    np.testing.assert_array_equal(params["fc"]["kernel"], sd["fc.weight"].T)
    np.testing.assert_array_equal(params["layer4_1"]["bn2"]["scale"], sd["layer4.1.bn2.weight"])
    np.testing.assert_array_equal(stats["layer1_0"]["bn1"]["var"], sd["layer1.0.bn1.running_var"])
    np.testing.assert_array_equal(stats["layer2_0"]["downsample_bn"]["mean"], sd["layer2.0.downsample.1.running_mean"])


def test_resnet50_has_torchvision_parameter_count():
    shapes = jax.eval_shape(lambda k, x: resnet50().init(k, x), jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    assert _count(shapes["params"]) == 25_557_032  # torchvision's published ResNet-50 size
    chex.assert_shape(shapes["params"]["layer2_0"]["conv2"]["kernel"], (3, 3, 128, 128))  # stride-2 3x3 (v1.5)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.pop("layer3.1.bn2.running_var"), r"lacks .*'layer3\.1\.bn2\.running_var'"),
        (lambda sd: sd.pop("layer4.0.downsample.0.weight"), r"lacks .*'layer4\.0\.downsample\.0\.weight'"),
        (lambda sd: sd.update({"layer5.0.conv1.weight": np.zeros((8, 8, 3, 3))}), r"'layer5\.0\.conv1\.weight'.*lacks"),
        (lambda sd: sd.update({"layer1.0.conv2.weight": np.zeros((64, 64, 5, 5))}),
         r"'layer1\.0\.conv2\.weight' has shape \(64, 64, 5, 5\); resnet18 expects \(64, 64, 3, 3\)"),
    ],
)
def test_converter_names_missing_unexpected_and_misshapen_keys(resnet18_state_dict, edit, message):
    sd = dict(resnet18_state_dict)
    edit(sd)
    with pytest.raises(ValueError, match=message):
        resnet_params_from_torch(sd, "resnet18")


def test_converter_and_loader_reject_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="variant must be one of"):
        resnet_params_from_torch({}, "resnet19")
    with pytest.raises(ValueError, match="lacks 'fc.weight'"):
        resnet_params_from_torch({}, "resnet18")
    from nnjax.errors import DataUnavailableError

    with pytest.raises(DataUnavailableError, match="does not exist.*torch.save"):
        load_torch_state_dict(str(tmp_path / "missing.pth"))


def test_overlay_substitutes_and_checks_shapes():
    fresh = {"params": {"a": {"k": jnp.zeros(3)}, "fc": {"k": jnp.zeros(2)}}}
    merged = overlay(fresh, {"params": {"a": {"k": np.ones(3)}}})
    np.testing.assert_array_equal(merged["params"]["a"]["k"], np.ones(3))
    np.testing.assert_array_equal(merged["params"]["fc"]["k"], np.zeros(2))
    with pytest.raises(ValueError, match=r"params/a/k has shape \(4,\)"):
        overlay(fresh, {"params": {"a": {"k": np.ones(4)}}})
    with pytest.raises(ValueError, match="params/b/k does not exist"):
        overlay(fresh, {"params": {"b": {"k": np.ones(3)}}})


def test_max_pool_3x3_equals_flax_with_minus_inf_padding():
    def both(x):
        return max_pool_3x3(x), nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

    x = -1.0 - np.random.default_rng(0).random((2, 7, 8, 3), dtype=np.float32)  # odd/even; < 0: zero padding would show
    ours, expected = jax.jit(both)(x)
    chex.assert_trees_all_equal(ours, expected)


def _conv_out(n, kernel, stride):
    """torch Conv2d/MaxPool2d output length with padding kernel // 2."""
    return (n + 2 * (kernel // 2) - kernel) // stride + 1


TINY = dict(stage_sizes=(1, 1, 1, 1), widths=(4, 8, 8, 8), stem_width=4, num_classes=3)


@pytest.fixture(scope="module")
def tiny_fpn():
    """A bottleneck ResNet (ImageNet stem) + FPN on an odd-sized batch [2, 33, 45, 3], as shapes only."""
    x = jax.ShapeDtypeStruct((2, 33, 45, 3), jnp.float32)
    model = ResNetFPN(ResNet(block="bottleneck", **TINY), out_channels=6)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(1), x)
    return model, variables, x


def test_resnet_stage_shapes_follow_torch_arithmetic(tiny_fpn):
    model, variables, x = tiny_fpn
    backbone_variables = {k: v["backbone"] for k, v in variables.items()}
    stages = jax.eval_shape(lambda v, x: model.backbone.apply(v, x, return_stages=True), backbone_variables, x)
    logits = jax.eval_shape(model.backbone.apply, backbone_variables | {"params": {**backbone_variables["params"], "fc": {
        "kernel": jax.ShapeDtypeStruct((32, 3), jnp.float32), "bias": jax.ShapeDtypeStruct((3,), jnp.float32)}}}, x)
    h, w = (_conv_out(_conv_out(n, 7, 2), 3, 2) for n in (33, 45))  # stem conv 7x7/2 then max pool 3x3/2
    expected = []
    for i, width in enumerate(TINY["widths"]):
        if i:
            h, w = _conv_out(h, 3, 2), _conv_out(w, 3, 2)
        expected.append((2, h, w, 4 * width))
    chex.assert_shape(stages, expected)
    assert [s[1:3] for s in expected] == [(9, 12), (5, 6), (3, 3), (2, 2)]
    chex.assert_shape(logits, (2, 3))


def test_fpn_outputs_one_map_per_level_at_its_size(tiny_fpn):
    model, variables, x = tiny_fpn
    pyramid = jax.eval_shape(model.apply, variables, x)
    chex.assert_shape(pyramid, [(2, 9, 12, 6), (2, 5, 6, 6), (2, 3, 3, 6), (2, 2, 2, 6)])


def test_nearest_indices_and_upsampling():
    np.testing.assert_array_equal(nearest_indices(3, 5), [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(nearest_indices(4, 7), [0, 0, 1, 1, 2, 2, 3])
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 2)).astype(np.float32)
    up = jax.jit(upsample_nearest, static_argnums=1)(x, (6, 8))
    np.testing.assert_array_equal(up, np.repeat(np.repeat(x, 2, axis=1), 2, axis=2))


def _conv3x3_same(x, kernel, bias):
    """Numpy 3x3 'SAME' cross-correlation of [B, H, W, C] with [3, 3, C, F]."""
    _, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return sum(padded[:, i : i + h, j : j + w] @ kernel[i, j] for i in range(3) for j in range(3)) + bias


def test_fpn_top_down_equals_numpy_nearest_merge():
    rng = np.random.default_rng(0)
    f0, f1 = rng.standard_normal((1, 5, 7, 3)).astype(np.float32), rng.standard_normal((1, 3, 4, 2)).astype(np.float32)
    fpn = FPN(out_channels=4)
    shapes = jax.eval_shape(fpn.init, jax.random.PRNGKey(2), [f0, f1])["params"]
    p = params = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)
    lat0 = f0 @ p["inner_0"]["kernel"][0, 0] + p["inner_0"]["bias"]
    lat1 = f1 @ p["inner_1"]["kernel"][0, 0] + p["inner_1"]["bias"]
    up = lat1[:, [0, 0, 1, 1, 2]][:, :, [0, 0, 1, 1, 2, 2, 3]]  # floor(i * in / out) for 3 -> 5, 4 -> 7
    expected = [
        _conv3x3_same(lat0 + up, p["layer_0"]["kernel"], p["layer_0"]["bias"]),
        _conv3x3_same(lat1, p["layer_1"]["kernel"], p["layer_1"]["bias"]),
    ]
    chex.assert_trees_all_close(jax.jit(fpn.apply)({"params": params}, [f0, f1]), expected, atol=1e-4)


def test_batchnorm_statistics_use_torch_momentum():
    model = ResNet(stage_sizes=(1,), widths=(4,), stem="cifar", stem_width=4, num_classes=2)
    x = np.random.default_rng(1).standard_normal((3, 6, 5, 2)).astype(np.float32)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(1), x)
    rng = np.random.default_rng(0)
    variables = {"params": jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes["params"]),
                 "batch_stats": jax.tree.map(lambda s: np.ones(s.shape, np.float32), shapes["batch_stats"])}
    variables["batch_stats"] = jax.tree_util.tree_map_with_path(
        lambda p, v: v if p[-1].key == "var" else np.zeros_like(v), variables["batch_stats"])
    _, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    kernel = variables["params"]["conv1"]["kernel"]
    pre_bn = _conv3x3_same(x, kernel, 0.0)
    stats = updates["batch_stats"]["bn1"]
    chex.assert_trees_all_close(stats["mean"], 0.1 * pre_bn.mean(axis=(0, 1, 2)), atol=1e-5)
    chex.assert_trees_all_close(stats["var"], 0.9 + 0.1 * pre_bn.var(axis=(0, 1, 2)), atol=1e-5)


@needs_torchvision
def test_torchvision_resnet18_logits_equal_nnjax(tmp_path):
    torch, torchvision = TV
    from nnjax.models.resnet import resnet18

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    with torch.no_grad():  # random BN statistics and affine terms, so a wrong BN mapping shows
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == torchvision_resnet_shapes(
        (2, 2, 2, 2), bottleneck=False, num_classes=10
    )
    path = str(tmp_path / "resnet18.pth")
    torch.save(model.state_dict(), path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x).numpy()
    variables = resnet_params_from_torch(load_torch_state_dict(path), "resnet18")
    logits = jax.jit(resnet18(num_classes=10).apply)(variables, x.numpy().transpose(0, 2, 3, 1))
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


@needs_torchvision
def test_torchvision_resnet50_key_shapes_match_helper():
    _, torchvision = TV
    state = torchvision.models.resnet50().state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == torchvision_resnet_shapes((3, 4, 6, 3), bottleneck=True)


@needs_torchvision
def test_fpn_equals_torchvision_feature_pyramid_network():
    torch, torchvision = TV
    torch.manual_seed(0)
    in_channels, sizes = [3, 5, 4], [(26, 30), (13, 15), (7, 8)]
    tv_fpn = torchvision.ops.FeaturePyramidNetwork(in_channels, 6).eval()
    feats = [torch.randn(1, c, h, w) for c, (h, w) in zip(in_channels, sizes)]
    with torch.no_grad():
        expected = [v.numpy().transpose(0, 2, 3, 1) for v in tv_fpn({str(i): f for i, f in enumerate(feats)}).values()]
    sd = {k: v.numpy() for k, v in tv_fpn.state_dict().items()}
    params = {
        f"{kind}_{i}": {"kernel": sd[f"{kind}_blocks.{i}.0.weight"].transpose(2, 3, 1, 0), "bias": sd[f"{kind}_blocks.{i}.0.bias"]}
        for kind in ("inner", "layer")
        for i in range(3)
    }
    ours = FPN(6).apply({"params": params}, [f.numpy().transpose(0, 2, 3, 1) for f in feats])
    chex.assert_trees_all_close(ours, expected, atol=1e-5)
    for n_in, n_out in [(26, 44), (7, 13), (3, 123)]:  # sizes where torch's float32 index differs from the exact floor
        up = torch.nn.functional.interpolate(torch.arange(n_in, dtype=torch.float32).view(1, 1, n_in, 1), size=(n_out, 1))
        np.testing.assert_array_equal(nearest_indices(n_in, n_out), up.view(-1).long().numpy())
