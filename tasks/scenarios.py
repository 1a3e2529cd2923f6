"""Scenarios: which experts enter the merge and which (task, split) pairs the merged model is tested on, defined
over the named task groups of `tasks/registry.py`.

A scenario builder (a scenario family) returns one or more scenarios: `family/variant` ones form one table in the
report (e.g. `robustness/motion_blur`); the multitask family's are named by their number of tasks (`multitask-8`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import BenchError
from tasks.base import Suite
from tasks.corruptions import CORRUPTIONS
from tasks.registry import group
from tasks.scenario_names import MULTITASK, scenario_family, task_count_scenario

log = logging.getLogger(__name__)


class ScenarioUnavailable(BenchError):
    """The suite lacks a task the scenario needs."""


@dataclass(frozen=True)
class Scenario:
    name: str
    merged_tasks: tuple[str, ...]
    evaluated: tuple[tuple[str, str], ...]  # (task, split)
    version: int = 1  # of what it merges and tests: bumped by a change that can move its results (core/versions.py)

    def test_splits(self) -> dict[str, str]:
        """Per merged task, the split it is tested on: where test-time adaptation draws its unlabeled inputs."""
        splits: dict[str, str] = {}
        for task, split in self.evaluated:
            if task in self.merged_tasks and splits.setdefault(task, split) != split:
                raise BenchError(f"scenario {self.name!r} tests merged task {task!r} on two splits "
                                 f"({splits[task]}, {split}); make one scenario per split")
        return splits


def by_counterpart(suite: Suite, counterparts: tuple[str, ...]) -> tuple[str, ...]:
    """The suite's tasks standing in for these tasks of the real benchmark, in the order given."""
    names = {task.counterpart: name for name, task in suite.tasks.items()}
    missing = [c for c in counterparts if c not in names]
    if missing:
        raise ScenarioUnavailable(f"suite {suite.name!r} has no task standing in for {', '.join(missing)}")
    return tuple(names[c] for c in counterparts)


# The task-count benchmarks: per number of tasks, the groups that make it, the first the suite covers being merged
# (the 8 tasks of Task Arithmetic and AdaMerging; the 14 and 20 of TALL masks, TSV-M and CART, whose 20 FusionBench's
# TALL20 takes with EMNIST's letters).
TASK_COUNT_GROUPS: dict[int, tuple[str, ...]] = {8: ("8-task",), 14: ("14-task",),
                                                 20: ("20-task", "20-task-fusionbench")}


def covered(suite: Suite, groups: tuple[str, ...]) -> tuple[str, ...] | None:
    """The suite's tasks standing in for the first of `groups` it covers whole, in that group's order; None if none."""
    for name in groups:
        try:
            return by_counterpart(suite, group(name))
        except ScenarioUnavailable:
            continue
    return None


# 2: a suite may test on the first images of its test split (`Suite.test_split`; the mini suite does)
SCENARIO_VERSION = 2


def tested(suite: Suite, tasks: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Each task paired with the suite's test split."""
    return tuple((task, suite.test_split) for task in tasks)


def multitask(suite: Suite) -> list[Scenario]:
    """Merge the experts of each task-count benchmark (8, 14, 20 tasks) the suite covers; test each on its test split.

    The papers' Table 1 (`multitask-8`) and the TALL-masks and TSV-M tables (`multitask-14`, `multitask-20`); a
    suite covering none of them (a custom one) merges all its experts in one scenario, `multitask`."""
    scenarios = []
    for count, groups in TASK_COUNT_GROUPS.items():
        tasks = covered(suite, groups)
        if tasks is not None:
            scenarios.append(Scenario(task_count_scenario(count), tasks, tested(suite, tasks), SCENARIO_VERSION))
    if not scenarios:
        tasks = tuple(suite.tasks)
        scenarios = [Scenario(MULTITASK, tasks, tested(suite, tasks), SCENARIO_VERSION)]
    return scenarios


def robustness(suite: Suite) -> list[Scenario]:
    """Merge the robustness group's experts (Cars, EuroSAT, RESISC45, GTSRB); test on clean and corrupted tests.

    Each corrupted test set is the dataset's own where it ships one, else the suite's test split (the whole test
    split or its first images) corrupted here."""
    tasks, test = by_counterpart(suite, group("robustness")), suite.test_split
    splits = {"clean": {task: test for task in tasks}} | {
        name: {task: suite.tasks[task].corrupted_test_split(name, test) for task in tasks} for name in CORRUPTIONS}
    own = [f"{task}/{split}" for per_task in splits.values() for task, split in per_task.items()
           if split in CORRUPTIONS]
    if own:
        log.info("robustness: %d corrupted test sets are the datasets' own (%s), the others corrupted here",
                 len(own), ", ".join(own))
    # One scenario per split, so that test-time adaptive methods adapt on the inputs they are tested on.
    return [Scenario(f"robustness/{name}", tasks, tuple(per_task.items()), version=SCENARIO_VERSION)
            for name, per_task in splits.items()]


# The (seen, unseen) task groups of the AdaMerging and WEMoE generalization experiments.
GENERALIZATION_SPLITS = (("generalization-1-seen", "generalization-1-unseen"),
                         ("generalization-2-seen", "generalization-2-unseen"))


def generalization(suite: Suite) -> list[Scenario]:
    """Merge the seen tasks' experts only; test on seen and unseen tasks (two splits of the 8 tasks).

    Each split is a pair of task groups, seen and unseen."""
    scenarios = []
    for seen_group, unseen_group in GENERALIZATION_SPLITS:
        seen, unseen = group(seen_group), group(unseen_group)
        seen_tasks, unseen_tasks = by_counterpart(suite, seen), by_counterpart(suite, unseen)
        name = "generalization/unseen-" + "-".join(c.lower() for c in unseen)
        scenarios.append(Scenario(name, seen_tasks, tested(suite, seen_tasks + unseen_tasks), SCENARIO_VERSION))
    return scenarios


SCENARIOS: dict[str, Callable[[Suite], list[Scenario]]] = {
    MULTITASK: multitask, "robustness": robustness, "generalization": generalization}


def scenarios_for(name: str, suite: Suite) -> list[Scenario]:
    """The scenarios of the family `name`, or the one scenario named `name` (`multitask-8`, `robustness/clean`)."""
    family = scenario_family(name)
    if family not in SCENARIOS:
        raise BenchError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)} (or one of their scenarios, "
                         f"such as multitask-8)")
    scenarios = SCENARIOS[family](suite)
    if name == family:
        return scenarios
    chosen = [scenario for scenario in scenarios if scenario.name == name]
    if not chosen:
        raise ScenarioUnavailable(f"suite {suite.name!r} has no scenario {name!r}; its {family} scenarios: "
                                  f"{', '.join(scenario.name for scenario in scenarios)}")
    return chosen


def scenarios_to_run(suite: Suite, names: list[str] | None = None) -> list[Scenario]:
    """The scenarios of `names`, or of every registered scenario family when none is named. A family the suite
    lacks a task for is skipped, with a log line, unless it was named: then its error names the missing task."""
    scenarios = []
    for name in names or SCENARIOS:
        try:
            scenarios += scenarios_for(name, suite)
        except ScenarioUnavailable as error:
            if names:
                raise
            log.info("scenario %s skipped: %s", name, error)
    return scenarios
