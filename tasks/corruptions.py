"""The seven corruptions of the model-merging robustness benchmark, batched on tensors.

Formulas follow Hendrycks & Dietterich (2019), "Benchmarking Neural Network Robustness to Common Corruptions
and Perturbations". Their code has two parameter tables per corruption: ImageNet-C's, for 224-pixel images
(`imagenet`, the CLIP suite), and one for 32-pixel images (`small`: the values FusionBench's
`make_corruption.py` uses to build the merging robustness benchmark's corrupted test sets; the mini suite).
A corruption maps float images [N, 3, H, W] in [0, 1] to the same, deterministically given a seed: a split
is processed in fixed chunks of images, each with its own generator, so memory stays bounded on 224-pixel
splits and a corrupted split is a function of the clean one, the severity and the seed.

Motion blur is the ImageMagick-free formulation of the `imagecorruptions` package (a one-sided Gaussian of
shifted copies along a random angle); spatter's water branch finds the liquid's edges as the boundary of the
thresholded liquid layer instead of running Canny on it (a step of at least 0.68 x 255 grey levels, which is
where Canny fires) and measures distances exactly where OpenCV uses a 5x5 chamfer approximation; everything
else is the published formula.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.errors import BenchError

SEVERITY = 2  # the severity of the corrupted test sets in the AdaMerging and WEMoE robustness experiments
PROFILES = ("imagenet", "small")
CHUNK = 256  # images per generator: part of the definition of a seeded corrupted split


def gaussian_noise(images: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    return (images + scale * torch.randn(images.shape, generator=generator)).clamp(0, 1)


def impulse_noise(images: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Salt and pepper per value (scikit-image `random_noise(mode="s&p")`): each value is replaced with
    probability `amount`, by 1 or 0 with equal odds."""
    flipped = torch.rand(images.shape, generator=generator) < amount
    salt = torch.rand(images.shape, generator=generator) < 0.5
    return torch.where(flipped, salt.to(images.dtype), images)


