"""The mini stand-ins of the tasks the 14-task benchmark adds (registered in `tasks/families.py`).

Like the eight of `tasks/procedural.py`, each draws one 32x32 RGB image of a class from a random generator, with
`nuisance` scaling what is not the class. They share structure with the eight and with each other, as the real
tasks do: objects and pets are silhouettes like the vehicles, flowers are radial colour blobs, tissue is a dense
texture. Every object is drawn by one `SILHOUETTES` entry under one class name, whichever family draws it (a
CIFAR100 rose is the Flowers102 stand-in's rose, its bus the Cars stand-in's): a class name is how a zero-shot head
reads a class, so the same object keeps its name. Other modules reuse the entries at other scales and contrasts
(`draw_silhouette`, `soften`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from tasks import drawing as d
from tasks.procedural import _VEHICLE_PARTS, Family, _background, _place

Colour = tuple[float, float, float]
Silhouette = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator], None]
"""Paints one object onto a canvas, given the pixel grid in the object's frame (u forward, v down, |u|, |v| <= 1)."""

_BLACK, _WHITE = (0.06, 0.05, 0.05), (0.93, 0.92, 0.9)


def _ellipse(u: np.ndarray, v: np.ndarray, x: float, y: float, a: float, b: float) -> d.Mask:
    return ((u - x) / a) ** 2 + ((v - y) / b) ** 2 < 1


def _segment(u: np.ndarray, v: np.ndarray, x0: float, y0: float, x1: float, y1: float, width: float) -> d.Mask:
    """A stroke of half-width `width` from (x0, y0) to (x1, y1): legs, tails, masts, frames."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy), 0, 1)
    return (u - x0 - t * dx) ** 2 + (v - y0 - t * dy) ** 2 < width * width


# --- animals: one parametrised quadruped for the STL10 and CIFAR100 animals and the pet breeds --------------


@dataclass(frozen=True)
class Quadruped:
    """An animal in side view, facing +u; lengths in the object's frame. Colours are jittered per image."""

    fur: Colour
    body: tuple[float, float] = (0.55, 0.28)  # half length, half height
    legs: tuple[float, float] = (0.4, 0.07)  # length below the body, half-width
    neck: tuple[float, float] = (0.7, -0.35)  # head centre
    head: float = 0.2
    snout: float = 0.12  # how far the muzzle reaches ahead of the head
    ears: str = "pointed"  # pointed, floppy, round, antlers, horns
    ear_size: float = 0.12
    tail: str = "down"  # down, up, curl, bushy, tuft, stub
    pattern: str = "plain"  # plain, stripes, spots, points, patches, ticked
    marking: Colour = _BLACK  # the pattern's colour
    fluff: float = 0.0  # ragged outline of a long coat
    hump: float = 0.0
    mane: float = 0.0
    trunk: bool = False


def _draw_quadruped(spec: Quadruped, canvas: np.ndarray, u: np.ndarray, v: np.ndarray,
                    rng: np.random.Generator) -> None:
    bl, bh = spec.body
    leg, lw = spec.legs
    hx, hy = spec.neck
    if spec.fluff:
        ragged = spec.fluff * (d.smooth_noise(rng, 10) - 0.5)
        u, v = u + ragged, v - ragged
    shape = _ellipse(u, v, 0, 0, bl, bh) | _segment(u, v, bl * 0.6, -bh * 0.2, hx, hy, spec.head * 0.6)
    for x in (-bl * 0.65, -bl * 0.45, bl * 0.5, bl * 0.7):
        shape |= _segment(u, v, x, 0, x + 0.03, bh + leg, lw)
    tail_root = (-bl * 0.95, -bh * 0.3)
    tail = {"down": lambda: _segment(u, v, *tail_root, -bl - 0.2, bh + leg * 0.5, 0.04),
            "up": lambda: _segment(u, v, *tail_root, -bl - 0.25, -bh - 0.35, 0.04),
            "curl": lambda: d.ring(0.45)((u + bl + 0.02) / 0.15, (v + bh + 0.05) / 0.15),
            "bushy": lambda: _ellipse(u, v, -bl - 0.25, 0.05, 0.3, 0.11),
            "tuft": lambda: _segment(u, v, *tail_root, -bl - 0.1, bh + leg * 0.3, 0.03)
                            | _ellipse(u, v, -bl - 0.1, bh + leg * 0.35, 0.05, 0.09),
            "stub": lambda: _ellipse(u, v, -bl - 0.03, -bh * 0.4, 0.08, 0.06)}[spec.tail]()
    shape |= tail
    if spec.hump:
        shape |= _ellipse(u, v, -bl * 0.1, -bh, bl * 0.45, spec.hump)
    head = _ellipse(u, v, hx, hy, spec.head, spec.head * 0.85)
    head |= _ellipse(u, v, hx + spec.snout, hy + spec.head * 0.3, spec.head * 0.6, spec.head * 0.4)
    if spec.trunk:
        head |= _segment(u, v, hx + spec.head * 0.8, hy + 0.05, hx + spec.head + 0.05, bh + leg * 0.8, 0.06)
    top = hy - spec.head * 0.7
    ear_x = hx - spec.head * 0.3
    ears = {"pointed": lambda: d.triangle((u - ear_x) / spec.ear_size, (v - top + spec.ear_size) / spec.ear_size),
            "floppy": lambda: _ellipse(u, v, ear_x - 0.04, hy + spec.head * 0.2, spec.ear_size * 0.5, spec.ear_size),
            "round": lambda: _ellipse(u, v, ear_x, top, spec.ear_size, spec.ear_size),
            "antlers": lambda: _segment(u, v, ear_x, top, ear_x - 0.1, top - 0.35, 0.025)
                               | _segment(u, v, ear_x - 0.05, top - 0.18, ear_x + 0.1, top - 0.3, 0.025),
            "horns": lambda: _segment(u, v, ear_x, top, ear_x - 0.12, top - 0.12, 0.035)}[spec.ears]()
    fur = d.jitter(rng, spec.fur, 0.05)
    marking = d.jitter(rng, spec.marking, 0.05)
    if spec.mane:
        d.paint(canvas, _ellipse(u, v, hx - 0.05, hy + 0.05, spec.head + spec.mane, spec.head + spec.mane), marking)
    whole = shape | head | ears
    d.paint(canvas, whole, fur)
    pattern = {"plain": lambda: np.zeros_like(whole),
               "stripes": lambda: shape & (np.sin(u * 28 + 3 * v) > 0.45),
               "spots": lambda: shape & (np.sin(u * 22) * np.sin(v * 22) > 0.45),
               "points": lambda: ears | tail | (v > bh * 0.8) | _ellipse(u, v, hx + spec.snout, hy, 0.15, 0.15),
               "patches": lambda: shape & (d.smooth_noise(rng, 4) > 0.6),
               "ticked": lambda: whole & (rng.random(whole.shape) < 0.35)}[spec.pattern]()
    d.paint(canvas, pattern & whole, marking)
    d.paint(canvas, _ellipse(u, v, hx + spec.head * 0.35, hy - spec.head * 0.2, 0.035, 0.035), _BLACK)


