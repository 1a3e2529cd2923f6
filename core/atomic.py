"""Files and folders that appear whole or not at all, whatever other processes do at the same time.

Each writer works under a name of its own beside the target (hidden, with its process id and a random part), so
two processes producing the same thing never write into one temporary file, and a reader of the target sees
either the old whole file or the new whole file. The data reaches the disk before the rename, so a crash after it
leaves no empty file behind a finished name.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def partial_name(path: Path) -> Path:
    """A name beside `path` that no other writer uses."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """`write` to a name of this writer's own beside `path`, force it to disk, then rename it to `path`
    (replacing any earlier file): a process killed while writing leaves no partial file that a later run would
    take for a finished one, and concurrent writers of one path each publish a whole file."""
    partial_path = partial_name(path)
    try:
        write(partial_path)
        _sync(partial_path)
        os.replace(partial_path, path)
    finally:
        partial_path.unlink(missing_ok=True)
    _sync(path.parent)
    return path


def publish_folder(path: Path, build: Callable[[Path], T], replace: bool = False) -> T:
    """`build` a folder under a name of this writer's own beside `path`, then move it to `path`; returns what
    `build` returned.

    With `replace=False` (a cache: equal inputs build equal folders), a folder another process published at
    `path` first is kept and this one dropped. With `replace=True` (a rebuild), an earlier folder at `path` is
    set aside and removed once the new one is in place.
    """
    staging = partial_name(path)
    try:
        built = build(staging)
        for file in sorted(p for p in staging.rglob("*") if p.is_file()):
            _sync(file)
        if replace and path.exists():
            old = partial_name(path)
            os.rename(path, old)
            os.rename(staging, path)
            shutil.rmtree(old)
        else:
            try:
                os.rename(staging, path)
            except OSError as error:
                published_first = error.errno in (errno.ENOTEMPTY, errno.EEXIST) and path.is_dir()
                if replace or not published_first:
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _sync(path.parent)
    return built


def _sync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
