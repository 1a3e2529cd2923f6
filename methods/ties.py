"""TIES-merging: trim each task vector, elect a sign per weight, merge the entries that agree with it."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import torch

from core.pool import ModelPool
from methods.averaging import SCALING_GRID, accumulate
from methods.base import setting
from methods.scaled import ScaledUpdate, StateDict


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


def trim_(task_vector: torch.Tensor, threshold: float) -> torch.Tensor:
    """Zero, in place, the entries of magnitude below `threshold`.

    One fused pass (hardshrink keeps |x| > λ; λ is the float just below the threshold) instead of a mask and a
    fill, since trimming is most of TIES' time (docs/performance.md).
    """
    below = torch.nextafter(torch.tensor(threshold, dtype=task_vector.dtype),
                            torch.tensor(-math.inf, dtype=task_vector.dtype))
    return torch.hardshrink(task_vector, below.item(), out=task_vector)


def keep_agreeing_(trimmed: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """Zero, in place, the entries whose sign differs from the elected one (`signs` holds ±1).

    Flipped to the elected sign, clamped at 0 and flipped back: exact, with no mask tensors to allocate
    (docs/performance.md).
    """
    return trimmed.mul_(signs).clamp_(min=0).mul_(signs)


def disjoint_merge(selected: Iterable[torch.Tensor], mode: Literal["sum", "mean"]) -> torch.Tensor:
    """Sum (or mean over the tasks that contribute) of the tasks' agreeing entries, accumulated as they come."""
    if mode == "sum":
        return accumulate(selected)
    total = contributors = None
    for entries in selected:
        if total is None:
            total, contributors = entries.clone(), (entries != 0).float()
        else:
            total += entries
            contributors += entries != 0
    return total.div_(contributors.clamp_(min=1))


class TiesVectors:
    """The TIES-processed task vectors of a pool, parameter by parameter: trimmed, then sign-resolved.

    Built in two streaming passes (per-task trim thresholds; then the sign of each weight's trimmed sum, kept
    as int8, and from them the overall majority sign), so memory holds one task vector's magnitudes and a
    quarter model of signs, never a flattened copy of every expert. Task vectors are computed into one reused
    buffer and consumed one at a time: at ViT-B/32 size a fresh tensor per task vector costs more (first touch
    of its pages) than all the arithmetic. Sums and float signs go to a second reused buffer, so the only
    tensors made per parameter are the ones kept (its int8 signs, the merged tensor): freed temporaries
    between them fragment the heap and make the peak memory vary from run to run (docs/performance.md).
    TIES-merging aggregates them; AdaMerging++ learns a coefficient for each.

    `transform(task, key, task_vector)`, where given, rewrites each task vector in place before it is trimmed
    (DARE's random drops); it must give the same result each time it is called with the same arguments, as
    each pass recomputes the task vectors.
    """

    def __init__(self, pool: ModelPool, keep: float, trim: Literal["global", "per_tensor"],
                 transform: Callable[[str, str, torch.Tensor], torch.Tensor] | None = None) -> None:
        self.pool = pool
        self._transform = transform or (lambda task, key, vector: vector)
        largest = max(pool.pretrained_tensor(key).numel() for key in pool.parameter_names)
        self._buffer, self._scratch = torch.empty(largest), torch.empty(largest)
        self.thresholds = self._thresholds(keep, trim)
        self._signs = {key: accumulate(self._trimmed(key), out=self._shaped(self._scratch, key)).sign_().to(torch.int8)
                       for key in pool.parameter_names}
        # Where a weight's trimmed sum is 0: the sign of the sum of the elected signs.
        balance = sum(signs.sum(dtype=torch.int64).item() for signs in self._signs.values())
        majority = 1 if balance >= 0 else -1
        for signs in self._signs.values():
            signs.masked_fill_(signs == 0, majority)

    def agreeing(self, key: str) -> Iterator[torch.Tensor]:
        """Per task of the pool, in order: its trimmed entries of parameter `key` that agree with the elected
        sign, in a buffer that the next one overwrites (use each before asking for the next)."""
        signs = self._shaped(self._scratch, key).copy_(self._signs[key])
        for trimmed in self._trimmed(key):
            yield keep_agreeing_(trimmed, signs)

    def __call__(self, key: str) -> torch.Tensor:
        """`agreeing(key)` stacked over the pool's tasks (dim 0), in a tensor of its own."""
        stacked = torch.empty(len(self.pool.tasks), *self.pool.pretrained_tensor(key).shape)
        for row, entries in zip(stacked, self.agreeing(key)):
            row.copy_(entries)
        return stacked

    def _shaped(self, buffer: torch.Tensor, key: str) -> torch.Tensor:
        """The front of a reused buffer, viewed in the shape of parameter `key`."""
        shape = self.pool.pretrained_tensor(key).shape
        return buffer[:shape.numel()].view(shape)

    def _task_vectors(self, key: str) -> Iterator[tuple[str, torch.Tensor]]:
        """(task, its task vector of `key`) per task, computed into the reused buffer."""
        pretrained, buffer = self.pool.pretrained_tensor(key), self._shaped(self._buffer, key)
        for task in self.pool.tasks:
            vector = torch.sub(self.pool.expert_tensor(task, key), pretrained, out=buffer)
            yield task, self._transform(task, key, vector)

    def _trimmed(self, key: str) -> Iterator[torch.Tensor]:
        for task, vector in self._task_vectors(key):
            yield trim_(vector, self.thresholds[task, key])

    def _thresholds(self, keep: float, scope: Literal["global", "per_tensor"]) -> dict[tuple[str, str], float]:
        """Per (task, parameter), the magnitude threshold of the trim.

        The global scope fills one buffer of a whole task vector's magnitudes, reused for every task.
        """
        names = self.pool.parameter_names
        if scope == "per_tensor":
            return {(task, key): trim_threshold(vector.abs(), keep)
                    for key in names for task, vector in self._task_vectors(key)}
        sizes = [self.pool.pretrained_tensor(key).numel() for key in names]
        magnitudes = torch.empty(sum(sizes))
        thresholds = {}
        for task in self.pool.tasks:
            for key, part in zip(names, magnitudes.split(sizes)):
                expert, pretrained = self.pool.expert_tensor(task, key), self.pool.pretrained_tensor(key)
                self._transform(task, key, torch.sub(expert.flatten(), pretrained.flatten(), out=part)).abs_()
            threshold = trim_threshold(magnitudes, keep)
            thresholds.update({(task, key): threshold for key in names})
        return thresholds


