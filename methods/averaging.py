"""Weight averaging and task arithmetic: linear combinations of the experts, one tensor at a time."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from core.pool import ModelPool
from methods.base import Merged, MergeMethod, setting
from methods.scaled import ScaledUpdate, StateDict

# λ in {0.1, 0.2, ..., 1.0}: the grid that the TIES code (github.com/prateeky2806/ties-merging, README: task vectors
# `linear+0.1+1.01+0.1`) and the TALL-masks code (github.com/nik-dim/tall_masks, src/eval/eval.py:
# np.linspace(0, 1, n_eval_points // 2 + 1)[1:], n_eval_points 21) search on validation data.
SCALING_GRID = tuple(round(0.1 * step, 1) for step in range(1, 11))


def accumulate(tensors: Iterable[torch.Tensor], out: torch.Tensor | None = None) -> torch.Tensor:
    """Their sum in one fresh tensor (or in `out`), each added in place as it comes (so an iterator may reuse its
    buffer).

    No stacked copy of all of them: each fresh tensor costs a first touch of every page, the bulk of a merge's
    time at ViT-B/32 size (docs/performance.md).
    """
    remaining = iter(tensors)
    first = next(remaining)
    total = first.clone() if out is None else out.copy_(first)
    for tensor in remaining:
        total += tensor
    return total


def average(tensors: list[torch.Tensor]) -> torch.Tensor:
    return accumulate(tensors).div_(len(tensors))


class WeightAveraging(MergeMethod):
    """Mean of the experts' weights (the pretrained model is not one of the averaged)."""

    name = "weight_averaging"
    title = "Weight Averaging"
    reference = "https://arxiv.org/abs/2203.05482"

    def merge(self, pool: ModelPool) -> Merged:
        return pool.merge_parameters(lambda key, pretrained, experts: average(experts))


class TaskArithmetic(ScaledUpdate):
    """Pretrained plus a scaled sum of task vectors.

    scaling=0.3: the value behind the published 8-task numbers (AdaMerging and FusionBench code); on validation
    data it is chosen from SCALING_GRID, as the task-vectors, TIES and TALL-masks code choose it.
    """

    name = "task_arithmetic"
    title = "Task Arithmetic"
    reference = "https://arxiv.org/abs/2212.04089"
    scaling: float = setting(0.3, grid=SCALING_GRID)

    def update(self, pool: ModelPool) -> StateDict:
        """The sum of the task vectors: sum(experts) - T x pretrained, in the one tensor the sum allocates."""
        return {key: accumulate(pool.expert_tensor(task, key) for task in pool.tasks)
                .sub_(pool.pretrained_tensor(key) * len(pool.tasks)) for key in pool.parameter_names}
