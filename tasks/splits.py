"""Split names: `test`, its first images `test[:500]` (the datasets library's slice syntax), or a corrupted copy
such as `test/motion_blur@2` or `test[:500]/motion_blur@2`, and the table column each belongs to.

Torch-free, so that reports read results without loading the corruptions' code (`tasks.corruptions`).
"""

from __future__ import annotations

import re

from core.errors import BenchError

SEVERITY = 2  # the severity of the corrupted test sets in the AdaMerging and WEMoE robustness experiments
# Each corruption's column in the robustness tables of the AdaMerging and WEMoE papers, in their order.
CORRUPTION_TITLES = {"motion_blur": "Motion", "impulse_noise": "Impulse", "gaussian_noise": "Gaussian",
                     "pixelate": "Pixelate", "spatter": "Spatter", "contrast": "Contrast", "jpeg_compression": "JPEG"}
SPLIT = re.compile(r"^(?P<base>[^/@]+)(?:/(?P<name>[a-z_]+)@(?P<severity>\d+))?$")
SLICE = re.compile(r"^(?P<name>[^/@\[\]]+)(?:\[:(?P<stop>[1-9]\d*)\])?$")


def corrupted_split(base: str, name: str, severity: int = SEVERITY) -> str:
    """The split name of a corrupted copy, e.g. `test/motion_blur@2`."""
    return f"{base}/{name}@{severity}"


def parse_split(split: str) -> tuple[str, str | None, int]:
    """(base split, corruption or None, severity) of a split name like `test` or `test/motion_blur@2`."""
    match = SPLIT.match(split)
    if match is None or (match["name"] is not None and match["name"] not in CORRUPTION_TITLES):
        raise BenchError(f"split {split!r}: expected SPLIT or SPLIT/CORRUPTION@SEVERITY with a corruption in "
                         f"{', '.join(CORRUPTION_TITLES)}")
    return match["base"], match["name"], int(match["severity"] or 0)


def parse_slice(base: str) -> tuple[str, int | None]:
    """(dataset split, number of its first images or None for all) of a base split like `test` or `test[:500]`."""
    match = SLICE.match(base)
    if match is None:
        raise BenchError(f"split {base!r}: expected SPLIT or SPLIT[:N], N a positive number of images")
    return match["name"], int(match["stop"]) if match["stop"] else None


def split_title(split: str) -> str:
    """The table column of a split: `Clean`, or the corruption's title, for a split corrupted here
    (`test/motion_blur@2`) or a dataset's own corrupted test split named after the corruption (`motion_blur`)."""
    base, name, _ = parse_split(split)
    name = name or (base if base in CORRUPTION_TITLES else None)
    return "Clean" if name is None else CORRUPTION_TITLES[name]
