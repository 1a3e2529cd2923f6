"""Weight averaging and task arithmetic: linear combinations of the experts, one tensor at a time."""

from __future__ import annotations

import torch

from bench.pool import ModelPool
from methods.base import Merged, MergeMethod


def average(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(tensors).mean(0)


def add_task_vectors(pretrained: torch.Tensor, experts: list[torch.Tensor], scaling: float) -> torch.Tensor:
    """pretrained + scaling * sum of (expert - pretrained)."""
    return pretrained + scaling * (torch.stack(experts).sum(0) - len(experts) * pretrained)


class WeightAveraging(MergeMethod):
    """Mean of the experts' weights (the pretrained model is not one of the averaged)."""

    name = "weight_averaging"
    title = "Weight Averaging"
    reference = "https://arxiv.org/abs/2203.05482"

    def merge(self, pool: ModelPool) -> Merged:
        return pool.merge_parameters(lambda key, pretrained, experts: average(experts))


class TaskArithmetic(MergeMethod):
    """Pretrained plus a scaled sum of task vectors.

    scaling=0.3: the value behind the published 8-task numbers (AdaMerging and FusionBench code).
    """

    name = "task_arithmetic"
    title = "Task Arithmetic"
    reference = "https://arxiv.org/abs/2212.04089"
    scaling: float = 0.3

    def merge(self, pool: ModelPool) -> Merged:
        return pool.merge_parameters(lambda key, pretrained, experts: add_task_vectors(pretrained, experts, self.scaling))
