"""Rendering primitives for the mini suite's procedural images.

Every shape is a predicate on local coordinates (u, v) in [-1, 1], obtained by inverting a random affine
placement (centre, scale, rotation); so one code path gives position, scale and rotation nuisance to
glyphs, signs, vehicles and texture elements alike.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

SIZE = 32
Mask = np.ndarray  # bool [SIZE, SIZE]
Shape = Callable[[np.ndarray, np.ndarray], Mask]

Y, X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5

# A 5x7 bitmap font: digits for house numbers and speed signs, a few symbols for signs.
_FONT_ROWS = {
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    "!": "00100 00100 00100 00100 00100 00000 00100",
    "<": "00010 00100 01000 11111 01000 00100 00010",
    ">": "01000 00100 00010 11111 00010 00100 01000",
    "^": "00100 01110 10101 00100 00100 00100 00100",
    "x": "10001 01010 00100 00100 00100 01010 10001",
    "-": "00000 00000 00000 11111 00000 00000 00000",
}
FONT = {ch: np.array([[c == "1" for c in row] for row in rows.split()]) for ch, rows in _FONT_ROWS.items()}


def local_coords(cx: float, cy: float, sx: float, sy: float, angle: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Pixel grid mapped into a shape's frame: (cx, cy) is the origin, (sx, sy) pixels is one unit."""
    dx, dy = X - cx, Y - cy
    cos, sin = np.cos(angle), np.sin(angle)
    return (cos * dx + sin * dy) / sx, (-sin * dx + cos * dy) / sy


def circle(u: np.ndarray, v: np.ndarray) -> Mask:
    return u * u + v * v < 1


def ring(width: float) -> Shape:
    return lambda u, v: (u * u + v * v < 1) & (u * u + v * v > (1 - width) ** 2)


def box(u: np.ndarray, v: np.ndarray) -> Mask:
    return (np.abs(u) < 1) & (np.abs(v) < 1)


def triangle(u: np.ndarray, v: np.ndarray) -> Mask:
    """Apex up; flip v for apex down."""
    return (v < 1) & (np.abs(u) < (v + 1) / 2)


def diamond(u: np.ndarray, v: np.ndarray) -> Mask:
    return np.abs(u) + np.abs(v) < 1


def octagon(u: np.ndarray, v: np.ndarray) -> Mask:
    return (np.abs(u) < 1) & (np.abs(v) < 1) & (np.abs(u) + np.abs(v) < 1.45)


def glyph(char: str) -> Shape:
    bitmap = FONT[char]
    rows, cols = bitmap.shape

    def shape(u: np.ndarray, v: np.ndarray) -> Mask:
        inside = (np.abs(u) < 1) & (np.abs(v) < 1)
        r = np.clip(((v + 1) / 2 * rows).astype(int), 0, rows - 1)
        c = np.clip(((u + 1) / 2 * cols).astype(int), 0, cols - 1)
        return inside & bitmap[r, c]

    return shape


def paint(canvas: np.ndarray, mask: Mask, colour: np.ndarray | tuple[float, float, float], alpha: float = 1.0) -> None:
    canvas[mask] = (1 - alpha) * canvas[mask] + alpha * np.asarray(colour, np.float32)


def smooth_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Value noise: a random cells x cells grid bilinearly upsampled to the canvas, in [0, 1]."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    t = np.linspace(0, cells, SIZE, endpoint=False, dtype=np.float32)
    i = t.astype(int)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def random_colour(rng: np.random.Generator, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    return rng.uniform(lo, hi, 3).astype(np.float32)


def jitter(rng: np.random.Generator, colour: np.ndarray | tuple[float, float, float], amount: float) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.normal(0, amount, 3), 0, 1).astype(np.float32)


def finish(rng: np.random.Generator, canvas: np.ndarray, noise: float) -> np.ndarray:
    """Sensor noise and a random global brightness/contrast, then 8-bit quantisation."""
    gain = rng.uniform(1 - 0.4 * noise, 1 + 0.2 * noise)
    bias = rng.uniform(-0.15 * noise, 0.15 * noise)
    out = canvas * gain + bias + rng.normal(0, 0.08 * noise, canvas.shape)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
