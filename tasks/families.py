"""Every mini family by name: the one registry that rendering, the zoo build and the suites look families up in.

The eight families of the 8-task benchmark are defined in `tasks/procedural.py`, whose source (with
`tasks/drawing.py`) the shipped v1 zoo's data fingerprint hashes, so that file stays as it was built with. The
families of the 14- and 20-task benchmarks are defined in modules of their own and registered here, into
`procedural.FAMILIES`, where its chunked renderer finds them: `render` below, which renders in its worker processes
only where they fork (and so inherit the registration).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterable
from types import ModuleType

import numpy as np

from tasks import drawing, families_tall14, families_tall20, procedural
from tasks.procedural import FAMILIES

for _module in (families_tall14, families_tall20):
    FAMILIES.update(_module.FAMILIES)


def generator_modules(families: Iterable[str]) -> list[ModuleType]:
    """The modules whose source draws these families' images: `tasks/procedural.py` first and `tasks/drawing.py`
    last (every family builds on their helpers), between them, where any of the families is defined elsewhere,
    every module defining families (they build on each other: CIFAR10's stand-in draws STL10's silhouettes)."""
    if all(FAMILIES[name].render.__module__ == procedural.__name__ for name in families):
        return [procedural, drawing]
    others = {sys.modules[family.render.__module__] for family in FAMILIES.values()} - {procedural, drawing}
    return [procedural, *sorted(others, key=lambda module: module.__name__), drawing]


def render(name: str, seed: int, n: int, nuisance: float, split: str) -> tuple[np.ndarray, np.ndarray]:
    """`procedural.render` of the family `name`, on all cores where its worker processes fork; in this process
    elsewhere. A spawned worker (the start method inside a `run --jobs` worker) imports `tasks.procedural` alone and
    would not know the families registered here; a process that spawns has siblings keeping the other cores busy."""
    workers = None if multiprocessing.get_start_method() == "fork" else 1
    return procedural.render(FAMILIES[name], seed, n, nuisance, split, workers=workers)
