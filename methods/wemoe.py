"""WEMoE (Tang et al., ICML 2024): weight-ensembling mixture of experts.

Every parameter outside the upscaled blocks' MLPs is merged by task arithmetic (scaling `init_lambda`).
Each upscaled block's MLP becomes a `RoutedMLP`: for an input, its weights are the pretrained MLP's plus a
routed sum of the experts' MLP task vectors, the routing weights coming from a small router on the block's
MLP input, averaged over tokens (one weight vector per sample). Only the routers are trained, by the
entropy objective of `methods.adaptation`.

Defaults are those of the WEMoE paper's code (tanganke/weight-ensembling_MoE, src/module/dict_moe.py and its
CLIP script), which produced the paper's ViT-B/32 numbers (bench/published.csv): router Linear(d, d) -> ReLU ->
Linear(d, tasks) with weights N(0, 0.01), hidden bias 0 and output bias `init_lambda` = 0.3 (so routing starts at task
arithmetic); Adam lr 1e-4 with a cosine schedule over 1000 steps; 16 test inputs per task per step; every
sample routed on its own. Preset `fusionbench` (FusionBench's wemoe/weight_ensembling_moe.yaml): no
schedule, and routing averaged over each task's batch (`batch_reduce`), which FusionBench uses to stay
affordable. Preset `mini`, the mini suite's compute settings: 50 steps (the suite's step budget, what
`run --all` affords), cosine, at the learning rate of the best mean validation accuracy after those steps among
6e-3, 1e-2 and 2e-2, over the experts of the 8-task table and of both generalization splits, on the shipped zoo's
recipe at seeds 0 and 1 (examples/adaptation_settings.py, adapting on validation inputs): 2e-2 is best on the 8
tasks alone but worst over all six, and 4e-2 diverges. No test image or accuracy entered the choice.
Routed per sample, a router sees one input, whose features do not always tell its task;
routed by batches of one task's inputs (`routing=batch`, as FusionBench does) it sees many; and routing fixed to
the right expert is the oracle bound: examples/wemoe_routing.py measures all three.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from core.errors import BenchError
from core.pool import ModelPool
from methods.adaptation import AdaptiveMethod, AdaptiveModel
from methods.base import Merged

MLP_PARAMETERS = ("c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias")


class Router(nn.Module):
    """Routing weights, one per task, for each sample: a per-token MLP of `depth` linear layers, averaged over
    tokens. Depth 0 is a learned constant (no input dependence), as in the WEMoE code."""

    def __init__(self, width: int, n_tasks: int, depth: Literal[0, 1, 2], init_lambda: float,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.depth = depth
        if depth == 0:
            self.constant = nn.Parameter(torch.full((n_tasks,), init_lambda))
            return
        layers: list[nn.Module] = []
        if depth == 2:
            hidden = nn.Linear(width, width)
            nn.init.normal_(hidden.weight, std=0.01, generator=generator)
            nn.init.zeros_(hidden.bias)
            layers += [hidden, nn.ReLU()]
        output = nn.Linear(width, n_tasks)
        nn.init.normal_(output.weight, std=0.01, generator=generator)
        nn.init.constant_(output.bias, init_lambda)
        self.layers = nn.Sequential(*layers, output)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, width) -> (batch, tasks); (1, tasks) for depth 0."""
        if self.depth == 0:
            return self.constant.unsqueeze(0)
        return self.layers(hidden).mean(dim=1)


