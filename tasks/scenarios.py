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


def multitask(suite: Suite) -> list[Scenario]:
    """Merge every expert of the suite; test on every task's test split (the papers' Table 1)."""
    tasks = tuple(suite.tasks)
    return [Scenario("multitask", tasks, tuple((task, "test") for task in tasks))]


SCENARIOS: dict[str, Callable[[Suite], list[Scenario]]] = {"multitask": multitask}


def scenarios_for(name: str, suite: Suite) -> list[Scenario]:
    if name not in SCENARIOS:
        raise BenchError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}")
    return SCENARIOS[name](suite)
