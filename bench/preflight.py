"""Checks of the environment a command will write to and compute on, made before any work: a bad device or
an unwritable folder is named at once, not after minutes of merging."""

from __future__ import annotations

import tempfile
from pathlib import Path

from core.errors import BenchError


def check_device(option: str, name: str) -> None:
    """`name` is a torch device this machine has (a tensor can be made there)."""
    import torch

    try:
        torch.empty(1, device=torch.device(name))
    except (RuntimeError, AssertionError, ValueError) as error:  # bad name, no such device, torch built without it
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BenchError(f"{option} {name}: not a device of this machine ({reason})") from None


def check_writable_folder(option: str, folder: Path) -> None:
    """`folder` is (or can be made) a folder that this process can write files into."""
    if folder.exists() and not folder.is_dir():
        raise BenchError(f"{option} {folder}: a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        raise BenchError(f"{option} {folder}: cannot write there ({error.strerror or error})") from None
