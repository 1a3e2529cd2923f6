"""Sparse WEMoE, E-WEMoE (Shen, Tang, Yang et al. 2024, arXiv 2410.21804): WEMoE with its routed task vectors
pruned by magnitude and one router shared by every upscaled block.

As `methods.wemoe.WEMoE` (task arithmetic for the shared weights, each block's MLP pretrained + a routed sum of
the experts' MLP task vectors, routers trained by entropy on unlabeled test inputs), except:
- pruning: each task's task vector of each MLP parameter (weights and biases alike) keeps only its entries whose
  magnitude exceeds the `tv_prune_ratio` quantile of that tensor's magnitudes (linear interpolation, a strict
  comparison: at ratio 0 the smallest entries go too), the rest set to zero (FusionBench
  fusion_bench/models/sparse_we_moe.py, `_magnitude_prune`, applied per expert MLP by `_module_magnitude_prune`);
- routing: one router, the same module, serves every upscaled block (`shared_router`; FusionBench's `shared_gate`,
  fusion_bench/method/sparse_we_moe/sparse_clip_we_moe.py, `construct_moe_model_sharedgate`), each block still
  routing on its own MLP input. The code's optional layer-index encoding of the router input
  (`position_encoding`) is off by default and not built here; so is its post-adaptation router pruning
  (`post_sparse_gate`).

Defaults are FusionBench's config/method/wemoe/sparse_weight_ensembling_moe.yaml, the authors' configuration:
tv_prune_ratio 0.9, shared gate on, router depth 2, init_lambda 0.3, Adam lr 1e-4 with no schedule, 1000 steps of
16 test inputs per task. That config sets `batch_reduce: true` for the adaptation and its algorithm then sets
`batch_reduce = False` "to enable sample-wise" routing at inference (on the wrapping model, where no MoE module
reads it); routing here is per sample throughout (`routing=sample`, WEMoE's default), the code's stated intent,
and preset `fusionbench` routes by the batch throughout, what the code does. Preset `mini`, the mini suite's
compute settings: 50 steps (the suite's step budget, as WEMoE's), at the learning rate of the best mean validation
accuracy after those steps among 3e-3, 6e-3, 1e-2 and 2e-2 over the shipped zoo's recipe at seeds 0 and 1
(examples/adaptation_settings.py, adapting on validation inputs; WEMoE's grid), no schedule as the code. No test
image or accuracy entered the choice.

Storage: a pruned task vector is counted as its nonzero entries (float32) plus a bit per entry saying where they
are, the bit-packed masks that TALL masks and EMR-Merging are counted with (`methods.base.tensor_parameters`), or
dense where that is smaller; the shared router is counted once.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from core.pool import ModelPool
from methods.adaptation import AdaptiveModel
from methods.base import Merged, setting, stored_parameters, tensor_parameters
from methods.wemoe import RoutedMLP, Router, WEMoE, WEMoEModel


def magnitude_pruned(tensor: torch.Tensor, ratio: float) -> torch.Tensor:
    """`tensor` with the entries whose magnitude is at most the `ratio` quantile of its magnitudes set to zero."""
    magnitude = tensor.abs()
    return tensor * (magnitude > magnitude.flatten().quantile(ratio))


def sparse_parameters(tensor: torch.Tensor) -> float:
    """Float32 parameters that store `tensor`: its nonzero values and a bit-packed mask of where they are, or the
    dense tensor where that is smaller."""
    mask = tensor != 0
    return min(tensor_parameters(tensor), int(mask.sum()) + tensor_parameters(mask))


class SparseRoutedEncoder(nn.Module):
    """The adapted encoder, whose stored size counts each routed task vector as stored sparse."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def stored_parameters(self) -> float:
        """The encoder's parameters and buffers, each routed MLP's task-vector rows (its stacks' rows after the
        pretrained one) counted by `sparse_parameters`, task by task."""
        total = stored_parameters(self.encoder)
        for module in self.encoder.modules():
            if isinstance(module, RoutedMLP):
                for stack in (module.fc1_weight, module.fc2_weight, module.fc1_bias, module.fc2_bias):
                    total += sum(sparse_parameters(row) - tensor_parameters(row) for row in stack[1:])
        return total


class SparseWEMoEModel(WEMoEModel):
    def merged(self) -> Merged:
        return SparseRoutedEncoder(self.encoder)


class SparseWEMoE(WEMoE):
    """E-WEMoE: WEMoE whose routed task vectors are magnitude-pruned per task and tensor, one router for all
    blocks."""

    name = "wemoe_sparse"
    title = "Sparse WEMoE"
    reference = "https://arxiv.org/abs/2410.21804"
    presets = {
        "fusionbench": {"routing": "batch"},
        "mini": {"steps": 50, "lr": 1e-2},  # the mini suite's budget and validation-chosen lr (docstring above)
    }
    schedule: Literal["constant", "cosine"] = "constant"
    tv_prune_ratio: float = setting(0.9, low=0.0, high=1.0)
    shared_router: bool = True

    def build(self, pool: ModelPool) -> AdaptiveModel:
        return SparseWEMoEModel(super().build(pool).encoder)

    def routers(self, blocks: list[int], width: int, n_tasks: int) -> dict[int, Router]:
        if not self.shared_router:
            return super().routers(blocks, width, n_tasks)
        shared = Router(width, n_tasks, self.router_depth, self.init_lambda, torch.Generator().manual_seed(self.seed))
        return dict.fromkeys(blocks, shared)

    def routed_task_vectors(self, pool: ModelPool, key: str) -> torch.Tensor:
        return torch.stack([magnitude_pruned(pool.task_vector(task, key), self.tv_prune_ratio) for task in pool.tasks])