_ORANGE, _BROWN, _GREY, _TAN = (0.85, 0.5, 0.2), (0.45, 0.3, 0.18), (0.55, 0.55, 0.58), (0.8, 0.65, 0.45)
_CAT = Quadruped(_GREY, body=(0.45, 0.2), legs=(0.3, 0.06), neck=(0.55, -0.3), head=0.17, snout=0.05,
                 ears="pointed", ear_size=0.1, tail="up")
_DOG = Quadruped(_BROWN, body=(0.5, 0.24), legs=(0.38, 0.07), neck=(0.65, -0.35), head=0.18, snout=0.18,
                 ears="floppy", ear_size=0.14, tail="up")

ANIMALS: dict[str, Quadruped] = {
    "cat": _CAT,
    "dog": _DOG,
    "deer": Quadruped(_TAN, body=(0.45, 0.2), legs=(0.55, 0.04), neck=(0.65, -0.55), head=0.13, snout=0.1,
                      ears="antlers", tail="stub", pattern="spots", marking=_WHITE),
    "horse": Quadruped(_BROWN, body=(0.55, 0.22), legs=(0.55, 0.05), neck=(0.75, -0.55), head=0.15, snout=0.15,
                       ears="pointed", ear_size=0.07, tail="tuft"),
    "elephant": Quadruped(_GREY, body=(0.6, 0.38), legs=(0.35, 0.12), neck=(0.6, -0.2), head=0.25, snout=0.05,
                          ears="floppy", ear_size=0.25, tail="tuft", trunk=True),
    "camel": Quadruped(_TAN, body=(0.5, 0.2), legs=(0.6, 0.05), neck=(0.8, -0.45), head=0.12, snout=0.12,
                       ears="round", ear_size=0.04, tail="tuft", hump=0.25),
    "lion": Quadruped(_TAN, body=(0.55, 0.25), legs=(0.35, 0.08), neck=(0.65, -0.35), head=0.18, snout=0.1,
                      ears="round", ear_size=0.06, tail="tuft", mane=0.14, marking=_BROWN),
    "tiger": Quadruped(_ORANGE, body=(0.6, 0.22), legs=(0.35, 0.08), neck=(0.7, -0.3), head=0.18, snout=0.1,
                       ears="round", ear_size=0.06, tail="down", pattern="stripes"),
    "fox": Quadruped(_ORANGE, body=(0.45, 0.18), legs=(0.3, 0.05), neck=(0.6, -0.3), head=0.15, snout=0.2,
                     ears="pointed", ear_size=0.12, tail="bushy", pattern="points", marking=(0.15, 0.1, 0.08)),
    "cattle": Quadruped(_WHITE, body=(0.6, 0.3), legs=(0.4, 0.08), neck=(0.7, -0.2), head=0.17, snout=0.12,
                        ears="horns", tail="tuft", pattern="patches"),
}

# Twelve of OxfordIIITPet's 37 breeds (six cats, six dogs), under the dataset's class names: the cats differ by
# coat and ears, the dogs by build as well.
PETS: dict[str, Quadruped] = {
    "Abyssinian": replace(_CAT, fur=(0.7, 0.45, 0.25), ear_size=0.14, pattern="ticked", marking=(0.3, 0.2, 0.1)),
    "Bengal": replace(_CAT, fur=(0.8, 0.6, 0.3), pattern="spots", marking=(0.2, 0.12, 0.05)),
    "Bombay": replace(_CAT, fur=(0.08, 0.07, 0.07)),
    "Persian": replace(_CAT, fur=(0.85, 0.8, 0.75), body=(0.45, 0.26), snout=0.0, ear_size=0.05, tail="bushy",
                       fluff=0.12),
    "Siamese": replace(_CAT, fur=(0.9, 0.85, 0.72), pattern="points", marking=(0.3, 0.2, 0.15)),
    "Sphynx": replace(_CAT, fur=(0.85, 0.65, 0.6), body=(0.4, 0.16), legs=(0.32, 0.04), ear_size=0.17),
    "beagle": replace(_DOG, fur=(0.95, 0.92, 0.88), pattern="patches", marking=(0.6, 0.38, 0.18)),
    "pug": replace(_DOG, fur=(0.85, 0.72, 0.5), body=(0.4, 0.24), legs=(0.25, 0.07), snout=0.03, ears="round",
                   ear_size=0.06, tail="curl", pattern="points", marking=_BLACK),
    "samoyed": replace(_DOG, fur=(0.95, 0.95, 0.93), ears="pointed", tail="curl", fluff=0.12),
    "basset hound": replace(_DOG, body=(0.6, 0.22), legs=(0.15, 0.08), ear_size=0.22, pattern="patches",
                            marking=(0.95, 0.92, 0.88)),
    "chihuahua": replace(_DOG, fur=(0.85, 0.7, 0.5), body=(0.32, 0.16), legs=(0.28, 0.04), head=0.17, snout=0.07,
                         ears="pointed", ear_size=0.17),
    "newfoundland": replace(_DOG, fur=(0.1, 0.09, 0.09), body=(0.6, 0.32), legs=(0.35, 0.1), tail="bushy",
                            fluff=0.15),
}


