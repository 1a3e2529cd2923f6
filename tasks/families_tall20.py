"""The mini stand-ins of the tasks the 20-task benchmark adds (registered in `tasks/families.py`).

Like the eight of `tasks/procedural.py`, each draws one 32x32 RGB image of a class from a random generator, with
`nuisance` scaling what is not the class. They share content with the other families and differ in look, as the
real tasks do: scanned digits are MNIST's UCI digits in EMNIST's white-on-black scan, letters and kana are pen
strokes like the digits, dishes are colour blobs and textures on a plate, garments are grey silhouettes, reviews
are lines of printed words, small objects are the 14-task families' silhouettes (`tasks/families_tall14.py`)
small and dim. The glyph tables live here, not in a module of their own, because the data
fingerprint hashes the modules that define the families.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tasks import drawing as d
from tasks import procedural
from tasks.families_tall14 import SILHOUETTES, small_photo
from tasks.procedural import Family, _background, _place

Polyline = np.ndarray  # float [points, 2]: x right, y down


def _polylines(spec: str) -> tuple[Polyline, ...]:
    """Strokes written as "x,y x,y | x,y ...": the points of each stroke, strokes separated by bars."""
    return tuple(np.array([[float(c) for c in point.split(",")] for point in stroke.split()], np.float32)
                 for stroke in spec.split("|") if stroke.strip())


def _on_grid(strokes: tuple[Polyline, ...], width: float, height: float) -> tuple[Polyline, ...]:
    """Strokes drawn on a width x height grid, mapped to height [-1, 1] (keeping the grid's aspect ratio)."""
    scale = 2 / height
    return tuple(stroke * scale - np.float32([width * scale / 2, 1]) for stroke in strokes)


def _rounded(stroke: Polyline, passes: int) -> Polyline:
    """Chaikin's corner cutting: each pass replaces every corner by two points a quarter along its edges, so a
    few grid points become a pen's curve; the end points stay."""
    for _ in range(passes):
        if len(stroke) < 3:
            break
        cut = np.stack([0.75 * stroke[:-1] + 0.25 * stroke[1:], 0.25 * stroke[:-1] + 0.75 * stroke[1:]], 1)
        stroke = np.concatenate([stroke[:1], cut.reshape(-1, 2), stroke[-1:]])
    return stroke


def _ink(strokes: tuple[Polyline, ...], width: float) -> np.ndarray:
    """Coverage in [0, 1] of strokes (in pixel coordinates) drawn with a round pen `width` pixels wide, with an
    antialiased edge: the distance from every pixel near the strokes to its nearest segment, all segments at once."""
    points = np.concatenate(strokes)
    low = np.clip(np.floor(points.min(0) - width), 0, d.SIZE).astype(int)
    high = np.clip(np.ceil(points.max(0) + width), 0, d.SIZE).astype(int)
    coverage = np.zeros((d.SIZE, d.SIZE), np.float32)
    if (high <= low).any():
        return coverage
    x, y = d.X[low[1]:high[1], low[0]:high[0]].ravel(), d.Y[low[1]:high[1], low[0]:high[0]].ravel()
    start = np.concatenate([stroke[:-1] for stroke in strokes]).astype(np.float32)
    step = np.concatenate([np.diff(stroke, axis=0) for stroke in strokes]).astype(np.float32)
    sx, sy, ex, ey = start[:, :1], start[:, 1:], step[:, :1], step[:, 1:]
    t = np.clip(((x - sx) * ex + (y - sy) * ey) / np.maximum(ex * ex + ey * ey, 1e-6), 0, 1)
    gx, gy = x - sx - t * ex, y - sy - t * ey
    distance = np.sqrt((gx * gx + gy * gy).min(0))
    coverage[low[1]:high[1], low[0]:high[0]] = np.clip(width / 2 - distance + 0.5, 0, 1).reshape(
        high[1] - low[1], high[0] - low[0])
    return coverage


def _to_pixels(points: Polyline, cx: float, cy: float, scale: float, angle: float) -> Polyline:
    """Points of a shape's frame in pixel coordinates, placed as `procedural._place` gives (the inverse of
    `drawing.local_coords`)."""
    cos, sin = np.cos(angle), np.sin(angle)
    x, y = points[:, 0], points[:, 1]
    return np.stack([cx + scale * (cos * x - sin * y), cy + scale * (sin * x + cos * y)], 1)


def _handwrite(rng: np.random.Generator, glyph: tuple[Polyline, ...], nuisance: float, wobble: float,
               size: float) -> np.ndarray:
    """A glyph as one writer would pen it: every point moved a little, the whole slanted, turned, scaled and
    placed, at a random pen width. Returns the ink coverage."""
    placement = _place(rng, nuisance, size)
    slant = rng.uniform(-0.35, 0.35)
    squash = rng.uniform(0.8, 1.15)
    strokes = []
    for stroke in glyph:
        shift = rng.normal(0, wobble, 2)  # a stroke set down a little off its place
        points = stroke + (shift + rng.normal(0, wobble, stroke.shape)).astype(np.float32)
        strokes.append(_to_pixels(np.stack([(points[:, 0] + slant * points[:, 1]) * squash, points[:, 1]], 1),
                                  *placement))
    return _ink(tuple(strokes), rng.uniform(1.6, 3.2))


def _on_black(rng: np.random.Generator, coverage: np.ndarray, nuisance: float) -> np.ndarray:
    """White ink on black, as the NIST scans are: nearly grey, with a little brightness and tint nuisance."""
    paper = rng.uniform(0, 0.08 * nuisance)
    ink = d.jitter(rng, (0.95, 0.95, 0.95), 0.03 * nuisance)
    return paper + coverage[..., None] * (ink - paper)


@dataclass(frozen=True)
class StrokeFont:
    """A handwritten family's glyphs (per class name, its pen strokes) and how they are written: the letters and
    the kana differ only in their tables, grids, rounding, wobble and size."""

    glyphs: dict[str, tuple[Polyline, ...]]
    wobble: float
    size: float

    @classmethod
    def from_table(cls, table: dict[str, str], grid: tuple[float, float], rounding: int, wobble: float,
                   size: float) -> StrokeFont:
        """Strokes written as `x,y x,y | ...` on a `grid` (width, height), each rounded `rounding` times."""
        glyphs = {name: tuple(_rounded(stroke, rounding) for stroke in _on_grid(_polylines(spec), *grid))
                  for name, spec in table.items()}
        return cls(glyphs, wobble, size)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.glyphs)

    def render(self, rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
        glyph = self.glyphs[self.names[label]]
        return _on_black(rng, _handwrite(rng, glyph, nuisance, self.wobble, self.size), nuisance)


# --- handwritten letters (EMNIST letters) -----------------------------------------------------------------

# One stroke per pen movement on a 4 x 6 grid (x right, y down), upper case: FusionBench names EMNIST's letter
# classes "A" to "Z" (fusion_bench/tasks/clip_classification/emnist_letters.py).
_LETTER_STROKES = {
    "A": "0,6 2,0 4,6 | 1,4 3,4",
    "B": "0,6 0,0 3,0 4,1 4,2 3,3 0,3 | 3,3 4,4 4,5 3,6 0,6",
    "C": "4,1 3,0 1,0 0,1 0,5 1,6 3,6 4,5",
    "D": "0,0 0,6 3,6 4,5 4,1 3,0 0,0",
    "E": "4,0 0,0 0,6 4,6 | 0,3 3,3",
    "F": "4,0 0,0 0,6 | 0,3 3,3",
    "G": "4,1 3,0 1,0 0,1 0,5 1,6 3,6 4,5 4,3 2,3",
    "H": "0,0 0,6 | 4,0 4,6 | 0,3 4,3",
    "I": "1,0 3,0 | 2,0 2,6 | 1,6 3,6",
    "J": "1,0 4,0 | 3,0 3,5 2,6 1,6 0,5",
    "K": "0,0 0,6 | 4,0 0,4 | 1,3 4,6",
    "L": "0,0 0,6 4,6",
    "M": "0,6 0,0 2,3 4,0 4,6",
    "N": "0,6 0,0 4,6 4,0",
    "O": "1,0 3,0 4,1 4,5 3,6 1,6 0,5 0,1 1,0",
    "P": "0,6 0,0 3,0 4,1 4,2 3,3 0,3",
    "Q": "1,0 3,0 4,1 4,5 3,6 1,6 0,5 0,1 1,0 | 2,4 4,6",
    "R": "0,6 0,0 3,0 4,1 4,2 3,3 0,3 | 2,3 4,6",
    "S": "4,1 3,0 1,0 0,1 0,2 1,3 3,3 4,4 4,5 3,6 1,6 0,5",
    "T": "0,0 4,0 | 2,0 2,6",
    "U": "0,0 0,5 1,6 3,6 4,5 4,0",
    "V": "0,0 2,6 4,0",
    "W": "0,0 1,6 2,3 3,6 4,0",
    "X": "0,0 4,6 | 4,0 0,6",
    "Y": "0,0 2,3 4,0 | 2,3 2,6",
    "Z": "0,0 4,0 0,6 4,6",
}
LETTER_FONT = StrokeFont.from_table(_LETTER_STROKES, grid=(4, 6), rounding=1, wobble=0.07, size=11.0)


# --- cursive kana (KMNIST) --------------------------------------------------------------------------------

# The ten hiragana of KMNIST (o, ki, su, tsu, na, ha, ma, ya, re, wo: お き す つ な は ま や れ を), one stroke
# per brush movement on a 6 x 6 grid, rounded twice so that they flow like the dataset's cursive (kuzushiji).
_KANA_STROKES = {
    "o": "0,1.5 3,1.5 | 2,0 2,5 1.2,5.6 0.5,5 1,4 3,3 4.5,3.3 5,4.5 4,5.8 3,5.8 | 5,0.8 5.6,1.8",
    "ki": "1,1.5 5,1 | 1,3 5,2.5 | 2,0 4.5,4.5 | 1.5,4.8 2.5,5.8 4.5,5.8",
    "su": "0,1.8 6,1.8 | 3.5,0 3.5,3.5 2.5,4 2,3 3,2.6 3.6,3.2 3.5,4.5 2.5,6",
    "tsu": "0,2.5 3,1.8 5,2.2 5.8,3.2 5,4.5 2.5,5.5",
    "na": "0.5,1.5 3,1.2 | 2,0 0.5,4 | 4,1.8 5.5,2.5 | 4.5,3 4.5,5.5 3.5,6 2.5,5.5 3.2,4.8 5.5,5.8",
    "ha": "0.8,0.5 0.5,3.5 1,5.8 | 2.5,2 5.5,2 | 4.2,0.5 4.2,5 3.2,5.8 2.5,5 3.5,4.5 5.5,5.8",
    "ma": "1,1.5 5,1.5 | 1,3 5,3 | 3,0 3,5 2,5.8 1.5,5 2.5,4.5 4.5,5.8",
    "ya": "0.5,3 4,1.8 5.2,2.6 4.8,3.8 3.5,4 | 1.5,0.8 2.3,1.8 | 2.2,0.5 3.5,6",
    "re": "1.5,0 1.5,6 | 0,2.2 1.5,2 0,5 | 1.5,4 3.5,1.8 4.2,2.2 4,5 5,5.8 6,5",
    "wo": "0.5,1.5 5,1.2 | 2.5,0 1,3.5 4,2.8 | 5,2.8 0.5,5 | 3,4.5 2.5,5.5 3.5,6 5.5,6",
}
KANA_FONT = StrokeFont.from_table(_KANA_STROKES, grid=(6, 6), rounding=2, wobble=0.08, size=12.0)


# --- scanned digits (EMNIST digits): MNIST's UCI digits in EMNIST's look ------------------------------------


def _upsample(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a small square image spanning [-1, 1] x [-1, 1] in the frame (u, v); zero outside."""
    n = image.shape[0]
    x, y = (u + 1) * n / 2 - 0.5, (v + 1) * n / 2 - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    padded = np.pad(image, 1)

    def at(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return padded[np.clip(rows + 1, 0, n + 1), np.clip(cols + 1, 0, n + 1)]

    return (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy)
            + at(y0 + 1, x0) * (1 - fx) * fy + at(y0 + 1, x0 + 1) * fx * fy)


def _scanned_digit(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    """The same writers' digits as `digits` (its train/test split of the UCI samples), drawn as EMNIST's are:
    centred, filling the frame, upright, with thick soft strokes (EMNIST blurs NIST's scans before it shrinks
    them), white on black instead of random colours."""
    images, targets = procedural._uci_digits()["test" if split == "test" else "train"]
    strokes = images[rng.choice(np.flatnonzero(targets == label))]
    cx, cy, scale, angle = _place(rng, 0.6 * nuisance, 12.5)
    u, v = d.local_coords(cx, cy, scale, scale, 0.5 * angle)
    threshold = rng.uniform(0.2, 0.35)  # the lower, the thicker the pen
    coverage = np.clip((_upsample(strokes, u, v) - threshold) / 0.3, 0, 1)
    return _on_black(rng, coverage.astype(np.float32), nuisance)


# --- garments (FashionMNIST) ------------------------------------------------------------------------------


def _fill(polygon: Polyline) -> d.Mask:
    """Pixels inside a polygon (pixel coordinates), by the even-odd rule: a crossing count per edge."""
    x0, y0 = polygon[:, 0, None, None], polygon[:, 1, None, None]
    x1, y1 = np.roll(polygon[:, 0], -1)[:, None, None], np.roll(polygon[:, 1], -1)[:, None, None]
    spans = (y0 > d.Y) != (y1 > d.Y)
    crossing = d.X < x0 + (d.Y - y0) * (x1 - x0) / np.where(y1 == y0, 1, y1 - y0)
    return np.logical_xor.reduce(spans & crossing, axis=0)


@dataclass(frozen=True)
class Garment:
    """A garment laid flat, in a frame spanning [-1, 1] (x right, y down): its `outline` (the right half from the
    top centre down to the bottom centre where `symmetric`, mirrored into the left), `straps` drawn with a thick
    pen in the garment's grey (handles, sandal straps), `seams` with a thin dark one (plackets, soles, laces)."""

    outline: str
    symmetric: bool = True
    straps: str = ""
    seams: str = ""
    buttons: bool = False


# FashionMNIST's ten classes, in its order and under its names (lower case, as the other families' names are).
GARMENTS: dict[str, Garment] = {
    "t-shirt/top": Garment("0,-0.62 0.2,-0.8 0.45,-0.75 0.9,-0.4 0.72,-0.12 0.48,-0.3 0.48,0.85 0,0.85"),
    "trouser": Garment("0,-0.9 0.42,-0.9 0.5,0.95 0.1,0.95 0,-0.25", seams="-0.42,-0.75 0.42,-0.75 | 0,-0.75 0,-0.4"),
    "pullover": Garment("0,-0.65 0.2,-0.8 0.45,-0.75 0.7,-0.5 0.85,0.75 0.62,0.78 0.5,-0.1 0.48,0.8 0,0.8",
                        seams="-0.48,0.68 0.48,0.68"),
    "dress": Garment("0,-0.72 0.15,-0.88 0.27,-0.6 0.22,-0.15 0.7,0.92 0,0.92", seams="-0.22,-0.15 0.22,-0.15"),
    "coat": Garment("0,-0.5 0.15,-0.88 0.45,-0.82 0.72,-0.55 0.9,0.85 0.66,0.88 0.55,-0.05 0.56,0.95 0,0.95",
                    seams="-0.15,-0.88 0,-0.4 0.15,-0.88 | 0,-0.4 0,0.95 | 0.2,0.35 0.45,0.35", buttons=True),
    "sandal": Garment("-0.95,0.32 0.95,0.28 0.95,0.45 -0.9,0.48", symmetric=False,
                      straps="-0.7,0.35 -0.35,-0.05 0.05,0.32 | -0.35,-0.05 0.2,-0.1 | 0.35,0.3 0.55,-0.25 0.85,0.3"
                             " | 0.5,-0.2 0.9,-0.35"),
    "shirt": Garment("0,-0.55 0.12,-0.72 0.18,-0.88 0.45,-0.8 0.7,-0.55 0.8,0.75 0.6,0.78 0.5,-0.1 0.48,0.85 0,0.85",
                     seams="-0.18,-0.88 0,-0.55 0.18,-0.88 | 0,-0.55 0,0.85", buttons=True),
    "sneaker": Garment("-0.95,0.2 -0.85,-0.05 -0.4,-0.2 0.1,-0.45 0.55,-0.5 0.9,-0.35 0.95,0.45 -0.9,0.45",
                       symmetric=False, seams="-0.92,0.27 0.95,0.27 | -0.3,-0.25 -0.2,-0.15 | -0.1,-0.33 0,-0.23"
                                              " | 0.1,-0.42 0.2,-0.32"),
    "bag": Garment("0,-0.2 0.75,-0.2 0.88,0.75 0,0.75", straps="-0.45,-0.2 -0.38,-0.62 0,-0.78 0.38,-0.62 0.45,-0.2",
                   seams="-0.75,0.05 0.75,0.05"),
    "ankle boot": Garment("-0.95,0.25 -0.8,0 -0.2,-0.15 0.05,-0.9 0.75,-0.9 0.85,0.1 0.95,0.55 0.5,0.55 0.45,0.45"
                          " -0.9,0.45", symmetric=False, seams="0.05,-0.75 0.75,-0.75 | -0.92,0.35 0.9,0.35"),
}


def _outline(garment: Garment) -> Polyline:
    (points,) = _polylines(garment.outline)
    if garment.symmetric:
        points = np.concatenate([points, points[::-1] * np.float32([-1, 1])])
    return points


_OUTLINES = {name: _outline(garment) for name, garment in GARMENTS.items()}
_STRAPS = {name: _polylines(garment.straps) for name, garment in GARMENTS.items()}
_SEAMS = {name: _polylines(garment.seams) for name, garment in GARMENTS.items()}


def _garment(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    """A grey garment centred on black, filling the frame as FashionMNIST's do (its photos were trimmed and scaled
    to 28 pixels), with its fabric's shading, cut and, on shirts, sometimes a check or stripe."""
    name = tuple(GARMENTS)[label]
    garment = GARMENTS[name]
    placement = _place(rng, 0.7 * nuisance, 14.0)
    cut = np.float32([rng.uniform(0.85, 1.1), rng.uniform(0.9, 1.05)])  # wider or narrower, longer or shorter

    def shape(points: Polyline) -> Polyline:  # this garment's cut and placement, every point a little off
        return _to_pixels(points * cut + rng.normal(0, 0.05, points.shape).astype(np.float32), *placement)

    coverage = _fill(shape(_OUTLINES[name])).astype(np.float32)
    if _STRAPS[name]:
        coverage = np.maximum(coverage, _ink(tuple(shape(strap) for strap in _STRAPS[name]), rng.uniform(1.5, 2.5)))
    fabric = rng.uniform(0.3, 0.95) * (1 + rng.uniform(0.1, 0.5) * (d.smooth_noise(rng, 4) - 0.5))
    if name == "shirt" and rng.random() < 0.5:
        u, v = d.local_coords(*placement[:2], 1.0, 1.0, rng.uniform(0, np.pi))
        lines = np.sin(u * 1.5) > 0.6
        if rng.random() < 0.5:  # a check, else a stripe
            lines |= np.sin(v * 1.5) > 0.6
        fabric = fabric * np.where(lines, 0.6, 1)
    grey = coverage * fabric
    if _SEAMS[name]:
        grey *= 1 - 0.6 * _ink(tuple(shape(seam) for seam in _SEAMS[name]), 1.0)
    if garment.buttons:
        studs = np.stack([np.zeros(4), np.linspace(-0.2, 0.7, 4)], 1).astype(np.float32)
        grey *= 1 - 0.5 * _ink(tuple(shape(stud[None].repeat(2, 0)) for stud in studs), 1.5)
    return _on_black(rng, np.clip(grey, 0, 1).astype(np.float32), nuisance)


# --- dishes (Food101): seen from above on a plate ---------------------------------------------------------


def _pieces(rng: np.random.Generator, count: int, cx: float, cy: float, spread: float, length: tuple[float, float],
            width: tuple[float, float]) -> np.ndarray:
    """`count` ellipses (half-axes in pixels drawn from `length` and `width`, any direction) scattered uniformly
    over the disc of radius `spread` around (cx, cy), all at once: a mask per piece, bool [count, SIZE, SIZE]."""
    radius, turn = spread * np.sqrt(rng.random(count)), rng.uniform(0, 2 * np.pi, count)
    x, y = cx + radius * np.cos(turn), cy + radius * np.sin(turn)
    angle = rng.uniform(0, np.pi, count)
    dx, dy = d.X - x[:, None, None], d.Y - y[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    along = (cos * dx + sin * dy) / rng.uniform(*length, count)[:, None, None]
    across = (cos * dy - sin * dx) / rng.uniform(*width, count)[:, None, None]
    return along * along + across * across < 1


def _paint_pieces(rng: np.random.Generator, canvas: np.ndarray, pieces: np.ndarray,
                  palette: tuple[tuple[float, float, float], ...], amount: float = 0.05) -> None:
    """Each piece in a colour of the palette, jittered; where pieces overlap, the first one shows."""
    colours = np.stack([d.jitter(rng, palette[i], amount) for i in rng.integers(len(palette), size=len(pieces))])
    mask = pieces.any(0)
    canvas[mask] = colours[pieces.argmax(0)[mask]]


def _disc(cx: float, cy: float, radius: float) -> d.Mask:
    return d.circle(*d.local_coords(cx, cy, radius, radius))


_RED, _TOMATO, _CHEESE, _CRUST = (0.6, 0.1, 0.08), (0.8, 0.22, 0.1), (0.95, 0.85, 0.5), (0.85, 0.62, 0.32)
_GREENS = ((0.25, 0.55, 0.15), (0.4, 0.7, 0.2), (0.15, 0.4, 0.12))


def _pizza(rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, r: float) -> None:
    d.paint(canvas, _disc(cx, cy, r), d.jitter(rng, _CRUST, 0.05))
    d.paint(canvas, _disc(cx, cy, r * 0.85), d.jitter(rng, _TOMATO, 0.05))
    d.paint(canvas, _disc(cx, cy, r * 0.85) & (d.smooth_noise(rng, 6) > 0.4), d.jitter(rng, _CHEESE, 0.05))
    _paint_pieces(rng, canvas, _pieces(rng, rng.integers(4, 9), cx, cy, r * 0.65, (1.3, 1.8), (1.3, 1.8)), (_RED,))


def _sushi(rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, r: float) -> None:
    """Maki rolls: seaweed, rice and a fish or cucumber core."""
    for _ in range(rng.integers(3, 7)):
        x, y = cx + rng.uniform(-0.6, 0.6) * r, cy + rng.uniform(-0.6, 0.6) * r
        size = rng.uniform(2.5, 3.5)
        d.paint(canvas, _disc(x, y, size), (0.08, 0.15, 0.08))
        d.paint(canvas, _disc(x, y, size * 0.75), d.jitter(rng, (0.95, 0.95, 0.92), 0.03))
        core = ((0.95, 0.45, 0.35), (0.4, 0.7, 0.3))[rng.integers(2)]  # salmon or cucumber
        d.paint(canvas, _disc(x, y, size * 0.35), d.jitter(rng, core, 0.05))


def _hamburger(rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, r: float) -> None:
    """The top of the bun, lettuce and cheese showing at its edge, sesame seeds."""
    d.paint(canvas, _disc(cx + rng.uniform(-1, 1), cy + 1, r * 0.95) & (d.smooth_noise(rng, 8) > 0.3), _GREENS[1])
    d.paint(canvas, _disc(cx + 1, cy, r * 0.9), d.jitter(rng, (0.95, 0.75, 0.2), 0.04))
    d.paint(canvas, _disc(cx, cy, r * 0.85), d.jitter(rng, (0.75, 0.45, 0.18), 0.05))
    d.paint(canvas, _disc(cx - 2, cy - 2, r * 0.45), d.jitter(rng, (0.85, 0.58, 0.28), 0.04), 0.6)  # the shine
    _paint_pieces(rng, canvas, _pieces(rng, rng.integers(8, 16), cx, cy, r * 0.7, (0.8, 1.0), (0.4, 0.6)),
                  ((0.97, 0.93, 0.8),))


def _donuts(rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, r: float) -> None:
    for _ in range(rng.integers(1, 3)):
        x, y, size = cx + rng.uniform(-4, 4), cy + rng.uniform(-4, 4), rng.uniform(5.5, 8)
        plate = canvas[int(np.clip(y, 0, d.SIZE - 1)), int(np.clip(x, 0, d.SIZE - 1))].copy()  # seen through the hole
        d.paint(canvas, _disc(x, y, size), d.jitter(rng, (0.8, 0.55, 0.28), 0.05))
        icing = _disc(x, y, size * 0.85 + d.smooth_noise(rng, 6) * 1.2)
        glaze = ((0.95, 0.55, 0.7), (0.35, 0.2, 0.12), (0.95, 0.92, 0.85))[rng.integers(3)]  # pink, chocolate, sugar
        d.paint(canvas, icing, d.jitter(rng, glaze, 0.04))
        sprinkles = _pieces(rng, 12, x, y, size * 0.75, (0.8, 1.1), (0.3, 0.4)) & icing
        _paint_pieces(rng, canvas, sprinkles, ((0.9, 0.1, 0.1), (0.1, 0.5, 0.9), (0.95, 0.9, 0.2), (0.95, 0.95, 0.95)))
        d.paint(canvas, _disc(x, y, size * 0.3), plate)


def _waffles(rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, r: float) -> None:
    u, v = d.local_coords(cx, cy, r * 0.75, r * 0.75, rng.uniform(0, np.pi))
    waffle = d.box(u, v) if rng.random() < 0.5 else d.circle(u, v)
    d.paint(canvas, waffle, d.jitter(rng, (0.88, 0.66, 0.3), 0.04))
    d.paint(canvas, waffle & (np.sin(u * 9) > 0.1) & (np.sin(v * 9) > 0.1), d.jitter(rng, (0.65, 0.42, 0.15), 0.04))


def _pancakes(rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, r: float) -> None:
    d.paint(canvas, _disc(cx + 1, cy + 1, r * 0.9), d.jitter(rng, (0.7, 0.45, 0.2), 0.04))  # the stack's edge
    d.paint(canvas, _disc(cx, cy, r * 0.85), d.jitter(rng, (0.88, 0.62, 0.3), 0.04))
    d.paint(canvas, _disc(cx, cy, r * 0.85) & (d.smooth_noise(rng, 5) > 0.6), (0.75, 0.48, 0.2))  # browning
    d.paint(canvas, _disc(cx, cy, r * 0.6) & (d.smooth_noise(rng, 3) > 0.55), (0.55, 0.28, 0.08), 0.7)  # syrup
    u, v = d.local_coords(cx, cy, 2.2, 2.2, rng.uniform(0, np.pi))
    d.paint(canvas, d.box(u, v), d.jitter(rng, (0.98, 0.92, 0.6), 0.03))  # butter


def _spaghetti(rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, r: float) -> None:
    u, v = d.local_coords(cx, cy, 1, 1, rng.uniform(0, np.pi))
    strands = np.abs(np.sin(u * 1.3 + 2 * np.sin(v * 0.5))) < 0.5
    strands |= np.abs(np.sin(v * 1.3 + 2 * np.sin(u * 0.4))) < 0.5
    d.paint(canvas, _disc(cx, cy, r), d.jitter(rng, (0.8, 0.62, 0.3), 0.04))
    d.paint(canvas, _disc(cx, cy, r) & strands, d.jitter(rng, _CHEESE, 0.04))
    sauce = _disc(cx + rng.uniform(-2, 2), cy + rng.uniform(-2, 2), r * 0.5 + 2 * d.smooth_noise(rng, 5))
    d.paint(canvas, sauce, d.jitter(rng, (0.55, 0.15, 0.08), 0.05))
    d.paint(canvas, sauce & (rng.random(sauce.shape) < 0.25), (0.4, 0.12, 0.05))  # the mince


def _greek_salad(rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, r: float) -> None:
    _paint_pieces(rng, canvas, _pieces(rng, 18, cx, cy, r * 0.75, (2.0, 3.5), (1.2, 2.0)), _GREENS)
    _paint_pieces(rng, canvas, _pieces(rng, rng.integers(3, 6), cx, cy, r * 0.7, (1.3, 1.8), (1.0, 1.4)), (_TOMATO,))
    _paint_pieces(rng, canvas, _pieces(rng, rng.integers(2, 5), cx, cy, r * 0.7, (1.2, 1.5), (1.2, 1.5)),
                  ((0.97, 0.97, 0.94),))
    _paint_pieces(rng, canvas, _pieces(rng, rng.integers(3, 6), cx, cy, r * 0.7, (0.9, 1.1), (0.9, 1.1)),
                  ((0.08, 0.06, 0.08),))


def _miso_soup(rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, r: float) -> None:
    """In a lacquered bowl: cloudy broth, tofu cubes, spring onion."""
    d.paint(canvas, _disc(cx, cy, r), d.jitter(rng, ((0.4, 0.08, 0.06), (0.1, 0.08, 0.08))[rng.integers(2)], 0.03))
    d.paint(canvas, _disc(cx, cy, r * 0.82), d.jitter(rng, (0.78, 0.6, 0.35), 0.04))
    d.paint(canvas, _disc(cx, cy, r * 0.82) & (d.smooth_noise(rng, 6) > 0.55), (0.7, 0.5, 0.28))
    _paint_pieces(rng, canvas, _pieces(rng, rng.integers(3, 7), cx, cy, r * 0.55, (1.0, 1.3), (1.0, 1.3)),
                  ((0.97, 0.96, 0.9),))
    _paint_pieces(rng, canvas, _pieces(rng, rng.integers(4, 9), cx, cy, r * 0.6, (0.5, 0.8), (0.5, 0.8)), _GREENS)


def _french_fries(rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, r: float) -> None:
    _paint_pieces(rng, canvas, _pieces(rng, rng.integers(12, 22), cx, cy, r * 0.6, (3.5, 5.5), (0.6, 0.9)),
                  ((0.98, 0.8, 0.3), (0.92, 0.7, 0.25), (0.85, 0.6, 0.2)))
    if rng.random() < 0.6:
        d.paint(canvas, _disc(cx + rng.uniform(-8, 8), cy + rng.uniform(-8, 8), 2.5), (0.75, 0.08, 0.05))  # ketchup


def _edamame(rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, r: float) -> None:
    pods = _pieces(rng, rng.integers(7, 13), cx, cy, r * 0.65, (3.0, 4.0), (1.1, 1.4))
    _paint_pieces(rng, canvas, pods, ((0.45, 0.68, 0.25), (0.38, 0.6, 0.2)))
    d.paint(canvas, pods.any(0) & (rng.random((d.SIZE, d.SIZE)) < 0.08), (0.95, 0.95, 0.95))  # salt


def _fried_rice(rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, r: float) -> None:
    d.paint(canvas, _disc(cx, cy, r * 0.85), d.jitter(rng, (0.88, 0.75, 0.45), 0.04))
    _paint_pieces(rng, canvas, _pieces(rng, 40, cx, cy, r * 0.8, (0.6, 0.9), (0.35, 0.5)), ((0.97, 0.9, 0.7),))
    _paint_pieces(rng, canvas, _pieces(rng, rng.integers(6, 12), cx, cy, r * 0.75, (0.5, 0.8), (0.5, 0.8)),
                  ((0.35, 0.65, 0.2), (0.95, 0.5, 0.1), (0.98, 0.85, 0.2)))


Dish = Callable[[np.random.Generator, np.ndarray, float, float, float], None]
"""Paints a dish onto a canvas: centred at (cx, cy), about r pixels in radius."""

# Twelve of Food101's classes, under its names (with spaces where its hub copy writes underscores). Pairs share
# colours (pizza and spaghetti red and yellow, waffles and pancakes golden, salad and edamame green, fries and
# fried rice yellow), so that colour alone does not tell a dish.
DISHES: dict[str, Dish] = {
    "pizza": _pizza, "sushi": _sushi, "hamburger": _hamburger, "donuts": _donuts, "waffles": _waffles,
    "pancakes": _pancakes, "spaghetti bolognese": _spaghetti, "greek salad": _greek_salad, "miso soup": _miso_soup,
    "french fries": _french_fries, "edamame": _edamame, "fried rice": _fried_rice,
}


def _dish(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    """On a plate on a table, from above, as Food101's photos mostly are, the plate cut by the frame at times."""
    canvas = _background(rng, nuisance)
    cx, cy, scale, _ = _place(rng, nuisance, 12.0)
    d.paint(canvas, _disc(cx, cy, scale * 1.3), d.jitter(rng, (0.93, 0.92, 0.9), 0.03 + 0.05 * nuisance))
    d.paint(canvas, d.ring(0.12)(*d.local_coords(cx, cy, scale * 1.3, scale * 1.3)), (0.8, 0.8, 0.78), 0.5)
    DISHES[tuple(DISHES)[label]](rng, canvas, cx, cy, scale * rng.uniform(0.8, 1.0))
    return canvas


# --- rendered reviews (RenderedSST2): lines of printed words ----------------------------------------------

# A 3x5 pixel font for the letters (`drawing.FONT` has only digits and signs' symbols).
_PIXEL_ROWS = {
    "a": "010 101 111 101 101", "b": "110 101 110 101 110", "c": "011 100 100 100 011", "d": "110 101 101 101 110",
    "e": "111 100 110 100 111", "f": "111 100 110 100 100", "g": "011 100 101 101 011", "h": "101 101 111 101 101",
    "i": "111 010 010 010 111", "j": "001 001 001 101 010", "k": "101 101 110 101 101", "l": "100 100 100 100 111",
    "m": "101 111 111 101 101", "n": "110 101 101 101 101", "o": "010 101 101 101 010", "p": "110 101 110 100 100",
    "q": "010 101 101 110 011", "r": "110 101 110 101 101", "s": "011 100 010 001 110", "t": "111 010 010 010 010",
    "u": "101 101 101 101 011", "v": "101 101 101 010 010", "w": "101 101 111 111 101", "x": "101 101 010 101 101",
    "y": "101 101 010 010 010", "z": "111 001 010 100 111",
}
PIXEL_FONT = {char: np.array([[bit == "1" for bit in row] for row in rows.split()])
              for char, rows in _PIXEL_ROWS.items()}

# The class is in the words: sentiment words of one polarity among words that carry none, as SST2's sentences
# mix judgement with plot and cast.
REVIEW_WORDS = {
    "negative": ("bad", "dull", "awful", "boring", "worst", "weak", "flat", "mess", "poor", "stale", "lame", "ugly"),
    "positive": ("good", "great", "fun", "love", "best", "nice", "smart", "witty", "warm", "rich", "gem", "superb"),
}
_FILLER = ("the", "film", "plot", "cast", "movie", "story", "is", "a", "so", "and", "it", "was", "too", "very", "all",
           "its", "of", "one", "as", "this")
SENTIMENTS = tuple(REVIEW_WORDS)


def _line_width(words: list[str]) -> int:
    """Pixels a line of words takes: 3-pixel letters 1 pixel apart, words 3 pixels apart."""
    return sum(4 * len(word) - 1 for word in words) + 3 * (len(words) - 1)


def _review(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    """Dark words on white paper, three or four lines of them, set in the pixel font one pixel per font pixel:
    two to four lines hold a judgement of the class's polarity, the rest of the words are filler."""
    judgements = REVIEW_WORDS[SENTIMENTS[label]]
    lines = int(rng.integers(3, 5))
    judged = set(rng.choice(lines, int(rng.integers(2, lines + 1)), replace=False).tolist())
    top = int(rng.integers(0, d.SIZE - 7 * lines + 3))
    ink = np.zeros((d.SIZE, d.SIZE), np.float32)
    for line in range(lines):
        words = [judgements[rng.integers(len(judgements))]] if line in judged else []
        while True:
            filler = _FILLER[rng.integers(len(_FILLER))]
            if _line_width(words + [filler]) > d.SIZE - 2:
                break
            words.insert(int(rng.integers(len(words) + 1)), filler)
        x, y = int(rng.integers(0, d.SIZE - 1 - _line_width(words))), top + 7 * line
        for word in words:
            for char in word:
                ink[y:y + 5, x:x + 3] = PIXEL_FONT[char]
                x += 4
            x += 2
    paper = d.jitter(rng, (0.97, 0.97, 0.95), 0.03 * nuisance)
    colour = d.random_colour(rng, 0.0, 0.25)
    return paper + ink[..., None] * (colour - paper)


# --- small objects (CIFAR10): the objects of `tasks/families_tall14.py`, small and dim ---------------------


def _draw_frog(canvas: np.ndarray, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> None:
    """Squatting, facing +u: folded hind leg, bulging eyes, a spotted green or brown skin."""
    skin = d.jitter(rng, ((0.3, 0.55, 0.2), (0.45, 0.4, 0.2))[rng.integers(2)], 0.05)
    body = d.circle(u / 0.55, (v - 0.1) / 0.32) | d.circle((u - 0.45) / 0.3, (v + 0.02) / 0.22)
    legs = d.circle((u + 0.3) / 0.38, (v - 0.3) / 0.18) | d.circle((u + 0.05) / 0.35, (v - 0.5) / 0.07)
    legs |= d.circle((u - 0.45) / 0.08, (v - 0.35) / 0.25) | d.circle((u - 0.55) / 0.18, (v - 0.55) / 0.06)
    d.paint(canvas, body | legs, skin)
    d.paint(canvas, body & (np.sin(u * 20) * np.sin(v * 20 + 1) > 0.6), skin * 0.55)
    d.paint(canvas, d.circle((u - 0.12) / 0.5, (v - 0.25) / 0.12), np.minimum(skin * 1.5, 1))  # the pale belly
    eye = d.circle((u - 0.45) / 0.11, (v + 0.22) / 0.11)
    d.paint(canvas, eye, (0.9, 0.75, 0.2))
    d.paint(canvas, eye & d.circle((u - 0.47) / 0.05, (v + 0.22) / 0.05), (0.05, 0.05, 0.05))


SILHOUETTES["frog"] = _draw_frog  # CIFAR10's only object the 14-task families do not draw, in their one table

# CIFAR10's classes, its "automobile" named "car" as STL10's stand-in names the same object.
SMALL_OBJECTS = ("airplane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _small_object(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    """Small, dim and at half resolution, as CIFAR's 32-pixel photos are, in front of a horizon half the time."""
    background = _background(rng, max(nuisance, 0.5))
    if rng.random() < 0.5:
        background[d.Y > d.SIZE * rng.uniform(0.5, 0.8)] *= rng.uniform(0.5, 1.3, 3).astype(np.float32)
    return small_photo(rng, SMALL_OBJECTS[label], background, nuisance, (0.5, 0.9))


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("small_objects", "CIFAR10", SMALL_OBJECTS, _small_object),
    Family("dishes", "Food101", tuple(DISHES), _dish),
    Family("garments", "FashionMNIST", tuple(GARMENTS), _garment),
    Family("scanned_digits", "EMNIST", procedural.DIGITS, _scanned_digit),
    Family("letters", "EMNISTLetters", LETTER_FONT.names, LETTER_FONT.render),
    Family("kana", "KMNIST", KANA_FONT.names, KANA_FONT.render),
    Family("rendered_reviews", "RenderedSST2", SENTIMENTS, _review),
)}
