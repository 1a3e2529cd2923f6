"""TSV-M against the paper's equations (float64 numpy, polar factors from Gram matrices) on a tiny pool."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import random_pool, state_of
from spectral import (
    assert_matches,
    closest_orthonormal,
    numpy_state,
    pool_with_task_vectors,
    reference_scaled_update,
    run_on_tiny_zoo,
    top_svd,
)

from methods.tsv import TaskSingularVectorsMerge, tsv_update


def reference_tsv(task_vectors: list[np.ndarray]) -> np.ndarray:
    """Each task's top min(m, n)//T singular triplets; the stacked U and V made orthonormal; U⊥ Σ V⊥ᵀ."""
    rank = min(task_vectors[0].shape) // len(task_vectors)
    if rank == 0:
        return np.zeros_like(task_vectors[0])
    factors = [top_svd(vector, rank) for vector in task_vectors]
    u = closest_orthonormal(np.hstack([u for u, _, _ in factors]))
    vt = closest_orthonormal(np.vstack([vt for _, _, vt in factors]))
    return u @ np.diag(np.concatenate([s for _, s, _ in factors])) @ vt


@pytest.mark.parametrize(("experts", "scaling"), [(3, 1.0), (2, 0.7)])
def test_tsv_merge_matches_the_papers_equations_on_every_2d_tensor_and_averages_the_rest(tmp_path, experts, scaling):
    pool = random_pool(tmp_path, n_experts=experts)
    expected = reference_scaled_update(pool, reference_tsv, scaling)
    assert_matches(TaskSingularVectorsMerge(scaling=scaling), pool, expected)


def test_tsv_keeps_each_task_at_rank_one_over_t_of_the_matrix():
    generator = torch.Generator().manual_seed(0)
    vectors = [torch.randn(24, 8, generator=generator) for _ in range(3)]
    assert torch.linalg.matrix_rank(tsv_update(vectors)).item() == 3 * (8 // 3)


def test_tsv_of_one_expert_is_its_own_task_vector(tmp_path):
    """One task keeps its full rank, and its singular vectors are orthonormal already."""
    pool = random_pool(tmp_path, n_experts=1)
    merged = state_of(TaskSingularVectorsMerge(scaling=0.5).merge(pool))
    expert, pretrained = numpy_state(pool, "task0"), numpy_state(pool)
    for key, base in pretrained.items():
        np.testing.assert_allclose(merged[key].double().numpy(), base + 0.5 * (expert[key] - base), atol=1e-5)


def test_tsv_of_zero_task_vectors_is_the_pretrained_model(tmp_path):
    pool = pool_with_task_vectors(tmp_path, lambda index, value: torch.zeros_like(value))
    merged = state_of(TaskSingularVectorsMerge().merge(pool))
    for key in pool.parameter_names:
        assert torch.equal(merged[key], pool.pretrained_tensor(key))


def test_tsv_leaves_a_matrix_narrower_than_the_number_of_tasks_unchanged():
    """min(m, n) // T = 0 singular directions per task: the authors' code adds nothing to such a matrix."""
    vectors = [torch.ones(5, 2) * index for index in range(3)]
    assert torch.equal(tsv_update(vectors), torch.zeros(5, 2))


def test_tsv_merge_runs_on_the_tiny_zoo(tiny_zoo, tmp_path):
    rows = run_on_tiny_zoo(tiny_zoo, tmp_path, ["tsv_merge"])
    assert set(rows["method"]) == {"tsv_merge"} and len(rows) == 8 and rows["value"].between(0, 1).all()
