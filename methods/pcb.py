"""PCB-merging (Du et al., NeurIPS 2024): each task-vector entry weighted by its parameter competition balance.

The authors' code (github.com/duguodong7/pcb-merging, vision_source_code/pcb_ES.py, the script its README names
for the vision experiments) works on each of the n task vectors flattened over the whole model (d entries):
  c_i = |τ_i| clamped to [lo_i, hi_i], the entries of rank int(0.01 d) and int(0.99 d) - 1 of sorted |τ_i|;
  a_i = (c_i - lo_i) / (hi_i - lo_i)  (min-max normalised), ñ_i = sign(τ_i) a_i;
  intra-balancing exp(n a_i²) (the paper's softmax of n Norm(τ_i²) without its denominator, a per-task constant
  that the final min-max normalisation removes), inter-balancing Σ_j tanh(ñ_i ñ_j) (j = i included);
  β_i = intra ⊙ inter; drop: t_i = the entry of rank int((1 - ratio) d) of sorted β_i, scale
  s_i = (max(β_i, t_i) - t_i) / (max β_i - t_i), so all but the top `ratio` of β_i weigh 0;
  merged = θ_0 + λ Σ_i s_i sign(τ_i) c_i / max(Σ_i s_i, 1e-12).
The repository's two other versions differ in details (pcb.py: inter-balancing tanh(τ_i Σ_j ñ_j);
pcb-merging.py: clamp fractions 0.0001 and tanh(τ_i Σ_j τ_j)); pcb_ES.py's is the paper's Σ_j over task pairs.
The order statistics (lo, hi, t, max) are taken over the whole model, so a parameter-by-parameter version would
differ; here they are exact and streamed: one model-sized buffer, reused for each task (as TIES' global trim),
never every expert flattened. Where the authors' code divides 0 by 0 (a task vector whose clamped magnitudes are
all equal, or balancing scores all equal), the quotient is taken as 0: nothing of that task is kept.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from core.pool import ModelPool
from methods.base import setting
from methods.scaled import ScaledUpdate, StateDict

# The fraction of each task vector's magnitudes clamped at either end: vision_source_code/pcb_ES.py and pcb.py
# (clamp(..., min_ratio=0.01, max_ratio=0.01)).
CLAMP_FRACTION = 0.01
# The drop ratios the authors' merging script runs (run_merging.sh: TPA_5, TPA_10, TPA_20).
RATIO_GRID = (0.05, 0.1, 0.2)
# λ over [0.8, 1.3]: the bounds within which pcb_ES.py searches each task's λ on validation data.
SCALING_GRID = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3)

def order_statistics(values: torch.Tensor, ranks: tuple[int, int]) -> tuple[float, float]:
    """The entries of the given 0-based ranks in sorted order of a contiguous float tensor, which this reorders
    (pass a scratch copy): an in-place partial sort (numpy), no sorted copy."""
    flat = values.view(-1).numpy()
    flat.partition(list(ranks))
    return float(flat[ranks[0]]), float(flat[ranks[1]])


def _per_task(bounds: torch.Tensor, ndim: int) -> torch.Tensor:
    """A (tasks,) tensor viewed to broadcast against stacked (tasks, *shape) tensors."""
    return bounds.view(-1, *([1] * (ndim - 1)))


def ratio_or_zero(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, 0 where the denominator is 0 (there the numerator is 0 too)."""
    return torch.where(denominator > 0, numerator / torch.where(denominator > 0, denominator, 1.0), 0.0)