# The TIES code's search for its disjoint mean (github.com/prateeky2806/ties-merging, README: `linear+0.8+2.51+0.1`).
MEAN_SCALING_GRID = tuple(round(0.1 * step, 1) for step in range(8, 26))


class TiesMerging(ScaledUpdate):
    """TIES-merging (Yadav et al., 2023), streamed parameter by parameter (see `TiesVectors`).

    Defaults are those of the code behind the published 8-task numbers (AdaMerging's ties_merging_utils,
    FusionBench's ties_merging.yaml): keep the top 20% of each task vector by magnitude with the threshold
    taken over the whole task vector, disjoint *sum*, scaling 0.3. Preset `ties_paper` is the TIES paper's
    own setting: disjoint mean, scaling 1.0.

    On validation data (`run --select validation`), keep is chosen among 10, 20 and 30% (the TIES paper's
    search of k) and scaling from SCALING_GRID, the grid of task-vector scalings that the TIES and TALL-masks
    code search; with the disjoint mean, from the TIES code's 0.8-2.5 (MEAN_SCALING_GRID).
    """

    name = "ties_merging"
    title = "TIES-Merging"
    reference = "https://arxiv.org/abs/2306.01708"
    presets = {"ties_paper": {"disjoint": "mean", "scaling": 1.0}}
    scaling: float = setting(0.3, grid=SCALING_GRID)
    keep: float = setting(0.2, low=0.0, high=1.0, grid=(0.1, 0.2, 0.3))  # a fraction of each task vector
    trim: Literal["global", "per_tensor"] = "global"
    disjoint: Literal["sum", "mean"] = "sum"

    def search_space(self) -> dict[str, tuple[float, ...]]:
        space = super().search_space()
        return space | {"scaling": MEAN_SCALING_GRID} if self.disjoint == "mean" else space

    def update(self, pool: ModelPool) -> StateDict:
        vectors = TiesVectors(pool, self.keep, self.trim)  # reads the experts itself
        return {key: disjoint_merge(vectors.agreeing(key), self.disjoint) for key in pool.parameter_names}
