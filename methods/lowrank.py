"""Singular-value tools shared by the SVD-based merges (TSV-M, Iso-C/CTS, CART), one weight matrix at a time.

Decompositions run in float32, as the authors' code runs them on float32 checkpoints; the merged tensor goes
back to the checkpoint's dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from core.pool import ModelPool
from methods.averaging import average
from methods.base import setting
from methods.scaled import ScaledUpdate, StateDict

MatrixUpdate = Callable[[list[torch.Tensor]], torch.Tensor]

# The values of α that the TSV and Iso code search on validation data: np.linspace(0.0, 3.0, 31)[1:]
# (AntoAndGar/task_singular_vectors and danielm1405/iso-merging, src/eval/eval.py).
SCALING_GRID = tuple(round(0.1 * step, 1) for step in range(1, 31))


def svd(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The thin SVD of a 2-D tensor, in float32; where LAPACK's float32 solver does not converge (it can fail on a
    matrix with many repeated or vanishing singular values, such as a task vector with the common subspace
    projected out, or the stacked singular vectors of such), in float64, the factors returned in float32."""
    try:
        return torch.linalg.svd(matrix.float(), full_matrices=False)
    except torch.linalg.LinAlgError:
        u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
        return u.float(), s.float(), vh.float()


def truncated_svd(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The top `rank` singular triplets of a 2-D tensor: U (m x rank), S (rank), Vh (rank x n)."""
    u, s, vh = svd(matrix)
    return u[:, :rank], s[:rank], vh[:rank]


def low_rank(matrix: torch.Tensor, rank: int) -> torch.Tensor:
    """The best rank-`rank` approximation of a 2-D tensor (Eckart-Young)."""
    u, s, vh = truncated_svd(matrix, rank)
    return (u * s) @ vh


def closest_orthogonal(matrix: torch.Tensor) -> torch.Tensor:
    """The matrix with orthonormal columns (rows, if wide) nearest to `matrix` in Frobenius norm: U Vh of its
    SVD (the orthogonal Procrustes solution), as TSV-M and Iso-CTS orthogonalise stacked singular vectors."""
    u, _, vh = svd(matrix)
    return u @ vh


def matrix_updates(pool: ModelPool, matrix_update: MatrixUpdate) -> StateDict:
    """Per parameter, `matrix_update(task vectors)` for a 2-D tensor and the mean task vector for any other (biases,
    norms, class embedding, the 4-D patch convolution), in float32: the TSV and Iso code treat every 2-D tensor of
    the image encoder as a matrix."""
    updates = {}
    for key in pool.parameter_names:
        base = pool.pretrained_tensor(key).float()
        task_vectors = [pool.expert_tensor(task, key).float() - base for task in pool.tasks]
        updates[key] = matrix_update(task_vectors) if base.ndim == 2 else average(task_vectors)
    return updates


class MatrixUpdateMerge(ScaledUpdate):
    """pretrained + α x `matrix_update` of each 2-D tensor's task vectors (the mean task vector elsewhere): the
    shape of TSV-M and Iso-C/CTS, which differ only in the matrix update. α (`scaling`) is searched on validation
    data from SCALING_GRID; each subclass says where its default comes from."""

    scaling: float = setting(1.0, grid=SCALING_GRID)

    def matrix_update(self, task_vectors: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def update(self, pool: ModelPool) -> StateDict:
        return matrix_updates(pool, self.matrix_update)
