"""The mini suite's eight image families, one per task of the real 8-task benchmark.

Each family draws one 32x32 RGB image of a given class from a random generator. `nuisance` in [0, 1] scales
everything that is not the class (position, scale, rotation, colour, clutter, distractors, sensor noise):
the zoo pretrains on a broad mixture of all families and fine-tunes each expert on its own family.
Handwritten digits are real data: scikit-learn's bundled copy of the UCI digits, re-rendered with nuisance.
"""

from __future__ import annotations

import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from tasks import drawing as d

Renderer = Callable[[np.random.Generator, int, float, str], np.ndarray]


@dataclass(frozen=True)
class Family:
    """A generator of labelled images, named after the real task it stands in for."""

    name: str
    counterpart: str
    class_names: tuple[str, ...]
    render: Renderer


def _background(rng: np.random.Generator, nuisance: float) -> np.ndarray:
    base = d.random_colour(rng, 0.1, 0.9)
    canvas = np.broadcast_to(base, (d.SIZE, d.SIZE, 3)).copy()
    clutter = nuisance * rng.uniform(0.1, 0.5)
    return canvas + clutter * (d.smooth_noise(rng, 4)[..., None] - 0.5) * d.random_colour(rng)


def _place(rng: np.random.Generator, nuisance: float, size: float) -> tuple[float, float, float, float]:
    """Centre, scale and rotation of the main object: centred and upright at nuisance 0."""
    cx, cy = (d.SIZE / 2 + rng.uniform(-1, 1, 2) * 5 * nuisance).tolist()
    scale = size * rng.uniform(1 - 0.3 * nuisance, 1 + 0.15 * nuisance)
    angle = rng.uniform(-0.35, 0.35) * nuisance
    return cx, cy, scale, angle


# --- scenes (SUN397) --------------------------------------------------------------------------------------

SCENES = ("beach", "forest", "desert", "snowfield", "ocean", "city", "night sky", "meadow", "mountains", "sunset")
_SKY = {"beach": (0.5, 0.75, 1.0), "forest": (0.6, 0.8, 0.9), "desert": (0.75, 0.85, 1.0),
        "snowfield": (0.8, 0.85, 0.9), "ocean": (0.55, 0.7, 0.95), "city": (0.6, 0.65, 0.75),
        "night sky": (0.05, 0.05, 0.2), "meadow": (0.55, 0.75, 1.0), "mountains": (0.6, 0.75, 0.95),
        "sunset": (0.95, 0.5, 0.3)}
_GROUND = {"beach": (0.9, 0.8, 0.55), "forest": (0.1, 0.35, 0.1), "desert": (0.85, 0.65, 0.35),
           "snowfield": (0.95, 0.95, 0.97), "ocean": (0.1, 0.3, 0.6), "city": (0.35, 0.35, 0.38),
           "night sky": (0.1, 0.1, 0.12), "meadow": (0.4, 0.75, 0.3), "mountains": (0.4, 0.35, 0.3),
           "sunset": (0.3, 0.15, 0.15)}


