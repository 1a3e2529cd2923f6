"""SMILE (Tang et al. 2024): every linear layer a sparse mixture of the experts' low-rank updates, built without data.

For each linear layer with pretrained weight W0 and bias b0, each expert i contributes its update ΔW_i (expert
minus pretrained) truncated by SVD to rank k, U_i S_i V_iᵀ, and its full bias update Δb_i. Each input row x
(every token of every image, independently) is routed by how much of it lies in each expert's top input
singular subspace: r_i(x) = ||V_i[:, :gate_k]ᵀ x||₂, p = softmax(r); the top_k experts are kept, their p_i
renormalised to sum 1 (w_i), and the layer computes W0 x + b0 + Σ_{i in top_k} w_i (U_i S_i V_iᵀ x + Δb_i).
Nothing is trained and no data is read.

As FusionBench implements it for CLIP (tanganke/fusion_bench, fusion_bench/method/smile_upscaling/
smile_upscaling.py with fusion_bench/models/smile_moe/linear_from_module.py, SmileMoELinear and SmileGate):
- every nn.Linear of the image encoder is upscaled: in HF's CLIP the attention's q, k, v and output projections
  and the MLP's fc1 and fc2, each with its own router. Here the attention's packed in-projection is split into
  its q, k and v parts, each upscaled on its own; the output projection `proj` (a bias-free linear map, HF's
  visual_projection) is upscaled too, so every linear map the experts fine-tuned is routed;
- a layer whose experts' weights all equal the pretrained one stays the pretrained layer (ExpertNotTrainedError);
- every other parameter (patch embedding, class and positional embeddings, layer norms) stays the pretrained
  model's (`average_experts: false`, config/method/smile_upscaling/smile_upscaling.yaml);
- routing on the update's singular vectors (`routing_use_diff: true`), no softmax temperature;
- defaults k = 32 and gate_k = 16: the CLIP-ViT-B/32 eight-task run of examples/smile_upscaling/
  clip-vit-base-patch32.sh (its "Example Usage", and the base setting of the top-k ablation,
  examples/smile_upscaling/clip-vit-base-patch32-ablations-topk.ipynb); top_k = 1: config/method/smile_upscaling/
  smile_upscaling.yaml, which that script leaves unchanged. Preset `fusionbench`: the yaml's own gate_k = 1, k = 128.
A rank larger than a matrix's smaller side keeps its whole update (the code's k = -1, "dense", as a function).

The authors chose k and gate_k from a grid (gate_k 1..768 x k 4..128 and dense, clip-vit-base-patch32.sh)
scored on the test sets, not on validation data, so no setting declares a grid here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import BenchError
from core.pool import ModelPool
from methods.base import Merged, MergeMethod, setting
from methods.lowrank import truncated_svd


class SmileLinear(nn.Module):
    """W0 x + b0 plus each input row's top_k experts' low-rank updates, weighted by routing (module docstring).

    The experts' updates are applied one expert at a time to the rows routed to it, so each row costs the
    pretrained layer, the router and top_k rank-k updates, not every expert's."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, updates: torch.Tensor,
                 bias_updates: torch.Tensor | None, rank: int, gate_rank: int, top_k: int) -> None:
        """`updates` (experts, out, in) and `bias_updates` (experts, out): each expert minus the pretrained layer."""
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.top_k = top_k
        ups, downs, gates = [], [], []
        for update in updates:
            u, s, vh = truncated_svd(update, max(rank, gate_rank))
            ups.append(u[:, :rank])
            downs.append(s[:rank, None] * vh[:rank])
            gates.append(vh[:gate_rank])
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.register_buffer("gate", torch.cat(gates))  # (experts x gate_rank, in): each expert's V_iᵀ rows
        self.register_buffer("down", torch.stack(downs))  # (experts, rank, in): S_i V_iᵀ
        self.register_buffer("up", torch.stack(ups))  # (experts, out, rank): U_i
        self.register_buffer("bias_updates", bias_updates)

    @property
    def n_experts(self) -> int:
        return len(self.up)

    def routing(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For rows (n, in): the routing weights (n, top_k), summing to 1 per row, and the experts they weight."""
        logits = F.linear(rows, self.gate).view(len(rows), self.n_experts, -1).norm(dim=-1)
        weights, experts = logits.softmax(dim=-1).topk(self.top_k, dim=-1)
        return weights / weights.sum(dim=-1, keepdim=True), experts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        weights, experts = self.routing(rows)
        output = F.linear(rows, self.weight, self.bias)
        for expert in range(self.n_experts):
            routed, slot = torch.nonzero(experts == expert, as_tuple=True)
            if len(routed) == 0:
                continue
            bias_update = None if self.bias_updates is None else self.bias_updates[expert]
            update = F.linear(F.linear(rows[routed], self.down[expert]), self.up[expert], bias_update)
            output.index_add_(0, routed, (update * weights[routed, slot, None]).to(output.dtype))
        return output.view(*x.shape[:-1], self.out_features)


class SmileAttention(nn.Module):
    """Self-attention computed as the blocks' nn.MultiheadAttention computes it (batch first), from four linear
    modules, as HF's CLIP holds them (q, k, v and output projections), so that each can be upscaled on its own."""

    def __init__(self, query: nn.Module, key: nn.Module, value: nn.Module, output: nn.Module, heads: int) -> None:
        super().__init__()
        self.query, self.key, self.value, self.output = query, key, value, output
        self.heads = heads

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, need_weights: bool = False,
                attn_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        """nn.MultiheadAttention's call as open_clip's blocks make it; attention weights are never returned."""
        batch, tokens, width = query.shape

        def heads(x: torch.Tensor) -> torch.Tensor:  # (batch, tokens, width) -> (batch, heads, tokens, head width)
            return x.view(batch, -1, self.heads, width // self.heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(heads(self.query(query)), heads(self.key(key)),
                                                  heads(self.value(value)), attn_mask=attn_mask)
        return self.output(attended.transpose(1, 2).reshape(batch, tokens, width)), None


class ProjectedEncoder(nn.Module):
    """An encoder without its output projection, followed by that projection as a module of its own."""

    def __init__(self, encoder: nn.Module, projection: nn.Module) -> None:
        super().__init__()
        self.encoder, self.projection = encoder, projection

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projection(self.encoder(images))


def plain_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    with torch.device("meta"):
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    layer.load_state_dict({"weight": weight} | ({} if bias is None else {"bias": bias}), assign=True)
    return layer


class Smile(MergeMethod):
    """SMILE: every linear layer routes each token to the top_k experts' rank-k updates; no data, no training."""

    name = "smile"
    title = "SMILE"
    reference = "https://arxiv.org/abs/2408.10174"
    presets = {"fusionbench": {"gate_k": 1, "k": 128}}  # config/method/smile_upscaling/smile_upscaling.yaml
    k: int = setting(32, low=1)  # rank of each expert's update
    gate_k: int = setting(16, low=1)  # rank of each expert's routing subspace
    top_k: int = setting(1, low=1)  # experts per token

    def merge(self, pool: ModelPool) -> Merged:
        if self.top_k > len(pool.tasks):
            raise BenchError(f"smile: top_k={self.top_k} exceeds the {len(pool.tasks)} experts of this pool")
        encoder = pool.encoder(pool.pretrained_state())
        for index, block in enumerate(encoder.transformer.resblocks):
            prefix = f"transformer.resblocks.{index}."
            query, key, value = self.upscaled(pool, prefix + "attn.in_proj_weight", prefix + "attn.in_proj_bias", 3)
            output, = self.upscaled(pool, prefix + "attn.out_proj.weight", prefix + "attn.out_proj.bias")
            block.attn = SmileAttention(query, key, value, output, block.attn.num_heads)
            block.mlp.c_fc, = self.upscaled(pool, prefix + "mlp.c_fc.weight", prefix + "mlp.c_fc.bias")
            block.mlp.c_proj, = self.upscaled(pool, prefix + "mlp.c_proj.weight", prefix + "mlp.c_proj.bias")
        encoder.proj = None
        projection, = self.upscaled(pool, "proj", None, transposed=True)
        return ProjectedEncoder(encoder, projection).to(pool.device)

    def upscaled(self, pool: ModelPool, weight_key: str, bias_key: str | None, parts: int = 1,
                 transposed: bool = False) -> list[nn.Module]:
        """The linear layers stored under `weight_key` (and `bias_key`), split along their outputs into `parts`
        layers (the attention's packed q, k, v), each upscaled, or kept pretrained where no expert changed its
        weight. `transposed`: the weight is stored (in, out), as the output projection is."""

        def read(key: str) -> tuple[torch.Tensor, torch.Tensor]:
            pretrained, updates = pool.pretrained_tensor(key), pool.stacked_task_vectors(key)
            return (pretrained.T, updates.transpose(1, 2)) if transposed else (pretrained, updates)

        weight, updates = read(weight_key)
        bias, bias_updates = read(bias_key) if bias_key is not None else (None, None)
        layers = []
        for part in range(parts):
            rows = slice(part * len(weight) // parts, (part + 1) * len(weight) // parts)
            part_bias = None if bias is None else bias[rows]
            if not updates[:, rows].any():
                layers.append(plain_linear(weight[rows], part_bias))
                continue
            part_bias_updates = None if bias_updates is None else bias_updates[:, rows].contiguous()
            layers.append(SmileLinear(weight[rows].contiguous(), part_bias, updates[:, rows], part_bias_updates,
                                      self.k, self.gate_k, self.top_k))
        return layers
