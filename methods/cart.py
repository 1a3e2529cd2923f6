"""CART (Choi et al., "Revisiting weight averaging for model merging"): task vectors centred on the average."""

from __future__ import annotations

import torch

from core.pool import ModelPool
from methods.averaging import accumulate, average
from methods.base import Merged, MergeMethod, setting
from methods.lowrank import low_rank


def is_block_matrix(key: str, tensor: torch.Tensor) -> bool:
    """A weight matrix of a transformer block's attention or MLP, the only tensors CART approximates.

    The authors' code takes the keys containing "attn" or "mlp" but neither "ln" nor "bias": in the OpenCLIP
    layout, the attention's in/out projections and the MLP's two linear weights.
    """
    return tensor.ndim == 2 and any(part in ("attn", "mlp") for part in key.split("."))


def cart_merge(experts: list[torch.Tensor], rank_ratio: float, scaling: float) -> torch.Tensor:
    """θ_avg + λ Σ_t LowRank_k(θ_t - θ_avg) for one weight matrix, k = max(1, int(rank_ratio x min(m, n)))."""
    centre = average([expert.float() for expert in experts])
    rank = max(1, int(rank_ratio * min(centre.shape)))
    update = accumulate(low_rank(expert.float() - centre, rank) for expert in experts)
    return update.mul_(scaling).add_(centre)


class Cart(MergeMethod):
    """CART: the weight average plus λ x the sum of each task's low-rank, average-centred task vector.

    As JH-GEECS/CART (src/merging.py, StaticMergeModule, merge_method CART) does it: the attention and MLP
    weight matrices of each block get the low-rank centred vectors; every other parameter is the weight average
    (its centred task vectors, kept whole, sum to zero). Defaults: the authors' 8-task ViT-B/32 configuration
    (configs/CART/ViT-b-32_8_CART.yaml: rank ratio 0.12, λ = prior = 2.0); presets `tasks14` and `tasks20` are
    their 14- and 20-task ones (ViT-b-32_14_CART.yaml, ViT-b-32_20_CART.yaml).
    """

    name = "cart"
    title = "CART"
    reference = "https://arxiv.org/abs/2412.12153"
    presets = {"tasks14": {"rank_ratio": 0.16, "scaling": 1.5}, "tasks20": {"rank_ratio": 0.32, "scaling": 1.9}}
    rank_ratio: float = setting(0.12, above=0.0, high=1.0)  # of each matrix's full rank
    scaling: float = 2.0

    def merge(self, pool: ModelPool) -> Merged:
        def merge(key: str, pretrained: torch.Tensor, experts: list[torch.Tensor]) -> torch.Tensor:
            if is_block_matrix(key, pretrained):
                return cart_merge(experts, self.rank_ratio, self.scaling).to(pretrained.dtype)
            return average(experts)

        return pool.merge_parameters(merge)
