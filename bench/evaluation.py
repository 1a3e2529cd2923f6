"""Accuracy of a merged model on (task, split) pairs, through each task's frozen head.

Light to import (the tasks' data code, which needs `datasets`, is imported where a suite's data is reserved):
scoring a model made elsewhere runs where `datasets` is missing (bench/unit_costs.py on a GPU host).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from core.errors import BenchError
from core.models import ClassificationHead
from methods.base import Merged

if TYPE_CHECKING:
    from tasks.base import Task

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # name -> autocast dtype
EVALUATION_VERSION = 2  # of scoring and its inputs: bump it with any change that can move a result (core/versions.py)


# Inputs per forward pass where none is given: on a CPU small batches keep the activations in the cache and run
# faster (with outputs identical to larger batches', as tests/test_evaluation_batch.py checks); an accelerator wants
# large ones.
CPU_BATCH, ACCELERATOR_BATCH = 128, 1000


def default_batch_size(device: str) -> int:
    return CPU_BATCH if torch.device(device).type == "cpu" else ACCELERATOR_BATCH


@dataclass(frozen=True)
class EvalSettings:
    """How evaluation runs: inputs per forward pass, autocast precision, processes decoding the images, bytes of
    image data held in memory (None: `tasks.data.default_budget`). Only the precision can move a result (a
    little), so the rows record it; none of them is part of a unit's key."""

    batch_size: int = CPU_BATCH
    precision: str = "fp32"
    workers: int = 0
    data_memory: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise BenchError(f"--batch-size {self.batch_size}: expected a positive number of inputs")
        if self.precision not in PRECISIONS:
            raise BenchError(f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.workers < 0:
            raise BenchError(f"--workers {self.workers}: expected 0 (decode in this process) or more processes")
        if self.data_memory is not None and self.data_memory < 1:
            raise BenchError(f"--data-memory {self.data_memory}: expected a positive number of bytes")

    def batch_bytes(self, image_bytes: int) -> int:
        """Memory of the batches in flight: float32 pixels and encoder inputs of each, one batch being
        evaluated and a DataLoader's two ahead per worker."""
        return (1 + 2 * self.workers) * self.batch_size * image_bytes * 2 * 4


DEFAULT_EVAL = EvalSettings()


def reserve_batches(tasks: Mapping[str, Task], pairs: Iterable[tuple[str, str]], settings: EvalSettings) -> None:
    """Give the tasks' pixel cache its budget and hold back what evaluation batches of these splits need; refused
    before any work where even those do not fit."""
    from tasks.data import default_budget, format_size

    cache = next(iter(tasks.values())).cache
    cache.budget = default_budget() if settings.data_memory is None else settings.data_memory
    needed = max((settings.batch_bytes(tasks[task].image_bytes(split)) for task, split in pairs), default=0)
    if needed > cache.budget:
        raise BenchError(f"--data-memory {format_size(cache.budget)}: batches of {settings.batch_size} images "
                         f"({1 + 2 * settings.workers} in flight with --workers {settings.workers}) need "
                         f"{format_size(needed)}; raise it or lower --batch-size or --workers")
    cache.reserved = needed


def encoder_for(merged: Merged, task: str) -> nn.Module:
    return merged[task] if isinstance(merged, Mapping) else merged


@torch.no_grad()
def accuracy(encoder: nn.Module, head: ClassificationHead, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             precision: str = "fp32") -> float:
    device = next(encoder.parameters()).device
    head = head.to(device)
    dtype = PRECISIONS[precision]
    correct = total = 0
    for inputs, labels in batches:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            predictions = head(encoder(inputs.to(device))).argmax(-1).cpu()
        correct += (predictions == labels).sum().item()
        total += len(labels)
    return correct / total


def evaluate(merged: Merged, tasks: Mapping[str, Task], pairs: Iterable[tuple[str, str]],
             settings: EvalSettings = DEFAULT_EVAL) -> dict[tuple[str, str], float]:
    """Accuracy per (task, split). One model per task (the individual experts) has none for a task outside the
    merge, such as an unseen task of the generalization scenario: those pairs get no result."""
    return {(task, split): accuracy(encoder_for(merged, task), tasks[task].head,
                                    tasks[task].batches(split, settings.batch_size, settings.workers),
                                    settings.precision)
            for task, split in pairs if not isinstance(merged, Mapping) or task in merged}
