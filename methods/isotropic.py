"""Isotropic merging (Marczak et al., ICML 2025): the task-arithmetic matrix with a flat singular spectrum."""

from __future__ import annotations

import torch

from methods.averaging import accumulate
from methods.base import setting
from methods.lowrank import MatrixUpdateMerge, closest_orthogonal, truncated_svd


def iso_c_update(task_vectors: list[torch.Tensor]) -> torch.Tensor:
    """Iso-C: the sum of the task vectors, U diag(S) Vᵀ, with every singular value replaced by their mean."""
    u, s, vh = truncated_svd(accumulate(task_vectors), min(task_vectors[0].shape))
    return (u @ vh).mul_(s.mean())


def subspace_sizes(rank: int, tasks: int, common_fraction: float) -> tuple[int, int]:
    """(common, per task) numbers of singular directions of Iso-CTS, which fill the matrix's full rank.

    As danielm1405/iso-merging (src/utils/iso.py) computes them: the common subspace starts at
    int(rank x common_fraction) and gives way so that the task-specific rest divides evenly between the tasks
    (Python's round). The per-task size is capped so the tasks never claim more than the rank (the code's
    rounding could only exceed it at common fractions far below its 0.8).
    """
    per_task = min(round((rank - int(rank * common_fraction)) / tasks), rank // tasks)
    return rank - per_task * tasks, per_task


def iso_cts_update(task_vectors: list[torch.Tensor], common_fraction: float) -> torch.Tensor:
    """Iso-CTS: the top singular directions of the summed task vectors (common subspace), completed by each
    task's top directions orthogonal to that subspace (left side), both sets of singular vectors made
    orthonormal together, recombined with one singular value: the mean of all of them."""
    rank = min(task_vectors[0].shape)
    common, per_task = subspace_sizes(rank, len(task_vectors), common_fraction)
    factors = [truncated_svd(accumulate(task_vectors), common)]
    common_u = factors[0][0]
    for vector in task_vectors:
        specific = vector - common_u @ (common_u.T @ vector)
        factors.append(truncated_svd(specific, per_task))
    u = closest_orthogonal(torch.cat([u for u, _, _ in factors], dim=1))
    vh = closest_orthogonal(torch.cat([vh for _, _, vh in factors], dim=0))
    return (u @ vh).mul_(torch.cat([s for _, s, _ in factors]).mean())


class IsoC(MatrixUpdateMerge):
    """Iso-C: pretrained + α x the task-arithmetic sum, each 2-D tensor's spectrum made flat (isotropic).

    As danielm1405/iso-merging (src/utils/iso.py, iso_c): every 2-D tensor of the image encoder is a matrix
    (positional embedding and output projection included); the other parameters get the mean task vector.
    α = 1.0 (`scaling`): FusionBench's default (config/method/isotropic_merging/iso_c.yaml); the authors' code
    always chooses it on validation data, from SCALING_GRID (src/eval/eval.py).
    """

    name = "iso_c"
    title = "Iso-C"
    reference = "https://arxiv.org/abs/2502.04959"

    def matrix_update(self, task_vectors: list[torch.Tensor]) -> torch.Tensor:
        return iso_c_update(task_vectors)


class IsoCTS(IsoC):
    """Iso-CTS: Iso-C's common subspace, its weakest directions replaced by task-specific ones.

    common_fraction=0.8: the share of each matrix's rank kept for the common subspace, from the authors' code
    (danielm1405/iso-merging, config/method/iso_cts.yaml, and its README's command). Matrices and α as in Iso-C.
    """

    name = "iso_cts"
    title = "Iso-CTS"
    common_fraction: float = setting(0.8, low=0.0, high=1.0)

    def matrix_update(self, task_vectors: list[torch.Tensor]) -> torch.Tensor:
        return iso_cts_update(task_vectors, self.common_fraction)