class RoutedMLP(nn.Module):
    """A transformer block's MLP whose weights are pretrained + sum_t routing[t] * task_vector[t], per sample.

    Fast path. Exactly, each sample needs its own weights. Applying the k = tasks + 1 weight sets to every
    token and mixing the outputs costs k x tokens weight-sized products per sample; mixing the weights first
    (one matmul over the k sets) and applying them once costs k + tokens, so that is what runs, batched
    with bmm, `chunk` samples at a time so the mixed weights in memory stay bounded. Under autograd, where the
    whole batch's mixed weights would exceed `memory_budget` (a ViT-B/32 MLP's are 19 MB per sample), each chunk
    is checkpointed: its mixed weights are recomputed in the backward pass instead of kept. Where they fit (the
    mini suite's, 0.3 MB per sample) they are kept, which saves the recomputation. Timings: docs/performance.md.
    When one coefficient vector serves the whole batch (batch routing, or a depth-0 router) the weights are mixed
    once and the MLP runs dense.
    """

    def __init__(self, pretrained: dict[str, torch.Tensor], task_vectors: dict[str, torch.Tensor],
                 activation: nn.Module, router: Router, routing: Literal["sample", "batch"],
                 memory_budget: int = 2**28) -> None:
        super().__init__()

        def stacked(name: str) -> torch.Tensor:  # (k, *shape): pretrained, then each task's vector
            return torch.cat([pretrained[name].unsqueeze(0), task_vectors[name]])

        fc1_weight, fc2_weight = stacked("c_fc.weight"), stacked("c_proj.weight")  # (k, H, D), (k, D, H)
        k, hidden, width = fc1_weight.shape
        self.register_buffer("fc1_weight", fc1_weight.reshape(k, hidden * width))
        self.register_buffer("fc2_weight", fc2_weight.reshape(k, width * hidden))
        self.register_buffer("fc1_bias", stacked("c_fc.bias"))  # (k, H)
        self.register_buffer("fc2_bias", stacked("c_proj.bias"))  # (k, D)
        self.hidden, self.width = hidden, width
        self.activation = activation
        self.router = router
        self.routing = routing
        self.memory_budget = memory_budget
        self.mixed_bytes_per_sample = 2 * hidden * width * fc1_weight.element_size()
        # Samples per chunk: at most 16 (larger chunks gain no speed: docs/performance.md), and two mixed matrices
        # within budget.
        self.chunk = max(1, min(16, memory_budget // self.mixed_bytes_per_sample))

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """(batch or 1, k): 1 for the pretrained weights, then the routing weights of each task."""
        weights = self.router(x)
        if self.routing == "batch":
            weights = weights.mean(dim=0, keepdim=True)
        return torch.cat([torch.ones_like(weights[:, :1]), weights], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coefficients = self.coefficients(x)
        if coefficients.shape[0] == 1:
            return self._mixed(x.reshape(1, -1, self.width), coefficients).view_as(x)
        recompute = torch.is_grad_enabled() and len(x) * self.mixed_bytes_per_sample > self.memory_budget
        outputs = []
        for start in range(0, len(x), self.chunk):
            chunk = (x[start:start + self.chunk], coefficients[start:start + self.chunk])
            outputs.append(checkpoint(self._mixed, *chunk, use_reentrant=False) if recompute else self._mixed(*chunk))
        return torch.cat(outputs)

    def _mixed(self, x: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        """x (n, tokens, D) through the MLP mixed by coefficients (n, k), one mixed MLP per sample."""
        n = len(coefficients)
        fc1 = (coefficients @ self.fc1_weight).view(n, self.hidden, self.width)
        h = torch.baddbmm((coefficients @ self.fc1_bias).unsqueeze(1), x, fc1.transpose(1, 2))
        fc2 = (coefficients @ self.fc2_weight).view(n, self.width, self.hidden)
        return torch.baddbmm((coefficients @ self.fc2_bias).unsqueeze(1), self.activation(h), fc2.transpose(1, 2))

    def per_sample_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The definition, written plainly: for each sample, merge its MLP weights and apply them.

        The oracle that the fast path is tested and timed against.
        """
        coefficients = self.coefficients(x).expand(len(x), -1)
        fc1_weight = self.fc1_weight.view(-1, self.hidden, self.width)
        fc2_weight = self.fc2_weight.view(-1, self.width, self.hidden)
        outputs = []
        for sample, c in zip(x, coefficients):
            fc1 = sum(c_k * w for c_k, w in zip(c, fc1_weight))
            fc2 = sum(c_k * w for c_k, w in zip(c, fc2_weight))
            hidden = self.activation(F.linear(sample, fc1, c @ self.fc1_bias))
            outputs.append(F.linear(hidden, fc2, c @ self.fc2_bias))
        return torch.stack(outputs)


class WEMoEModel(AdaptiveModel):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encoder(inputs)

    def merged(self) -> Merged:
        return self.encoder


class WEMoE(AdaptiveMethod):
    """WEMoE: task arithmetic for shared weights, each block's MLP a routed mix of the experts' task vectors."""

    name = "wemoe"
    title = "WEMoE"
    reference = "https://arxiv.org/abs/2402.00433"
    presets = {
        "fusionbench": {"schedule": "constant", "routing": "batch"},
        "mini": {"steps": 50, "lr": 1e-2},  # the mini suite's budget and validation-chosen lr (docstring above)
    }
    steps: int = 1000
    lr: float = 1e-4
    schedule: Literal["constant", "cosine"] = "cosine"
    init_lambda: float = 0.3
    router_depth: Literal[0, 1, 2] = 2
    routing: Literal["sample", "batch"] = "sample"
    blocks: str = "all"  # which blocks' MLPs are upscaled: "all" or comma-separated indices, e.g. "3,4,5"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.blocks != "all" and not all(part.strip().isdigit() for part in self.blocks.split(",")):
            raise BenchError(f"{self.name}: blocks={self.blocks!r} must be 'all' or comma-separated block indices, "
                             f"e.g. 3,4,5")

    def separate_task_batches(self) -> bool:
        return self.routing == "batch"

    def build(self, pool: ModelPool) -> AdaptiveModel:
        n_blocks = 1 + max(int(key.split(".")[2])
                           for key in pool.parameter_names if key.startswith("transformer.resblocks."))
        upscaled = self._block_indices(n_blocks)
        prefixes = {f"transformer.resblocks.{i}.mlp." for i in upscaled}
        state = {}
        for key in pool.parameter_names:
            pretrained = pool.pretrained_tensor(key)
            if key.rsplit(".", 2)[0] + "." in prefixes:
                state[key] = pretrained
            else:
                state[key] = pretrained + self.init_lambda * sum(pool.task_vector(task, key) for task in pool.tasks)
        encoder = pool.encoder(state).requires_grad_(False)
        width = encoder.transformer.resblocks[upscaled[0]].mlp.c_fc.in_features
        routers = self.routers(upscaled, width, len(pool.tasks))
        for i in upscaled:
            block = encoder.transformer.resblocks[i]
            prefix = f"transformer.resblocks.{i}.mlp."
            task_vectors = {name: self.routed_task_vectors(pool, prefix + name) for name in MLP_PARAMETERS}
            pretrained = {name: pool.pretrained_tensor(prefix + name) for name in MLP_PARAMETERS}
            block.mlp = RoutedMLP(pretrained, task_vectors, block.mlp.gelu, routers[i], self.routing).to(pool.device)
        return WEMoEModel(encoder)

    def routers(self, blocks: list[int], width: int, n_tasks: int) -> dict[int, Router]:
        """The router of each upscaled block: one per block, initialised in block order from the seed."""
        generator = torch.Generator().manual_seed(self.seed)
        return {i: Router(width, n_tasks, self.router_depth, self.init_lambda, generator) for i in blocks}

    def routed_task_vectors(self, pool: ModelPool, key: str) -> torch.Tensor:
        """The experts' task vectors of MLP parameter `key`, stacked along dim 0 in the pool's task order."""
        return torch.stack([pool.task_vector(task, key) for task in pool.tasks])

    def _block_indices(self, n_blocks: int) -> list[int]:
        if self.blocks == "all":
            return list(range(n_blocks))
        indices = sorted({int(part) for part in self.blocks.split(",")})
        if indices[-1] >= n_blocks:
            raise BenchError(f"{self.name}: blocks={self.blocks!r}: this encoder has blocks 0..{n_blocks - 1}")
        return indices
