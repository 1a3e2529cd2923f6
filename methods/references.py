"""The two references every table carries: the pretrained model and each expert on its own task."""

from __future__ import annotations

from core.pool import ModelPool
from methods.base import Merged, MergeMethod


class Pretrained(MergeMethod):
    """The pretrained encoder with each task's zero-shot head (the table's lower bound)."""

    name = "pretrained"
    title = "Pretrained"

    def merge(self, pool: ModelPool) -> Merged:
        return pool.encoder(pool.pretrained_state())


class Individual(MergeMethod):
    """Each task's own expert (the table's upper bound; no merging)."""

    name = "individual"
    title = "Individual"

    def merge(self, pool: ModelPool) -> Merged:
        return {task: pool.encoder(pool.expert_state(task)) for task in pool.tasks}
