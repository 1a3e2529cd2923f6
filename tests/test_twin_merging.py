"""Twin-Merging against its equations written plainly (float64 numpy parameters, one input at a time through the
harness's own encoder), on small tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import random_pool
from spectral import numpy_state, run_on_tiny_zoo

from core.pool import ModelPool
from methods.twin_merging import TaskRouter, TwinEncoder, TwinMerging, train_router


def truncated(matrix: np.ndarray, fraction: float) -> np.ndarray:
    """The matrix's best approximation of rank int(fraction x its smaller side)."""
    rank = int(fraction * min(matrix.shape))
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    return u[:, :rank] @ np.diag(s[:rank]) @ vt[:rank]


def compressed(key: str, exclusive: np.ndarray, fraction: float) -> np.ndarray:
    """A task's exclusive part of one tensor as the method keeps it: vectors whole, the packed q, k, v each
    truncated on its own, the patch kernel as a matrix over its flattened patches, any other matrix as it is."""
    if exclusive.ndim == 1:
        return exclusive
    if key.endswith("in_proj_weight"):
        return np.concatenate([truncated(block, fraction) for block in np.split(exclusive, 3)])
    return truncated(exclusive.reshape(len(exclusive), -1), fraction).reshape(exclusive.shape)


def reference_parameters(pool: ModelPool, scaling: float, fraction: float,
                         weights: np.ndarray) -> dict[str, np.ndarray]:
    """θ* + Σ_t w_t E_t, θ* = θ0 + scaling Σ_t (θ_t − θ0), E_t the compressed θ_t − θ*."""
    pretrained, experts = numpy_state(pool), [numpy_state(pool, task) for task in pool.tasks]
    parameters = {}
    for key, base in pretrained.items():
        shared = base + scaling * sum(expert[key] - base for expert in experts)
        parameters[key] = shared + sum(w * compressed(key, expert[key] - shared, fraction)
                                       for w, expert in zip(weights, experts))
    return parameters


def quick_twin(pool: ModelPool, **settings) -> TwinEncoder:
    return TwinMerging(epochs=2, **settings).merge(pool)


@pytest.mark.parametrize(("scaling", "fraction"), [(0.29, 0.5), (0.5, 0.25), (0.3, 1.0)])
def test_each_input_runs_through_the_shared_model_plus_its_routed_compressed_exclusive_parts(tmp_path, scaling,
                                                                                            fraction):
    pool = random_pool(tmp_path, n_experts=3)
    twin = quick_twin(pool, shared_scaling=scaling, rank_fraction=fraction)
    images = pool.sample_inputs("task0", "test", 4)
    weights = torch.softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    with torch.no_grad():
        routed = twin.embedding(images, weights)
    for index, row in enumerate(weights.double().numpy()):
        state = {key: torch.from_numpy(value).float()
                 for key, value in reference_parameters(pool, scaling, fraction, row).items()}
        with torch.no_grad():
            expected = pool.encoder(state)(images[index:index + 1])[0]
        torch.testing.assert_close(routed[index], expected, rtol=1e-4, atol=1e-5)


def shared_encoder(pool: ModelPool) -> torch.nn.Module:
    """The reference shared model: task arithmetic at the default 0.29, no exclusive part routed."""
    return pool.encoder({key: torch.from_numpy(value).float()
                         for key, value in reference_parameters(pool, 0.29, 0.1, [0, 0, 0]).items()})


