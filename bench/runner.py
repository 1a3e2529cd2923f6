"""The runner: for each scenario x method x seed, merge, evaluate, and store the rows; skip what is stored."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from tqdm import tqdm

from bench.costs import serving_costs
from bench.evaluation import DEFAULT_EVAL, EVALUATION_VERSION, EvalSettings, evaluate, reserve_batches
from bench.memory import PeakMemory
from bench.merge_checks import check_merged, timed
from bench.results import ResultStore, unit_key
from bench.selection import (
    GRID,
    SWEPT_ON_TEST,
    VALIDATION,
    Grid,
    best,
    check_selectable,
    grid_rows,
    score_grid,
    sweep,
)
from core.pool import ModelPool
from core.versions import code_version, versions_text
from methods.base import Merged, MergeMethod, declared_grids, get_method
from tasks.base import Suite
from tasks.scenarios import Scenario

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MethodSpec:
    """A method as the user asked for it: registry name, preset, `key=value` overrides, and how the settings it
    declares a grid for are chosen: `fixed` (the method's own) or `validation` (see `bench.selection`).

    With no preset named, the preset the suite declares for the method (`Suite.presets`, e.g. `mini`: fewer
    adaptation steps on the CPU-sized suite) is used, else its defaults; the row's label shows which.
    """

    name: str
    preset: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    selection: str = "fixed"
    sweep: bool = False  # with validation selection: also test the grid lines through the chosen point (SWEPT_ON_TEST)

    def build(self, seed: int, suite_presets: Mapping[str, str] | None = None) -> MergeMethod:
        cls = get_method(self.name)
        overrides = dict(self.overrides)
        if "seed" in {f.name for f in dataclasses.fields(cls)}:
            overrides.setdefault("seed", str(seed))
        preset = self.preset if self.preset is not None else (suite_presets or {}).get(self.name)
        return cls.configure(preset, overrides)


def method_specs(requested: list[tuple[str, str | None]], overrides: Mapping[str, dict[str, str]], select: str,
                 every: bool = False, sweep: Collection[str] = ()) -> list[MethodSpec]:
    """A run's specs from the (name, preset) pairs asked for: each method at its fixed settings and/or with the
    settings it declares grids for chosen on validation (`select`: fixed, validation or both), less those the
    user fixed (`overrides`). With `every` (`run --all`) a method with nothing left to search gets no validation
    spec; a method named alone gets one, which planning refuses with its reason. `sweep`: the methods whose search
    is also tested along its lines."""
    specs = []
    for name, preset in requested:
        fixed = dict(overrides.get(name, {}))
        searchable = any(setting not in fixed for setting in declared_grids(get_method(name)))
        if select in ("fixed", "both"):
            specs.append(MethodSpec(name, preset, fixed))
        if select in ("validation", "both") and (searchable or (select == "validation" and not every)):
            specs.append(MethodSpec(name, preset, fixed, selection="validation", sweep=name in sweep))
    return specs


def unit_versions(method: MergeMethod, scenario: Scenario) -> dict[str, int]:
    """The code versions a unit's numbers come from (see core.versions)."""
    return {"method": method.numerics_version(), "scenario": scenario.version, "evaluation": EVALUATION_VERSION}


STAGES = ("setup", "data", "selection", "merge", "adaptation", "evaluation", "report")


@dataclass
class StageTimes:
    """Wall seconds of a run by stage: setup (building the suite: verifying the zoo, converting CLIP experts,
    computing zero-shot heads; planning the units), data (decoding, corrupting), selection (merging and
    evaluating the grid points of settings chosen on validation data, and their sweep on test), merge (static merges),
    adaptation (merges that read test inputs: test-time adaptation), evaluation (checking the merged model
    too) and report (storing each unit's rows, rebuilding the tables). Told apart by what a merge did, never by
    which method it was; in one process they add up to the run's wall time."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    processes: int = 1  # how many processes' seconds are summed here

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def add(self, seconds: dict[str, float]) -> None:
        """Add another process's (or part's) seconds by stage to these."""
        for name, value in seconds.items():
            self.seconds[name] += value

    def summary(self) -> str:
        parts = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.seconds.items())
        summed = f", summed over {self.processes} processes" if self.processes > 1 else ""
        return f"{sum(self.seconds.values()):.0f} s by stage: {parts}{summed}"


@dataclass
class SharedMerge:
    """The last merge that did not read test inputs, kept for the next unit merging the same experts with the
    same settings: static methods merge once for all scenarios (e.g. the eight robustness splits). So are its
    serving costs (see `bench.costs`), measured once for it, and its accuracies on each set of (task, split)
    pairs: a validation-selected unit whose chosen setting is the fixed one tests that model once."""

    key: tuple | None = None
    steps: list[tuple[int | None, Merged, float]] = field(default_factory=list)
    costs: dict[str, float] = field(default_factory=dict)
    scores: dict[tuple, tuple[dict[tuple[str, str], float], float]] = field(default_factory=dict)  # pairs -> acc, s

    def timed_steps(self, key: tuple, method: MergeMethod, pool: ModelPool, eval_every: int | None,
                    times: StageTimes | None = None) -> Iterator[tuple[int | None, Merged, float]]:
        """(step, merged model, seconds in the method so far); evaluation time between steps excluded. The
        method's time goes to `times` (merge or adaptation stage) unless the merge is a reused one."""
        if key == self.key:
            yield from self.steps
            return
        self.key, self.steps, self.costs, self.scores, times = None, [], {}, {}, times or StageTimes()
        merge_s, produced = 0.0, 0
        for (step, merged), seconds in timed(method.merge_steps(pool, eval_every), method):
            merge_s += seconds
            produced += 1
            yield step, merged, merge_s
        times.seconds["adaptation" if pool.test_inputs_read else "merge"] += merge_s
        if produced == 1 and not pool.test_inputs_read:  # only a static merge is kept (intermediates never are)
            self.key, self.steps = key, [(step, merged, merge_s)]