def contrast(images: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    """Pull every pixel toward its image's per-channel mean."""
    means = images.mean(dim=(2, 3), keepdim=True)
    return ((images - means) * factor + means).clamp(0, 1)


def box_resample_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """[size_out, size_in] weights of PIL's BOX resampling along one axis (Pillow's precompute_coeffs)."""
    scale = size_in / size_out
    filter_scale = max(scale, 1.0)
    support = 0.5 * filter_scale
    weights = torch.zeros(size_out, size_in, dtype=torch.float64)
    for out in range(size_out):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        last = min(int(center + support + 0.5), size_in)
        for pixel in range(first, last):
            offset = (pixel - center + 0.5) / filter_scale
            weights[out, pixel] = 1.0 if -0.5 < offset <= 0.5 else 0.0
        weights[out] /= weights[out].sum()
    return weights.float()


def pixelate(images: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    """BOX-downscale each side to int(side x factor) and BOX-upscale back, as PIL's resize does."""
    height, width = images.shape[-2:]
    rows = box_resample_matrix(int(height * factor), height) @ box_resample_matrix(height, int(height * factor))
    cols = box_resample_matrix(int(width * factor), width) @ box_resample_matrix(width, int(width * factor))
    return rows @ images @ cols.T


def jpeg_compression(images: torch.Tensor, quality: int, generator: torch.Generator) -> torch.Tensor:
    """Encode each image as an 8-bit JPEG at `quality` and decode it (libjpeg, through torchvision)."""
    from torchvision.io import decode_jpeg, encode_jpeg

    pixels = (images * 255).round().to(torch.uint8)
    decoded = decode_jpeg(encode_jpeg(list(pixels), quality=quality))
    return torch.stack(decoded).float() / 255


def motion_blur(images: torch.Tensor, radius_sigma: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """Blur along a random angle in [-45, 45] degrees per image."""
    angles = torch.empty(len(images), dtype=torch.float64).uniform_(-45, 45, generator=generator)
    return blur_along(images, *radius_sigma, angles)


def blur_along(images: torch.Tensor, radius: int, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """Sum of copies shifted by i = 0..2 radius pixels along each image's angle (degrees), weighted by a
    one-sided Gaussian of i; borders repeat the edge pixel, and from the first shift past the image on, the
    copies are dropped (imagecorruptions' `_motion_blur`)."""
    width = 2 * radius + 1
    kernel = torch.exp(-torch.arange(width, dtype=torch.float64) ** 2 / (2 * sigma ** 2))
    kernel = (kernel / kernel.sum()).float()
    radians = torch.deg2rad(angles.double())
    n, channels, height, breadth = images.shape
    rows, cols = torch.arange(height), torch.arange(breadth)
    flat = images.flatten(2)
    inside = torch.ones(n, dtype=torch.bool)
    blurred = torch.zeros_like(flat)
    for i in range(width):
        dy = -torch.ceil(i * torch.sin(radians) - 0.5).long()
        dx = -torch.ceil(i * torch.cos(radians) - 0.5).long()
        inside &= (dy.abs() < height) & (dx.abs() < breadth)
        source_rows = (rows[None] - dy[:, None]).clamp(0, height - 1)  # [N, H]
        source_cols = (cols[None] - dx[:, None]).clamp(0, breadth - 1)  # [N, W]
        source = (source_rows[:, :, None] * breadth + source_cols[:, None, :]).flatten(1)  # [N, H * W]
        weight = (kernel[i] * inside.float()).view(-1, 1, 1)
        blurred += weight * flat.gather(2, source[:, None].expand(-1, channels, -1))
    blurred = blurred.view_as(images)
    return blurred.clamp(0, 1)


def gaussian_filter(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """scikit-image's `gaussian` on [N, H, W]: separable, truncated at 4 sigma, edges repeated."""
    radius = int(4.0 * sigma + 0.5)
    taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float64) ** 2 / (2 * sigma ** 2))
    taps = (taps / taps.sum()).to(maps.dtype)
    out = F.pad(maps[:, None], (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, taps.view(1, 1, 1, -1))
    return F.conv2d(out, taps.view(1, 1, -1, 1))[:, 0]


def box_blur3(maps: torch.Tensor) -> torch.Tensor:
    """OpenCV's `blur(..., (3, 3))`: 3x3 mean, borders mirrored without repeating the edge."""
    return F.avg_pool2d(F.pad(maps[:, None], (1, 1, 1, 1), mode="reflect"), 3, stride=1)[:, 0]


def truncated_distance(edges: torch.Tensor, limit: int) -> torch.Tensor:
    """Euclidean distance of every pixel of [N, H, W] to the nearest edge pixel, capped at `limit`: exact, by a
    pass along rows then one along columns, each over offsets up to `limit`."""
    squared = torch.where(edges, 0.0, float(limit) ** 2)
    for dim in (2, 1):
        best = squared.clone()
        size = squared.shape[dim]
        for offset in range(1, min(limit, size - 1) + 1):
            ahead, behind = best.narrow(dim, offset, size - offset), best.narrow(dim, 0, size - offset)
            torch.minimum(ahead, squared.narrow(dim, 0, size - offset) + offset ** 2, out=ahead)
            torch.minimum(behind, squared.narrow(dim, offset, size - offset) + offset ** 2, out=behind)
        squared = best
    return squared.sqrt().clamp(max=limit)


def equalize_histogram(grey: torch.Tensor) -> torch.Tensor:
    """OpenCV's `equalizeHist` on integer-valued [N, H, W] in 0..255."""
    flat = grey.flatten(1).long()
    counts = torch.zeros(len(flat), 256).scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float32))
    cdf = counts.cumsum(1)
    lowest = cdf.gather(1, (counts > 0).float().argmax(1, keepdim=True))
    total = flat.shape[1]
    lut = ((cdf - lowest) * 255 / (total - lowest).clamp(min=1)).round().clamp(0, 255)
    lut = torch.where((total - lowest) > 0, lut, torch.arange(256.0).expand_as(cdf))  # one grey level: kept
    return lut.gather(1, flat).view_as(grey)


def spatter(images: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """A liquid layer of blurred Gaussian noise, thresholded; below severity 4 pale turquoise water highlighting
    the liquid's edges, above brown mud covering the image."""
    loc, scale, sigma, threshold, strength, mud = params
    n, _, height, width = images.shape
    liquid = gaussian_filter(loc + scale * torch.randn(n, height, width, generator=generator), sigma)
    liquid = torch.where(liquid < threshold, 0.0, liquid)
    if not mud:
        layer = (liquid * 255).floor()  # astype(uint8)
        wet = layer > 0
        dry_neighbour = F.max_pool2d((~wet).float()[:, None], 3, stride=1, padding=1)[:, 0] > 0
        distance = truncated_distance(wet & dry_neighbour, 20)
        distance = equalize_histogram(box_blur3(distance).floor())
        ridge = torch.tensor([[-2.0, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=distance.dtype)
        distance = F.conv2d(F.pad(distance[:, None], (1, 1, 1, 1), mode="reflect"), ridge.view(1, 1, 3, 3))[:, 0]
        distance = box_blur3(distance.round().clamp(0, 255))
        wetness = layer * distance
        wetness = wetness / wetness.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1) * strength
        water = torch.tensor([175.0, 238, 238]).view(1, 3, 1, 1) / 255
        return (images + wetness[:, None] * water).clamp(0, 1)
    cover = gaussian_filter((liquid > threshold).float(), strength)
    cover = torch.where(cover < 0.8, 0.0, cover)[:, None].float()
    brown = torch.tensor([63.0, 42, 20]).view(1, 3, 1, 1) / 255
    return (images * (1 - cover) + brown * cover).clamp(0, 1)


@dataclass(frozen=True)
class Corruption:
    name: str
    title: str  # the column of the papers' robustness tables
    apply: Callable[[torch.Tensor, object, torch.Generator], torch.Tensor]
    levels: dict[str, tuple]  # profile -> parameters at severities 1..5


# In the order of the robustness tables of the AdaMerging and WEMoE papers.
CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in (
    Corruption("motion_blur", "Motion", motion_blur, {
        "imagenet": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "small": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))}),
    Corruption("impulse_noise", "Impulse", impulse_noise, {
        "imagenet": (0.03, 0.06, 0.09, 0.17, 0.27), "small": (0.01, 0.02, 0.03, 0.05, 0.07)}),
    Corruption("gaussian_noise", "Gaussian", gaussian_noise, {
        "imagenet": (0.08, 0.12, 0.18, 0.26, 0.38), "small": (0.04, 0.06, 0.08, 0.09, 0.10)}),
    Corruption("pixelate", "Pixelate", pixelate, {
        "imagenet": (0.6, 0.5, 0.4, 0.3, 0.25), "small": (0.95, 0.9, 0.85, 0.75, 0.65)}),
    Corruption("spatter", "Spatter", spatter, {
        "imagenet": ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
                     (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1)),
        "small": ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
                  (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1))}),
    Corruption("contrast", "Contrast", contrast, {
        "imagenet": (0.4, 0.3, 0.2, 0.1, 0.05), "small": (0.75, 0.5, 0.4, 0.3, 0.15)}),
    Corruption("jpeg_compression", "JPEG", jpeg_compression, {
        "imagenet": (25, 18, 15, 10, 7), "small": (80, 65, 58, 50, 40)}),
)}