# --- vehicles and other objects -----------------------------------------------------------------------------


def _draw_vehicle(kinds: tuple[str, ...], canvas: np.ndarray, u: np.ndarray, v: np.ndarray,
                  rng: np.random.Generator) -> None:
    """One of these kinds of `tasks/procedural.py`'s vehicles, drawn as the Cars stand-in draws it."""
    (bw, bh), (cx_off, cw, ch), wheel, wheel_xs = _VEHICLE_PARTS[kinds[rng.integers(len(kinds))]]
    paint_colour = d.random_colour(rng)
    d.paint(canvas, (np.abs(u) < bw) & (np.abs(v) < bh), paint_colour)
    if cw > 0:
        d.paint(canvas, (np.abs(u - cx_off) < cw) & (np.abs(v + bh + ch) < ch), paint_colour * 0.8)
        d.paint(canvas, (np.abs(u - cx_off) < cw * 0.7) & (np.abs(v + bh + ch) < ch * 0.6), (0.7, 0.85, 0.95))
    for wx in wheel_xs:
        d.paint(canvas, (u - wx) ** 2 + (v - bh) ** 2 < wheel**2, _BLACK)


def _draw_airplane(canvas: np.ndarray, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> None:
    """Seen from below, in flight: swept wings and tailplane across the fuselage."""
    hull = d.jitter(rng, (0.85, 0.86, 0.88), 0.08)
    span = np.abs(v)
    wings = (np.abs(u + 0.45 * span) < 0.16) & (span < 0.85)
    tailplane = (np.abs(u + 0.75 + 0.3 * span) < 0.1) & (span < 0.35)
    d.paint(canvas, wings | tailplane | _ellipse(u, v, 0, 0, 0.95, 0.14), hull)
    d.paint(canvas, _ellipse(u, np.abs(v), -0.05, 0.38, 0.12, 0.06), hull * 0.7)  # the engines
    d.paint(canvas, (np.abs(u) < 0.7) & (np.abs(v) < 0.04), d.random_colour(rng))  # the airline's stripe


def _draw_bird(canvas: np.ndarray, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> None:
    plumage = d.random_colour(rng, 0.1, 0.9)
    d.paint(canvas, _segment(u, v, 0.0, 0.25, -0.05, 0.55, 0.025) | _segment(u, v, 0.1, 0.25, 0.12, 0.55, 0.025),
            (0.5, 0.35, 0.2))
    d.paint(canvas, _ellipse(u, v, 0, 0, 0.4, 0.26) | _ellipse(u, v, 0.35, -0.28, 0.16, 0.15)
            | d.triangle((u + 0.5) / 0.15, (v + 0.05) / 0.2), plumage)
    d.paint(canvas, _ellipse(u, v, -0.08, -0.03, 0.28, 0.13), plumage * 0.6)  # the wing
    d.paint(canvas, d.triangle(-(v + 0.26) / 0.06, (u - 0.6) / 0.1), (0.95, 0.7, 0.15))  # the beak
    d.paint(canvas, _ellipse(u, v, 0.4, -0.32, 0.035, 0.035), _BLACK)


def _draw_primate(tail: bool, fur: Colour, canvas: np.ndarray, u: np.ndarray, v: np.ndarray,
                  rng: np.random.Generator) -> None:
    """A sitting monkey (long curled tail) or an ape (none, longer arms)."""
    fur = d.jitter(rng, fur, 0.05)
    body = _ellipse(u, v, 0, 0.15, 0.28, 0.38) | _ellipse(u, v, 0.05, -0.4, 0.2, 0.19)
    body |= _ellipse(u, v, -0.16, -0.4, 0.08, 0.08) | _ellipse(u, v, 0.26, -0.4, 0.08, 0.08)
    arm = 0.7 if tail else 0.85
    body |= _segment(u, v, 0.15, -0.05, 0.4, arm, 0.07) | _segment(u, v, -0.15, -0.05, -0.3, arm, 0.07)
    if tail:
        body |= _segment(u, v, -0.2, 0.45, -0.7, 0.5, 0.04) | d.ring(0.35)((u + 0.75) / 0.18, (v - 0.3) / 0.18)
    d.paint(canvas, body, fur)
    d.paint(canvas, _ellipse(u, v, 0.07, -0.36, 0.12, 0.12), (0.85, 0.7, 0.55))  # the face
    d.paint(canvas, _ellipse(u, v, 0.02, -0.4, 0.025, 0.025) | _ellipse(u, v, 0.12, -0.4, 0.025, 0.025), _BLACK)


def _draw_ship(canvas: np.ndarray, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> None:
    hull = (v > 0.05) & (v < 0.4) & (np.abs(u) < 0.95 - (v - 0.05) * 0.8)
    d.paint(canvas, hull, d.random_colour(rng, 0.05, 0.7))
    d.paint(canvas, (np.abs(u + 0.1) < 0.35) & (v > -0.2) & (v <= 0.05), d.jitter(rng, _WHITE, 0.05))
    d.paint(canvas, (np.abs(u - 0.05) < 0.07) & (v > -0.45) & (v <= -0.2), d.random_colour(rng))  # the funnel
    d.paint(canvas, (np.abs(v + 0.08) < 0.03) & (np.abs(u + 0.1) < 0.3) & (np.sin(u * 60) > 0), (0.2, 0.25, 0.35))


def _draw_bicycle(canvas: np.ndarray, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> None:
    frame = d.random_colour(rng)
    wheels = d.ring(0.18)((u + 0.55) / 0.38, (v - 0.3) / 0.38) | d.ring(0.18)((u - 0.55) / 0.38, (v - 0.3) / 0.38)
    d.paint(canvas, wheels, (0.1, 0.1, 0.1))
    tubes = (_segment(u, v, -0.55, 0.3, 0.0, 0.3, 0.04) | _segment(u, v, 0.0, 0.3, -0.15, -0.2, 0.04)
             | _segment(u, v, -0.15, -0.2, 0.4, -0.2, 0.04) | _segment(u, v, 0.4, -0.2, 0.0, 0.3, 0.04)
             | _segment(u, v, 0.4, -0.35, 0.55, 0.3, 0.04) | _segment(u, v, -0.55, 0.3, -0.15, -0.2, 0.04))
    d.paint(canvas, tubes, frame)
    d.paint(canvas, _segment(u, v, -0.25, -0.28, -0.05, -0.28, 0.05) | _segment(u, v, 0.35, -0.4, 0.5, -0.4, 0.04),
            _BLACK)


def _draw_tractor(canvas: np.ndarray, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> None:
    paint_colour = d.jitter(rng, ((0.8, 0.15, 0.1), (0.2, 0.55, 0.2), (0.2, 0.3, 0.75))[rng.integers(3)], 0.05)
    d.paint(canvas, (np.abs(u - 0.2) < 0.5) & (np.abs(v - 0.05) < 0.18), paint_colour)  # the engine hood
    d.paint(canvas, (np.abs(u + 0.35) < 0.22) & (v > -0.55) & (v < 0.1), paint_colour * 0.8)  # the cab
    d.paint(canvas, (np.abs(u + 0.35) < 0.15) & (v > -0.47) & (v < -0.1), (0.7, 0.85, 0.95))
    d.paint(canvas, _segment(u, v, 0.45, -0.13, 0.45, -0.4, 0.04), _BLACK)  # the exhaust pipe
    d.paint(canvas, _ellipse(u, v, -0.4, 0.35, 0.42, 0.42), _BLACK)
    d.paint(canvas, _ellipse(u, v, 0.55, 0.5, 0.22, 0.22), _BLACK)
    d.paint(canvas, _ellipse(u, v, -0.4, 0.35, 0.18, 0.18) | _ellipse(u, v, 0.55, 0.5, 0.09, 0.09), (0.9, 0.75, 0.1))


def _draw_rocket(canvas: np.ndarray, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> None:
    """Upright whatever the facing: a rocket stands on its launch pad."""
    d.paint(canvas, _ellipse(u, v, 0, 0.75, 0.12, 0.25), (1.0, 0.65, 0.15))  # the exhaust flame
    d.paint(canvas, d.triangle(u / 0.45, (v - 0.45) / 0.25), (0.8, 0.15, 0.1))  # the fins
    d.paint(canvas, (np.abs(u) < 0.17) & (v > -0.45) & (v < 0.55), d.jitter(rng, _WHITE, 0.06))
    d.paint(canvas, d.triangle(u / 0.17, (v + 0.65) / 0.2), (0.8, 0.15, 0.1))  # the nose cone
    d.paint(canvas, _ellipse(u, v, 0, -0.15, 0.08, 0.08), (0.2, 0.35, 0.6))


def _draw_butterfly(canvas: np.ndarray, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> None:
    """Seen from above, wings spread; the wings' colour varies by species."""
    wing = d.random_colour(rng, 0.2, 1.0)
    x = np.abs(u)
    d.paint(canvas, _ellipse(x, v, 0.4, -0.3, 0.4, 0.35) | _ellipse(x, v, 0.3, 0.3, 0.28, 0.3), wing)
    d.paint(canvas, _ellipse(x, v, 0.55, -0.35, 0.12, 0.1) | _ellipse(x, v, 0.3, 0.35, 0.08, 0.08), wing * 0.3)
    d.paint(canvas, _ellipse(u, v, 0, 0, 0.06, 0.5) | _segment(x, v, 0.02, -0.5, 0.15, -0.8, 0.02), _BLACK)


def _draw_whale(canvas: np.ndarray, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> None:
    skin = d.jitter(rng, (0.25, 0.3, 0.4), 0.05)
    body = _ellipse(u, v, 0.05, 0, 0.75, 0.3) | _segment(u, v, -0.5, 0.0, -0.85, -0.1, 0.1)
    body |= _ellipse(u, v, -0.92, -0.25, 0.08, 0.2) | _ellipse(u, v, -0.92, 0.05, 0.08, 0.2)  # the flukes
    d.paint(canvas, body, skin)
    d.paint(canvas, _ellipse(u, v, 0.15, 0.18, 0.55, 0.12), (0.8, 0.8, 0.8))  # the pale belly
    d.paint(canvas, _ellipse(u, v, 0.2, 0.25, 0.18, 0.07), skin * 0.8)  # the flipper
    d.paint(canvas, _ellipse(u, v, 0.55, -0.02, 0.03, 0.03), _BLACK)


def _draw_mushroom(canvas: np.ndarray, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> None:
    d.paint(canvas, (np.abs(u) < 0.18) & (v > -0.1) & (v < 0.65), d.jitter(rng, (0.92, 0.88, 0.8), 0.04))
    cap = _ellipse(u, v, 0, 0, 0.65, 0.55) & (v < 0)
    d.paint(canvas, cap, d.jitter(rng, ((0.8, 0.1, 0.08), (0.55, 0.35, 0.2))[rng.integers(2)], 0.05))
    d.paint(canvas, cap & (np.sin(u * 18) * np.sin(v * 18) > 0.6), _WHITE)


@dataclass(frozen=True)
class Fruit:
    """A round fruit: `waist` narrows it into a pear, `dimples` gives citrus skin."""

    skins: tuple[Colour, ...]
    waist: float = 0.0
    dimples: bool = False
    leaf: bool = True


def _draw_fruit(spec: Fruit, canvas: np.ndarray, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> None:
    skin = d.jitter(rng, spec.skins[rng.integers(len(spec.skins))], 0.05)
    if spec.waist:
        body = _ellipse(u, v, 0, 0.25, 0.55, 0.5) | _ellipse(u, v, 0, -0.25, 0.55 - spec.waist, 0.38)
    else:
        body = _ellipse(u, v, -0.22, 0.05, 0.45, 0.55) | _ellipse(u, v, 0.22, 0.05, 0.45, 0.55)
    d.paint(canvas, body, skin)
    if spec.dimples:
        d.paint(canvas, body & (np.sin(u * 40) * np.sin(v * 40) > 0.7), skin * 0.85)
    d.paint(canvas, body & _ellipse(u, v, -0.2, -0.1, 0.12, 0.2), np.minimum(skin * 1.4, 1))  # the highlight
    top = -0.65 if spec.waist else -0.45
    d.paint(canvas, _segment(u, v, 0, top, 0.05, top - 0.2, 0.035), (0.35, 0.22, 0.1))
    if spec.leaf:
        d.paint(canvas, _ellipse(u, v, 0.18, top - 0.12, 0.14, 0.06), (0.2, 0.55, 0.15))


# --- flowers: radial petals around a disc -------------------------------------------------------------------


@dataclass(frozen=True)
class Flower:
    """A flower seen from above: `petals` around a disc; a petal's profile is |cos| ** `sharpness` lifted by
    `base` (0 gives separate thin petals, near 1 a round cup); `layers` stack smaller, darker whorls. Each bloom
    takes one of its class's `colours`, as a rose may be red, pink or white."""

    colours: tuple[Colour, ...]
    petals: int
    centre: Colour
    centre_size: float = 0.25
    base: float = 0.2
    sharpness: float = 1.0
    layers: int = 1
    spots: Colour | None = None  # freckles on the petals
    halo: Colour | None = None  # a ring of filaments around the centre
    lower: Colour | None = None  # the lower petals' colour, where it differs from the upper


def _draw_flower(spec: Flower, canvas: np.ndarray, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> None:
    radius, theta = np.sqrt(u * u + v * v), np.arctan2(v, u)
    petal = d.jitter(rng, spec.colours[rng.integers(len(spec.colours))], 0.06)
    for layer in range(spec.layers):
        turn = layer * np.pi / spec.petals
        profile = np.abs(np.cos(spec.petals * (theta + turn) / 2)) ** spec.sharpness
        whorl = radius < (1.0 - 0.25 * layer) * (spec.base + (1 - spec.base) * profile)
        d.paint(canvas, whorl, petal * (1 - 0.15 * layer))
    if spec.lower is not None:
        d.paint(canvas, (radius < spec.base + (1 - spec.base) * np.abs(np.cos(spec.petals * theta / 2))) & (v > 0),
                d.jitter(rng, spec.lower, 0.06))
    if spec.spots is not None:
        d.paint(canvas, (radius < 0.8) & (radius > spec.centre_size) & (rng.random(radius.shape) < 0.12), spec.spots)
    if spec.halo is not None:
        d.paint(canvas, (radius < spec.centre_size * 2.2) & (np.cos(theta * 24) > 0.3), spec.halo)
    d.paint(canvas, radius < spec.centre_size, d.jitter(rng, spec.centre, 0.04))


_YELLOW, _PINK, _PURPLE, _RED = (0.98, 0.82, 0.1), (0.95, 0.55, 0.7), (0.55, 0.25, 0.65), (0.85, 0.1, 0.12)
_ORANGE_PETAL, _CREAM = (0.95, 0.5, 0.1), (0.97, 0.93, 0.75)

# Twelve of Flowers102's classes, under the dataset's names, each in the colours it grows in: the colours overlap
# between classes, so that neither colour nor shape alone tells a class.
FLOWERS: dict[str, Flower] = {
    "sunflower": Flower((_YELLOW, _ORANGE_PETAL), 18, (0.3, 0.18, 0.05), centre_size=0.4, base=0.3, sharpness=2),
    "common dandelion": Flower((_YELLOW,), 36, _YELLOW, centre_size=0.1, base=0.55, sharpness=4, layers=3),
    "oxeye daisy": Flower((_WHITE, _CREAM), 22, _YELLOW, centre_size=0.22, base=0.1, sharpness=3),
    "moon orchid": Flower((_WHITE, _PINK), 5, (0.85, 0.3, 0.5), centre_size=0.15, base=0.55, sharpness=1),
    "passion flower": Flower((_WHITE, _PURPLE), 10, (0.4, 0.6, 0.2), centre_size=0.15, base=0.4, sharpness=1.5,
                             halo=(0.3, 0.2, 0.6)),
    "rose": Flower((_RED, _PINK, _WHITE, _YELLOW), 5, (0.6, 0.05, 0.1), centre_size=0.12, base=0.8, layers=4),
    "corn poppy": Flower((_RED, _ORANGE_PETAL), 4, _BLACK, centre_size=0.18, base=0.75),
    "pink primrose": Flower((_PINK, _CREAM), 5, _YELLOW, centre_size=0.15, base=0.6, sharpness=0.5),
    "water lily": Flower((_PINK, _WHITE), 12, _YELLOW, centre_size=0.15, base=0.0, layers=2),
    "tiger lily": Flower((_ORANGE_PETAL, _RED), 6, (0.4, 0.25, 0.05), centre_size=0.1, base=0.05, sharpness=1.5,
                         spots=(0.25, 0.08, 0.05)),
    "purple coneflower": Flower((_PURPLE, _PINK), 14, (0.75, 0.4, 0.1), centre_size=0.32, base=0.15, sharpness=2),
    "wild pansy": Flower((_PURPLE, (0.3, 0.3, 0.8)), 5, (0.1, 0.05, 0.1), centre_size=0.08, base=0.6,
                         lower=_YELLOW),
}


def _draw_tulip(canvas: np.ndarray, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> None:
    """In side view, unlike the flowers seen from above: a cup on a stem."""
    d.paint(canvas, _segment(u, v, 0, 0.1, 0.05, 0.9, 0.05) | _ellipse(u, v, 0.2, 0.6, 0.2, 0.07), (0.2, 0.5, 0.15))
    cup = (_ellipse(u, v, 0, -0.1, 0.35, 0.4) & (v > -0.3)) | d.triangle(np.abs(u) / 0.12 - 2, (v + 0.35) / 0.2)
    cup |= d.triangle(u / 0.14, (v + 0.42) / 0.25)
    d.paint(canvas, cup, d.jitter(rng, ((0.9, 0.15, 0.2), _YELLOW, _PINK)[rng.integers(3)], 0.05))


SILHOUETTES: dict[str, Silhouette] = {
    **{name: partial(_draw_quadruped, spec) for name, spec in {**ANIMALS, **PETS}.items()},
    **{name: partial(_draw_flower, spec) for name, spec in FLOWERS.items()},
    "car": partial(_draw_vehicle, ("sedan", "hatchback", "sports car", "jeep")),  # any of the Cars stand-in's cars
    "truck": partial(_draw_vehicle, ("truck",)),
    "bus": partial(_draw_vehicle, ("bus",)),
    "airplane": _draw_airplane,
    "bird": _draw_bird,
    "monkey": partial(_draw_primate, True, (0.5, 0.35, 0.2)),
    "chimpanzee": partial(_draw_primate, False, (0.15, 0.12, 0.1)),
    "ship": _draw_ship,
    "bicycle": _draw_bicycle,
    "tractor": _draw_tractor,
    "rocket": _draw_rocket,
    "butterfly": _draw_butterfly,
    "whale": _draw_whale,
    "mushroom": _draw_mushroom,
    "tulip": _draw_tulip,
    "apple": partial(_draw_fruit, Fruit(((0.8, 0.1, 0.1), (0.5, 0.75, 0.2)))),
    "orange": partial(_draw_fruit, Fruit(((0.95, 0.55, 0.1),), dimples=True, leaf=False)),
    "pear": partial(_draw_fruit, Fruit(((0.7, 0.8, 0.25), (0.85, 0.75, 0.3)), waist=0.25)),
}
"""Every object any family draws, by its one class name."""


def draw_silhouette(canvas: np.ndarray, name: str, rng: np.random.Generator, cx: float, cy: float, scale: float,
                    angle: float = 0.0, flip: bool = False) -> None:
    """Paints object `name` centred at (cx, cy), `scale` pixels per unit of its frame (it spans about 2 units),
    turned by `angle` and facing left when `flip`."""
    u, v = d.local_coords(cx, cy, scale, scale, angle)
    SILHOUETTES[name](canvas, -u if flip else u, v, rng)


def small_photo(rng: np.random.Generator, name: str, background: np.ndarray, nuisance: float,
                contrast: tuple[float, float]) -> np.ndarray:
    """The object `name` placed on `background` at the CIFAR stand-ins' size, then softened at a contrast drawn
    from the `contrast` range: the one recipe of CIFAR10's and CIFAR100's stand-ins, on their own backgrounds."""
    canvas = background.copy()
    cx, cy, scale, angle = _place(rng, nuisance, 11.0)
    draw_silhouette(canvas, name, rng, cx, cy, scale, angle, flip=rng.random() < 0.5)
    return soften(canvas, background, rng.uniform(*contrast))


def soften(canvas: np.ndarray, background: np.ndarray, contrast: float, block: int = 2) -> np.ndarray:
    """The canvas at `contrast` against the background it was drawn on, then averaged over block x block pixels:
    a small, dim object as a low-resolution photo shows it."""
    blended = background + contrast * (canvas - background)
    coarse = blended.reshape(d.SIZE // block, block, d.SIZE // block, block, 3).mean((1, 3))
    return np.repeat(np.repeat(coarse, block, 0), block, 1)


# --- backgrounds --------------------------------------------------------------------------------------------


def _outdoors(rng: np.random.Generator, nuisance: float, ground: Colour | None) -> np.ndarray:
    """Sky over a ground (grass, sand, water, road) at a random horizon; all sky when `ground` is None."""
    canvas = np.empty((d.SIZE, d.SIZE, 3), np.float32)
    canvas[:] = d.jitter(rng, (0.55, 0.72, 0.95), 0.1)
    canvas += 0.15 * (d.Y / d.SIZE)[..., None]  # lighter towards the horizon
    if ground is not None:
        horizon = d.SIZE * rng.uniform(0.4, 0.65)
        canvas[d.Y > horizon] = d.jitter(rng, ground, 0.08)
    return canvas + nuisance * 0.2 * (d.smooth_noise(rng, 6)[..., None] - 0.5)


_GROUNDS: tuple[Colour, ...] = ((0.35, 0.6, 0.25), (0.8, 0.7, 0.5), (0.4, 0.4, 0.42), (0.3, 0.45, 0.2))
_WATER: Colour = (0.15, 0.35, 0.6)


def _foliage(rng: np.random.Generator, nuisance: float) -> np.ndarray:
    """Out-of-focus leaves, as behind most Flowers102 photos."""
    canvas = np.empty((d.SIZE, d.SIZE, 3), np.float32)
    canvas[:] = d.jitter(rng, (0.2, 0.4, 0.15), 0.08)
    return canvas + (0.2 + 0.3 * nuisance) * (d.smooth_noise(rng, 5)[..., None] - 0.5) * np.float32([0.6, 1, 0.5])


# --- the families -------------------------------------------------------------------------------------------


def _flower(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    name = tuple(FLOWERS)[label]
    canvas = _foliage(rng, nuisance)
    if rng.random() < nuisance:  # a neighbouring bloom of the same plant, cut by the crop
        side = rng.uniform(0, 2 * np.pi)
        draw_silhouette(canvas, name, rng, 16 + 20 * np.cos(side), 16 + 20 * np.sin(side), rng.uniform(6, 10),
                        rng.uniform(0, 2 * np.pi))
    cx, cy, scale, _ = _place(rng, nuisance, 12.0)
    draw_silhouette(canvas, name, rng, cx, cy, scale, rng.uniform(0, 2 * np.pi))
    return canvas


OBJECTS = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


def _object(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    """Large and clean, as STL10's 96-pixel photos are, in the setting the object is usually photographed in."""
    name = OBJECTS[label]
    ground = {"airplane": None if rng.random() < 0.7 else _GROUNDS[2], "ship": _WATER}.get(
        name, _GROUNDS[rng.integers(len(_GROUNDS))])
    canvas = _outdoors(rng, nuisance, ground)
    cx, cy, scale, angle = _place(rng, nuisance, 13.0)
    draw_silhouette(canvas, name, rng, cx, cy, scale, angle, flip=rng.random() < 0.5)
    return canvas


# Twenty of CIFAR100's classes, under its names; the flowers and the bus are drawn as the other families draw them.
SMALL_OBJECTS_FINE = ("apple", "orange", "pear", "mushroom", "rose", "sunflower", "tulip", "butterfly", "bicycle",
                      "bus", "tractor", "rocket", "elephant", "camel", "lion", "tiger", "fox", "cattle", "chimpanzee",
                      "whale")


def _small_object_fine(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    """Small and dim on a cluttered background, at half resolution, as CIFAR's 32-pixel photos are."""
    return small_photo(rng, SMALL_OBJECTS_FINE[label], _background(rng, nuisance), nuisance, (0.7, 1.0))


def _pet(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    """A pet at home: a floor under a wall of random colours."""
    canvas = _background(rng, nuisance)
    floor = d.Y > d.SIZE * rng.uniform(0.6, 0.85)
    canvas[floor] = d.jitter(rng, (0.55, 0.45, 0.35), 0.15)
    cx, cy, scale, angle = _place(rng, nuisance, 13.0)
    draw_silhouette(canvas, tuple(PETS)[label], rng, cx, cy, scale, angle, flip=rng.random() < 0.5)
    return canvas


# --- faces (FER2013): grey cartoon faces ------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """Offsets from a neutral face, in the face's frame (v down): brows' inner and outer ends, how open the eyes
    are, the mouth's bend (negative: corners up), opening, half-width and tilt (one corner raised)."""

    brow_inner: float = 0.0
    brow_outer: float = 0.0
    eyes: float = 1.0
    bend: float = 0.0
    opening: float = 0.0
    width: float = 0.3
    tilt: float = 0.0


EXPRESSIONS: dict[str, Expression] = {
    "angry": Expression(brow_inner=0.16, brow_outer=-0.08, eyes=0.6, bend=0.06, width=0.25),
    "disgusted": Expression(brow_inner=0.08, brow_outer=0.04, eyes=0.45, bend=0.1, width=0.3, tilt=-0.2),
    "fearful": Expression(brow_inner=-0.14, brow_outer=0.02, eyes=1.5, bend=0.04, opening=0.1, width=0.38),
    "happy": Expression(eyes=0.8, bend=-0.24, width=0.4),
    "neutral": Expression(),
    "sad": Expression(brow_inner=-0.12, brow_outer=0.08, eyes=0.8, bend=0.2, width=0.28),
    "surprised": Expression(brow_inner=-0.16, brow_outer=-0.16, eyes=1.6, opening=0.24, width=0.16),
}


def _face(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    """How strongly a face shows its expression varies, as in FER2013's posed and spontaneous faces."""
    shown = rng.uniform(0.8, 1.2)
    expression = EXPRESSIONS[tuple(EXPRESSIONS)[label]]
    grey = np.empty((d.SIZE, d.SIZE), np.float32)
    grey[:] = rng.uniform(0.1, 0.9)
    grey += nuisance * 0.3 * (d.smooth_noise(rng, 4) - 0.5)
    cx, cy, scale, angle = _place(rng, nuisance, 14.0)
    u, v = d.local_coords(cx, cy, scale, scale, angle)
    skin, dark = rng.uniform(0.45, 0.85), rng.uniform(0.0, 0.2)
    grey[_ellipse(u, v, 0, -0.3, 0.82, 0.75)] = rng.uniform(0.05, 0.5)  # the hair
    grey[_ellipse(u, v, 0, 0.05, 0.72, 0.9)] = skin
    u = u - rng.uniform(-0.1, 0.1) * nuisance  # the head turned a little
    for side in (-1, 1):
        inner, outer = -0.44 + shown * expression.brow_inner, -0.44 + shown * expression.brow_outer
        grey[_segment(u, v, side * 0.1, inner, side * 0.45, outer, 0.065)] = dark
        eye_height = 0.1 * (1 + shown * (expression.eyes - 1))
        grey[_ellipse(u, v, side * 0.3, -0.2, 0.15, eye_height + 0.03)] = min(skin + 0.25, 1.0)
        grey[_ellipse(u, v, side * 0.3, -0.2, 0.07, eye_height)] = dark
    grey[_segment(u, v, 0, -0.1, 0.04, 0.15, 0.035)] = skin * 0.75  # the nose
    if expression.tilt:  # the wrinkled nose of disgust
        grey[(np.abs(u) < 0.12) & (np.abs(v + 0.02) < 0.03)] = skin * 0.6
    width = expression.width * (1 + 0.3 * (shown - 1))
    along = np.clip(u / width, -1, 1)
    mouth_line = 0.45 + shown * (expression.bend * along**2 + expression.tilt * along)
    grey[(np.abs(v - mouth_line) < 0.07) & (np.abs(u) < width)] = dark
    if expression.opening:
        grey[_ellipse(u, v, 0, 0.45, width, shown * expression.opening)] = dark
    return np.repeat(grey[..., None], 3, axis=2)


# --- tissue (PCAM): stained lymph node sections -----------------------------------------------------------

TISSUE = ("lymph node", "lymph node containing metastatic tumor tissue")  # PCAM's class names in the CLIP benchmark
def _scatter(rng: np.random.Generator, count: int, where: np.ndarray | None = None) -> np.ndarray:
    """`count` random points (row, column) in pixels where `where` is true (anywhere if None)."""
    if where is None:
        return rng.uniform(0, d.SIZE, (count, 2)).astype(np.float32)
    candidates = np.argwhere(where)
    return (candidates[rng.integers(len(candidates), size=count)] + rng.random((count, 2))).astype(np.float32)


def _nuclei(rng: np.random.Generator, centres: np.ndarray, radii: np.ndarray, irregularity: float = 0.0) -> np.ndarray:
    """Coverage in [0, 1] of discs at `centres` of `radii` (pixels), outlines bent into three lobes by
    `irregularity`. Each is drawn in a small window around its centre, all at once: a few thousand values instead
    of a full canvas per nucleus."""
    reach = int(np.ceil(radii.max(initial=0) * (1 + irregularity) + 0.5))
    steps = np.arange(-reach, reach + 1, dtype=np.float32)
    rows = np.floor(centres[:, :1, None]) + steps[None, :, None]  # [count, window, 1]
    cols = np.floor(centres[:, 1:, None]) + steps[None, None, :]  # [count, 1, window]
    dy, dx = rows + 0.5 - centres[:, :1, None], cols + 0.5 - centres[:, 1:, None]
    distance = np.sqrt(dy * dy + dx * dx) + 1e-6
    size = radii.reshape(-1, 1, 1)
    if irregularity:
        turn = rng.uniform(0, 2 * np.pi, (len(centres), 1, 1)).astype(np.float32)
        sine, cosine = dy / distance, dx / distance  # sin(3a + t) from sin a, cos a without arctan2
        lobes = sine * (3 - 4 * sine * sine) * np.cos(turn) + cosine * (4 * cosine * cosine - 3) * np.sin(turn)
        size = size * (1 + irregularity * lobes)
    inside = np.clip(size - distance + 0.5, 0, 1)
    keep = (rows >= 0) & (rows < d.SIZE) & (cols >= 0) & (cols < d.SIZE)
    flat = (rows * d.SIZE + cols)[keep].astype(np.intp)
    coverage = np.bincount(flat, inside[keep], minlength=d.SIZE * d.SIZE).reshape(d.SIZE, d.SIZE)
    return np.minimum(coverage, 1).astype(np.float32)


def _stain(canvas: np.ndarray, coverage: np.ndarray, colour: np.ndarray) -> None:
    canvas += coverage[..., None] * (colour - canvas)


def _tissue(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    """Haematoxylin-stained nuclei on eosin-pink tissue. A lymph node is packed with small, round, dark lymphocytes;
    a metastasis (PCAM labels a patch by its centre) is a nest of large, irregular tumour nuclei, pale inside a dark
    membrane, with a dark nucleolus. Stain hue and cell density vary from slide to slide."""
    eosin = d.jitter(rng, (0.92, 0.6, 0.75), 0.04 + 0.06 * nuisance)
    haematoxylin = d.jitter(rng, (0.3, 0.15, 0.45), 0.04 + 0.06 * nuisance)
    canvas = np.empty((d.SIZE, d.SIZE, 3), np.float32)
    canvas[:] = eosin
    canvas -= 0.25 * (d.smooth_noise(rng, 8)[..., None] - 0.5) * (1 - eosin)  # fibres and uneven staining
    nest = np.zeros((d.SIZE, d.SIZE), bool)
    if label == 1:
        cx, cy = 16 + rng.uniform(-4, 4, 2)
        nest = d.circle(*d.local_coords(cx, cy, rng.uniform(8, 14), rng.uniform(8, 14), rng.uniform(0, np.pi)))
    lymphoid = ~nest & (d.smooth_noise(rng, 3) > rng.uniform(0.0, 0.35))  # the rest: pale stroma
    count = int(rng.uniform(0.07, 0.12) * lymphoid.sum())
    lymphocytes = _nuclei(rng, _scatter(rng, count, lymphoid), rng.uniform(0.9, 1.3, count).astype(np.float32))
    _stain(canvas, lymphocytes, haematoxylin * rng.uniform(0.7, 0.9))
    # Tumour nuclei in a nest, or the odd large cell (histiocyte, endothelium) of a healthy node.
    count = int(rng.uniform(0.03, 0.045) * nest.sum()) + 1 if label == 1 else int(rng.integers(0, 3))
    centres = _scatter(rng, count, nest if label == 1 else None)
    radii = rng.uniform(1.8, 2.8, count).astype(np.float32)
    _stain(canvas, _nuclei(rng, centres, radii, 0.25), haematoxylin * 0.85)
    _stain(canvas, _nuclei(rng, centres, radii - 0.9), 0.5 * eosin + 0.5 * haematoxylin)
    _stain(canvas, _nuclei(rng, centres, np.full(count, 0.6, np.float32)), haematoxylin * 0.6)
    return canvas


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("flowers", "Flowers102", tuple(FLOWERS), _flower),
    Family("tissue", "PCAM", TISSUE, _tissue),
    Family("faces", "FER2013", tuple(EXPRESSIONS), _face),
    Family("pets", "OxfordIIITPet", tuple(PETS), _pet),
    Family("objects", "STL10", OBJECTS, _object),
    Family("small_objects_fine", "CIFAR100", SMALL_OBJECTS_FINE, _small_object_fine),
)}
