"""Fisher merging: each expert's weights averaged with its diagonal Fisher information as the weight."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from core.models import ClassificationHead
from core.pool import ModelPool
from methods.averaging import accumulate
from methods.base import Merged, MergeMethod, setting

Fisher = dict[str, torch.Tensor]

# The most memory one chunk of per-example gradients may take in `exact_fisher`: a ViT-B/32's gradients take
# 350 MB an input, so chunks there hold 6 inputs; small models keep chunks of 32.
PER_EXAMPLE_GRADIENT_BYTES = 2 * 2**30


def exact_fisher(encoder: nn.Module, head: ClassificationHead, inputs: torch.Tensor, chunk: int = 32) -> Fisher:
    """F = mean over inputs of sum_c p_c (d log p_c / d theta)^2, from per-example gradients (the Fisher merging
    paper's estimator: model_merging/fisher.py sums over every class, weighted by the model's own p; no labels).

    Cost: (inputs x classes) per-example backward passes, each class one vmapped pass over a chunk of at most
    `chunk` inputs, fewer where their gradients would exceed PER_EXAMPLE_GRADIENT_BYTES.
    """
    params = {name: p.detach() for name, p in encoder.named_parameters()}
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    gradient_bytes = sum(p.numel() * p.element_size() for p in params.values())
    chunk = max(1, min(chunk, PER_EXAMPLE_GRADIENT_BYTES // gradient_bytes))

    def log_prob(theta: dict[str, torch.Tensor], x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        logits = head(functional_call(encoder, theta, (x.unsqueeze(0),)))
        return F.log_softmax(logits, -1)[0, c]

    per_example_grad = vmap(grad(log_prob), in_dims=(None, 0, None))
    # The math attention kernel has vmap batching rules; the fused CPU kernel falls back to a slow loop.
    with sdpa_kernel(SDPBackend.MATH):
        for start in range(0, len(inputs), chunk):
            x = inputs[start:start + chunk]
            with torch.no_grad():
                probs = F.softmax(head(encoder(x)), -1)
            for c in range(probs.shape[1]):
                grads = per_example_grad(params, x, torch.tensor(c))
                for name, g in grads.items():
                    weight = probs[:, c].reshape(-1, *([1] * (g.ndim - 1)))
                    fisher[name] += (weight * g.square()).sum(0)
    return {name: f / len(inputs) for name, f in fisher.items()}


def squared_batch_gradients(encoder: nn.Module, head: ClassificationHead, inputs: torch.Tensor, batch_size: int,
                            objective: Callable[[torch.Tensor], torch.Tensor]) -> Fisher:
    """Per batch, the square of the gradient of `objective` (of the batch's logits), summed, over the inputs.

    Cost: one forward and backward pass per input, in batches; memory: one gradient set and one batch.
    """
    fisher = {name: torch.zeros_like(p) for name, p in encoder.named_parameters()}
    for start in range(0, len(inputs), batch_size):
        encoder.zero_grad()
        objective(head(encoder(inputs[start:start + batch_size]))).backward()
        for name, p in encoder.named_parameters():
            fisher[name] += p.grad.square()
    return {name: f / len(inputs) for name, f in fisher.items()}


def batch_gradient_fisher(encoder: nn.Module, head: ClassificationHead, inputs: torch.Tensor,
                          batch_size: int = 32) -> Fisher:
    """FusionBench's estimate: per batch, the square of the gradient of sum_i sum_c sqrt(p_ic) log p_ic.

    Cross-example terms do not cancel, so this is not the diagonal Fisher; it is what produced FusionBench's
    published Fisher-merging numbers (fusion_bench/method/fisher_merging/clip_fisher_merging.py).
    """
    def objective(logits: torch.Tensor) -> torch.Tensor:
        return (F.softmax(logits, -1).detach().sqrt() * F.log_softmax(logits, -1)).sum()

    return squared_batch_gradients(encoder, head, inputs, batch_size, objective)


def sampled_fisher(encoder: nn.Module, head: ClassificationHead, inputs: torch.Tensor, seed: int,
                   batch_size: int = 32) -> Fisher:
    """An unbiased Monte-Carlo estimate of `exact_fisher`: per batch, the square of the gradient of
    sum_i log p_{c_i}(x_i), with each class c_i drawn from the model's own p(. | x_i) (seeded by `seed`).

    Unbiased because a drawn class's score s_i = d log p_{c_i} / d theta has mean sum_c p_c d log p_c / d theta
    = d (sum_c p_c) / d theta = 0 and the inputs are independent, so the cross terms s_i s_j of the squared sum
    have mean 0 and E[s_i^2] = sum_c p_c (d log p_c / d theta)^2. The cross terms still add variance: batches of
    1 would have the least, at the cost of unbatched passes. Cost: as FusionBench's estimator, one forward and
    backward pass per input whatever the number of classes; memory: one gradient set and one batch.
    """
    generator = torch.Generator().manual_seed(seed)

    def sampled_log_likelihood(logits: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits, -1)
        classes = torch.multinomial(log_probs.detach().exp().cpu(), 1, generator=generator).to(logits.device)
        return log_probs.gather(1, classes).sum()

    return squared_batch_gradients(encoder, head, inputs, batch_size, sampled_log_likelihood)


def fisher_weighted_average(experts: list[torch.Tensor], fishers: list[torch.Tensor]) -> torch.Tensor:
    """sum_i F_i * expert_i / sum_i F_i, accumulated in place: no stacked copy of the experts or Fishers."""
    numerator = fishers[0] * experts[0]
    for fisher, expert in zip(fishers[1:], experts[1:]):
        numerator.addcmul_(fisher, expert)
    return numerator.div_(accumulate(fishers))


def merging_weights(fisher: Fisher, floor: float, floor_by: Literal["clamp", "add"], normalize: bool) -> Fisher:
    """An expert's Fisher as its weight in the average, kept off zero by `floor` and, with `normalize`, scaled to
    a comparable size across experts.

    `clamp`: the Fisher clamped at `floor`, divided by the global L2 norm of the clamped Fisher. `add`, FusionBench's
    merging_with_fisher_weights: `floor` added to the Fisher, divided by the global L2 norm of the Fisher before the
    addition plus `floor` (its other per-expert factors, 1 / K and the sum of the inverse norms, are the same for
    every expert and cancel out of the weighted average).
    """
    floored = {k: f.clamp(min=floor) if floor_by == "clamp" else f + floor for k, f in fisher.items()}
    if not normalize:
        return floored
    norm = global_norm(floored) if floor_by == "clamp" else global_norm(fisher) + floor
    return {k: f / norm for k, f in floored.items()}


def global_norm(tensors: Fisher) -> torch.Tensor:
    """The L2 norm of all the tensors' entries together."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors.values()]))


def fisher_merge(pool: ModelPool, fishers: Mapping[str, Fisher]) -> nn.Module:
    """The experts of `pool` averaged with their Fishers (per task, per parameter) as weights, streamed."""
    return pool.merge_parameters(
        lambda key, pretrained, experts: fisher_weighted_average(experts, [fishers[task][key] for task in pool.tasks]))


class FisherMerging(MergeMethod):
    """Fisher-weighted average of the experts (Matena & Raffel, 2022).

    Defaults of FusionBench's fisher_merging config: 256 training inputs per expert, floor 1e-6, each expert's
    Fisher divided by its global L2 norm. `estimator="exact"` computes the diagonal Fisher from per-example
    gradients, as the paper's code does, at (inputs x classes) backward passes; `floor_by="clamp"` clamps it at
    the floor. `sampled` estimates the same Fisher without bias at one backward pass per input (see
    `sampled_fisher`): preset `sampled`, which the CLIP suites run, since their heads have up to 397 classes. Preset
    `fusionbench` does as the code behind FusionBench's tables: squares batch-summed gradients and adds the floor
    (see `merging_weights`).
    """

    name = "fisher_merging"
    title = "Fisher Merging"
    reference = "https://arxiv.org/abs/2111.09832"
    presets = {"fusionbench": {"estimator": "batch_gradient", "floor_by": "add"}, "sampled": {"estimator": "sampled"}}
    memoises_per_expert = True
    examples: int = setting(256, low=1)
    estimator: Literal["exact", "sampled", "batch_gradient"] = "exact"
    floor: float = setting(1e-6, above=0.0)  # where every expert's Fisher is 0, a floor of 0 would divide 0 by 0
    floor_by: Literal["clamp", "add"] = "clamp"
    normalize: bool = True
    seed: int = 0  # of the inputs drawn and, for `sampled`, of the classes drawn

    def merge(self, pool: ModelPool) -> Merged:
        settings = ("fisher", self.estimator, self.examples, self.seed, self.floor, self.floor_by, self.normalize)
        fishers = {task: pool.memo((*settings, task), partial(self.fisher, pool, task)) for task in pool.tasks}
        return fisher_merge(pool, fishers)

    def fisher(self, pool: ModelPool, task: str) -> Fisher:
        """The expert's own Fisher on its task's training inputs: the same whichever experts it is merged with,
        so the pool keeps it for every scenario that merges this expert."""
        estimate = {"exact": exact_fisher, "sampled": partial(sampled_fisher, seed=self.seed),
                    "batch_gradient": batch_gradient_fisher}[self.estimator]
        encoder = pool.encoder(pool.expert_state(task))
        inputs = pool.sample_inputs(task, "train", self.examples, self.seed).to(pool.device)
        fisher = {k: f.cpu() for k, f in estimate(encoder, pool.heads[task].to(pool.device), inputs).items()}
        return merging_weights(fisher, self.floor, self.floor_by, self.normalize)
