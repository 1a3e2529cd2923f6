"""CART against the paper's equation (float64 numpy) on a tiny pool."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import random_pool, state_of
from spectral import assert_matches, numpy_state, pool_with_task_vectors, run_on_tiny_zoo, top_svd

from methods.cart import Cart

BLOCK_MATRICES = {"attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"}


def reference_cart(pool, rank_ratio: float, scaling: float) -> dict[str, np.ndarray]:
    """θ_avg + λ Σ_t LowRank_k(θ_t - θ_avg) on the blocks' attention and MLP weights; θ_avg elsewhere."""
    experts = [numpy_state(pool, task) for task in pool.tasks]
    merged = {}
    for key in pool.parameter_names:
        average = sum(expert[key] for expert in experts) / len(experts)
        if not any(key.endswith(name) for name in BLOCK_MATRICES):
            merged[key] = average
            continue
        rank = max(1, int(rank_ratio * min(average.shape)))
        low_rank = [top_svd(expert[key] - average, rank) for expert in experts]
        merged[key] = average + scaling * sum(u @ np.diag(s) @ vt for u, s, vt in low_rank)
    return merged


@pytest.mark.parametrize(("experts", "rank_ratio", "scaling"), [(3, 0.12, 2.0), (4, 0.5, 1.5), (2, 1.0, 0.5)])
def test_cart_matches_the_papers_equation(tmp_path, experts, rank_ratio, scaling):
    pool = random_pool(tmp_path, n_experts=experts)
    expected = reference_cart(pool, rank_ratio, scaling)
    assert_matches(Cart(rank_ratio=rank_ratio, scaling=scaling), pool, expected)


def test_cart_leaves_positional_embedding_projection_and_patch_convolution_at_the_average(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    merged = state_of(Cart().merge(pool))
    for key in ("positional_embedding", "proj", "conv1.weight", "transformer.resblocks.0.attn.in_proj_bias"):
        average = sum(pool.expert_tensor(task, key) for task in pool.tasks) / 3
        torch.testing.assert_close(merged[key], average)


def test_cart_at_full_rank_is_weight_averaging_whatever_lambda(tmp_path):
    """At full rank the centred task vectors are kept whole, and they sum to zero."""
    pool = random_pool(tmp_path, n_experts=3)
    merged = state_of(Cart(rank_ratio=1.0, scaling=2.0).merge(pool))
    key = "transformer.resblocks.0.mlp.c_fc.weight"
    average = sum(pool.expert_tensor(task, key) for task in pool.tasks) / 3
    torch.testing.assert_close(merged[key], average, rtol=0, atol=1e-6)


def test_cart_of_one_expert_is_that_expert(tmp_path):
    pool = random_pool(tmp_path, n_experts=1)
    merged = state_of(Cart().merge(pool))
    for key in pool.parameter_names:
        torch.testing.assert_close(merged[key], pool.expert_tensor("task0", key))


def test_cart_of_zero_task_vectors_is_the_pretrained_model(tmp_path):
    pool = pool_with_task_vectors(tmp_path, lambda index, value: torch.zeros_like(value))
    merged = state_of(Cart().merge(pool))
    for key in pool.parameter_names:
        torch.testing.assert_close(merged[key], pool.pretrained_tensor(key))


def test_cart_presets_are_the_authors_14_and_20_task_configurations():
    assert (Cart.configure("tasks14").rank_ratio, Cart.configure("tasks14").scaling) == (0.16, 1.5)
    assert (Cart.configure("tasks20").rank_ratio, Cart.configure("tasks20").scaling) == (0.32, 1.9)


def test_cart_runs_on_the_tiny_zoo(tiny_zoo, tmp_path):
    rows = run_on_tiny_zoo(tiny_zoo, tmp_path, ["cart"])
    assert set(rows["method"]) == {"cart"} and len(rows) == 8 and rows["value"].between(0, 1).all()