def _scene(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    name = SCENES[label]
    horizon = d.SIZE * (0.5 + rng.uniform(-0.2, 0.2) * nuisance)
    canvas = np.empty((d.SIZE, d.SIZE, 3), np.float32)
    sky, ground = d.jitter(rng, _SKY[name], 0.12 * nuisance), d.jitter(rng, _GROUND[name], 0.12 * nuisance)
    canvas[:] = sky
    canvas[d.Y > horizon] = ground
    if name in ("forest", "city", "mountains"):
        for _ in range(rng.integers(3, 7)):
            x, height = rng.uniform(0, d.SIZE), rng.uniform(4, 12)
            colour = d.jitter(rng, {"forest": (0.05, 0.3, 0.05), "city": (0.3, 0.3, 0.35),
                                    "mountains": (0.45, 0.4, 0.4)}[name], 0.08)
            shape = d.box if name == "city" else d.triangle
            width = rng.uniform(1.5, 3) if name == "city" else height * 0.8
            d.paint(canvas, shape(*d.local_coords(x, horizon - height / 2, width, height / 2)), colour)
    if name in ("beach", "desert", "sunset"):
        sun = (1.0, 0.95, 0.6) if name != "sunset" else (1.0, 0.7, 0.2)
        d.paint(canvas, d.circle(*d.local_coords(rng.uniform(4, 28), horizon * rng.uniform(0.2, 0.8), 3, 3)), sun)
    if name == "night sky":
        stars = rng.random((d.SIZE, d.SIZE)) < 0.04
        canvas[stars & (d.Y < horizon)] = 0.95
    if name in ("ocean", "beach"):
        waves = np.sin(d.X * rng.uniform(0.6, 1.2) + d.Y * 2) > 0.7
        d.paint(canvas, waves & (d.Y > horizon + (0 if name == "ocean" else 6)), np.float32([0.8, 0.9, 1.0]), 0.5)
    return canvas + 0.1 * nuisance * (d.smooth_noise(rng, 8)[..., None] - 0.5)


# --- vehicles (Stanford Cars) -----------------------------------------------------------------------------

VEHICLES = ("sedan", "hatchback", "pickup", "bus", "van", "sports car", "truck", "jeep")
# body (half width, half height), cabin (x offset, half width, half height), wheel radius, wheel offsets.
_VEHICLE_PARTS = {
    "sedan": ((1.0, 0.25), (0.0, 0.5, 0.22), 0.2, (-0.65, 0.65)),
    "hatchback": ((0.8, 0.28), (-0.15, 0.55, 0.26), 0.2, (-0.5, 0.5)),
    "pickup": ((1.0, 0.25), (-0.45, 0.3, 0.3), 0.22, (-0.65, 0.65)),
    "bus": ((1.0, 0.55), (0.0, 0.0, 0.0), 0.18, (-0.75, 0.75)),
    "van": ((0.85, 0.45), (0.0, 0.0, 0.0), 0.2, (-0.55, 0.55)),
    "sports car": ((1.0, 0.16), (0.1, 0.35, 0.14), 0.17, (-0.7, 0.7)),
    "truck": ((1.0, 0.45), (0.78, 0.22, 0.28), 0.22, (-0.7, 0.5)),
    "jeep": ((0.75, 0.3), (-0.1, 0.55, 0.3), 0.3, (-0.45, 0.45)),
}


def _vehicle(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    (bw, bh), (cx_off, cw, ch), wheel, wheel_xs = _VEHICLE_PARTS[VEHICLES[label]]
    canvas = _background(rng, nuisance)
    cx, cy, scale, angle = _place(rng, nuisance, 12.0)
    flip = -1.0 if rng.random() < 0.5 else 1.0
    paint_colour = d.random_colour(rng)
    u, v = d.local_coords(cx, cy, scale, scale, angle)
    u = u * flip
    d.paint(canvas, (np.abs(u) < bw) & (np.abs(v) < bh), paint_colour)
    if cw > 0:
        d.paint(canvas, (np.abs(u - cx_off) < cw) & (np.abs(v + bh + ch) < ch), paint_colour * 0.8)
        d.paint(canvas, (np.abs(u - cx_off) < cw * 0.7) & (np.abs(v + bh + ch) < ch * 0.6), np.float32([0.7, 0.85, 0.95]))
    for wx in wheel_xs:
        d.paint(canvas, (u - wx) ** 2 + (v - bh) ** 2 < wheel**2, np.float32([0.05, 0.05, 0.05]))
    return canvas


# --- aerial scenes (RESISC45) -----------------------------------------------------------------------------

AERIAL = ("airport", "parking lot", "residential", "farmland", "circular farmland", "roundabout", "river",
          "railway", "stadium", "harbor", "forest", "baseball diamond")


def _aerial(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    name = AERIAL[label]
    ground = {"river": (0.35, 0.5, 0.25), "forest": (0.15, 0.35, 0.15), "harbor": (0.15, 0.3, 0.55),
              "farmland": (0.55, 0.6, 0.3), "circular farmland": (0.6, 0.55, 0.35)}.get(name, (0.45, 0.5, 0.4))
    canvas = np.empty((d.SIZE, d.SIZE, 3), np.float32)
    canvas[:] = d.jitter(rng, ground, 0.1 * nuisance)
    angle = rng.uniform(0, np.pi)
    cx, cy = (d.SIZE / 2 + rng.uniform(-1, 1, 2) * 4 * nuisance).tolist()
    u, v = d.local_coords(cx, cy, 1.0, 1.0, angle)
    grey = np.float32([0.55, 0.55, 0.55])
    if name == "airport":
        d.paint(canvas, (np.abs(v) < 2.5) & (np.abs(u) < 15), grey * 0.6)
        for _ in range(3):
            px, py = rng.uniform(4, 28, 2)
            d.paint(canvas, d.glyph("x")(*d.local_coords(px, py, 2.5, 2.5, angle)), np.float32([0.95, 0.95, 0.95]))
    elif name == "parking lot":
        d.paint(canvas, (np.abs(u) < 12) & (np.abs(v) < 10), grey)
        cars = ((u.astype(int) % 3) == 0) & ((v.astype(int) % 5) < 3) & (np.abs(u) < 11) & (np.abs(v) < 9)
        d.paint(canvas, cars & (rng.random(cars.shape) < 0.7), d.random_colour(rng))
    elif name == "residential":
        for _ in range(rng.integers(6, 10)):
            px, py = rng.uniform(3, 29, 2)
            d.paint(canvas, d.box(*d.local_coords(px, py, 2, 2, angle)), d.jitter(rng, (0.7, 0.3, 0.25), 0.1))
        d.paint(canvas, np.abs(v) < 1, grey)
    elif name == "farmland":
        d.paint(canvas, (np.sin(u * rng.uniform(0.8, 1.4)) > 0), d.jitter(rng, (0.75, 0.7, 0.35), 0.1))
    elif name == "circular farmland":
        for _ in range(rng.integers(1, 3)):
            px, py, r = rng.uniform(8, 24), rng.uniform(8, 24), rng.uniform(6, 10)
            d.paint(canvas, d.circle(*d.local_coords(px, py, r, r)), d.jitter(rng, (0.35, 0.6, 0.25), 0.1))
    elif name == "roundabout":
        d.paint(canvas, (np.abs(v) < 1.5) | (np.abs(u) < 1.5), grey)
        d.paint(canvas, d.ring(0.35)(u / 8, v / 8), grey)
        d.paint(canvas, d.circle(u / 5, v / 5), np.float32([0.3, 0.6, 0.3]))
    elif name == "river":
        d.paint(canvas, np.abs(v - 4 * np.sin(u * rng.uniform(0.15, 0.3))) < 3, d.jitter(rng, (0.15, 0.3, 0.6), 0.05))
    elif name == "railway":
        for offset in (-2.0, 2.0):
            d.paint(canvas, np.abs(v - offset) < 0.6, np.float32([0.35, 0.3, 0.3]))
        d.paint(canvas, (np.abs(v) < 3) & ((u.astype(int) % 3) == 0), np.float32([0.45, 0.35, 0.25]), 0.6)
    elif name == "stadium":
        d.paint(canvas, d.circle(u / 13, v / 9), np.float32([0.75, 0.75, 0.75]))
        d.paint(canvas, d.circle(u / 9, v / 5.5), np.float32([0.2, 0.55, 0.25]))
    elif name == "harbor":
        d.paint(canvas, v > 6, grey)
        for _ in range(rng.integers(3, 6)):
            px = rng.uniform(-12, 12)
            d.paint(canvas, (np.abs(u - px) < 1) & (v < 6) & (v > -4), np.float32([0.9, 0.9, 0.9]))
    elif name == "forest":
        crowns = d.smooth_noise(rng, 10) > 0.5
        d.paint(canvas, crowns, np.float32([0.05, 0.25, 0.05]))
    elif name == "baseball diamond":
        d.paint(canvas, d.circle(u / 12, v / 12) & (v < 0) & (np.abs(u) < -v), np.float32([0.3, 0.6, 0.25]))
        d.paint(canvas, d.diamond(u / 6, (v + 6) / 6), np.float32([0.7, 0.5, 0.35]))
    return canvas + 0.15 * nuisance * (d.smooth_noise(rng, 8)[..., None] - 0.5)


# --- land cover (EuroSAT) ---------------------------------------------------------------------------------

LANDCOVER = ("annual crop", "forest", "herbaceous vegetation", "highway", "industrial", "pasture",
             "permanent crop", "residential", "river", "sea or lake")
_LAND_COLOUR = {"annual crop": (0.7, 0.65, 0.4), "forest": (0.1, 0.3, 0.12), "herbaceous vegetation": (0.4, 0.55, 0.25),
                "highway": (0.4, 0.5, 0.35), "industrial": (0.55, 0.55, 0.55), "pasture": (0.5, 0.7, 0.35),
                "permanent crop": (0.5, 0.5, 0.3), "residential": (0.6, 0.55, 0.5), "river": (0.35, 0.5, 0.3),
                "sea or lake": (0.1, 0.25, 0.45)}


def _landcover(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    name = LANDCOVER[label]
    canvas = np.empty((d.SIZE, d.SIZE, 3), np.float32)
    canvas[:] = d.jitter(rng, _LAND_COLOUR[name], 0.07 * nuisance)
    texture = d.smooth_noise(rng, {"forest": 12, "herbaceous vegetation": 6, "sea or lake": 3}.get(name, 4))
    canvas += (0.25 if name in ("forest", "herbaceous vegetation") else 0.08) * (texture[..., None] - 0.5)
    u, v = d.local_coords(16 + rng.uniform(-6, 6), 16 + rng.uniform(-6, 6), 1, 1, rng.uniform(0, np.pi))
    if name == "annual crop":
        d.paint(canvas, np.sin(u * rng.uniform(1.0, 2.0)) > 0.3, d.jitter(rng, (0.55, 0.6, 0.3), 0.05), 0.6)
    elif name == "highway":
        d.paint(canvas, np.abs(v) < 1.8, np.float32([0.6, 0.6, 0.6]))
    elif name == "industrial":
        for _ in range(rng.integers(2, 5)):
            px, py = rng.uniform(4, 28, 2)
            d.paint(canvas, d.box(*d.local_coords(px, py, rng.uniform(2, 6), rng.uniform(2, 6))), d.jitter(rng, (0.8, 0.8, 0.8), 0.1))
    elif name == "permanent crop":
        d.paint(canvas, (np.sin(u * 1.6) > 0.5) & (np.sin(v * 1.6) > 0.2), np.float32([0.2, 0.4, 0.15]), 0.8)
    elif name == "residential":
        d.paint(canvas, (np.sin(u * 0.9) > 0.2) & (np.sin(v * 0.9) > 0.2), d.jitter(rng, (0.75, 0.4, 0.35), 0.1), 0.8)
    elif name == "river":
        d.paint(canvas, np.abs(v - 3 * np.sin(u * 0.25)) < 2.5, np.float32([0.15, 0.3, 0.55]))
    return canvas


# --- house numbers (SVHN) ---------------------------------------------------------------------------------

HOUSE_NUMBERS = tuple(str(i) for i in range(10))


def _house_number(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    canvas = _background(rng, nuisance)
    ink = d.random_colour(rng)
    while np.abs(ink - canvas.mean((0, 1))).sum() < 0.6:  # legible contrast, like a real house number
        ink = d.random_colour(rng)
    cx, cy, scale, angle = _place(rng, 0.5 * nuisance, 8.0)
    height = scale * 1.4
    for offset in (-1, 1):  # neighbouring digits of the same number, cut by the crop
        if rng.random() < nuisance:
            neighbour = d.glyph(str(rng.integers(10)))
            d.paint(canvas, neighbour(*d.local_coords(cx + offset * 2.3 * scale * 0.75, cy, scale * 0.75, height, angle)), ink)
    d.paint(canvas, d.glyph(HOUSE_NUMBERS[label])(*d.local_coords(cx, cy, scale * 0.75, height, angle)), ink)
    return canvas


# --- traffic signs (GTSRB) --------------------------------------------------------------------------------

SIGNS = ("stop", "yield", "speed limit 30", "speed limit 50", "speed limit 70", "no entry", "priority road",
         "turn left", "turn right", "ahead only", "general caution", "no passing")
_RED, _WHITE, _BLUE, _YELLOW = (np.float32(c) for c in ((0.85, 0.1, 0.1), (0.95, 0.95, 0.95), (0.1, 0.3, 0.8), (0.95, 0.8, 0.1)))


def _sign(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    name = SIGNS[label]
    canvas = _background(rng, nuisance)
    cx, cy, scale, angle = _place(rng, nuisance, 11.0)
    u, v = d.local_coords(cx, cy, scale, scale, angle)
    tone = rng.uniform(1 - 0.4 * nuisance, 1)  # faded paint and dusk light
    red, white, blue, yellow = (c * tone for c in (_RED, _WHITE, _BLUE, _YELLOW))
    if name == "stop":
        d.paint(canvas, d.octagon(u, v), red)
        d.paint(canvas, np.abs(v) < 0.15, white)
    elif name == "yield":
        d.paint(canvas, d.triangle(u, -v), red)
        d.paint(canvas, d.triangle(u * 1.6, -v * 1.6 - 0.25), white)
    elif name.startswith("speed limit"):
        d.paint(canvas, d.circle(u, v), red)
        d.paint(canvas, d.circle(u * 1.3, v * 1.3), white)
        for char, du in zip(name.split()[-1], (-0.28, 0.28)):
            d.paint(canvas, d.glyph(char)((u - du) / 0.25, v / 0.45), np.float32([0.05, 0.05, 0.05]))
    elif name == "no entry":
        d.paint(canvas, d.circle(u, v), red)
        d.paint(canvas, (np.abs(u) < 0.65) & (np.abs(v) < 0.18), white)
    elif name == "priority road":
        d.paint(canvas, d.diamond(u, v), white)
        d.paint(canvas, d.diamond(u * 1.6, v * 1.6), yellow)
    elif name in ("turn left", "turn right", "ahead only"):
        d.paint(canvas, d.circle(u, v), blue)
        char = {"turn left": "<", "turn right": ">", "ahead only": "^"}[name]
        d.paint(canvas, d.glyph(char)(u / 0.6, v / 0.6), white)
    elif name == "general caution":
        d.paint(canvas, d.triangle(u, v), red)
        d.paint(canvas, d.triangle(u * 1.6, v * 1.6 - 0.25), white)
        d.paint(canvas, d.glyph("!")(u / 0.25, (v - 0.2) / 0.4), np.float32([0.05, 0.05, 0.05]))
    elif name == "no passing":
        d.paint(canvas, d.circle(u, v), red)
        d.paint(canvas, d.circle(u * 1.3, v * 1.3), white)
        d.paint(canvas, d.box((u + 0.3) / 0.18, v / 0.3), red)
        d.paint(canvas, d.box((u - 0.3) / 0.18, v / 0.3), np.float32([0.05, 0.05, 0.05]))
    return canvas


# --- handwritten digits (MNIST): real UCI digits ---------------------------------------------------------

DIGITS = tuple(str(i) for i in range(10))


@lru_cache(maxsize=1)
def _uci_digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 1,797 8x8 digits, split once into disjoint train (1,297) and test (500) writers' samples."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    images = (bunch.images / 16.0).astype(np.float32)
    split_at = len(order) - 500
    return {"train": (images[order[:split_at]], bunch.target[order[:split_at]]),
            "test": (images[order[split_at:]], bunch.target[order[split_at:]])}


def _handwritten(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    images, targets = _uci_digits()["test" if split == "test" else "train"]
    strokes = images[rng.choice(np.flatnonzero(targets == label))]
    canvas = np.empty((d.SIZE, d.SIZE, 3), np.float32)
    paper, ink = d.random_colour(rng, 0.0, 0.3), d.random_colour(rng, 0.7, 1.0)
    if rng.random() < 0.5:
        paper, ink = ink, paper
    canvas[:] = paper
    cx, cy, scale, angle = _place(rng, nuisance, 11.0)
    u, v = d.local_coords(cx, cy, scale, scale, angle)
    # Bilinear lookup of the 8x8 stroke intensities inside the digit's frame.
    x, y = (u + 1) * 4 - 0.5, (v + 1) * 4 - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    padded = np.pad(strokes, 1)
    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return padded[np.clip(yy + 1, 0, 9), np.clip(xx + 1, 0, 9)]
    value = (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy)
             + at(y0 + 1, x0) * (1 - fx) * fy + at(y0 + 1, x0 + 1) * fx * fy)
    value = np.where((np.abs(u) < 1.1) & (np.abs(v) < 1.1), value, 0.0)[..., None]
    return canvas * (1 - value) + ink * value


# --- textures (DTD) ---------------------------------------------------------------------------------------

TEXTURES = ("striped", "checkered", "dotted", "zigzagged", "grid", "wavy", "blotchy", "crosshatched",
            "concentric", "scaly")


def _texture(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    name = TEXTURES[label]
    period = rng.uniform(4, 8) * (1 + 0.3 * nuisance * rng.uniform(-1, 1))
    u, v = d.local_coords(rng.uniform(0, 32), rng.uniform(0, 32), period / (2 * np.pi), period / (2 * np.pi),
                          rng.uniform(0, np.pi))
    pattern = {
        "striped": lambda: np.sin(u) > 0,
        "checkered": lambda: (np.sin(u) > 0) ^ (np.sin(v) > 0),
        "dotted": lambda: np.cos(u) + np.cos(v) > 1.2,
        "zigzagged": lambda: np.sin(u + 1.5 * np.abs(((v / np.pi) % 2) - 1) * np.pi) > 0,
        "grid": lambda: (np.cos(u) > 0.85) | (np.cos(v) > 0.85),
        "wavy": lambda: np.sin(u + 1.2 * np.sin(v * 0.7)) > 0,
        "blotchy": lambda: d.smooth_noise(rng, 5) > 0.55,
        "crosshatched": lambda: (np.cos(u + v) > 0.8) | (np.cos(u - v) > 0.8),
        "concentric": lambda: np.sin(np.sqrt(u**2 + v**2) * 0.8) > 0,
        "scaly": lambda: (np.cos(u) + np.cos(v + (np.floor(u / np.pi) % 2) * np.pi)) > 0.9,
    }[name]()
    canvas = np.empty((d.SIZE, d.SIZE, 3), np.float32)
    canvas[:] = d.random_colour(rng)
    d.paint(canvas, pattern, d.random_colour(rng))
    return canvas + 0.2 * nuisance * (d.smooth_noise(rng, 6)[..., None] - 0.5)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("scenes", "SUN397", SCENES, _scene),
    Family("vehicles", "Cars", VEHICLES, _vehicle),
    Family("aerial", "RESISC45", AERIAL, _aerial),
    Family("landcover", "EuroSAT", LANDCOVER, _landcover),
    Family("house_numbers", "SVHN", HOUSE_NUMBERS, _house_number),
    Family("signs", "GTSRB", SIGNS, _sign),
    Family("digits", "MNIST", DIGITS, _handwritten),
    Family("textures", "DTD", TEXTURES, _texture),
)}


CHUNK = 500


def _render_chunk(family_name: str, seed: int, nuisance: float, split: str, labels: np.ndarray,
                  chunk: int) -> np.ndarray:
    rng = np.random.default_rng([seed, chunk, int(nuisance * 1000), hash_name(family_name), hash_name(split)])
    family = FAMILIES[family_name]
    return np.stack([d.finish(rng, family.render(rng, int(y), nuisance, split), nuisance) for y in labels])


def render(family: Family, seed: int, n: int, nuisance: float, split: str,
           workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n images (uint8 [n, 32, 32, 3]) with balanced labels, the same for the same arguments.

    Images are drawn in chunks with their own seeds, so the result does not depend on how many worker
    processes draw them (all cores by default: rendering is the zoo build's only CPU-bound Python loop).
    """
    rng = np.random.default_rng([seed, n, hash_name(family.name), hash_name(split)])
    labels = rng.permutation(np.arange(n) % len(family.class_names)).astype(np.int64)
    chunks = [(family.name, seed, nuisance, split, labels[i:i + CHUNK], i // CHUNK) for i in range(0, n, CHUNK)]
    workers = min(workers or os.cpu_count() or 1, len(chunks))
    if workers <= 1:
        return np.concatenate([_render_chunk(*args) for args in chunks]), labels
    with ProcessPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(_render_chunk, *zip(*chunks)))), labels


def hash_name(name: str) -> int:
    """A stable integer for a string (Python's hash() is salted per process)."""
    return zlib.crc32(name.encode())
