"""Files that appear whole or not at all."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """`write` to a temporary name beside `path`, then rename: a process killed while writing leaves no partial
    file that a later run would take for a finished one."""
    partial_path = path.with_name(path.name + ".tmp")
    write(partial_path)
    os.replace(partial_path, path)
    return path
