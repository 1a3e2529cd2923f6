"""Scenarios: which experts enter the merge and which (task, split) pairs the merged model is tested on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.errors import BenchError
from tasks.base import Suite


@dataclass(frozen=True)
class Scenario:
    name: str
    merged_tasks: tuple[str, ...]
    evaluated: tuple[tuple[str, str], ...]  # (task, split)

    def test_splits(self) -> dict[str, str]:
        """Per merged task, the split it is tested on: where test-time adaptation draws its unlabeled inputs."""
        splits: dict[str, str] = {}
        for task, split in self.evaluated:
            if task in self.merged_tasks and splits.setdefault(task, split) != split:
                raise BenchError(f"scenario {self.name!r} tests merged task {task!r} on two splits "
                                 f"({splits[task]}, {split}); make one scenario per split")
        return splits


def multitask(suite: Suite) -> list[Scenario]:
    """Merge every expert of the suite; test on every task's test split (the papers' Table 1)."""
    tasks = tuple(suite.tasks)
    return [Scenario("multitask", tasks, tuple((task, "test") for task in tasks))]


SCENARIOS: dict[str, Callable[[Suite], list[Scenario]]] = {"multitask": multitask}


def scenarios_for(name: str, suite: Suite) -> list[Scenario]:
    if name not in SCENARIOS:
        raise BenchError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}")
    return SCENARIOS[name](suite)
