"""The mini stand-ins of the tasks the 20-task benchmark adds (registered in `tasks/families.py`).

Like the eight of `tasks/procedural.py`, each draws one 32x32 RGB image of a class from a random generator, with
`nuisance` scaling what is not the class. They share content with the other families and differ in look, as the
real tasks do: scanned digits are MNIST's UCI digits in EMNIST's white-on-black scan, letters and kana are pen
strokes like the digits, dishes are colour blobs and textures on a plate, garments are grey silhouettes, reviews
are lines of printed words. The glyph tables live here, not in a module of their own, because the data
fingerprint hashes the modules that define the families.
"""

from __future__ import annotations

import numpy as np

from tasks import drawing as d
from tasks import procedural
from tasks.procedural import Family, _background, _place

Polyline = np.ndarray  # float [points, 2]: x right, y down


def _polylines(spec: str, width: float, height: float) -> tuple[Polyline, ...]:
    """Strokes written as "x,y x,y | x,y ..." on a width x height grid, mapped to [-1, 1] (x scaled to keep the
    grid's aspect ratio)."""
    scale = 2 / height
    return tuple(np.array([[float(c) for c in point.split(",")] for point in stroke.split()], np.float32)
                 * scale - np.float32([width * scale / 2, 1]) for stroke in spec.split("|"))


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


def _handwrite(rng: np.random.Generator, glyph: tuple[Polyline, ...], nuisance: float, wobble: float,
               size: float) -> np.ndarray:
    """A glyph as one writer would pen it: every point moved a little, the whole slanted, turned, scaled and
    placed, at a random pen width. Returns the ink coverage."""
    cx, cy, scale, angle = _place(rng, 0.4 * nuisance, size)
    slant = rng.uniform(-0.35, 0.35)
    squash = rng.uniform(0.8, 1.15)
    cos, sin = np.cos(angle), np.sin(angle)
    strokes = []
    for stroke in glyph:
        points = stroke + rng.normal(0, wobble, stroke.shape).astype(np.float32)
        x, y = (points[:, 0] + slant * points[:, 1]) * squash, points[:, 1]
        strokes.append(np.stack([cx + scale * (cos * x - sin * y), cy + scale * (sin * x + cos * y)], 1))
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
LETTER_GLYPHS = {name: tuple(_rounded(stroke, 1) for stroke in _polylines(spec, 4, 6))
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
KANA_GLYPHS = {name: tuple(_rounded(stroke, 2) for stroke in _polylines(spec, 6, 6))
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


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("scanned_digits", "EMNIST", procedural.DIGITS, _scanned_digit),
    Family("letters", "EMNISTLetters", LETTERS, _letter),
    Family("kana", "KMNIST", KANA, _kana),
)}
