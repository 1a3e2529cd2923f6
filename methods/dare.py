"""DARE (Yu et al., 2024): drop each task-vector entry at random, rescale the rest, then merge as usual."""

from __future__ import annotations

import hashlib
from typing import Literal

import torch

from core.pool import ModelPool
from methods.averaging import accumulate
from methods.base import Merged, MergeMethod, setting
from methods.ties import TiesVectors, disjoint_merge

# The drop rates DARE's code searches (github.com/yule-BUAA/MergeLM, merge_plms_glue.py, "mask_merging": its
# weight_mask_rate_range), on top of the settings its base method chose.
RATE_GRID = (0.1, 0.3, 0.5, 0.7, 0.9)


def draw_seed(seed: int, task: str, key: str) -> int:
    """The generator seed of one task's drops in one parameter: a hash of the run's seed and the two names, so
    the drops depend neither on the order parameters or tasks are visited in nor on the other tasks merged."""
    digest = hashlib.sha256(f"{seed}\0{task}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def drop_and_rescale_(task_vector: torch.Tensor, rate: float, seed: int) -> torch.Tensor:
    """In place: each entry zeroed with probability `rate`, the survivors divided by 1 - rate, so the task vector's
    expectation is unchanged. At rate 1 everything is dropped and nothing rescaled (MergeLM's
    mask_input_with_mask_rate). The draws depend on the entry count only, so a flattened view draws the same."""
    uniforms = torch.rand(task_vector.shape, generator=torch.Generator().manual_seed(seed))
    task_vector.mul_(uniforms.ge_(rate))  # a 0/1 float mask made in place: no bool tensor, no type promotion
    return task_vector.div_(1 - rate) if rate < 1 else task_vector


class Dare(MergeMethod):
    """The drops shared by the DARE variants: rate p and the seed of the draws (see `draw_seed`).

    rate=0.5: FusionBench's dare/task_arithmetic.yaml and dare/ties_merging.yaml (sparsity_ratio). Every
    parameter's task vector is dropped, as there (only_on_linear_weights: false) and in MergeLM (which excludes
    only the classifier, a head that is not merged here).
    """

    rate: float = setting(0.5, low=0.0, high=1.0, grid=RATE_GRID)
    seed: int = 0

    def dropped(self, task: str, key: str, task_vector: torch.Tensor) -> torch.Tensor:
        return drop_and_rescale_(task_vector, self.rate, draw_seed(self.seed, task, key))


class DareTaskArithmetic(Dare):
    """Task arithmetic on DARE's dropped and rescaled task vectors.

    scaling=0.3: FusionBench's dare/task_arithmetic.yaml (scaling_factor), as task arithmetic's own default.
    """

    name = "dare_task_arithmetic"
    title = "DARE + Task Arithmetic"
    reference = "https://arxiv.org/abs/2311.03099"
    scaling: float = 0.3

    def merge(self, pool: ModelPool) -> Merged:
        def merge(key: str, pretrained: torch.Tensor, experts: list[torch.Tensor]) -> torch.Tensor:
            dropped = (self.dropped(task, key, expert - pretrained) for task, expert in zip(pool.tasks, experts))
            return accumulate(dropped).mul_(self.scaling).add_(pretrained)

        return pool.merge_parameters(merge)


class DareTies(Dare):
    """TIES-merging on DARE's dropped and rescaled task vectors: drop, then trim, elect and merge.

    FusionBench's dare/ties_merging.yaml: scaling 0.5, keep the top 20% of each (dropped) task vector over the
    whole vector (threshold: 20), disjoint sum.
    """

    name = "dare_ties"
    title = "DARE + TIES-Merging"
    reference = "https://arxiv.org/abs/2311.03099"
    scaling: float = 0.5
    keep: float = setting(0.2, low=0.0, high=1.0)
    disjoint: Literal["sum", "mean"] = "sum"

    def merge(self, pool: ModelPool) -> Merged:
        vectors = TiesVectors(pool, self.keep, "global", transform=self.dropped)
        return pool.encoder({key: disjoint_merge(vectors.agreeing(key), self.disjoint).mul_(self.scaling)
                             .add_(pool.pretrained_tensor(key)) for key in pool.parameter_names})
