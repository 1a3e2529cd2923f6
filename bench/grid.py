"""The full CLIP grid on paper: every unit `run --all` plans on the CLIP suites, planned without their checkpoints
or data, so that what the grid costs can be counted before anyone downloads it (`bench.grid_costs`).

The grid: each backbone (ViT-B/32, B/16, L/14) and checkpoint family (FusionBench's experts, the task-vectors
ones); every scenario of its 8-task suite (multitask-8, robustness on the clean test sets and 7 corruptions, two
generalization splits: 11 splits) and the 14- and 20-task suites' multitask-14 and multitask-20; every method as
`run --all` plans it (at its fixed settings, and chosen on validation data where it declares a grid); each seed.
A suite on paper has the real suite's tasks (from the task registry) and presets, no data and no model pool:
the scenarios and methods are the ones `run` builds, so the grid follows the code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import methods  # noqa: F401  (registers the built-in methods: the grid has every one)
from bench.runner import MethodSpec, Unit, method_specs, requested
from core.errors import BenchError
from methods.base import REGISTRY
from tasks.base import Suite, Task
from tasks.clip import CLIP_PRESETS
from tasks.hub import CLIP_BACKBONES, CLIP_SUITES
from tasks.scenarios import scenarios_for, scenarios_to_run
from tasks.suites import load_suite

# A suite's name suffix to the scenarios of the grid it runs (None: every scenario family): the 14- and 20-task
# suites add their multi-task scenarios only, the rest being their 8-task suite's.
GRID_SCENARIOS: dict[str, tuple[str, ...] | None] = {"": None, "-tall14": ("multitask-14",),
                                                     "-tall20": ("multitask-20",)}
CHECKPOINT_FAMILIES = {"": "FusionBench", "-task-vectors": "task-vectors"}  # suite name infix -> family
BACKBONES = tuple(CLIP_BACKBONES)


@dataclass(frozen=True)
class GridUnit:
    """One unit of the grid, with the suite (one `run` command) and the backbone and checkpoint family it is of."""

    suite: str
    backbone: str
    family: str
    unit: Unit


def _no_data(*_: object) -> None:
    raise BenchError("a suite on paper (bench.grid) has no data: it only plans")


class _NoPool:
    """A suite on paper's model pool: no checkpoints, so planning (`bench.runner.requested`) has none to check."""

    def validate(self) -> None:
        pass


def paper_suite(name: str) -> Suite:
    """The CLIP suite `name` as `run` plans it: its tasks (named as `tasks.clip` names them) and presets."""
    if name not in CLIP_SUITES:
        raise BenchError(f"unknown CLIP suite {name!r}; valid: {', '.join(CLIP_SUITES)}")
    _, repos = CLIP_SUITES[name]
    tasks = {counterpart.lower(): Task(name=counterpart.lower(), counterpart=counterpart, class_names=(),
                                       load_split=_no_data, to_pixels=_no_data, normalize=_no_data, head=None)
             for counterpart in repos.tasks}
    return Suite(name=name, tasks=tasks, pool=_NoPool(), provenance={"family": name}, presets=CLIP_PRESETS)


def all_method_specs() -> list[MethodSpec]:
    """`run --all`'s methods: every registered one at its fixed settings and, with a grid, chosen on validation."""
    return method_specs([(name, None) for name in REGISTRY], {}, "both", every=True)


def grid_units(seeds: Iterable[int] = (0,), backbones: Iterable[str] = BACKBONES) -> list[GridUnit]:
    """Every unit of the grid (see the module's docstring), suite by suite."""
    specs, seeds = all_method_specs(), list(seeds)
    units = []
    for backbone in backbones:
        for infix, family in CHECKPOINT_FAMILIES.items():
            for suffix, names in GRID_SCENARIOS.items():
                name = f"{backbone}{infix}{suffix}"
                suite = paper_suite(name)
                scenarios = scenarios_to_run(suite) if names is None else [
                    scenario for scenario_name in names for scenario in scenarios_for(scenario_name, suite)]
                units += [GridUnit(name, backbone, family, unit)
                          for unit in requested(suite, scenarios, specs, seeds)]
    return units


def mini_units() -> list[GridUnit]:
    """`run --all`'s units on the mini suite (its shipped zoo), as the reference run planned them: the grid's
    pricing is checked against their stored times."""
    suite = load_suite("mini")
    family = suite.provenance["family"]
    return [GridUnit("mini", "mini", family, unit)
            for unit in requested(suite, scenarios_to_run(suite), all_method_specs(), [0])]
