"""Accuracy of a merged model on (task, split) pairs, through each task's frozen head."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from bench.models import ClassificationHead
from methods.base import Merged
from tasks.base import Task


def encoder_for(merged: Merged, task: str) -> nn.Module:
    return merged[task] if isinstance(merged, Mapping) else merged


@torch.no_grad()
def accuracy(encoder: nn.Module, head: ClassificationHead, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    device = next(encoder.parameters()).device
    head = head.to(device)
    correct = total = 0
    for inputs, labels in batches:
        predictions = head(encoder(inputs.to(device))).argmax(-1).cpu()
        correct += (predictions == labels).sum().item()
        total += len(labels)
    return correct / total


def evaluate(merged: Merged, tasks: Mapping[str, Task], pairs: Iterable[tuple[str, str]],
             batch_size: int = 1000) -> dict[tuple[str, str], float]:
    """Accuracy per (task, split). One model per task (the individual experts) has none for a task outside the
    merge, such as an unseen task of the generalization scenario: those pairs get no result."""
    return {(task, split): accuracy(encoder_for(merged, task), tasks[task].head, tasks[task].batches(split, batch_size))
            for task, split in pairs if not isinstance(merged, Mapping) or task in merged}
