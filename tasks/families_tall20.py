"""The mini stand-ins of the tasks the 20-task benchmark adds (registered in `tasks/families.py`).

Like the eight of `tasks/procedural.py`, each draws one 32x32 RGB image of a class from a random generator, with
`nuisance` scaling what is not the class. They share content with the other families and differ in look, as the
real tasks do: scanned digits are MNIST's UCI digits in EMNIST's white-on-black scan, letters and kana are pen
strokes like the digits, dishes are colour blobs and textures on a plate, garments are grey silhouettes, reviews
are lines of printed words. The glyph tables live here, not in a module of their own, because the data
fingerprint hashes the modules that define the families.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks import drawing as d
from tasks import procedural
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
    antialiased edge: the distance from every pixel to its nearest segment, all segments at once."""
    starts = np.concatenate([stroke[:-1] for stroke in strokes])[:, None, :]
    steps = np.concatenate([np.diff(stroke, axis=0) for stroke in strokes])[:, None, :]
    pixels = np.stack([d.X.ravel(), d.Y.ravel()], 1)[None]
    t = np.clip(((pixels - starts) * steps).sum(-1) / np.maximum((steps * steps).sum(-1), 1e-6), 0, 1)
    gap = pixels - starts - t[..., None] * steps
    distance = np.sqrt((gap * gap).sum(-1).min(0))
    return np.clip(width / 2 - distance + 0.5, 0, 1).reshape(d.SIZE, d.SIZE).astype(np.float32)


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
    placement = _place(rng, 0.4 * nuisance, size)
    slant = rng.uniform(-0.35, 0.35)
    squash = rng.uniform(0.8, 1.15)
    strokes = []
    for stroke in glyph:
        points = stroke + rng.normal(0, wobble, stroke.shape).astype(np.float32)
        strokes.append(_to_pixels(np.stack([(points[:, 0] + slant * points[:, 1]) * squash, points[:, 1]], 1),
                                  *placement))
    return _ink(tuple(strokes), rng.uniform(1.6, 3.2))


def _on_black(rng: np.random.Generator, coverage: np.ndarray, nuisance: float) -> np.ndarray:
    """White ink on black, as the NIST scans are: nearly grey, with a little brightness and tint nuisance."""
    paper = rng.uniform(0, 0.08 * nuisance)
    ink = d.jitter(rng, (0.95, 0.95, 0.95), 0.03 * nuisance)
    return paper + coverage[..., None] * (ink - paper)


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
LETTERS = tuple(_LETTER_STROKES)
LETTER_GLYPHS = {name: tuple(_rounded(stroke, 1) for stroke in _on_grid(_polylines(spec), 4, 6))
                 for name, spec in _LETTER_STROKES.items()}


def _letter(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    return _on_black(rng, _handwrite(rng, LETTER_GLYPHS[LETTERS[label]], nuisance, 0.07, 11.0), nuisance)


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
KANA = tuple(_KANA_STROKES)
KANA_GLYPHS = {name: tuple(_rounded(stroke, 2) for stroke in _on_grid(_polylines(spec), 6, 6))
               for name, spec in _KANA_STROKES.items()}


def _kana(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    return _on_black(rng, _handwrite(rng, KANA_GLYPHS[KANA[label]], nuisance, 0.08, 12.0), nuisance)


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
    cx, cy, scale, angle = _place(rng, 0.3 * nuisance, 12.5)
    u, v = d.local_coords(cx, cy, scale, scale, 0.3 * angle)
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


# FashionMNIST's ten classes, in its order and under its names (lower case, as the CLIP benchmark's prompts use them).
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
    placement = _place(rng, 0.4 * nuisance, 14.0)
    cut = np.float32([rng.uniform(0.85, 1.1), rng.uniform(0.9, 1.05)])  # wider or narrower, longer or shorter
    shape = lambda points: _to_pixels(points * cut + rng.normal(0, 0.03, points.shape).astype(np.float32),
                                      *placement)
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


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("scanned_digits", "EMNIST", procedural.DIGITS, _scanned_digit),
    Family("letters", "EMNISTLetters", LETTERS, _letter),
    Family("kana", "KMNIST", KANA, _kana),
    Family("garments", "FashionMNIST", tuple(GARMENTS), _garment),
)}
