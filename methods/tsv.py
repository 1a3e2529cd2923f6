"""TSV-Merge (Gargiulo et al., CVPR 2025): per weight matrix, each task's top singular vectors, decorrelated."""

from __future__ import annotations

import torch

from methods.lowrank import MatrixUpdateMerge, closest_orthogonal, truncated_svd


def tsv_update(task_vectors: list[torch.Tensor]) -> torch.Tensor:
    """The TSV-M update of one weight matrix from its T task vectors.

    Each task keeps its top k = min(m, n) // T singular triplets; the stacked left singular vectors
    [U_1 .. U_T] and right ones [V_1 .. V_T] are each replaced by the closest matrix with orthonormal columns,
    and recombined with the tasks' own singular values: U⊥ diag(S_1 .. S_T) V⊥ᵀ. With k = 0 (a matrix
    narrower than the number of tasks) the update is zero, as in the authors' code.
    """
    rank = min(task_vectors[0].shape) // len(task_vectors)
    if rank == 0:
        return torch.zeros_like(task_vectors[0])
    factors = [truncated_svd(vector, rank) for vector in task_vectors]
    u = closest_orthogonal(torch.cat([u for u, _, _ in factors], dim=1))
    vh = closest_orthogonal(torch.cat([vh for _, _, vh in factors], dim=0))
    return (u * torch.cat([s for _, s, _ in factors])) @ vh


class TaskSingularVectorsMerge(MatrixUpdateMerge):
    """TSV-M: each task's update at rank 1/T of the matrix, their singular vectors orthogonalised, summed.

    As AntoAndGar/task_singular_vectors (src/utils/TSVM_utils.py, compute_and_sum_svd_mem_reduction) does it:
    every 2-D tensor of the image encoder is a matrix (attention and MLP weights, and also the positional
    embedding and the output projection); the other parameters get the mean task vector. The whole update is
    scaled by α (`scaling`), which the authors' code chooses on validation data from SCALING_GRID
    (src/eval/eval.py); default α = 1.0, FusionBench's (config/method/task_singular_vector/
    TaskSingularVectorMerging.yaml).
    """

    name = "tsv_merge"
    title = "TSV-M"
    reference = "https://arxiv.org/abs/2412.00081"

    def matrix_update(self, task_vectors: list[torch.Tensor]) -> torch.Tensor:
        return tsv_update(task_vectors)