def run_unit(suite: Suite, scenario: Scenario, method: MergeMethod, seed: int, run_id: str, version: str,
             eval_every: int | None = None, shared: SharedMerge | None = None, times: StageTimes | None = None,
             settings: EvalSettings = DEFAULT_EVAL, grid: Grid = (), swept: bool = False) -> list[dict]:
    """Merge (adapting, for adaptive methods), evaluate at each step the method yields, and return the rows.
    With a `grid`, the settings it names are first chosen on validation data (see `selected_unit`); `swept`: the
    grid lines through the chosen point are tested too.

    merge_s is the time spent inside the method up to the step (evaluations excluded; for a merge shared with
    an earlier unit, the time it took there); eval_s that step's evaluation (for a model tested on the same pairs
    by an earlier unit, the time it took there); stored_models and inference_cost those of the final model (see
    `bench.costs`).
    """
    times = times or StageTimes()
    common = {"run_id": run_id, "suite": suite.name, "family": suite.provenance["family"], "scenario": scenario.name,
              "method": method.name, "seed": seed, "metric": "accuracy", "precision": settings.precision,
              "code_version": version}
    searched: list[dict] = []
    if grid:
        with times.stage("selection"):
            method, searched = selected_unit(suite, scenario, method, grid, common, settings, swept)
    pool = suite.pool.subset(scenario.merged_tasks, scenario.test_splits())
    params = json.dumps(dataclasses.asdict(method), sort_keys=True)
    common |= {"label": method.label(chosen=dict(grid)), "preset": method.preset, "params": params,
               "selection": "validation" if grid else "fixed",
               "versions": versions_text(unit_versions(method, scenario))}
    shared = shared or SharedMerge()
    probes = {task: suite.tasks[task].inputs(split, [0]) for task, split in scenario.evaluated}  # see check_merged
    rows: list[dict] = []
    memory = PeakMemory()
    with memory.watch():
        merge_key = (method.name, params, seed, scenario.merged_tasks)
        for step, merged, merge_s in shared.timed_steps(merge_key, method, pool, eval_every, times):
            if shared.key == merge_key and scenario.evaluated in shared.scores:  # this model, tested on these pairs
                accuracies, eval_s = shared.scores[scenario.evaluated]
            else:
                with times.stage("evaluation"):  # the model run on probes: evaluation's time, not the row's eval_s
                    check_merged(method.name, merged, pool, probes)
                start = time.perf_counter()
                accuracies = evaluate(merged, suite.tasks, scenario.evaluated, settings)
                eval_s = time.perf_counter() - start
                times.seconds["evaluation"] += eval_s
            rows += [common | {"task": task, "counterpart": suite.tasks[task].counterpart,
                               "merged": task in scenario.merged_tasks, "split": split, "value": value,
                               "step": step, "merge_s": merge_s, "eval_s": eval_s}
                     for (task, split), value in accuracies.items()]
    if shared.key == merge_key:  # a static merge, kept: so are its scores
        shared.scores.setdefault(scenario.evaluated, (accuracies, eval_s))
    with times.stage("evaluation"):  # the final model's costs (not each grid point's), once per shared merge
        shared.costs = shared.costs or serving_costs(merged, pool, suite, scenario)
    peak = {"peak_rss_mb": memory.peak_mb}
    return [row | shared.costs | peak for row in rows] + [row | peak for row in searched]


