"""What a planned run will take, unit by unit, from the costs of the units already stored (`run --dry-run`).

A unit's cost is what its stored rows measured: merge_s (the method's time), eval_s (each evaluation's time)
and peak_rss_mb. A planned unit is estimated from the stored units of the same suite, method, settings (seed
aside) and precision: the median merge time plus the median evaluation time per evaluated split times the
splits it evaluates, and the largest peak (a peak is not to be underestimated). Where no such unit is stored the
estimate is unknown, never guessed from another method. Rows do not record the device they were measured on,
so the estimate holds for the machine that ran the stored units.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import os
from collections import defaultdict
from dataclasses import dataclass

import pandas as pd

from bench.parallel import Planned, dealt, part_of
from bench.runner import Unit
from bench.selection import GRID

UNIT_COLUMNS = ["suite", "family", "scenario", "method", "params", "seed", "precision"]  # one stored unit's rows


@dataclass(frozen=True)
class Cost:
    seconds: float  # merge (or adaptation) and evaluation
    peak_mb: float


def settings_key(params: dict) -> str:
    """A method's settings without its seed: units of other seeds cost the same."""
    return json.dumps({key: value for key, value in params.items() if key != "seed"}, sort_keys=True)


def measured_units(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per stored unit: its settings key, merge_s, evaluation seconds per evaluated split, peak_mb."""
    units = []
    rows = rows[rows["selection"] != GRID]  # a grid point's scores are part of its unit's selection, not a unit
    for (suite, _, _, method, params, _, precision), unit in rows.groupby(UNIT_COLUMNS, dropna=False, sort=False):
        evaluations = unit.drop_duplicates("step")  # one eval_s per step evaluated (--eval-every: several)
        splits = len(unit) / len(evaluations)
        units.append({"suite": suite, "method": method, "settings": settings_key(json.loads(params)),
                      "precision": precision, "merge_s": unit["merge_s"].max(),
                      "eval_s_per_split": evaluations["eval_s"].sum() / splits, "peak_mb": unit["peak_rss_mb"].max()})
    return pd.DataFrame(units, columns=["suite", "method", "settings", "precision", "merge_s", "eval_s_per_split",
                                        "peak_mb"])


def estimate(unit: Unit, suite: str, precision: str, measured: pd.DataFrame) -> Cost | None:
    """The unit's cost from the measured units like it (see the module's docstring); None where there is none, and
    for a unit that chooses its settings on validation data (its search's cost is not stored per unit)."""
    if unit.grid:
        return None
    alike = measured[(measured["suite"] == suite) & (measured["method"] == unit.method.name)
                     & (measured["settings"] == settings_key(dataclasses.asdict(unit.method)))
                     & (measured["precision"] == precision)]
    if alike.empty:
        return None
    seconds = alike["merge_s"].median() + alike["eval_s_per_split"].median() * len(unit.scenario.evaluated)
    return Cost(float(seconds), float(alike["peak_mb"].max()))


def seconds_text(seconds: float) -> str:
    """Seconds with the digits that matter at their size: 0.04 s, 3.2 s, 754 s."""
    return f"{seconds:.{2 if seconds < 1 else 1 if seconds < 100 else 0}f} s"


def time_in_processes(part_seconds: list[float], processes: int) -> float:
    """Wall time of parts dealt in this order to whichever of `processes` frees up first (as the run deals them)."""
    finish = [0.0] * processes
    for seconds in part_seconds:
        heapq.heappush(finish, heapq.heappop(finish) + seconds)
    return max(finish)


def machine_memory_mb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


def dry_run_lines(planned: Planned, rows: pd.DataFrame, precision: str) -> list[str]:
    """The table `run --dry-run` prints: one line per planned unit, then the totals."""
    measured = measured_units(rows)
    costs = [estimate(unit, planned.suite.name, precision, measured) for unit in planned.todo]
    labels = [unit.method.label() for unit in planned.todo]
    scenario_width = max([len("scenario")] + [len(unit.scenario.name) for unit in planned.todo])
    label_width = max([len("method")] + [len(label) for label in labels])
    lines = [f"{'scenario':<{scenario_width}}  {'method':<{label_width}}  seed  {'time':>9}  {'peak RSS':>11}"]
    for unit, label, cost in zip(planned.todo, labels, costs):
        time, peak = (seconds_text(cost.seconds), f"{cost.peak_mb:,.0f} MiB") if cost else ("unknown", "unknown")
        lines.append(f"{unit.scenario.name:<{scenario_width}}  {label:<{label_width}}  {unit.seed:>4}  {time:>9}  "
                     f"{peak:>11}")
    known = [cost for cost in costs if cost is not None]
    unknown = len(costs) - len(known)
    lines.append(f"{len(planned.todo)} unit(s) to run, {planned.stored} stored unit(s) skipped; setup (building the "
                 f"suite, planning): {seconds_text(planned.times.seconds['setup'])}, measured now; decoding the test "
                 f"data: not estimated")
    if not known:
        lines.append("time and memory: unknown (no stored unit of these methods and settings to measure them by)")
        return lines
    summed = sum(cost.seconds for cost in known)
    unknown_note = f", without the {unknown} unknown" if unknown else ""
    lines.append(f"time: {seconds_text(summed)} summed over the units{unknown_note} (a static merge that scenarios "
                 f"share counts in each)" + _processes_note(planned, costs))
    lines.append(f"memory: largest peak resident memory {max(cost.peak_mb for cost in known):,.0f} MiB per process, "
                 f"{planned.processes} process(es), of this machine's {machine_memory_mb():,.0f} MiB")
    return lines


def _processes_note(planned: Planned, costs: list[Cost | None]) -> str:
    """The time with the run's processes, where every unit's cost is known."""
    if planned.processes == 1 or None in costs:
        return ""
    by_part: dict[tuple[int, int, str], float] = defaultdict(float)
    for unit, cost in zip(planned.todo, costs):
        by_part[part_of(unit)] += cost.seconds
    in_processes = time_in_processes([by_part[part] for part in dealt(planned.todo)], planned.processes)
    return f"; about {seconds_text(in_processes)} in {planned.processes} processes"
