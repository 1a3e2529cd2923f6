"""Iso-C and Iso-CTS against the paper's equations (float64 numpy) on a tiny pool."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import random_pool, state_of
from spectral import (
    assert_matches,
    closest_orthonormal,
    pool_with_task_vectors,
    reference_scaled_update,
    run_on_tiny_zoo,
    top_svd,
)

from methods.isotropic import IsoC, IsoCTS, iso_c_update, iso_cts_update, subspace_sizes
from methods.lowrank import closest_orthogonal, truncated_svd


def reference_iso_c(task_vectors: list[np.ndarray]) -> np.ndarray:
    """The task-arithmetic sum U Σ Vᵀ with Σ replaced by mean(Σ) I."""
    u, s, vt = np.linalg.svd(sum(task_vectors), full_matrices=False)
    return s.mean() * u @ vt


def reference_iso_cts(task_vectors: list[np.ndarray], common_fraction: float) -> np.ndarray:
    """Common subspace of the sum, plus each task's top directions outside it, orthonormalised, flat spectrum."""
    tasks, rank = len(task_vectors), min(task_vectors[0].shape)
    per_task = round((rank - int(rank * common_fraction)) / tasks)
    common = rank - per_task * tasks
    u_common, s_common, vt_common = top_svd(sum(task_vectors), common)
    us, ss, vts = [u_common], [s_common], [vt_common]
    for vector in task_vectors:
        u, s, vt = top_svd((np.eye(vector.shape[0]) - u_common @ u_common.T) @ vector, per_task)
        us.append(u), ss.append(s), vts.append(vt)
    return np.concatenate(ss).mean() * closest_orthonormal(np.hstack(us)) @ closest_orthonormal(np.vstack(vts))


@pytest.mark.parametrize(("experts", "scaling"), [(3, 1.0), (1, 1.3)])
def test_iso_c_matches_the_papers_equations_on_every_2d_tensor_and_averages_the_rest(tmp_path, experts, scaling):
    pool = random_pool(tmp_path, n_experts=experts)
    assert_matches(IsoC(scaling=scaling), pool, reference_scaled_update(pool, reference_iso_c, scaling))


@pytest.mark.parametrize(("experts", "fraction", "scaling"), [(3, 0.8, 1.0), (2, 0.5, 1.5), (1, 0.8, 1.0)])
def test_iso_cts_matches_the_papers_equations(tmp_path, experts, fraction, scaling):
    pool = random_pool(tmp_path, n_experts=experts)
    expected = reference_scaled_update(pool, lambda vectors: reference_iso_cts(vectors, fraction), scaling)
    assert_matches(IsoCTS(scaling=scaling, common_fraction=fraction), pool, expected)


def test_iso_c_gives_every_direction_the_mean_singular_value_of_the_task_arithmetic_sum():
    generator = torch.Generator().manual_seed(0)
    vectors = [torch.randn(24, 8, generator=generator) for _ in range(3)]
    expected = torch.linalg.svdvals(sum(vectors)).mean()
    torch.testing.assert_close(torch.linalg.svdvals(iso_c_update(vectors)), expected.expand(8))


def test_iso_cts_subspaces_fill_the_rank_with_an_equal_share_per_task():
    """int(96 x 0.8) = 76 common directions leave 20, i.e. 2.5 per task of 8, rounded to 2 (Python's round)."""
    assert subspace_sizes(96, 8, 0.8) == (80, 2)
    assert subspace_sizes(768, 8, 0.8) == (616, 19)
    assert subspace_sizes(11, 2, 0.0) == (1, 5)  # round(5.5) = 6 per task would exceed the rank


def test_iso_cts_with_no_room_for_task_directions_is_iso_c():
    generator = torch.Generator().manual_seed(1)
    vectors = [torch.randn(17, 6, generator=generator) for _ in range(8)]
    torch.testing.assert_close(iso_cts_update(vectors, 0.8), iso_c_update(vectors))


@pytest.mark.parametrize("method", [IsoC(), IsoCTS()])
def test_iso_of_zero_task_vectors_is_the_pretrained_model(tmp_path, method):
    pool = pool_with_task_vectors(tmp_path, lambda index, value: torch.zeros_like(value))
    merged = state_of(method.merge(pool))
    for key in pool.parameter_names:
        assert torch.equal(merged[key], pool.pretrained_tensor(key))


def test_iso_c_of_identical_task_vectors_is_iso_c_of_one_scaled_by_their_number():
    generator = torch.Generator().manual_seed(2)
    vector = torch.randn(24, 8, generator=generator)
    torch.testing.assert_close(iso_c_update([vector] * 3), 3 * iso_c_update([vector]))


def test_iso_methods_run_on_the_tiny_zoo(tiny_zoo, tmp_path):
    rows = run_on_tiny_zoo(tiny_zoo, tmp_path, ["iso_c", "iso_cts"])
    assert rows.groupby("method").size().to_dict() == {"iso_c": 8, "iso_cts": 8}
    assert rows["value"].between(0, 1).all()


def test_an_svd_that_float32_cannot_converge_on_is_taken_in_float64(monkeypatch):
    """LAPACK's float32 SVD failed to converge inside Iso-CTS on random ViT-B/32- and L/14-size task vectors (on a
    task vector with the common subspace projected out, and on the stacked singular vectors): both SVDs of the
    SVD-based merges fall back to float64, and the factors come back in float32."""
    solve = torch.linalg.svd
    solved: list[torch.dtype] = []

    def float32_fails(matrix: torch.Tensor, **options: object) -> tuple[torch.Tensor, ...]:
        solved.append(matrix.dtype)
        if matrix.dtype == torch.float32:
            raise torch.linalg.LinAlgError("linalg.svd: The algorithm failed to converge")
        return solve(matrix, **options)

    matrix = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    u64, s64, vh64 = solve(matrix.double(), full_matrices=False)
    monkeypatch.setattr(torch.linalg, "svd", float32_fails)
    u, s, vh = truncated_svd(matrix, 2)
    assert solved == [torch.float32, torch.float64]
    assert u.dtype == s.dtype == vh.dtype == torch.float32
    assert torch.equal(s, s64[:2].float()) and torch.equal(u, u64[:, :2].float())
    orthogonal = closest_orthogonal(matrix)
    assert solved[2:] == [torch.float32, torch.float64] and orthogonal.dtype == torch.float32
    assert torch.equal(orthogonal, u64.float() @ vh64.float())
