"""RegMean (Jin et al., ICLR 2023): each linear layer merged in closed form from its inputs' Gram matrices."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import BenchError
from core.pool import ModelPool
from methods.averaging import average
from methods.base import Merged, MergeMethod, setting

# Inputs per forward pass while the Gram matrices are accumulated: FusionBench's clip_regmean.yaml
# (dataloader_kwargs.batch_size). Only the rounding of the sums depends on it.
BATCH_SIZE = 32

Grams = dict[str, torch.Tensor]  # per linear weight (its state-dict key), the mean of x xᵀ over its input rows x


def _key(module_name: str, parameter: str) -> str:
    return f"{module_name}.{parameter}" if module_name else parameter


def attention_context(attention: nn.MultiheadAttention, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                      key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The self-attention's output before its out-projection: the out-projection's input.

    nn.MultiheadAttention applies out_proj.weight inside one functional call (the module out_proj is never
    called, so a hook on it never fires); the context is recomputed by that same function with an identity
    out-projection and no bias.
    """
    sequence_first = x.transpose(0, 1) if attention.batch_first else x
    identity = torch.eye(attention.embed_dim, dtype=x.dtype, device=x.device)
    context, _ = F.multi_head_attention_forward(
        sequence_first, sequence_first, sequence_first, attention.embed_dim, attention.num_heads,
        attention.in_proj_weight, attention.in_proj_bias, attention.bias_k, attention.bias_v, attention.add_zero_attn,
        0.0, identity, None, training=False, key_padding_mask=key_padding_mask, need_weights=False, attn_mask=attn_mask)
    return context.transpose(0, 1) if attention.batch_first else context


def _attention_hook(add: Callable[[str, torch.Tensor], None], prefix: str, attention: nn.MultiheadAttention,
                    args: tuple, kwargs: dict[str, Any], output: Any) -> None:
    """Both linear maps of a self-attention: the fused in-projection (x @ in_proj_weightᵀ, so its input is the
    query x) and the out-projection (its input is the attention context)."""
    names = ("query", "key", "value")
    query, key, value = (args[i] if i < len(args) else kwargs.get(name) for i, name in enumerate(names))
    if key is not query or value is not query:
        raise BenchError(f"regmean: attention {prefix or '(root)'} is not self-attention "
                         "(its query, key and value differ)")
    add(_key(prefix, "in_proj_weight"), query)
    add(_key(prefix, "out_proj.weight"), attention_context(attention, query, kwargs.get("attn_mask"),
                                                             kwargs.get("key_padding_mask")))


def _linear_hook(add: Callable[[str, torch.Tensor], None], key: str, linear: nn.Linear, args: tuple,
                 output: torch.Tensor) -> None:
    add(key, args[0])