def corrupt(images: torch.Tensor, name: str, severity: int = SEVERITY, seed: int = 0,
            profile: str = "imagenet") -> torch.Tensor:
    """`images` (float [N, 3, H, W] in [0, 1]) with corruption `name` at `severity` (1-5)."""
    if name not in CORRUPTIONS:
        raise BenchError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    if severity not in range(1, 6):
        raise BenchError(f"corruption {name}: severity {severity} is not in 1..5")
    if profile not in PROFILES:
        raise BenchError(f"unknown corruption profile {profile!r}; valid: {', '.join(PROFILES)}")
    corruption = CORRUPTIONS[name]
    params = corruption.levels[profile][severity - 1]
    chunks = []
    for index, start in enumerate(range(0, len(images), CHUNK)):
        generator = torch.Generator().manual_seed(zlib.crc32(f"{name}/{severity}/{seed}/{index}".encode()))
        chunks.append(corruption.apply(images[start:start + CHUNK].float(), params, generator))
    return torch.cat(chunks) if chunks else images.clone()


SPLIT = re.compile(r"^(?P<base>[^/@]+)(?:/(?P<name>[a-z_]+)@(?P<severity>\d+))?$")


def corrupted_split(base: str, name: str, severity: int = SEVERITY) -> str:
    """The split name of a corrupted copy, e.g. `test/motion_blur@2`."""
    return f"{base}/{name}@{severity}"


def parse_split(split: str) -> tuple[str, str | None, int]:
    """(base split, corruption or None, severity) of a split name like `test` or `test/motion_blur@2`."""
    match = SPLIT.match(split)
    if match is None or (match["name"] is not None and match["name"] not in CORRUPTIONS):
        raise BenchError(f"split {split!r}: expected SPLIT or SPLIT/CORRUPTION@SEVERITY with a corruption in "
                         f"{', '.join(CORRUPTIONS)}")
    return match["base"], match["name"], int(match["severity"] or 0)


def split_title(split: str) -> str:
    """The table column of a split: `Clean`, or the corruption's title, for a split corrupted here
    (`test/motion_blur@2`) or a dataset's own corrupted test split named after the corruption (`motion_blur`)."""
    base, name, _ = parse_split(split)
    name = name or (base if base in CORRUPTIONS else None)
    return "Clean" if name is None else CORRUPTIONS[name].title
