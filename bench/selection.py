"""Settings chosen on validation data (`run --select validation`), as the merging papers choose their coefficients.

Each point of a method's search space (its settings' declared grids, see `methods.base.setting`) is merged and
scored by the mean accuracy over the merged tasks' validation splits; the best point (the first in grid order
among equals) is the one the benchmark evaluates on the test sets. Scores are kept for the report: every
point's validation accuracy, and, where a run sweeps (the λ-sweep figure's methods and scenarios), the test
accuracy of the points on the lines through the chosen one (those that differ from it in one setting): those test
numbers are drawn, never used to choose.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.evaluation import DEFAULT_EVAL, EvalSettings, evaluate
from bench.merge_checks import timed
from bench.results import GRID, VALIDATION
from core.errors import BenchError
from methods.base import MergeMethod
from tasks.scenario_names import EIGHT_TASKS, MULTITASK

if TYPE_CHECKING:  # annotations only: `bench.unit_costs` takes the grid's points where `datasets` is missing
    from tasks.base import Suite
    from tasks.scenarios import Scenario

# The scenarios whose grid points may also be tested: the λ-sweep figure's, the 8-task table (or the one multitask
# scenario of a suite covering no task-count group).
SWEPT_ON_TEST = (EIGHT_TASKS, MULTITASK)
# The methods `run` sweeps on test by default: the λ sweeps that the task-arithmetic and TIES papers plot.
DEFAULT_SWEEP = ("task_arithmetic", "ties_merging")

Grid = tuple[tuple[str, tuple[float, ...]], ...]  # (setting, values) in declaration order: hashable, for unit keys


def search_space(method: MergeMethod, fixed: Iterable[str] = ()) -> Grid:
    """The method's search space less the settings fixed by the user (`--param`)."""
    fixed = set(fixed)
    return tuple((name, values) for name, values in method.search_space().items() if name not in fixed)


def check_selectable(method: MergeMethod, fixed: Iterable[str] = ()) -> Grid:
    grid = search_space(method, fixed)
    if not grid:
        raise BenchError(f"{method.name}: no setting to choose on validation data (--select validation); it declares "
                         f"no grid{' beyond the --param settings' if method.search_space() else ''}")
    return grid


def points(grid: Grid) -> list[dict[str, float]]:
    """Every combination of the grid's values, the last setting varying fastest."""
    names = [name for name, _ in grid]
    return [dict(zip(names, values)) for values in itertools.product(*(values for _, values in grid))]


@dataclass(frozen=True)
class Scored:
    """One grid point: the method at that point, and its accuracy per (task, split) with the seconds it took."""

    method: MergeMethod
    accuracies: Mapping[tuple[str, str], float]
    merge_s: float
    eval_s: float

    @property
    def mean(self) -> float:
        return sum(self.accuracies.values()) / len(self.accuracies)


def scores(suite: Suite, merged_tasks: tuple[str, ...], method: MergeMethod, chosen_points: list[dict[str, float]],
           pairs: tuple[tuple[str, str], ...], settings: EvalSettings = DEFAULT_EVAL) -> list[Scored]:
    """Each point's merge of the experts of `merged_tasks`, evaluated on `pairs` (task, split), in the order of
    `chosen_points`. The method merges the points in its own order (`MergeMethod.merges`: work shared between points
    where it can); a point's merge_s is the time its merge took, work shared with later points included. A
    test-time adaptive method adapts on the unlabeled inputs of the splits it is evaluated on."""
    pool = suite.pool.subset(merged_tasks, {task: split for task, split in pairs if task in merged_tasks})
    found: dict[str, Scored] = {}
    for (point, merged), merge_s in timed(method.merges(pool, chosen_points), method):
        start = time.perf_counter()
        accuracies = evaluate(merged, suite.tasks, pairs, settings)
        found[_point_key(point)] = Scored(dataclasses.replace(method, **point), accuracies, merge_s,
                                          time.perf_counter() - start)
    missing = [point for point in chosen_points if _point_key(point) not in found]
    if missing:
        raise BenchError(f"{method.name}: merges() gave no model for the point {missing[0]}")
    return [found[_point_key(point)] for point in chosen_points]


def _point_key(point: dict[str, float]) -> str:
    return json.dumps(point, sort_keys=True)


def score_grid(suite: Suite, merged_tasks: tuple[str, ...], method: MergeMethod, grid: Grid,
               settings: EvalSettings = DEFAULT_EVAL) -> list[Scored]:
    """Every grid point scored on the merged tasks' validation splits; once per process for a given method,
    grid and experts (the robustness scenarios merge the same experts and share it)."""
    key = ("validation grid", method.name, json.dumps(dataclasses.asdict(method), sort_keys=True), grid, merged_tasks)
    pairs = tuple((task, VALIDATION) for task in merged_tasks)
    return suite.pool.memo(key, lambda: scores(suite, merged_tasks, method, points(grid), pairs, settings))


def best(scored: list[Scored]) -> Scored:
    """The highest mean validation accuracy; the first in grid order among equals."""
    return max(scored, key=lambda candidate: candidate.mean)  # max keeps the first of equal keys


def on_lines_through(chosen: MergeMethod, grid: Grid) -> list[dict[str, float]]:
    """The grid points that differ from the chosen one in at most one setting (the chosen one included)."""
    names = [name for name, _ in grid]
    return [point for point in points(grid)
            if sum(point[name] != getattr(chosen, name) for name in names) <= 1]


def grid_rows(scored: list[Scored], common: dict, counterparts: Mapping[str, str],
              merged_tasks: tuple[str, ...]) -> list[dict]:
    """Result rows of scored grid points (selection `grid`, never shown as a table row)."""
    return [common | {"label": s.method.label(), "preset": s.method.preset,
                      "params": json.dumps(dataclasses.asdict(s.method), sort_keys=True), "selection": GRID,
                      "task": task, "counterpart": counterparts[task], "merged": task in merged_tasks, "split": split,
                      "value": value, "step": None, "merge_s": s.merge_s, "eval_s": s.eval_s}
            for s in scored for (task, split), value in s.accuracies.items()]


def sweep(suite: Suite, scenario: Scenario, chosen: MergeMethod, grid: Grid,
          settings: EvalSettings = DEFAULT_EVAL) -> list[Scored]:
    """Test scores of the points on the lines through the chosen one (for the λ-sweep figure)."""
    return scores(suite, scenario.merged_tasks, chosen, on_lines_through(chosen, grid), scenario.evaluated, settings)