def gram_matrices(encoder: nn.Module, inputs: torch.Tensor, batch_size: int = BATCH_SIZE) -> Grams:
    """Per linear weight of `encoder` (nn.Linear weights, self-attentions' in_proj_weight and out_proj.weight),
    the mean over its input rows x (every token of every input) of x xᵀ, on `inputs`.

    Accumulated by forward hooks batch by batch, so no activations are stored: memory holds one batch and the
    sums. The mean, not the sum, as RegMean's code and FusionBench's do (regmean_mean): the same merge when
    every task gives as many rows, and tasks with fewer inputs weigh as much as the others otherwise.
    """
    sums: dict[str, torch.Tensor] = {}
    rows: dict[str, int] = {}

    def add(key: str, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float()
        sums[key] = x.T @ x if key not in sums else sums[key].addmm_(x.T, x)
        rows[key] = rows.get(key, 0) + x.shape[0]

    attentions = {name: module for name, module in encoder.named_modules() if isinstance(module, nn.MultiheadAttention)}
    for name, attention in attentions.items():
        if not attention._qkv_same_embed_dim:
            raise BenchError(f"regmean: attention {name or '(root)'} has separate q, k, v projections; only a fused "
                             f"in_proj_weight is supported")
    inside_attention = {id(attention.out_proj) for attention in attentions.values()}
    handles = [attention.register_forward_hook(partial(_attention_hook, add, name), with_kwargs=True)
               for name, attention in attentions.items()]
    handles += [module.register_forward_hook(partial(_linear_hook, add, _key(name, "weight")))
                for name, module in encoder.named_modules()
                if isinstance(module, nn.Linear) and id(module) not in inside_attention]
    try:
        with torch.no_grad():
            for batch in inputs.split(batch_size):
                encoder(batch)
    finally:
        for handle in handles:
            handle.remove()
    return {key: total / rows[key] for key, total in sums.items()}


def reduce_off_diagonal_(gram: torch.Tensor, ratio: float) -> torch.Tensor:
    """In place: the off-diagonal entries multiplied by `ratio`, the diagonal kept (RegMean's α)."""
    diagonal = gram.diagonal().clone()
    gram.mul_(ratio).diagonal().copy_(diagonal)
    return gram


def regmean_weight(gram_sum: torch.Tensor, weighted_sum: torch.Tensor, key: str) -> torch.Tensor:
    """W = (Σ_i G_i)⁻¹ Σ_i G_i W_iᵀ, transposed back to the layer's (out, in) layout; solved in double precision,
    as the summed Gram matrix can be ill-conditioned."""
    try:
        solution = torch.linalg.solve(gram_sum.double(), weighted_sum.double())
    except torch.linalg.LinAlgError:
        raise BenchError(f"regmean: the summed Gram matrix of {key} is singular (too few inputs, or inputs that span "
                         f"no full space); lower ratio or draw more examples") from None
    return solution.T.float().contiguous()


class RegMean(MergeMethod):
    """Per linear layer, the least-squares fit of every expert's outputs on its own inputs (Jin et al., 2023).

    The weight W minimising Σ_i ||X_i Wᵀ - X_i W_iᵀ||², in closed form from each expert's input Gram matrix
    on its task's training inputs; every other parameter averaged.

    Defaults of FusionBench's clip_regmean.yaml (fusion_bench/method/regmean/clip_regmean.py, regmean.py): 256
    training inputs per expert, off-diagonal entries of each Gram matrix multiplied by 0.6
    (reduce_non_diagonal_ratio), every nn.Linear of the vision transformer merged: the attention's q, k, v and
    out projections and the MLP's two layers (here the fused in-projection and the out-projection of each
    nn.MultiheadAttention, and mlp.c_fc and mlp.c_proj). The output projection `proj`, a matrix parameter
    outside any nn.Linear (FusionBench's visual_projection, which it does not merge), is averaged. The ratio is
    fixed: neither FusionBench nor the authors' code (bloomberg/dataless-model-merging, regmean_reduce_nondiag)
    searches it.
    """

    name = "regmean"
    title = "RegMean"
    reference = "https://arxiv.org/abs/2212.09849"
    memoises_per_expert = True  # each expert's Gram matrices
    examples: int = setting(256, low=1)
    ratio: float = setting(0.6, low=0.0, high=1.0)  # the off-diagonal entries' factor (α); 1 keeps them whole
    seed: int = 0  # of the inputs drawn

    def merge(self, pool: ModelPool) -> Merged:
        """The experts' Gram matrices folded one expert at a time into two running sums, Σ_i G_i and
        Σ_i G_i W_iᵀ."""
        gram_sums: dict[str, torch.Tensor] = {}
        weighted_sums: dict[str, torch.Tensor] = {}
        for task in pool.tasks:
            grams = pool.memo(("regmean grams", self.examples, self.seed, task), partial(self.grams, pool, task))
            for key, gram in grams.items():
                gram = reduce_off_diagonal_(gram.clone(), self.ratio)
                weighted = gram @ pool.expert_tensor(task, key).T
                if key in gram_sums:
                    gram_sums[key] += gram
                    weighted_sums[key] += weighted
                else:
                    gram_sums[key], weighted_sums[key] = gram, weighted

        def merge(key: str, pretrained: torch.Tensor, experts: list[torch.Tensor]) -> torch.Tensor:
            if key in gram_sums:
                return regmean_weight(gram_sums[key], weighted_sums[key], key)
            return average(experts)

        return pool.merge_parameters(merge)

    def grams(self, pool: ModelPool, task: str) -> Grams:
        """The expert's own Gram matrices on its task's training inputs: the same whichever experts it is merged
        with, so the pool keeps them for every scenario that merges this expert (as Fisher merging's Fishers)."""
        encoder = pool.encoder(pool.expert_state(task))
        inputs = pool.sample_inputs(task, "train", self.examples, self.seed).to(pool.device)
        return {key: gram.cpu() for key, gram in gram_matrices(encoder, inputs).items()}
