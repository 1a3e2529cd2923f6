"""TIES-merging: trim each task vector, elect a sign per weight, merge the entries that agree with it."""

from __future__ import annotations

from typing import Literal

import torch

from bench.pool import ModelPool
from methods.base import Merged, MergeMethod


def trim_threshold(magnitudes: torch.Tensor, keep: float) -> float:
    """The smallest magnitude kept when keeping the top `keep` fraction of `magnitudes`.

    As the reference code does: the k-th smallest value with k = n - int(n * keep), entries >= it kept.
    """
    n = magnitudes.numel()
    k = n - int(n * keep)
    return 0.0 if k <= 0 else magnitudes.flatten().kthvalue(k).values.item()


def trim(task_vector: torch.Tensor, threshold: float) -> torch.Tensor:
    return torch.where(task_vector.abs() >= threshold, task_vector, torch.zeros_like(task_vector))


def elect_signs(trimmed: torch.Tensor, majority_sign: float) -> torch.Tensor:
    """Sign of the sum over tasks (dim 0); weights where it is 0 take the overall majority sign."""
    signs = torch.sign(trimmed.sum(0))
    return torch.where(signs == 0, torch.full_like(signs, majority_sign), signs)


def disjoint_merge(trimmed: torch.Tensor, signs: torch.Tensor, mode: Literal["sum", "mean"]) -> torch.Tensor:
    """Sum (or mean) over tasks of the trimmed entries whose sign agrees with the elected one."""
    agrees = torch.where(signs > 0, trimmed > 0, trimmed < 0)
    selected = trimmed * agrees
    if mode == "sum":
        return selected.sum(0)
    return selected.sum(0) / agrees.sum(0).clamp(min=1)


class TiesMerging(MergeMethod):
    """TIES-merging (Yadav et al., 2023) in three streaming passes over the parameters.

    Defaults are those of the code behind the published 8-task numbers (AdaMerging's ties_merging_utils,
    FusionBench's ties_merging.yaml): keep the top 20% of each task vector by magnitude with the threshold
    taken over the whole task vector, disjoint *sum*, scaling 0.3. Preset `ties_paper` is the TIES paper's
    own setting: disjoint mean, scaling 1.0. Pass 1 finds each task vector's threshold, pass 2 the majority
    sign over all weights, pass 3 merges; so memory holds one task vector's magnitudes at a time, never a
    flattened copy of every expert.
    """

    name = "ties_merging"
    title = "TIES-Merging"
    reference = "https://arxiv.org/abs/2306.01708"
    presets = {"ties_paper": {"disjoint": "mean", "scaling": 1.0}}
    scaling: float = 0.3
    keep: float = 0.2
    trim: Literal["global", "per_tensor"] = "global"
    disjoint: Literal["sum", "mean"] = "sum"

    def merge(self, pool: ModelPool) -> Merged:
        thresholds = self._thresholds(pool)

        def trimmed(key: str) -> torch.Tensor:
            return torch.stack([trim(pool.task_vector(task, key), thresholds[task, key]) for task in pool.tasks])

        # Pass 2: the overall majority sign, i.e. the sign of the sum of the per-weight elected signs.
        balance = sum(torch.sign(trimmed(key).sum(0)).sum().item() for key in pool.parameter_names)
        majority = 1.0 if balance >= 0 else -1.0

        def merge_tensor(key: str, pretrained: torch.Tensor, experts: list[torch.Tensor]) -> torch.Tensor:
            task_vectors = trimmed(key)
            return pretrained + self.scaling * disjoint_merge(task_vectors, elect_signs(task_vectors, majority), self.disjoint)

        return pool.merge_parameters(merge_tensor)

    def _thresholds(self, pool: ModelPool) -> dict[tuple[str, str], float]:
        """Pass 1: per (task, parameter), the magnitude threshold of the trim."""
        thresholds = {}
        for task in pool.tasks:
            magnitudes = {key: pool.task_vector(task, key).abs().flatten() for key in pool.parameter_names}
            if self.trim == "global":
                threshold = trim_threshold(torch.cat(list(magnitudes.values())), self.keep)
                thresholds.update({(task, key): threshold for key in magnitudes})
            else:
                thresholds.update({(task, key): trim_threshold(m, self.keep) for key, m in magnitudes.items()})
        return thresholds