def selected_unit(suite: Suite, scenario: Scenario, method: MergeMethod, grid: Grid, common: dict,
                  settings: EvalSettings, swept: bool = False) -> tuple[MergeMethod, list[dict]]:
    """The method at the grid point of best mean validation accuracy over the scenario's merged tasks, and the
    rows that record the search: every point's validation scores and, where `swept`, the test scores along the
    lines through the chosen point (see `bench.selection`)."""
    scored = score_grid(suite, scenario.merged_tasks, method, grid, settings)
    chosen = best(scored).method
    counterparts = {task: suite.tasks[task].counterpart for task in suite.tasks}
    tested = sweep(suite, scenario, chosen, grid, settings) if swept else []
    return chosen, grid_rows(scored + tested, common, counterparts, scenario.merged_tasks)


def load_data(suite: Suite, scenarios: list[Scenario], settings: EvalSettings = DEFAULT_EVAL,
              validation: bool = False) -> None:
    """Check that evaluation batches fit `settings.data_memory`, then decode the splits the scenarios test on (and,
    with `validation`, their merged tasks' validation splits) into the suite's pixel cache, as many as fit (by
    `settings.workers` processes, where more than 0); the others are decoded from their datasets at each read."""
    pairs = list(dict.fromkeys(pair for scenario in scenarios for pair in scenario.evaluated))
    if validation:
        pairs += list(dict.fromkeys((task, VALIDATION) for scenario in scenarios for task in scenario.merged_tasks))
    reserve_batches(suite.tasks, pairs, settings)
    for task, split in pairs:
        suite.tasks[task].load(split, settings.workers)


@dataclass(frozen=True)
class Unit:
    """One unit of work: a method with its settings and seed, on one scenario; stored under `key`. With a `grid`,
    the settings it names are chosen on validation data before the chosen point is tested."""

    key: str
    scenario: Scenario
    method: MergeMethod
    seed: int
    spec: int  # index of the MethodSpec it came from
    grid: Grid = ()
    swept: bool = False  # the grid lines through the chosen point tested too (`run --sweep`)


def requested(suite: Suite, scenarios: list[Scenario], specs: list[MethodSpec], seeds: list[int]) -> list[Unit]:
    """Every unit asked for, each once, method by method (so that a static merge is reused across the scenarios
    that merge its experts). Bad settings fail here, before any work."""
    units = [(scenario, spec.build(seed, suite.presets), seed, index)
             for index, spec in enumerate(specs) for seed in seeds for scenario in scenarios]
    grids = [check_selectable(spec.build(0, suite.presets), spec.overrides) if spec.selection == "validation" else ()
             for spec in specs]
    for scenario in scenarios:
        scenario.test_splits()
    suite.pool.validate()
    asked, repeated = {}, 0
    for scenario, method, seed, index in units:
        swept = bool(grids[index]) and specs[index].sweep and scenario.name in SWEPT_ON_TEST
        selection = {"validation": grids[index]} | ({"sweep": True} if swept else {})
        params = dataclasses.asdict(method) | ({"selection": selection} if grids[index] else {})
        key = unit_key(suite.name, suite.provenance["family"], scenario.name, method.name, params, seed,
                       unit_versions(method, scenario))
        if key in asked:  # a repeated --method, --scenario or --seeds value, or a suite's preset implied and named
            repeated += 1
        else:
            asked[key] = Unit(key, scenario, method, seed, index, grids[index], swept)
    if repeated:
        log.info("%d unit(s) asked for more than once: each runs once", repeated)
    return list(asked.values())


