"""Test-time adaptation: a merge's few free parameters learned by minimising prediction entropy on unlabeled
test inputs of every merged task, each through its own frozen head (AdaMerging, WEMoE).

The methods differ only in the model they build (`AdaptiveModel`); this module owns the loop: batches drawn
afresh at every step, Adam, an optional cosine schedule, tqdm progress with the current loss, and the
intermediate models the runner evaluates with `--eval-every`. Each task's part of a step's loss is
backpropagated on its own, so only one task's activations are held at a time; the gradients add up to those
of the whole loss, up to the order of float sums.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn
from tqdm import tqdm

from bench.pool import ModelPool
from methods.base import Merged, MergeMethod, setting


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of the softmax of each row of `logits`."""
    return -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)


class AdaptiveModel(nn.Module):
    """An encoder whose trainable parameters (requires_grad) are the merge's free parameters."""

    def merged(self) -> Merged:
        """The model as it stands, detached from the adaptation graph, ready to evaluate."""
        raise NotImplementedError

    @contextmanager
    def adaptation_pass(self) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
        """The forward that one step runs each task's inputs through. Backpropagating each task's loss
        accumulates the trainable parameters' gradients; they are complete when the block exits."""
        yield self


class AdaptiveMethod(MergeMethod):
    """Base of the methods that adapt on unlabeled test inputs; subclasses build the model to adapt.

    The loss of a step is, summed over tasks and over `batches_per_step` batches of `batch_size` inputs
    each, the mean entropy of the task head's predictions: the objective of the AdaMerging and WEMoE code.
    """

    steps: int = setting(500, low=0)  # 0: the merge at its initial coefficients
    lr: float = setting(1e-3, above=0.0)
    batch_size: int = setting(16, low=1)
    batches_per_step: int = setting(1, low=1)
    schedule: Literal["constant", "cosine"] = "constant"
    seed: int = 0

    def build(self, pool: ModelPool) -> AdaptiveModel:
        raise NotImplementedError

    def merge(self, pool: ModelPool) -> Merged:
        *_, (_, merged) = self.merge_steps(pool)
        return merged

    def merge_steps(self, pool: ModelPool, every: int | None = None) -> Iterator[tuple[int | None, Merged]]:
        model = self.build(pool)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=self.lr, betas=(0.9, 0.999))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        heads = {task: pool.heads[task].to(pool.device) for task in pool.tasks}
        draws = torch.Generator().manual_seed(self.seed)
        if every and self.steps:  # with no steps, the final model below is the initial one
            yield 0, model.merged()
        progress = tqdm(range(1, self.steps + 1), desc=self.name, unit="step", leave=False)
        for step in progress:
            n = self.batch_size * self.batches_per_step
            inputs = {task: pool.test_inputs(task, n, int(torch.randint(2**31, (1,), generator=draws))).to(pool.device)
                      for task in pool.tasks}
            optimizer.zero_grad()
            loss = self._backward(model, heads, inputs)
            optimizer.step()
            scheduler.step()
            progress.set_postfix(entropy=f"{loss:.4f}")
            if every and step % every == 0 and step < self.steps:
                yield step, model.merged()
        yield self.steps, model.merged()

    def _lr_factor(self, step: int) -> float:
        if self.schedule == "constant" or self.steps == 0:
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * step / self.steps))

    def _backward(self, model: AdaptiveModel, heads: dict[str, nn.Module], inputs: dict[str, torch.Tensor]) -> float:
        """Backpropagate a step's loss, task by task (each task's batch goes through the model alone); its value."""
        total = 0.0
        with model.adaptation_pass() as forward:
            for task, task_inputs in inputs.items():
                loss = self._task_loss(task, forward, heads[task], task_inputs)
                loss.backward()
                total += loss.item()
        return total

    def _task_loss(self, task: str, forward: Callable[[torch.Tensor], torch.Tensor], head: nn.Module,
                   inputs: torch.Tensor) -> torch.Tensor:
        """One task's part of the loss: the mean entropy of its head's predictions over each of its
        `batches_per_step` batches, summed."""
        return entropy(head(forward(inputs))).view(self.batches_per_step, -1).mean(-1).sum()
