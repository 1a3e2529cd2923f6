"""TALL masks and Consensus Merging (Wang et al., ICML 2024): per task, the entries of the merged task vector where
that task's own task vector dominates; kept per task (task identity known at inference), or kept where at least
k tasks claim them (one merged model).

Defaults and operations follow the authors' code, github.com/nik-dim/tall_masks: the merged task vector is the
unscaled sum of the task vectors (or TIES' disjoint sum of their top 20%: src/eval/aggregation.py,
reset_thresh=20, dis-sum), and task t's mask is |τ_t| > λ |τ_MTL - τ_t| (src/utils/tallmask_utils.py, a strict
inequality), on every parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import torch

from core.pool import ModelPool
from methods.averaging import SCALING_GRID, accumulate
from methods.base import Merged, MergeMethod, setting
from methods.per_task import MaskedTaskModels
from methods.scaled import ScaledUpdate, StateDict
from methods.ties import TiesVectors, disjoint_merge

# The λ the authors' code tries (src/utils/tallmask_utils.py, construct_tall_mask). Consensus Merging's merge
# coefficients are searched as task arithmetic's (SCALING_GRID: src/eval/eval.py, evaluate_task_vector).
LAMBDA_GRID = (0.2, 0.3, 0.4, 0.5, 0.6)
TIES_KEEP = 0.2  # src/eval/aggregation.py: ties_merging(reset_thresh=20)


def tall_masks(task_vectors: torch.Tensor, merged: torch.Tensor, mask_lambda: float) -> torch.Tensor:
    """Per task (dim 0 of `task_vectors`), where its task vector outweighs what the others add to `merged`:
    |τ_t| > mask_lambda * |merged - τ_t|."""
    return task_vectors.abs() > (merged - task_vectors).abs_().mul_(mask_lambda)


def merged_vectors(pool: ModelPool, base: Literal["task_arithmetic", "ties"]
                   ) -> Callable[[str, torch.Tensor], torch.Tensor]:
    """(parameter name, its stacked task vectors) -> the base method's merged task vector, unscaled, in a fresh
    tensor: task arithmetic's sums the rows in hand, in task order; TIES recomputes them to trim."""
    if base == "ties":
        vectors = TiesVectors(pool, TIES_KEEP, "global")
        return lambda key, task_vectors: disjoint_merge(vectors.agreeing(key), "sum")
    return lambda key, task_vectors: accumulate(task_vectors)


class TaskLocalization(MergeMethod):
    """The masks shared by Consensus Merging and TALL masks, parameter by parameter.

    mask_lambda=0.6: FusionBench's tall_mask/task_arithmetic.yaml (tall_mask_lambda). The authors' code chooses λ per
    task on validation data among `LAMBDA_GRID`; here one λ serves every task.
    """

    base: Literal["task_arithmetic", "ties"] = "task_arithmetic"
    mask_lambda: float = setting(0.6, low=0.0, grid=LAMBDA_GRID)

    def masked(self, pool: ModelPool) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        """(parameter name, merged task vector, the tasks' masks stacked along dim 0), parameter by parameter."""
        merged_vector = merged_vectors(pool, self.base)
        for key in pool.parameter_names:
            task_vectors = pool.stacked_task_vectors(key)
            merged = merged_vector(key, task_vectors)
            yield key, merged, tall_masks(task_vectors, merged, self.mask_lambda)


class ConsensusMerging(TaskLocalization, ScaledUpdate):
    """The merged task vector kept where at least k tasks' TALL masks claim an entry, scaled and added.

    agreement=2: the authors' config/method/consensus.yaml (prun_thre_k), which drops the entries no task
    claims and those only one task claims. scaling=0.3: the base methods' default here (the authors' code
    chooses it on validation data among `SCALING_GRID`, as for task arithmetic).
    """

    name = "consensus"
    title = "Consensus Merging"
    reference = "https://arxiv.org/abs/2405.07813"
    agreement: int = setting(2, low=0)
    scaling: float = setting(0.3, grid=SCALING_GRID)

    def update(self, pool: ModelPool) -> StateDict:
        return {key: merged.mul_(masks.sum(0) >= self.agreement) for key, merged, masks in self.masked(pool)}


class TallMasks(TaskLocalization):
    """Per task, pretrained + its TALL mask ⊙ the merged task vector; needs the task of each input.

    The masked vector is added unscaled: the authors' code evaluates masked vectors at coefficient 1.0
    (src/eval/eval.py).
    """

    name = "tall_masks"
    title = "TALL Masks"
    reference = "https://arxiv.org/abs/2405.07813"

    def merge(self, pool: ModelPool) -> Merged:
        vector, masks = {}, {}
        for key, merged, task_masks in self.masked(pool):
            vector[key], masks[key] = merged, task_masks
        return MaskedTaskModels(pool, vector, masks)
