"""Test-time adaptation: a merge's few free parameters learned by minimising prediction entropy on unlabeled
test inputs of every merged task, each through its own frozen head (AdaMerging, WEMoE).

The methods differ only in the model they build (`AdaptiveModel`); this module owns the loop: batches drawn
afresh at every step, Adam, an optional cosine schedule, tqdm progress with the current loss, and the
intermediate models the runner evaluates with `--eval-every`. The loss is a sum over tasks, so a step whose
activations would exceed `activation_budget` backpropagates it in parts, a few tasks' batches at a time (at
least one), whose gradients add up to the whole loss's (up to the order of float sums).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar, Literal

import torch
from torch import nn
from tqdm import tqdm

from core.pool import ModelPool
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
        """The forward that one step runs its inputs through, one or more times. Backpropagating each pass's
        loss accumulates the trainable parameters' gradients; they are complete when the block exits."""
        yield self


def saved_bytes_per_input(forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> int:
    """Bytes that autograd keeps for the backward pass per input of `forward`: what a second input adds to one
    input's (tensors saved whatever the batch, such as weights, cancel out)."""
    def saved_bytes(batch: torch.Tensor) -> int:
        sizes: list[int] = []

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            sizes.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            forward(batch)
        return sum(sizes)

    return max(0, saved_bytes(inputs[:2]) - saved_bytes(inputs[:1]))


class AdaptiveMethod(MergeMethod):
    """Base of the methods that adapt on unlabeled test inputs; subclasses build the model to adapt.

    The loss of a step is, summed over tasks and over `batches_per_step` batches of `batch_size` inputs
    each, the mean entropy of the task head's predictions: the objective of the AdaMerging and WEMoE code.
    """

    # Bytes of saved activations one backward pass may hold (a pass's peak is more: temporaries, gradients): a
    # step whose activations exceed it is backpropagated in parts of whole tasks. At ViT-B/32 a task's batch of
    # 2 x 16 inputs saves about 1 GB, so each task is a pass of its own there; the mini suite's steps are one
    # pass. Not a setting (it changes no result beyond the order of float sums).
    activation_budget: ClassVar[int] = 3 * 2**29

    steps: int = setting(500, low=0)  # 0: the merge at its initial coefficients
    lr: float = setting(1e-3, above=0.0)
    batch_size: int = setting(16, low=1)
    batches_per_step: int = setting(1, low=1)
    schedule: Literal["constant", "cosine"] = "constant"
    seed: int = 0

    def build(self, pool: ModelPool) -> AdaptiveModel:
        raise NotImplementedError

    def separate_task_batches(self) -> bool:
        """Whether each task's batch must go through the model alone (when the model mixes a batch's samples)."""
        return False

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
        tasks_per_pass = None
        for step in progress:
            n = self.batch_size * self.batches_per_step
            inputs = {task: pool.test_inputs(task, n, int(torch.randint(2**31, (1,), generator=draws))).to(pool.device)
                      for task in pool.tasks}
            tasks_per_pass = tasks_per_pass or self._tasks_per_pass(model, next(iter(inputs.values())), len(inputs))
            optimizer.zero_grad()
            loss = self._backward(model, heads, inputs, tasks_per_pass)
            optimizer.step()
            scheduler.step()
            progress.set_postfix(entropy=f"{loss:.4f}")
            if every and step % every == 0 and step < self.steps:
                yield step, model.merged()
        merged = model.merged()
        del model, trainable, optimizer, scheduler  # what only the adaptation needs is freed before the evaluation
        yield self.steps, merged

    def _lr_factor(self, step: int) -> float:
        if self.schedule == "constant" or self.steps == 0:
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * step / self.steps))

    def _tasks_per_pass(self, model: AdaptiveModel, inputs: torch.Tensor, n_tasks: int) -> int:
        """How many tasks' batches (`inputs` is one) a backward pass takes: all of them where their activations
        fit `activation_budget`, else as many as fit, at least one."""
        per_task = saved_bytes_per_input(model, inputs) * len(inputs)
        return max(1, min(n_tasks, self.activation_budget // max(1, per_task)))

    def _backward(self, model: AdaptiveModel, heads: dict[str, nn.Module], inputs: dict[str, torch.Tensor],
                  tasks_per_pass: int) -> float:
        """Backpropagate a step's loss, `tasks_per_pass` tasks at a time; its value."""
        tasks, total = list(inputs), 0.0
        with model.adaptation_pass() as forward:
            for start in range(0, len(tasks), tasks_per_pass):
                loss = self._loss(forward, heads, {task: inputs[task] for task in tasks[start:start + tasks_per_pass]})
                loss.backward()
                total += loss.item()
        return total

    def _loss(self, forward: Callable[[torch.Tensor], torch.Tensor], heads: dict[str, nn.Module],
              inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss of some tasks' batches."""
        if self.separate_task_batches():
            features = {task: forward(x) for task, x in inputs.items()}
        else:
            sizes = [len(x) for x in inputs.values()]
            features = dict(zip(inputs, forward(torch.cat(list(inputs.values()))).split(sizes)))
        loss = torch.zeros((), device=next(iter(inputs.values())).device)
        for task, task_features in features.items():
            per_sample = entropy(heads[task](task_features))
            loss = loss + per_sample.view(self.batches_per_step, -1).mean(-1).sum()
        return loss
