"""TIES-merging: trim each task vector, elect a sign per weight, merge the entries that agree with it."""

from __future__ import annotations

from typing import Literal

import torch

from bench.pool import ModelPool
from methods.averaging import accumulate
from methods.base import Merged, MergeMethod


def trim_threshold(magnitudes: torch.Tensor, keep: float) -> float:
    """The smallest magnitude kept when keeping the top `keep` fraction of `magnitudes` (a contiguous float
    tensor, which this reorders: pass a scratch copy).

    As the reference code does: the k-th smallest value with k = n - int(n * keep), entries >= it kept. Found
    by an in-place partial sort (numpy), which needs no copy and no index tensor, unlike `kthvalue`.
    """
    n = magnitudes.numel()
    k = n - int(n * keep)
    if k <= 0:
        return 0.0
    values = magnitudes.view(-1).numpy()
    values.partition(k - 1)
    return float(values[k - 1])


def trim(task_vector: torch.Tensor, threshold: float) -> torch.Tensor:
    return torch.where(task_vector.abs() >= threshold, task_vector, torch.zeros_like(task_vector))


def elect_signs(total: torch.Tensor, majority_sign: float) -> torch.Tensor:
    """Sign of the sum of the trimmed task vectors; weights where it is 0 take the overall majority sign."""
    signs = torch.sign(total)
    return torch.where(signs == 0, torch.full_like(signs, majority_sign), signs)


def agreeing_entries(trimmed: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """A trimmed task vector, zero wherever an entry's sign differs from the elected one."""
    return trimmed * torch.where(signs > 0, trimmed > 0, trimmed < 0)


def disjoint_merge(selected: list[torch.Tensor], mode: Literal["sum", "mean"]) -> torch.Tensor:
    """Sum (or mean over the tasks that contribute) of the tasks' agreeing entries, accumulated in place."""
    total = accumulate(selected)
    if mode == "sum":
        return total
    return total / accumulate([(entries != 0).float() for entries in selected]).clamp(min=1)


class TiesVectors:
    """The TIES-processed task vectors of a pool, parameter by parameter: trimmed, then sign-resolved.

    Built in two streaming passes (per-task trim thresholds, then the overall majority sign), so memory
    holds one task vector's magnitudes at a time, never a flattened copy of every expert; the tasks' tensors
    of a parameter are summed in place, never stacked. TIES-merging aggregates them; AdaMerging++ learns a
    coefficient for each.
    """

    def __init__(self, pool: ModelPool, keep: float, trim: Literal["global", "per_tensor"]) -> None:
        self.pool = pool
        self.thresholds = self._thresholds(keep, trim)
        # The majority sign, for weights whose elected sign is 0: the sign of the sum of the elected signs.
        balance = sum(torch.sign(accumulate(self._trimmed(key))).sum().item() for key in pool.parameter_names)
        self.majority = 1.0 if balance >= 0 else -1.0

    def agreeing(self, key: str) -> list[torch.Tensor]:
        """Per task of the pool: its trimmed entries of parameter `key` that agree with the elected sign."""
        trimmed = self._trimmed(key)
        signs = elect_signs(accumulate(trimmed), self.majority)
        return [agreeing_entries(vector, signs) for vector in trimmed]

    def __call__(self, key: str) -> torch.Tensor:
        """`agreeing(key)` stacked over the pool's tasks (dim 0)."""
        return torch.stack(self.agreeing(key))

    def _trimmed(self, key: str) -> list[torch.Tensor]:
        return [trim(self.pool.task_vector(task, key), self.thresholds[task, key]) for task in self.pool.tasks]

    def _thresholds(self, keep: float, scope: Literal["global", "per_tensor"]) -> dict[tuple[str, str], float]:
        """Per (task, parameter), the magnitude threshold of the trim.

        The global scope fills one buffer of a whole task vector's magnitudes, reused for every task.
        """
        names = self.pool.parameter_names
        if scope == "per_tensor":
            return {(task, key): trim_threshold(self.pool.task_vector(task, key).abs(), keep)
                    for task in self.pool.tasks for key in names}
        sizes = [self.pool.pretrained_tensor(key).numel() for key in names]
        magnitudes = torch.empty(sum(sizes))
        thresholds = {}
        for task in self.pool.tasks:
            for key, part in zip(names, magnitudes.split(sizes)):
                torch.abs(self.pool.task_vector(task, key).flatten(), out=part)
            threshold = trim_threshold(magnitudes, keep)
            thresholds.update({(task, key): threshold for key in names})
        return thresholds


class TiesMerging(MergeMethod):
    """TIES-merging (Yadav et al., 2023), streamed parameter by parameter (see `TiesVectors`).

    Defaults are those of the code behind the published 8-task numbers (AdaMerging's ties_merging_utils,
    FusionBench's ties_merging.yaml): keep the top 20% of each task vector by magnitude with the threshold
    taken over the whole task vector, disjoint *sum*, scaling 0.3. Preset `ties_paper` is the TIES paper's
    own setting: disjoint mean, scaling 1.0.
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
        vectors = TiesVectors(pool, self.keep, self.trim)  # reads the experts itself; merge_parameters would read them again
        return pool.encoder({key: pool.pretrained_tensor(key) + self.scaling * disjoint_merge(vectors.agreeing(key), self.disjoint)
                             for key in pool.parameter_names})
