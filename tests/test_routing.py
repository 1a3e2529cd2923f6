"""The routing diagnostics (bench.routing) against the weights written out plainly."""

from __future__ import annotations

import torch
from helpers import random_pool
from torch import nn

from bench.routing import own_task_routing, recorded_routing, site_of
from methods.smile import Smile
from methods.twin_merging import TaskRouter


class RouterOnly(nn.Module):
    """A model whose one routing site is a Twin-Merging router reading its inputs."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.router = TaskRouter(4, 3).eval()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.router(features)


def test_sites_are_blocks_or_the_module_itself():
    assert site_of("encoder.transformer.resblocks.11.attn.query") == "block 11"
    assert site_of("transformer.resblocks.2.mlp") == "block 2"
    assert site_of("projection") == "projection" and site_of("router") == "router"


def test_own_task_routing_counts_largest_weights_and_averages_them_per_task():
    model = RouterOnly()
    inputs = [torch.randn(10, 4, generator=torch.Generator().manual_seed(task)) for task in range(3)]
    routing = own_task_routing(model, inputs, batch_size=4)
    assert list(routing) == ["router"]
    stats = routing["router"]
    for task, x in enumerate(inputs):
        with torch.no_grad():
            weights = model(x).softmax(-1)
        others = [weights[:, other] for other in range(3) if other != task]
        assert stats.own_largest[task].item() == (weights.argmax(-1) == task).float().mean().item()
        torch.testing.assert_close(stats.own_weight[task], weights[:, task].mean())
        torch.testing.assert_close(stats.other_weight[task], torch.stack(others).mean())
        torch.testing.assert_close(stats.total[task], torch.tensor(1.0))


def test_smile_records_each_token_s_top_k_weights_in_its_experts_columns(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    merged = Smile(k=2, gate_k=1, top_k=2).merge(pool)
    images = pool.sample_inputs("task0", "test", 5)
    with torch.no_grad(), recorded_routing(merged) as record:
        merged(images)
    assert list(record) == ["block 0", "projection"]
    tokens = 5 * 5  # (8 / 4)^2 patches and the class token, per image
    block = torch.cat(record["block 0"])
    assert block.shape == (6 * tokens, 3)  # q, k, v, output, fc1, fc2
    assert ((block > 0).sum(-1) == 2).all() and torch.allclose(block.sum(-1), torch.ones(len(block)))
    assert torch.cat(record["projection"]).shape == (5, 3)  # the pooled token of each image
