"""Each corruption against its published definition, written here plainly (per image, numpy or PIL)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from core.errors import BenchError
from tasks.corruptions import (
    CORRUPTIONS,
    blur_along,
    corrupt,
    gaussian_filter,
    liquid_edges,
    liquid_noise,
    spatter,
)
from tasks.splits import CORRUPTION_TITLES, corrupted_split, parse_split, split_title


def images(n: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Random 8-bit images as floats in [0, 1]."""
    return (torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 255).round() / 255


def generators(n: int, seed: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


@pytest.mark.parametrize("profile", ["small", "imagenet"])
def test_gaussian_noise_has_the_severity_s_standard_deviation(profile):
    grey = torch.full((64, 3, 32, 32), 0.5)
    noise = corrupt(grey, "gaussian_noise", 2, profile=profile) - grey
    expected = CORRUPTIONS["gaussian_noise"].levels[profile][1]
    assert noise.std().item() == pytest.approx(expected, rel=0.02)
    assert abs(noise.mean().item()) < 0.002


def test_impulse_noise_sets_the_stated_fraction_of_values_to_0_or_1_evenly():
    grey = torch.full((64, 3, 32, 32), 0.5)
    noisy = corrupt(grey, "impulse_noise", 5, profile="imagenet")
    amount = CORRUPTIONS["impulse_noise"].levels["imagenet"][4]
    changed = noisy != 0.5
    assert changed.float().mean().item() == pytest.approx(amount, rel=0.03)
    assert set(noisy[changed].unique().tolist()) == {0.0, 1.0}
    assert (noisy[changed] == 1).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_contrast_is_the_imagenet_c_formula():
    x = images()
    c = CORRUPTIONS["contrast"].levels["imagenet"][1]
    expected = []
    for image in x.permute(0, 2, 3, 1).numpy():  # H x W x 3, as in ImageNet-C
        means = np.mean(image, axis=(0, 1), keepdims=True)
        expected.append(np.clip((image - means) * c + means, 0, 1))
    assert torch.allclose(corrupt(x, "contrast", 2), torch.from_numpy(np.stack(expected)).permute(0, 3, 1, 2),
                          atol=1e-6)


@pytest.mark.parametrize("size, profile, upscale", [(32, "small", Image.BOX), (224, "imagenet", Image.NEAREST)])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_pixelate_is_a_pil_box_downscale_then_the_references_upscale(size, profile, upscale, severity):
    """The upscale of FusionBench's make_corruption.py (BOX) and of imagecorruptions 1.1.2 (NEAREST)."""
    x = images(2, size)
    small = int(size * CORRUPTIONS["pixelate"].levels[profile][severity - 1])
    expected = torch.stack([from_pil(to_pil(image).resize((small, small), Image.BOX).resize((size, size), upscale))
                            for image in x])
    ours = corrupt(x, "pixelate", severity, profile=profile)
    assert (ours - expected).abs().max() <= 1.01 / 255  # PIL rounds to 8 bits between


def test_jpeg_is_pil_jpeg_at_the_severity_s_quality():
    x = images()
    quality = CORRUPTIONS["jpeg_compression"].levels["imagenet"][1]
    expected = []
    for image in x:
        buffer = io.BytesIO()
        to_pil(image).save(buffer, "JPEG", quality=quality)
        expected.append(from_pil(Image.open(buffer)))
    assert torch.equal(corrupt(x, "jpeg_compression", 2), torch.stack(expected))


def test_motion_blur_is_the_imagecorruptions_shift_and_add():
    x, radius, sigma = images(3, 24), 4, 2.0
    angles = torch.tensor([-40.0, 0.0, 30.0])
    expected = []
    for image, angle in zip(x.permute(0, 2, 3, 1).numpy(), angles.tolist()):
        width = 2 * radius + 1
        kernel = np.exp(-np.arange(width) ** 2 / (2 * sigma ** 2))
        kernel /= kernel.sum()
        blurred = np.zeros_like(image)
        for i in range(width):
            dy = -int(np.ceil(i * np.sin(np.deg2rad(angle)) - 0.5))
            dx = -int(np.ceil(i * np.cos(np.deg2rad(angle)) - 0.5))
            shifted = np.roll(image, (dy, dx), axis=(0, 1))  # then repeat the edge over what wrapped around
            if dy > 0:
                shifted[:dy] = shifted[dy]
            if dy < 0:
                shifted[dy:] = shifted[dy - 1]
            if dx > 0:
                shifted[:, :dx] = shifted[:, dx:dx + 1]
            if dx < 0:
                shifted[:, dx:] = shifted[:, dx - 1:dx]
            blurred += kernel[i] * shifted
        expected.append(np.clip(blurred, 0, 1))
    ours = blur_along(x, radius, sigma, angles)
    assert torch.allclose(ours, torch.from_numpy(np.stack(expected)).permute(0, 3, 1, 2), atol=1e-5)


def test_gaussian_filter_blurs_each_map_alone_as_scikit_images_gaussian_does():
    """scikit-image's `gaussian`, which the reference blurs the liquid with, is scipy's with these settings."""
    maps = torch.rand(3, 30, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64).numpy()
    for dtype, sigma in ((np.float64, 0.8), (np.float32, 3.0)):
        expected = np.stack([ndimage.gaussian_filter(m, sigma, mode="nearest", truncate=4.0)
                             for m in maps.astype(dtype)])
        assert np.array_equal(gaussian_filter(maps.astype(dtype), sigma), expected)


def reference_spatter(image: np.ndarray, noise: np.ndarray, c: tuple) -> np.ndarray:
    """Hendrycks's `spatter` (make_imagenet_c.py, make_cifar_c.py), as imagecorruptions 1.1.2 and FusionBench's
    make_corruption.py run it on an RGB image [H, W, 3] in 0..255, on the given liquid noise (the reference's
    `np.random.normal` draw) and parameters `c`, step by step; scipy's gaussian_filter with mode "nearest" and
    truncate 4 is what scikit-image's `gaussian` calls, and the alpha channel it adds and drops is left out."""
    x = np.array(image, dtype=np.float32) / 255.
    liquid_layer = ndimage.gaussian_filter(noise, c[2], mode="nearest", truncate=4.0)
    liquid_layer[liquid_layer < c[3]] = 0
    if c[5] == 0:
        liquid_layer = (liquid_layer * 255).astype(np.uint8)
        dist = 255 - cv2.Canny(liquid_layer, 50, 150)
        dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
        dist = cv2.equalizeHist(dist)
        ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
        dist = cv2.filter2D(dist, cv2.CV_8U, ker)
        dist = cv2.blur(dist, (3, 3)).astype(np.float32)
        m = liquid_layer * dist
        m /= np.max(m)
        m *= c[4]
        color = np.concatenate((175 / 255. * np.ones_like(m[..., None]), 238 / 255. * np.ones_like(m[..., None]),
                                238 / 255. * np.ones_like(m[..., None])), axis=2)
        return np.clip(x + m[..., None] * color, 0, 1) * 255
    m = np.where(liquid_layer > c[3], 1, 0)
    m = ndimage.gaussian_filter(m.astype(np.float32), c[4], mode="nearest", truncate=4.0)
    m[m < 0.8] = 0
    color = np.concatenate((63 / 255. * np.ones_like(x[..., :1]), 42 / 255. * np.ones_like(x[..., :1]),
                            20 / 255. * np.ones_like(x[..., :1])), axis=2)
    color *= m[..., np.newaxis]
    x *= (1 - m[..., np.newaxis])
    return np.clip(x + color, 0, 1) * 255


def to_hwc_255(image: torch.Tensor) -> np.ndarray:
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.mark.parametrize("profile, size, count", [("small", 32, 24), ("imagenet", 224, 2)])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_spatter_is_the_reference_formula_on_the_same_liquid_noise(profile, size, count, severity):
    x = images(count, size, seed=severity)
    params = CORRUPTIONS["spatter"].levels[profile][severity - 1]
    ours = spatter(x, params, generators(len(x), severity)).permute(0, 2, 3, 1).numpy() * 255
    noise = liquid_noise(x, *params[:2], generators(len(x), severity)).numpy()
    expected = np.stack([reference_spatter(to_hwc_255(image), layer, params) for image, layer in zip(x, noise)])
    assert np.abs(ours - expected).max() < 1e-3  # in grey levels: float32 rounding only
    assert np.abs(expected - x.permute(0, 2, 3, 1).numpy() * 255).mean() > 0.3  # the liquid shows


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_spatter_is_imagecorruptions_own_on_the_same_liquid_noise(severity, monkeypatch):
    """imagecorruptions 1.1.2 is not a test dependency (it pulls opencv-python beside opencv-python-headless,
    scikit-image, and setuptools < 81 for pkg_resources): run this where it is installed."""
    reference = pytest.importorskip("imagecorruptions.corruptions")
    x = images(2, 224, seed=severity)
    params = CORRUPTIONS["spatter"].levels["imagenet"][severity - 1]
    ours = spatter(x, params, generators(len(x), severity)).permute(0, 2, 3, 1).numpy() * 255
    noise = liquid_noise(x, *params[:2], generators(len(x), severity)).numpy()
    for image, layer, result in zip(x, noise, ours):
        monkeypatch.setattr(np.random, "normal", lambda size, loc, scale, layer=layer: layer.copy())
        expected = reference.spatter(Image.fromarray(to_hwc_255(image)), severity)
        assert np.abs(result - expected).max() < 1e-3


def test_spatter_edges_lie_on_both_sides_of_the_wet_dry_boundary():
    rows, cols = np.mgrid[:32, :32]
    layer = np.where((rows - 15.5) ** 2 + (cols - 15.5) ** 2 < 8 ** 2, 200, 0).astype(np.uint8)  # a wet disk
    edges = liquid_edges(layer) > 0
    wet = layer > 0
    near_dry = ndimage.binary_dilation(~wet) & wet  # wet pixels next to a dry one
    near_wet = ndimage.binary_dilation(wet) & ~wet
    assert (edges & near_wet).any() and (edges & near_dry).any()
    assert not (edges & ~(near_dry | near_wet)).any()


def test_spatter_water_only_adds_pale_turquoise_and_mud_covers_with_brown():
    x = images(8, 64) * 0.4  # dark enough that no channel clips at 1
    water = corrupt(x, "spatter", 2, profile="imagenet") - x
    assert (water >= -1e-6).all() and (water > 0.01).any()
    wet = water[:, 0] > 0.01
    ratio = water[:, 1][wet] / water[:, 0][wet]
    assert torch.allclose(ratio, torch.full_like(ratio, 238 / 175), rtol=1e-3)  # (175, 238, 238) / 255
    mud = corrupt(x, "spatter", 5, profile="imagenet")
    covered = (mud != x).any(1)
    assert covered.any() and not covered.all()
    brown = torch.tensor([63.0, 42, 20]).view(1, 3, 1, 1) / 255
    # a covered pixel is x (1 - m) + brown m with a mud layer m of at least 0.8
    assert ((mud - brown).abs() <= 0.2 * (x - brown).abs() + 1e-6).all(1)[covered].all()


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_seeded_and_changes_the_images(name):
    x = images(300, 32)  # more than one chunk of CHUNK images
    first = corrupt(x, name, 2, seed=0, profile="small")
    assert first.shape == x.shape and first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, corrupt(x, name, 2, seed=0, profile="small"))
    assert (first - x).abs().mean() > 1e-3
    if name in ("gaussian_noise", "impulse_noise", "motion_blur", "spatter"):
        assert not torch.equal(first, corrupt(x, name, 2, seed=1, profile="small"))
    if name != "spatter":  # whose severities switch from water to mud
        assert (corrupt(x, name, 4, profile="small") - x).abs().mean() >= (first - x).abs().mean()


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_a_corrupted_image_depends_on_its_position_not_on_its_batch(name):
    x = images(300, 32)
    whole = corrupt(x, name, 2, seed=0, profile="small")
    in_sevens = torch.cat([corrupt(x[start:start + 7], name, 2, seed=0, profile="small",
                                   positions=range(start, min(start + 7, len(x)))) for start in range(0, len(x), 7)])
    assert torch.equal(in_sevens, whole)
    drawn = torch.tensor([299, 3, 150, 0])
    assert torch.equal(corrupt(x[drawn], name, 2, seed=0, profile="small", positions=drawn), whole[drawn])


def test_every_corruption_has_a_table_title_in_the_papers_order():
    assert list(CORRUPTION_TITLES) == list(CORRUPTIONS)
    assert [c.title for c in CORRUPTIONS.values()][:3] == ["Motion", "Impulse", "Gaussian"]


def test_split_names_round_trip_and_bad_ones_are_refused():
    split = corrupted_split("test", "motion_blur")
    assert split == "test/motion_blur@2" and parse_split(split) == ("test", "motion_blur", 2)
    assert parse_split("test") == ("test", None, 0)
    assert split_title(split) == split_title("motion_blur") == "Motion" and split_title("test") == "Clean"
    with pytest.raises(BenchError, match="split 'test/fog@2'"):
        parse_split("test/fog@2")
    with pytest.raises(BenchError, match="severity 6 is not in 1..5"):
        corrupt(images(1), "contrast", 6)
