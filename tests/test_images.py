"""ImageNet preprocessing against PIL and hand-computed crops, top-k decoding, and the classify_image
experiment; with a working torchvision (e.g. /work/tvenv), the whole path against torchvision's."""

import json

import numpy as np
import pytest
from PIL import Image

from experiments import classify_image
from nnjax import cli
from nnjax.errors import DataUnavailableError
from nnjax.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    center_crop,
    load_rgb,
    preprocess,
    resize_shorter,
    resized_shape,
    sample_image_path,
    top_k,
)
from conftest import TV, needs_torchvision


PIL_TOLERANCE = 1.0  # uint8 levels: PIL rounds to uint8 after each of its two resampling passes


def test_resized_shape_follows_torchvision_resize_rule():
    assert resized_shape(480, 640, 256) == (256, 341)  # 256 * 640 / 480 = 341.33, truncated
    assert resized_shape(640, 427, 256) == (383, 256)  # 383.7 truncated
    assert resized_shape(100, 100, 256) == (256, 256)


@pytest.mark.parametrize("h, w, size", [(37, 53, 16), (20, 30, 45)])  # downscale (antialiased) and upscale
def test_resize_shorter_matches_pil_bilinear(h, w, size):
    rng = np.random.default_rng(h)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    oh, ow = resized_shape(h, w, size)
    pil = np.asarray(Image.fromarray(image).resize((ow, oh), Image.BILINEAR), dtype=np.float32)
    ours = np.asarray(resize_shorter(image, size)) * 255.0
    assert ours.shape == (oh, ow, 3)
    diff = np.abs(ours - pil)
    assert diff.max() <= PIL_TOLERANCE + 1e-3 and diff.mean() < 0.4, (diff.max(), diff.mean())


def test_center_crop_offsets_round_half_to_even():
    image = np.arange(9 * 8).reshape(9, 8, 1)
    crop = center_crop(image, 4)  # top: (9 - 4) / 2 = 2.5 -> 2; left: (8 - 4) / 2 = 2
    np.testing.assert_array_equal(crop[..., 0], image[2:6, 2:6, 0])
    np.testing.assert_array_equal(center_crop(image[:7], 4)[..., 0], image[2:6, 2:6, 0])  # 1.5 -> 2
    with pytest.raises(ValueError, match="smaller than the crop"):
        center_crop(image, 10)


def test_preprocess_normalises_a_constant_image_exactly():
    image = np.full((30, 20, 3), (51, 102, 204), dtype=np.uint8)
    x = np.asarray(preprocess(image, resize=16, crop=12))
    assert x.shape == (12, 12, 3)
    expected = (np.array([51, 102, 204]) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x, np.broadcast_to(expected, x.shape), atol=1e-5)


def test_top_k_ranks_by_logit_with_softmax_probabilities():
    logits = np.array([0.5, 3.0, -1.0, 2.0, 3.0])
    ranked = top_k(logits, 3, ["a", "b", "c", "d", "e"])
    assert [r["index"] for r in ranked] == [1, 4, 3] and [r["label"] for r in ranked] == ["b", "e", "d"]
    probs = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose([r["probability"] for r in ranked], probs[[1, 4, 3]])
    assert top_k(logits, 1)[0]["label"] == "class_1"
    with pytest.raises(ValueError, match="k must be in"):
        top_k(logits, 6)


def test_load_rgb_converts_any_mode_to_uint8_rgb(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(load_rgb(str(tmp_path / "grey.png")), np.repeat(grey[..., None], 3, axis=-1))
    rgba = np.random.default_rng(0).integers(0, 256, (5, 2, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_rgb(str(tmp_path / "rgba.png")), rgba[..., :3])
    china = load_rgb(sample_image_path())
    assert china.shape == (427, 640, 3) and china.dtype == np.uint8
    with pytest.raises(DataUnavailableError, match="does not exist"):
        load_rgb(str(tmp_path / "missing.jpg"))


def test_classify_image_without_weights_exits_2_with_instructions(capsys):
    assert cli.run(classify_image.main, classify_image.Config, argv=[], prog="classify_image") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "torch.save" in err and "IMAGENET1K_V2" in err


@needs_torchvision
def test_classify_image_top5_equals_torchvision(tmp_path, capsys):
    torch, torchvision = TV
    from torchvision import transforms

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    path = str(tmp_path / "resnet18.pth")
    torch.save(model.state_dict(), path)
    assert cli.run(classify_image.main, classify_image.Config, argv=["--weights", path, "--arch", "resnet18"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    image = load_rgb(sample_image_path())
    ours_x = np.asarray(preprocess(image))
    with torch.no_grad():
        logits = model(torch.from_numpy(ours_x.transpose(2, 0, 1)[None].copy()))[0].numpy()
    torch_top5 = np.argsort(-logits)[:5]
    assert [r["index"] for r in result["top5"]] == list(torch_top5)
    assert result["top5"][0]["label"] == torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"][torch_top5[0]]

    # torchvision's own PIL pipeline gives the same input up to about one uint8 level per pixel.
    tv = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])(Image.fromarray(image)).numpy().transpose(1, 2, 0)
    assert tv.shape == ours_x.shape
    assert np.abs(tv - ours_x).max() <= (PIL_TOLERANCE + 0.5) / 255.0 / min(IMAGENET_STD)
