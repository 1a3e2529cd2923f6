"""AdaMerging (Yang et al., ICLR 2024): task-arithmetic coefficients learned at test time by entropy minimisation.

Merged weights = pretrained + sum over tasks of coefficient x task vector, with one coefficient per task
(task-wise) or per task and parameter tensor (layer-wise, "layer" being each tensor of the state dict, as in
the AdaMerging code). AdaMerging++ does the same on TIES-processed task vectors (trimmed to the top 20% and
sign-resolved, before the disjoint sum).

Defaults are those of the AdaMerging code that produced the published ViT-B/32 numbers (bench/published.csv;
src/main_layer_wise_adamerging.py): coefficients start at the prior 0.3 and are clamped
to [0, 1] in the forward pass, Adam lr 1e-3 with betas (0.9, 0.999), 500 steps, each step two batches of 16
test inputs per task. Preset `fusionbench` (FusionBench's clip_layer_wise_adamerging.yaml): no clamp, 1000
steps, one batch of 16 per task. Preset `mini`, the mini suite's compute settings (the paper's setting is
still climbing there at step 500): 50 steps of one batch per task, the suite's step budget (what `run --all`
affords), at the learning rate of the best mean validation accuracy after those steps among 1e-2, 2e-2, 4e-2
and 8e-2 over the shipped zoo's recipe at seeds 0 and 1 (examples/adaptation_settings.py, layer-wise AdaMerging
adapting on validation inputs; the four variants share it). No test image or accuracy entered the choice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.func import functional_call

from core.pool import ModelPool, StateDict
from methods.adaptation import AdaptiveMethod, AdaptiveModel
from methods.base import Merged, setting
from methods.ties import TiesVectors

PRESETS = {
    "fusionbench": {"clamp": False, "steps": 1000, "batches_per_step": 1},
    # The CPU-sized suite: its step budget, at the learning rate chosen on its validation split (docstring above).
    "mini": {"steps": 50, "lr": 2e-2, "batches_per_step": 1},
}


class CoefficientMerge(AdaptiveModel):
    """pretrained + sum_t coefficient[key, t] * task_vector[t][key], applied functionally at every forward.

    No copy of the model is made per step: the merged tensors are recomputed from the coefficients and fed
    to one frozen encoder with `torch.func.functional_call`, so a step costs one forward and backward.
    """

    def __init__(self, encoder: nn.Module, pretrained: StateDict, task_vectors: dict[str, torch.Tensor],
                 layerwise: bool, prior: float, clamp: bool, build: Callable[[StateDict], nn.Module]) -> None:
        super().__init__()
        self.encoder = encoder.requires_grad_(False)
        self.pretrained = pretrained
        self.task_vectors = task_vectors  # key -> (tasks, *shape)
        first = next(iter(task_vectors.values()))
        shape = (len(task_vectors) if layerwise else 1, len(first))
        self.coefficients = nn.Parameter(torch.full(shape, prior, device=first.device))  # where the vectors are
        self.clamp = clamp
        self._build = build

    def effective_coefficients(self) -> torch.Tensor:
        """(parameter tensors or 1, tasks): the coefficients as applied, clamped to [0, 1] if asked."""
        return self.coefficients.clamp(0.0, 1.0) if self.clamp else self.coefficients

    def state(self) -> StateDict:
        coefficients = self.effective_coefficients().expand(len(self.task_vectors), -1)
        return {key: self.pretrained[key] + torch.tensordot(coefficients[i], vectors, dims=1)
                for i, (key, vectors) in enumerate(self.task_vectors.items())}

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return functional_call(self.encoder, self.state(), (inputs,))

    @contextmanager
    def adaptation_pass(self) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
        """The merged weights computed once for the step's tasks, as leaves that collect each task's gradient;
        on exit their sum goes back to the coefficients in one backward pass through the merge."""
        state = self.state()
        weights = {key: tensor.detach().requires_grad_() for key, tensor in state.items()}
        yield lambda inputs: functional_call(self.encoder, weights, (inputs,))
        used = [key for key, tensor in weights.items() if tensor.grad is not None]
        torch.autograd.backward([state[key] for key in used], [weights[key].grad for key in used])

    def merged(self) -> Merged:
        with torch.no_grad():
            return self._build(self.state())


class AdaMerging(AdaptiveMethod):
    """Base of the four AdaMerging variants (granularity x plain or TIES task vectors)."""

    reference = "https://arxiv.org/abs/2310.02575"
    layerwise: ClassVar[bool]
    presets = PRESETS
    steps: int = 500
    lr: float = 1e-3
    batches_per_step: int = 2
    prior: float = 0.3
    clamp: bool = True

    def build(self, pool: ModelPool) -> AdaptiveModel:
        pretrained = {key: pool.pretrained_tensor(key).to(pool.device) for key in pool.parameter_names}
        vectors = self.task_vectors(pool)
        task_vectors = {key: vectors(key).to(pool.device) for key in pool.parameter_names}
        return CoefficientMerge(pool.encoder(pretrained), pretrained, task_vectors, self.layerwise, self.prior,
                                self.clamp, pool.encoder)

    def task_vectors(self, pool: ModelPool) -> Callable[[str], torch.Tensor]:
        """Per parameter, the task vectors the coefficients weigh, stacked over the pool's tasks."""
        return pool.stacked_task_vectors


class AdaMergingPlus(AdaMerging):
    """AdaMerging++: coefficients on the TIES-processed task vectors (top `keep` by magnitude, sign-resolved)."""

    keep: float = setting(0.2, low=0.0, high=1.0)  # a fraction of each task vector, as in TIES-merging
    trim: Literal["global", "per_tensor"] = "global"

    def task_vectors(self, pool: ModelPool) -> Callable[[str], torch.Tensor]:
        return TiesVectors(pool, self.keep, self.trim)


class TaskwiseAdaMerging(AdaMerging):
    """Task-wise AdaMerging: one coefficient per task, learned on unlabeled test inputs."""

    name = "adamerging_taskwise"
    title = "Task-wise AdaMerging"
    layerwise = False


class LayerwiseAdaMerging(AdaMerging):
    """Layer-wise AdaMerging: one coefficient per task and parameter tensor."""

    name = "adamerging_layerwise"
    title = "Layer-wise AdaMerging"
    layerwise = True


class TaskwiseAdaMergingPlus(AdaMergingPlus):
    """Task-wise AdaMerging++: one coefficient per TIES-processed task vector."""

    name = "adamerging_plus_taskwise"
    title = "Task-wise AdaMerging++"
    layerwise = False


class LayerwiseAdaMergingPlus(AdaMergingPlus):
    """Layer-wise AdaMerging++: one coefficient per task and parameter tensor, on TIES-processed task vectors."""

    name = "adamerging_plus_layerwise"
    title = "Layer-wise AdaMerging++"
    layerwise = True