def not_stored(units: list[Unit], store: ResultStore) -> list[Unit]:
    """The units not yet in the store; those in it are logged as skipped, those stored by other code versions
    only as recomputed."""
    todo = []
    for unit in units:
        if store.has(unit.key):
            log.info("skip %s / %s / seed %d: already in %s", unit.scenario.name, unit.method.name, unit.seed,
                     store.path(unit.key))
            continue
        for stale in store.superseded(unit.key):
            log.info("recompute %s / %s / seed %d: %s is of other code versions", unit.scenario.name,
                     unit.method.name, unit.seed, stale)
        todo.append(unit)
    return todo


def plan(suite: Suite, scenarios: list[Scenario], specs: list[MethodSpec], seeds: list[int],
         store: ResultStore) -> list[Unit]:
    """The units asked for (see `requested`) that are not yet in the store."""
    return not_stored(requested(suite, scenarios, specs, seeds), store)


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]


def run(suite: Suite, scenarios: list[Scenario], specs: list[MethodSpec], seeds: list[int], store: ResultStore,
        eval_every: int | None = None, times: StageTimes | None = None, settings: EvalSettings = DEFAULT_EVAL,
        run_id: str | None = None) -> int:
    """Run every missing unit (see `plan`); returns how many were run. Where `times` is given, the run's seconds
    by stage are added to it. `run_id` (in every row; default: a new one) names the invocation, whichever
    processes share its work."""
    times = times or StageTimes()
    with times.stage("setup"):
        todo = plan(suite, scenarios, specs, seeds, store)
    return run_units(suite, todo, store, eval_every, times, settings, run_id)


def run_units(suite: Suite, todo: list[Unit], store: ResultStore, eval_every: int | None = None,
              times: StageTimes | None = None, settings: EvalSettings = DEFAULT_EVAL, run_id: str | None = None) -> int:
    """Run the planned units `todo` (see `run`), storing each as it finishes."""
    times = times or StageTimes()
    for unit, rows in unit_rows(suite, todo, eval_every, times, settings, run_id):
        with times.stage("report"):
            store.write(unit.key, rows)
        log_unit(unit, rows)
    return len(todo)


def unit_rows(suite: Suite, todo: list[Unit], eval_every: int | None, times: StageTimes,
              settings: EvalSettings = DEFAULT_EVAL, run_id: str | None = None) -> Iterator[tuple[Unit, list[dict]]]:
    """Run the planned units `todo`, yielding each with its rows as it finishes: the caller stores them (a Ray
    worker sends them to the driver, which stores every unit)."""
    run_id, version = run_id or new_run_id(), code_version()
    with times.stage("data"):
        load_data(suite, list(dict.fromkeys(unit.scenario for unit in todo)), settings, any(unit.grid for unit in todo))
    shared = SharedMerge()
    for unit in tqdm(todo, desc="units", unit="unit"):
        yield unit, run_unit(suite, unit.scenario, unit.method, unit.seed, run_id, version, eval_every, shared, times,
                             settings, unit.grid, unit.swept)


def log_unit(unit: Unit, rows: list[dict]) -> None:
    """One line for a stored unit: its final mean test accuracy and times."""
    tested = [r for r in rows if r["selection"] != GRID]
    final = [r for r in tested if r["step"] == tested[-1]["step"]]
    mean = sum(r["value"] for r in final) / len(final)
    log.info("%s / %s seed %d: mean accuracy %.1f%%, merge %.1f s, eval %.1f s", unit.scenario.name,
             final[0]["label"], unit.seed, 100 * mean, final[0]["merge_s"], final[0]["eval_s"])