def clamped_and_normalised(task_vectors: torch.Tensor, low: torch.Tensor,
                           high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked task vectors (tasks, *shape) and per-task clamp bounds -> (sign(τ) c, sign(τ) a): the clamped task
    vectors, and their magnitudes min-max normalised to [0, 1] with their signs."""
    low, high = _per_task(low, task_vectors.ndim), _per_task(high, task_vectors.ndim)
    signs = task_vectors.sign()
    magnitudes = task_vectors.abs().clamp_(low, high)
    return signs * magnitudes, signs * ratio_or_zero(magnitudes - low, high - low)


def balancing(normalised: torch.Tensor, task: int) -> torch.Tensor:
    """β_task = exp(n a_task²) ⊙ Σ_j tanh(ñ_task ñ_j), from the signed normalised task vectors ñ (tasks, *shape)."""
    own = normalised[task]
    intra = own.square().mul_(len(normalised)).exp_()
    inter = torch.tanh(own * normalised).sum(0)
    return intra.mul_(inter)


def kept_scale(balance: torch.Tensor, threshold: float, largest: float) -> torch.Tensor:
    """(max(β, t) - t) / (max β - t): 0 below the drop threshold t, up to 1 at the task's largest score."""
    return ratio_or_zero(balance.clamp(min=threshold) - threshold, torch.tensor(largest - threshold))


def pcb_update(task_vectors: torch.Tensor, clamp_bounds: torch.Tensor, drop_bounds: torch.Tensor) -> torch.Tensor:
    """Σ_i s_i sign(τ_i) c_i / max(Σ_i s_i, 1e-12) for one parameter's stacked task vectors, given each task's
    clamp bounds (tasks, 2) and drop threshold and largest score (tasks, 2), both over the whole model."""
    clamped, normalised = clamped_and_normalised(task_vectors, clamp_bounds[:, 0], clamp_bounds[:, 1])
    weighted, weights = torch.zeros_like(clamped[0]), torch.zeros_like(clamped[0])
    for task in range(len(task_vectors)):
        scale = kept_scale(balancing(normalised, task), *drop_bounds[task].tolist())
        weighted.addcmul_(scale, clamped[task])
        weights += scale
    return weighted.div_(weights.clamp_(min=1e-12))


class PcbStatistics:
    """The whole-model order statistics of PCB for a pool's tasks: per task, its clamp bounds and, for a drop
    ratio, its drop threshold and largest balancing score. Each task's scores fill one model-sized buffer in
    turn; as a task's scores depend on every task vector, finding them all reads each expert once per task."""

    def __init__(self, pool: ModelPool) -> None:
        self.pool = pool
        self.size = sum(shape.numel() for shape in pool.parameter_shapes.values())
        self._buffer = torch.empty(self.size)

    def _filled(self, parts: Iterator[torch.Tensor]) -> torch.Tensor:
        """The buffer filled with the flattened parts, in parameter order."""
        offset = 0
        for part in parts:
            self._buffer[offset:offset + part.numel()] = part.reshape(-1)
            offset += part.numel()
        return self._buffer

    def clamp_bounds(self) -> torch.Tensor:
        """(tasks, 2): the entries of rank int(0.01 d) and int(0.99 d) - 1 of each task's sorted |τ|."""
        ranks = (int(self.size * CLAMP_FRACTION), int(self.size * (1 - CLAMP_FRACTION)) - 1)
        return torch.tensor([order_statistics(self._filled(self.pool.task_vector(task, key).abs()
                                                           for key in self.pool.parameter_names), ranks)
                             for task in self.pool.tasks])

    def drop_bounds(self, clamp_bounds: torch.Tensor, ratio: float) -> torch.Tensor:
        """(tasks, 2): each task's drop threshold (the entry of rank int((1 - ratio) d) of its sorted balancing
        scores) and its largest score."""
        ranks = (min(int(self.size * (1 - ratio)), self.size - 1), self.size - 1)
        return torch.tensor([order_statistics(self._filled(self._balancing(task, clamp_bounds)), ranks)
                             for task in range(len(self.pool.tasks))])

    def _balancing(self, task: int, clamp_bounds: torch.Tensor) -> Iterator[torch.Tensor]:
        for key in self.pool.parameter_names:
            _, normalised = clamped_and_normalised(self.pool.stacked_task_vectors(key), clamp_bounds[:, 0],
                                                   clamp_bounds[:, 1])
            yield balancing(normalised, task)


class Pcb(ScaledUpdate):
    """Task vectors averaged with per-entry weights from competition balancing, the top kept (Du et al., 2024).

    Intra- and inter-task balancing scores per task-vector entry, the top `ratio` of each task's scores kept and
    rescaled, the task vectors averaged with them as weights, scaled by λ.

    Defaults of the authors' vision code (vision_source_code/pcb.py; pcb_ES.py starts from them): ratio 0.05,
    λ 1.2, one λ for every task. Their evolutionary search of one λ per task (nevergrad, 100 evaluations on
    validation data) is not run; on validation data (`run --select validation`) λ is chosen from SCALING_GRID,
    the range that search explores, and the ratio from RATIO_GRID. The equations, and why they are taken over
    the whole model, are in this module's docstring.
    """

    name = "pcb"
    title = "PCB-Merging"
    reference = "https://arxiv.org/abs/2410.02396"
    ratio: float = setting(0.05, above=0.0, high=1.0, grid=RATIO_GRID)  # the fraction of each task's scores kept
    scaling: float = setting(1.2, grid=SCALING_GRID)

    def update(self, pool: ModelPool) -> StateDict:
        """The order statistics are computed once per pool and ratio (memoised), for the scenarios that merge the
        same experts."""
        tasks = tuple(pool.tasks)
        statistics = PcbStatistics(pool)
        clamp_bounds = pool.memo(("pcb clamp bounds", tasks), statistics.clamp_bounds)
        drop_bounds = pool.memo(("pcb drop bounds", tasks, self.ratio),
                                lambda: statistics.drop_bounds(clamp_bounds, self.ratio))
        return {key: pcb_update(pool.stacked_task_vectors(key), clamp_bounds, drop_bounds)
                for key in pool.parameter_names}
