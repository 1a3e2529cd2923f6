"""EMR-Merging (Huang et al., NeurIPS 2024): elect one unified task vector, then per task a mask and a rescaler
that bring it back towards that task's own task vector. Tuning-free; needs the task of each input."""

from __future__ import annotations

import torch

from core.pool import ModelPool
from methods.base import Merged, MergeMethod
from methods.per_task import MaskedTaskModels


def elect(task_vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The unified vector and the tasks' masks of one parameter (`task_vectors` stacks the tasks along dim 0).

    As the authors' code (github.com/harveyhuang18/EMR_Merging, merge_vit/src/main_emr_merging.py, emr_merge):
    the elected sign is + where the tasks' mean is positive and - elsewhere (a zero mean elects -); a task's mask
    holds the entries whose sign agrees with it; the unified vector takes, per entry, the largest magnitude
    among agreeing entries, with the elected sign.
    """
    signs = torch.where(task_vectors.sum(0) > 0, 1.0, -1.0)
    masks = task_vectors * signs > 0
    return (task_vectors.abs() * masks).amax(0) * signs, masks


class EMRMerging(MergeMethod):
    """Per task, pretrained + rescaler_t * (mask_t ⊙ the unified vector); no settings to tune.

    rescaler_t: the mean magnitude of the task's own task vector over that of its masked unified vector, each
    a sum over parameters of per-tensor means, as the authors' code computes them.
    """

    name = "emr"
    title = "EMR-Merging"
    reference = "https://arxiv.org/abs/2405.17461"

    def merge(self, pool: ModelPool) -> Merged:
        vector, masks = {}, {}
        own = torch.zeros(len(pool.tasks), dtype=torch.float64)  # per task: sums of per-tensor mean magnitudes
        masked = torch.zeros_like(own)
        for key in pool.parameter_names:
            task_vectors = pool.stacked_task_vectors(key)
            vector[key], masks[key] = elect(task_vectors)
            own = own + task_vectors.abs().flatten(1).mean(1)
            masked = masked + (vector[key] * masks[key]).abs().flatten(1).mean(1)
        # A task with no agreeing entry gets the pretrained model whatever its rescaler: 0 rather than 0/0.
        rescalers = torch.where(masked > 0, own / masked.clamp(min=torch.finfo(torch.float64).tiny), 0.0)
        return MaskedTaskModels(pool, vector, masks, dict(zip(pool.tasks, rescalers.tolist())))
