"""What a measured figure's value depends on: the processor, cores, memory and torch build of this machine."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def _proc_field(path: str, key: str) -> str:
    """The value of the first `key: value` line of a /proc file; empty where there is none (not Linux, say)."""
    try:
        return next((line.split(":", 1)[1].strip() for line in Path(path).read_text().splitlines()
                     if line.startswith(key)), "")
    except OSError:
        return ""


def cpu_name() -> str:
    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()


def machine_description() -> str:
    """CPU model, cores, memory and torch build: what a figure's value depends on."""
    memory = _proc_field("/proc/meminfo", "MemTotal")
    memory_text = f", {int(memory.split()[0]) / 2**20:.0f} GiB" if memory else ""
    return (f"{cpu_name()}, {os.cpu_count()} cores{memory_text}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)")
