"""The seven corruptions of the model-merging robustness benchmark, batched on tensors.

Formulas follow Hendrycks & Dietterich (2019), "Benchmarking Neural Network Robustness to Common Corruptions
and Perturbations". Their code has two parameter tables per corruption: ImageNet-C's, for 224-pixel images
(`imagenet`, the CLIP suite), and one for 32-pixel images (`small`: the values FusionBench's
`make_corruption.py` uses to build the merging robustness benchmark's corrupted test sets; the mini suite).
A corruption maps float images [N, 3, H, W] in [0, 1] to the same, deterministically given a seed: each image
draws its noise from its own generator, seeded by the corruption, severity, seed and the image's position in
its split, so a corrupted image is the same whichever batch, chunk or sample it is computed in (streamed,
cached or sampled data agree).

Motion blur is the ImageMagick-free formulation of the `imagecorruptions` package (a one-sided Gaussian of
shifted copies along a random angle); spatter draws its liquid noise with torch and from there runs the
reference's own steps (scipy's Gaussian filter, OpenCV's Canny, distance transform and filters); everything
else is the published formula.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy import ndimage

from core.errors import BenchError
from tasks.splits import CORRUPTION_TITLES, SEVERITY

PROFILES = ("imagenet", "small")
CHUNK = 256  # images corrupted at once: bounds the working memory on 224-pixel batches, never the result

Generators = list[torch.Generator]  # one per image, its own random stream


def per_image(draw: Callable[[torch.Generator], torch.Tensor], generators: Generators) -> torch.Tensor:
    """One draw per image, each from that image's generator, stacked: [N, ...]."""
    return torch.stack([draw(generator) for generator in generators])


def gaussian_noise(images: torch.Tensor, scale: float, generators: Generators) -> torch.Tensor:
    noise = per_image(lambda generator: torch.randn(images.shape[1:], generator=generator), generators)
    return (images + scale * noise).clamp(0, 1)


def impulse_noise(images: torch.Tensor, amount: float, generators: Generators) -> torch.Tensor:
    """Salt and pepper per value (scikit-image `random_noise(mode="s&p")`): each value is replaced with
    probability `amount`, by 1 or 0 with equal odds."""
    draws = per_image(lambda generator: torch.rand((2, *images.shape[1:]), generator=generator), generators)
    flipped, salt = draws[:, 0] < amount, draws[:, 1] < 0.5
    return torch.where(flipped, salt.to(images.dtype), images)


def contrast(images: torch.Tensor, factor: float, generators: Generators) -> torch.Tensor:
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


def pixelate(images: torch.Tensor, factor: float, generators: Generators) -> torch.Tensor:
    """BOX-downscale each side to int(side x factor) and BOX-upscale back, as PIL's resize does in FusionBench's
    make_corruption.py and Hendrycks's make_imagenet_c.py. imagecorruptions 1.1.2 upscales with NEAREST instead,
    which picks the same source pixel at every side these tables produce: an upscaling BOX spans less than one
    source pixel, so the two part only where an output pixel's centre falls on a source pixel's edge (64 to 224)."""
    height, width = images.shape[-2:]
    rows = box_resample_matrix(int(height * factor), height) @ box_resample_matrix(height, int(height * factor))
    cols = box_resample_matrix(int(width * factor), width) @ box_resample_matrix(width, int(width * factor))
    return rows @ images @ cols.T


def jpeg_compression(images: torch.Tensor, quality: int, generators: Generators) -> torch.Tensor:
    """Encode each image as an 8-bit JPEG at `quality` and decode it (libjpeg, through torchvision)."""
    from torchvision.io import decode_jpeg, encode_jpeg

    pixels = (images * 255).round().to(torch.uint8)
    decoded = decode_jpeg(encode_jpeg(list(pixels), quality=quality))
    return torch.stack(decoded).float() / 255


def motion_blur(images: torch.Tensor, radius_sigma: tuple[float, float], generators: Generators) -> torch.Tensor:
    """Blur along a random angle in [-45, 45] degrees per image."""
    angles = per_image(lambda generator: torch.empty((), dtype=torch.float64).uniform_(-45, 45, generator=generator),
                       generators)
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


def gaussian_filter(maps: np.ndarray, sigma: float) -> np.ndarray:
    """scikit-image's `gaussian` (the reference's) on each map of [N, H, W]: the scipy filter it calls, truncated
    at 4 sigma with edges repeated, in the maps' dtype, not across the batch."""
    return ndimage.gaussian_filter(maps, (0, sigma, sigma), mode="nearest", truncate=4.0)


EMBOSS = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)  # the reference's ridge kernel


def liquid_edges(layer: np.ndarray) -> np.ndarray:
    """Canny's edges (thresholds 50 and 150, the reference's) of one 8-bit liquid layer [H, W], as 0 or 255: a
    wet/dry boundary's edge pixels fall on either side of it, the dry one included."""
    return cv2.Canny(layer, 50, 150)


def water_shading(layer: np.ndarray) -> np.ndarray:
    """The reference's shading of the water on one 8-bit liquid layer [H, W]: distance to the nearest edge by
    OpenCV's 5x5 chamfer L2, capped at 20, blurred, truncated to 8 bits, histogram-equalised, embossed, blurred;
    float32 [H, W]."""
    distance = cv2.distanceTransform(255 - liquid_edges(layer), cv2.DIST_L2, 5)
    _, distance = cv2.threshold(distance, 20, 20, cv2.THRESH_TRUNC)
    distance = cv2.equalizeHist(cv2.blur(distance, (3, 3)).astype(np.uint8))
    return cv2.blur(cv2.filter2D(distance, cv2.CV_8U, EMBOSS), (3, 3)).astype(np.float32)


