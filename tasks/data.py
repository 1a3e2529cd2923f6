"""Where a split's images live between reads: as 8-bit pixels in memory within a byte budget, else in the dataset.

A decoded image at the encoder's resolution is 8-bit (torchvision's ToTensor and the mini suite both give levels
k/255), so uint8 keeps it exactly in a quarter of float32's bytes; the float pixels and the encoder's inputs
exist only for the batch being read. A split that does not fit is decoded from the dataset (which holds it
compressed) each time it is read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import torch

from core.errors import BenchError

UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
SIZE = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]?I?B?)\s*$", re.IGNORECASE)


def parse_size(text: str, option: str) -> int:
    """Bytes of a size such as `8GB`, `512MiB` or `1000000`; refused naming `option` otherwise."""
    match = SIZE.match(text)
    if match is None or match["unit"].upper() not in UNITS:
        raise BenchError(f"{option} {text!r}: expected a size such as 8GB, 512MiB or a number of bytes")
    return int(float(match["number"]) * UNITS[match["unit"].upper()])


def format_size(nbytes: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes} B"


def default_budget() -> int:
    """A quarter of the machine's memory: the rest is left to the models a merge holds at once (the pretrained
    model, the experts or their task vectors) and to other processes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def to_levels(pixels: torch.Tensor, task: str) -> torch.Tensor:
    """Float pixels in [0, 1] as the uint8 levels they were decoded from; refused where they are not 8-bit."""
    levels = (pixels * 255).round().to(torch.uint8)
    if not torch.equal(from_levels(levels), pixels):
        raise BenchError(f"task {task}: its to_pixels gives values other than 8-bit levels k/255, which the data "
                         "cache keeps exactly")
    return levels


def from_levels(levels: torch.Tensor) -> torch.Tensor:
    """uint8 levels to float pixels in [0, 1], by the same operation as torchvision's ToTensor."""
    return levels.float().div(255)


@dataclass
class PixelCache:
    """The uint8 pixels of whole splits (by task and split), kept while they fit in `budget` bytes less the
    `reserved` bytes of the batches in flight; one per suite, so the budget bounds all its tasks together."""

    budget: int = field(default_factory=default_budget)
    reserved: int = 0
    splits: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def used(self) -> int:
        return sum(levels.nbytes for levels in self.splits.values())

    def fits(self, nbytes: int) -> bool:
        return self.used + self.reserved + nbytes <= self.budget

    def get(self, task: str, split: str) -> torch.Tensor | None:
        return self.splits.get((task, split))

    def keep(self, task: str, split: str, levels: torch.Tensor) -> None:
        self.splits[task, split] = levels
