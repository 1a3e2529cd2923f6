"""Scenario names, read without building a suite (the report reads them off stored rows): the family a scenario
belongs to, and the number of tasks a multi-task scenario's name states."""

from __future__ import annotations

import re

MULTITASK = "multitask"  # the family, and the one scenario of a suite covering no task-count benchmark
EIGHT_TASKS = "multitask-8"  # the 8-task table of Task Arithmetic, TIES-Merging, AdaMerging and WEMoE
_TASK_COUNT = re.compile(rf"{MULTITASK}-(\d+)")


def task_count_scenario(count: int) -> str:
    """The name of the multi-task scenario merging the `count` tasks of a task-count benchmark."""
    return f"{MULTITASK}-{count}"


def stated_task_count(name: str) -> int | None:
    """The number of tasks in the scenario's name (14 for `multitask-14`); None for any other name."""
    match = _TASK_COUNT.fullmatch(name)
    return int(match.group(1)) if match else None


def scenario_family(name: str) -> str:
    """The family of a scenario: `multitask` for `multitask-14`, `robustness` for `robustness/clean`."""
    return MULTITASK if stated_task_count(name) is not None else name.split("/")[0]