def test_without_routing_weights_the_encoder_is_the_shared_task_arithmetic_model(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    twin = quick_twin(pool)
    images = pool.sample_inputs("task0", "test", 6)
    with torch.no_grad():
        torch.testing.assert_close(twin.embedding(images, None), shared_encoder(pool)(images), rtol=1e-5, atol=1e-5)


def test_one_expert_at_full_rank_and_weight_1_is_that_expert(tmp_path):
    pool = random_pool(tmp_path, n_experts=1)
    twin = quick_twin(pool, rank_fraction=1.0)
    images = pool.sample_inputs("task0", "test", 6)
    with torch.no_grad():
        torch.testing.assert_close(twin(images), pool.encoder(pool.expert_state("task0"))(images), rtol=1e-4, atol=1e-5)


def test_a_rank_fraction_that_keeps_no_singular_value_leaves_matrices_shared_and_routes_vectors(tmp_path):
    """The tiny encoder's matrices have at most 8 columns: a tenth of that keeps none (the code's int(0.1 x 8))."""
    pool = random_pool(tmp_path, n_experts=2)
    twin = quick_twin(pool, rank_fraction=0.1)
    weights = torch.tensor([[0.3, 0.7]])
    expected = reference_parameters(pool, 0.29, 0.1, weights[0].double().numpy())
    shared = reference_parameters(pool, 0.29, 0.1, np.zeros(2))
    assert np.array_equal(expected["transformer.resblocks.0.mlp.c_fc.weight"],
                          shared["transformer.resblocks.0.mlp.c_fc.weight"])
    images = pool.sample_inputs("task0", "test", 1)
    with torch.no_grad():
        routed = twin.embedding(images, weights)
        reference = pool.encoder({key: torch.from_numpy(value).float() for key, value in expected.items()})(images)
    torch.testing.assert_close(routed, reference, rtol=1e-4, atol=1e-5)


def test_the_router_reads_the_shared_encoder_s_last_hidden_states_averaged_over_tokens(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    twin = quick_twin(pool)
    images = pool.sample_inputs("task0", "test", 5)
    encoder, seen = shared_encoder(pool), []
    encoder.transformer.register_forward_hook(lambda module, args, output: seen.append(output))
    with torch.no_grad():
        encoder(images)
        expected_weights = torch.softmax(twin.router(seen[0].mean(dim=1)), dim=-1)
        torch.testing.assert_close(twin.routing_weights(images), expected_weights, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(twin(images), twin.embedding(images, expected_weights), rtol=1e-5, atol=1e-6)
    assert torch.allclose(expected_weights.sum(dim=-1), torch.ones(5))


def test_an_input_s_output_does_not_depend_on_the_batch_it_comes_in(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    twin = quick_twin(pool, rank_fraction=0.5)
    images = pool.sample_inputs("task0", "test", 6)
    with torch.no_grad():
        torch.testing.assert_close(twin(images)[2:3], twin(images[2:3]), rtol=1e-5, atol=1e-6)


def test_the_router_learns_to_name_the_task_of_separable_features():
    generator = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(4, 16, generator=generator)
    labels = torch.arange(4).repeat_interleave(50)
    features = centres[labels] + torch.randn(200, 16, generator=generator)
    torch.manual_seed(0)
    router = TaskRouter(16, 4)
    train_router(router, features, labels, epochs=50, lr=5e-4, batch_size=64)
    assert not router.training
    with torch.no_grad():
        assert (router(features).argmax(-1) == labels).float().mean() > 0.95


def test_the_router_learns_from_validation_inputs_only_so_the_merge_is_static(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    splits, sample = [], pool._sample_inputs

    def recording(task: str, split: str, n: int, seed: int) -> torch.Tensor:
        splits.append((task, split, n))
        return sample(task, split, n, seed)

    pool._sample_inputs = recording
    TwinMerging(epochs=1, router_inputs=40).merge(pool)
    assert splits == [(task, "validation", 40) for task in pool.tasks] and not pool.test_inputs_read


def test_the_same_seed_trains_the_same_router_and_leaves_the_global_generator_alone(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first, second = (quick_twin(pool, seed=4).router.state_dict() for _ in range(2))
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(first[key], second[key]) for key in first)
    other = quick_twin(pool, seed=5).router.state_dict()
    assert not torch.equal(first["0.weight"], other["0.weight"])


def test_twin_merging_runs_on_the_tiny_zoo(tiny_zoo, tmp_path):
    rows = run_on_tiny_zoo(tiny_zoo, tmp_path, ["twin_merging"])
    assert set(rows["method"]) == {"twin_merging"} and len(rows) == 8 and rows["value"].between(0, 1).all()