def liquid_noise(images: torch.Tensor, loc: float, scale: float, generators: Generators) -> torch.Tensor:
    """The white noise the liquid layer is blurred from, N(loc, scale^2) per pixel of each image (the reference's
    `np.random.normal`); float64 [N, H, W] from float32 draws."""
    return loc + scale * per_image(lambda generator: torch.randn(images.shape[2:], generator=generator),
                                   generators).double()


def spatter(images: torch.Tensor, params: tuple, generators: Generators) -> torch.Tensor:
    """`spatter_from_noise` on liquid noise drawn from each image's generator."""
    return spatter_from_noise(images, liquid_noise(images, *params[:2], generators), params)


def spatter_from_noise(images: torch.Tensor, noise: torch.Tensor, params: tuple) -> torch.Tensor:
    """A liquid layer of blurred Gaussian noise, thresholded; below severity 4 pale turquoise water shaded by
    the distance to the liquid's edges, above brown mud covering the image. Computed in the reference's dtypes
    (float64 layer, float32 image), so it agrees with it given the same noise."""
    _, _, sigma, threshold, strength, mud = params
    liquid = gaussian_filter(noise.numpy(), sigma)
    liquid[liquid < threshold] = 0
    if mud:
        cover = torch.from_numpy(gaussian_filter((liquid > threshold).astype(np.float32), strength))
        cover = torch.where(cover < 0.8, 0.0, cover)[:, None]
        brown = torch.tensor([63 / 255, 42 / 255, 20 / 255]).view(1, 3, 1, 1)
        return (images * (1 - cover) + brown * cover).clamp(0, 1)
    layers = (np.floor(liquid * 255) % 256).astype(np.uint8)  # astype(uint8), which wraps past 255 on x86
    shading = torch.from_numpy(np.stack([water_shading(layer) for layer in layers]))
    wetness = torch.from_numpy(layers).float() * shading
    peak = wetness.flatten(1).amax(1).view(-1, 1, 1)
    wetness = torch.where(peak > 0, wetness / peak, 0.0) * strength  # no water (the reference's 0 / 0): none added
    water = torch.tensor([175 / 255, 238 / 255, 238 / 255]).view(1, 3, 1, 1)
    return (images + wetness[:, None] * water).clamp(0, 1)


@dataclass(frozen=True)
class Corruption:
    name: str
    apply: Callable[[torch.Tensor, object, Generators], torch.Tensor]
    levels: dict[str, tuple]  # profile -> parameters at severities 1..5

    @property
    def title(self) -> str:
        """The column of the papers' robustness tables."""
        return CORRUPTION_TITLES[self.name]


# In the order of the robustness tables (tasks.splits.CORRUPTION_TITLES).
CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in (
    Corruption("motion_blur", motion_blur, {
        "imagenet": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "small": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))}),
    Corruption("impulse_noise", impulse_noise, {
        "imagenet": (0.03, 0.06, 0.09, 0.17, 0.27), "small": (0.01, 0.02, 0.03, 0.05, 0.07)}),
    Corruption("gaussian_noise", gaussian_noise, {
        "imagenet": (0.08, 0.12, 0.18, 0.26, 0.38), "small": (0.04, 0.06, 0.08, 0.09, 0.10)}),
    Corruption("pixelate", pixelate, {
        "imagenet": (0.6, 0.5, 0.4, 0.3, 0.25), "small": (0.95, 0.9, 0.85, 0.75, 0.65)}),
    Corruption("spatter", spatter, {
        "imagenet": ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
                     (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1)),
        "small": ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
                  (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1))}),
    Corruption("contrast", contrast, {
        "imagenet": (0.4, 0.3, 0.2, 0.1, 0.05), "small": (0.75, 0.5, 0.4, 0.3, 0.15)}),
    Corruption("jpeg_compression", jpeg_compression, {
        "imagenet": (25, 18, 15, 10, 7), "small": (80, 65, 58, 50, 40)}),
)}


def image_generator(name: str, severity: int, seed: int, position: int) -> torch.Generator:
    """The random stream of the image at `position` of its split, under corruption `name` at `severity`."""
    return torch.Generator().manual_seed(zlib.crc32(f"{name}/{severity}/{seed}/{position}".encode()))


def corrupt(images: torch.Tensor, name: str, severity: int = SEVERITY, seed: int = 0, profile: str = "imagenet",
            positions: Sequence[int] | None = None) -> torch.Tensor:
    """`images` (float [N, 3, H, W] in [0, 1]) with corruption `name` at `severity` (1-5); `positions`: where
    the images stand in their split (default 0..N-1), which seeds each one's random stream."""
    if name not in CORRUPTIONS:
        raise BenchError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    if severity not in range(1, 6):
        raise BenchError(f"corruption {name}: severity {severity} is not in 1..5")
    if profile not in PROFILES:
        raise BenchError(f"unknown corruption profile {profile!r}; valid: {', '.join(PROFILES)}")
    corruption = CORRUPTIONS[name]
    params = corruption.levels[profile][severity - 1]
    positions = range(len(images)) if positions is None else [int(position) for position in positions]
    if len(positions) != len(images):
        raise ValueError(f"{len(positions)} positions for {len(images)} images")
    chunks = []
    for start in range(0, len(images), CHUNK):
        generators = [image_generator(name, severity, seed, position) for position in positions[start:start + CHUNK]]
        chunks.append(corruption.apply(images[start:start + CHUNK].float(), params, generators))
    return torch.cat(chunks) if chunks else images.clone()
