"""Accuracy of a merged model on (task, split) pairs, through each task's frozen head."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from bench.errors import BenchError
from bench.models import ClassificationHead
from methods.base import Merged
from tasks.base import Task

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # name -> autocast dtype


@dataclass(frozen=True)
class EvalSettings:
    """How evaluation runs: inputs per forward pass, autocast precision, processes decoding the images. Only
    the precision can move a result (a little), so the rows record it; none of them is part of a unit's key."""

    batch_size: int = 1000
    precision: str = "fp32"
    workers: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise BenchError(f"--batch-size {self.batch_size}: expected a positive number of inputs")
        if self.precision not in PRECISIONS:
            raise BenchError(f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.workers < 0:
            raise BenchError(f"--workers {self.workers}: expected 0 (decode in this process) or more processes")


DEFAULT_EVAL = EvalSettings()


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
                                    tasks[task].batches(split, settings.batch_size), settings.precision)
            for task, split in pairs if not isinstance(merged, Mapping) or task in merged}
