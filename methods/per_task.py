"""One encoder per task from one shared task vector, a binary mask per task and a rescaler per task: what methods
that know each input's task at inference (TALL masks, EMR-Merging) store to serve every task."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import nn

from core.pool import ModelPool
from methods.base import tensor_parameters


class MaskedTaskModels(Mapping[str, nn.Module]):
    """Task -> pretrained + rescaler_t * (mask_t ⊙ vector), each encoder built when asked for.

    Only the encoder asked for last is kept: evaluation asks for the tasks one after the other, and holding every
    task's encoder would cost one model per task on top of what the method stores (the vector, and a byte per
    entry and task for the masks). Building one is a pass over the parameters, small beside evaluating it.
    """

    def __init__(self, pool: ModelPool, vector: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor],
                 rescalers: Mapping[str, float] | None = None) -> None:
        """`masks[key]` stacks the tasks' boolean masks of parameter `key` along dim 0, in the pool's task order;
        no `rescalers`: each task's masked vector is added unscaled (and no rescaler is stored)."""
        self._pool, self._vector, self._masks = pool, vector, masks
        self._rescalers = None if rescalers is None else dict(rescalers)
        self._built: tuple[str, nn.Module] | None = None

    def task_vector(self, task: str, key: str) -> torch.Tensor:
        """The task's reconstructed task vector of parameter `key`."""
        masked = self._vector[key] * self._masks[key][self._pool.tasks.index(task)]
        return masked if self._rescalers is None else masked * self._rescalers[task]

    def stored_parameters(self) -> float:
        """What building any task's encoder reads: the pretrained weights and the shared vector (float32), each
        task's mask (bits) and rescaler (a float). Both weights are needed: where a task's mask drops an entry of
        the vector, its encoder holds the pretrained value, elsewhere the pretrained value plus the vector's."""
        parts = [*self._vector.values(), *self._masks.values()]
        rescalers = 0 if self._rescalers is None else len(self._rescalers)
        return self._pool.parameter_count + sum(map(tensor_parameters, parts)) + rescalers

    def __getitem__(self, task: str) -> nn.Module:
        if task not in self._pool.tasks:
            raise KeyError(task)
        if self._built is None or self._built[0] != task:
            self._built = None  # the previous encoder freed before the next one is built
            state = {key: self.task_vector(task, key).add_(self._pool.pretrained_tensor(key))
                     for key in self._pool.parameter_names}
            self._built = task, self._pool.encoder(state)
        return self._built[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._pool.tasks)

    def __len__(self) -> int:
        return len(self._pool.tasks)
