"""Sparse WEMoE (E-WEMoE): its pruning and routed forward against plainly written ones, the shared router, what it
stores, and a run on the tiny zoo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import random_pool

from bench.cli import main
from bench.costs import stored_models
from bench.results import ResultStore
from core.errors import BenchError
from core.models import EncoderConfig
from methods.wemoe import WEMoE
from methods.wemoe_sparse import SparseWEMoE, magnitude_pruned

TWO_BLOCKS = EncoderConfig(image_size=8, patch_size=4, width=8, layers=2, heads=2, embed_dim=4)
MLP = ("c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias")


def plainly_pruned(vector: np.ndarray, ratio: float) -> np.ndarray:
    """Zero every entry whose magnitude is not above the ratio quantile of the magnitudes, the quantile interpolated
    linearly between the sorted magnitudes."""
    magnitudes = np.sort(np.abs(vector).ravel())
    position = ratio * (len(magnitudes) - 1)
    below, fraction = int(np.floor(position)), position - np.floor(position)
    upper = magnitudes[min(below + 1, len(magnitudes) - 1)]
    threshold = magnitudes[below] + fraction * (upper - magnitudes[below])
    return np.where(np.abs(vector) > threshold, vector, 0.0)


def plain_routed_mlp(x: np.ndarray, router: list[np.ndarray], pretrained: dict[str, np.ndarray],
                     vectors: dict[str, list[np.ndarray]]) -> np.ndarray:
    """Per sample: w = mean over tokens of W2 relu(W1 h + b1) + b2; each MLP weight = pretrained + Σ_t w_t τ_t;
    then c_proj(gelu(c_fc(h)))."""
    w1, b1, w2, b2 = router
    outputs = []
    for sample in x:
        weights = (np.maximum(sample @ w1.T + b1, 0) @ w2.T + b2).mean(0)
        merged = {name: pretrained[name] + sum(w * v for w, v in zip(weights, vectors[name])) for name in MLP}
        hidden = torch.nn.functional.gelu(torch.from_numpy(sample @ merged["c_fc.weight"].T + merged["c_fc.bias"]))
        outputs.append(hidden.numpy() @ merged["c_proj.weight"].T + merged["c_proj.bias"])
    return np.stack(outputs)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.9, 1.0])
def test_pruning_keeps_the_entries_above_the_ratio_quantile_of_magnitudes(ratio):
    vector = torch.randn(7, 5, dtype=torch.float64)
    vector[0, :3] = torch.tensor([0.5, -0.5, 0.5])  # ties at one magnitude
    np.testing.assert_allclose(magnitude_pruned(vector, ratio).numpy(), plainly_pruned(vector.numpy(), ratio))


def test_each_tasks_mlp_task_vectors_are_pruned_tensor_by_tensor(tmp_path):
    pool = random_pool(tmp_path, config=TWO_BLOCKS)
    encoder = SparseWEMoE(steps=0, tv_prune_ratio=0.7).build(pool).encoder
    for block in (0, 1):
        mlp = encoder.transformer.resblocks[block].mlp
        stacks = {"c_fc.weight": mlp.fc1_weight, "c_fc.bias": mlp.fc1_bias,
                  "c_proj.weight": mlp.fc2_weight, "c_proj.bias": mlp.fc2_bias}
        for name, stack in stacks.items():
            key = f"transformer.resblocks.{block}.mlp.{name}"
            for row, task in zip(stack[1:], pool.tasks):
                expected = plainly_pruned(pool.task_vector(task, key).numpy(), 0.7)
                np.testing.assert_allclose(row.numpy(), expected.ravel(), rtol=0, atol=0)


def test_one_router_serves_every_block_unless_shared_router_is_off(tmp_path):
    pool = random_pool(tmp_path, config=TWO_BLOCKS)
    shared = SparseWEMoE(steps=0).build(pool).encoder.transformer.resblocks
    assert shared[0].mlp.router is shared[1].mlp.router
    own = SparseWEMoE(steps=0, shared_router=False).build(pool).encoder.transformer.resblocks
    assert own[0].mlp.router is not own[1].mlp.router
    wemoe = WEMoE(steps=0).build(pool).encoder.transformer.resblocks  # a router per block, as WEMoE's
    for block in (0, 1):
        for mine, theirs in zip(own[block].mlp.router.parameters(), wemoe[block].mlp.router.parameters()):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


def test_adaptation_moves_the_one_shared_router_and_lowers_the_entropy(tmp_path):
    pool = random_pool(tmp_path, spread=0.3, config=TWO_BLOCKS)
    method = SparseWEMoE(steps=30, lr=1e-2)

    def entropy(encoder) -> float:
        with torch.no_grad():
            logits = [pool.heads[task](encoder(pool.test_inputs(task, 64, 0))) for task in pool.tasks]
        return sum(-(z.softmax(-1) * z.log_softmax(-1)).sum(-1).mean().item() for z in logits)

    initial = method.build(pool).merged()
    *_, (step, merged) = method.merge_steps(pool)
    assert step == 30 and entropy(merged) < 0.9 * entropy(initial)
    blocks = merged.encoder.transformer.resblocks
    assert blocks[0].mlp.router is blocks[1].mlp.router
    start = initial.encoder.transformer.resblocks[0].mlp.router.parameters()
    assert all(not torch.equal(moved, before) for moved, before in zip(blocks[0].mlp.router.parameters(), start))


def test_routed_forward_is_pretrained_plus_routed_sum_of_pruned_task_vectors(tmp_path):
    pool = random_pool(tmp_path, config=TWO_BLOCKS)
    encoder = SparseWEMoE(steps=0, tv_prune_ratio=0.5).build(pool).encoder
    generator = torch.Generator().manual_seed(1)
    router = encoder.transformer.resblocks[0].mlp.router
    for parameter in router.parameters():  # routing that differs from sample to sample
        parameter.data = 0.5 * torch.randn(parameter.shape, generator=generator)
    plain_router = [p.detach().numpy().astype(np.float64) for p in router.parameters()]
    x = torch.randn(3, 5, TWO_BLOCKS.width, generator=generator)
    for block in (0, 1):
        prefix = f"transformer.resblocks.{block}.mlp."
        pretrained = {name: pool.pretrained_tensor(prefix + name).double().numpy() for name in MLP}
        vectors = {name: [plainly_pruned(pool.task_vector(task, prefix + name).double().numpy(), 0.5)
                          for task in pool.tasks] for name in MLP}
        with torch.no_grad():
            got = encoder.transformer.resblocks[block].mlp(x)
        expected = plain_routed_mlp(x.double().numpy(), plain_router, pretrained, vectors)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_stored_size_counts_nonzeros_and_a_bit_per_entry_of_each_pruned_task_vector(tmp_path):
    pool = random_pool(tmp_path, n_experts=8, config=TWO_BLOCKS)
    merged = SparseWEMoE(steps=0).merge(pool)
    width, tasks = TWO_BLOCKS.width, 8
    router = width * width + width + width * tasks + tasks  # one, shared
    vectors = 0.0
    for key in pool.parameter_names:
        if ".mlp." in key:
            for task in pool.tasks:
                kept = np.count_nonzero(plainly_pruned(pool.task_vector(task, key).numpy(), 0.9))
                numel = pool.task_vector(task, key).numel()
                vectors += min(numel, kept + numel / 32)
    expected = (pool.parameter_count + vectors + router) / pool.parameter_count
    assert stored_models(merged, pool) == pytest.approx(expected)
    dense = WEMoE(steps=0).merge(pool)
    assert stored_models(merged, pool) < 0.5 * stored_models(dense, pool)


def test_a_prune_ratio_outside_zero_to_one_is_refused():
    with pytest.raises(BenchError, match="wemoe_sparse: tv_prune_ratio=1.5"):
        SparseWEMoE.configure(overrides={"tv_prune_ratio": "1.5"})


def test_wemoe_sparse_runs_on_the_tiny_zoo(tiny_zoo, tmp_path):
    assert main(["run", "--method", "wemoe_sparse", "--param", "wemoe_sparse.steps=3", "--scenario", "multitask",
                 "--zoo", str(tiny_zoo), "--results", str(tmp_path / "results")]) == 0
    rows = ResultStore(tmp_path / "results").load()
    assert set(rows["method"]) == {"wemoe_sparse"} and rows["value"].between(0, 1).all()
    assert len(rows) == 8
