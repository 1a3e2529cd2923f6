"""A run in this process or, with `--jobs N`, its units side by side in N worker processes.

Small models do not keep many cores busy (one process's threads scale poorly on the mini suite's model:
docs/performance.md), so a run spends its cores better on several units at once, each process with its share of the
threads. The work is dealt out in parts of one method, seed and scenario family (multitask, robustness,
generalization), a part's units run in order in one process: a static merge is still made once for the eight
robustness splits. The families merge different sets of experts, so nothing else is shared across parts but what a
method memoises in its pool; a method whose merge is mostly such per-expert work (Fisher merging's Fishers) runs all
its families in one part, which does it once. The run is planned once, in this process (the experts checked there,
the store read there); each worker receives its part's planned units, builds the suite itself (spawned, never
forked, so no half-initialised thread pool is inherited) and writes its units to the result store, whose atomic
per-unit files need no coordination; what one process finished is kept if another fails.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from bench.evaluation import DEFAULT_EVAL, EvalSettings, reserve_batches
from bench.plugins import load_methods
from bench.results import ResultStore
from bench.runner import MethodSpec, StageTimes, Unit, new_run_id, not_stored, requested, run_units
from core.errors import BenchError, Interrupted
from tasks.base import Suite
from tasks.scenarios import scenarios_to_run

if TYPE_CHECKING:
    from bench.ray_executor import RaySettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """What a worker needs to rebuild the run's context: picklable, no tensors."""

    suite_factory: Callable[[], Suite]  # module-level function or partial of one
    results: Path
    eval_every: int | None
    settings: EvalSettings
    run_id: str  # the invocation's, in every row whichever process wrote it


_suite: Suite | None = None  # one per worker process, built on its first job


def _start_worker(threads: int, plugins: list[Path]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent alone decides
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked since spawned (`_sigint_held`)
    _exit_with_parent()
    tqdm.set_lock(threading.RLock())  # not tqdm's default process-shared lock, which a stopped worker would leak
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    load_methods(plugins)


def _exit_with_parent() -> None:
    """End this worker as soon as the process that started it is gone (killed, even by SIGKILL), instead of
    running queued work for nobody and then idling forever."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


@contextmanager
def _sigint_held() -> Iterator[None]:
    """SIGINT blocked in this thread while it spawns workers, which inherit the mask: a Ctrl-C that reaches a
    worker still importing, before `_start_worker` ignores it, stays pending and is then dropped, instead of
    raising KeyboardInterrupt (and a traceback) in the middle of its start. Here it is delivered on leaving.
    The resource tracker is started first: starting it unblocks SIGINT in the thread that starts it."""
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def _environment_of_spawned_processes(**variables: str) -> Iterator[None]:
    """Variables the processes spawned inside see from their start (tqdm reads its own when imported)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value


def worker_suite(job: Job, times: StageTimes) -> Suite:
    """This worker process's suite, built (timed as setup) for its first part and kept for the next."""
    global _suite
    if _suite is None:
        with times.stage("setup"):
            _suite = job.suite_factory()
    return _suite


def _run_part(job: Job, units: list[Unit]) -> dict[str, float]:
    """Run a part's units, as planned by the parent (no planning, no check of the experts here)."""
    times = StageTimes()
    run_units(worker_suite(job, times), units, ResultStore(job.results), job.eval_every, times, job.settings,
              job.run_id)
    return times.seconds


Part = list[Unit]  # the planned units of one method, seed and scenario family, in the order they run


EVERY_FAMILY = "all scenarios"  # the part of a method that memoises per expert (`MergeMethod.memoises_per_expert`)


def part_of(unit: Unit) -> tuple[str, int, str]:
    """The part a unit is run in: its method, seed and scenario family, or every family for a method whose
    per-expert work the pool memoises, so that it is done once. A method's fixed-setting and validation-selected
    units share the part, so that where validation chooses the fixed setting the model is merged and tested once
    (see `bench.runner.SharedMerge`)."""
    family = EVERY_FAMILY if unit.method.memoises_per_expert else unit.scenario.name.split("/")[0]
    return unit.method.name, unit.seed, family


def dealt(units: list[Unit]) -> list[tuple[str, int, str]]:
    """The parts that hold these units (see `part_of`), those with more units first (in the units' order among
    equals): the processes take parts as they free up, so the long ones (the eight robustness splits) must not
    be the last to start, leaving one process to run them while the others idle."""
    sizes = Counter(map(part_of, units))
    return sorted(sizes, key=lambda part: -sizes[part])


def parts_of(units: list[Unit]) -> list[Part]:
    """The units grouped into their (method, seed, scenario family) parts, in the order the parts are dealt
    (`dealt`), each part's units in their planned order."""
    return [[unit for unit in units if part_of(unit) == part] for part in dealt(units)]


def run_in_processes(job: Job, parts: list[Part], jobs: int, plugins: list[Path]) -> StageTimes:
    """Run the parts in `jobs` worker processes; returns the seconds by stage summed over the processes (more
    than the wall time they took). A part that fails raises here once the others have finished. Interrupted
    (KeyboardInterrupt, which SIGTERM raises too), the queued parts are cancelled and the workers stopped at
    once: the units they were running are lost, every stored one is kept."""
    threads = max(1, torch.get_num_threads() // jobs)
    times = StageTimes(processes=jobs)
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(threads, plugins))
    try:
        # the parent's bar counts parts; workers log units. Workers are spawned on submit.
        with _environment_of_spawned_processes(TQDM_DISABLE="1"), _sigint_held():
            futures = [pool.submit(_run_part, job, part) for part in parts]
        failure = None
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"{jobs} processes", unit="part"):
            if future.exception() is not None:
                failure = failure or future.exception()
                continue
            times.add(future.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in multiprocessing.active_children():
            worker.terminate()
        pool.shutdown()  # returns at once now: frees the pool's queues
        raise
    pool.shutdown()
    if failure is not None:
        raise failure
    return times


def auto_jobs(suite: Suite) -> int:
    """Processes for `--jobs auto`: one per torch thread, each single-threaded, for a suite whose units run
    better side by side on the CPU (`Suite.parallel_units`); else one. The results are the same either way;
    the time it saves on the mini suite: docs/performance.md."""
    return torch.get_num_threads() if suite.parallel_units and str(suite.pool.device) == "cpu" else 1


@dataclass
class Planned:
    """A run planned and not started: its suite, store, the units to run and how they are dealt out."""

    suite: Suite
    store: ResultStore
    todo: list[Unit]
    stored: int  # units asked for that are already stored: skipped
    parts: list[Part]
    processes: int  # worker processes the parts would run in (1: this process)
    times: StageTimes  # the setup so far: building the suite, planning


def prepare(suite_factory: Callable[[], Suite], scenario_names: list[str] | None, specs: list[MethodSpec],
            seeds: list[int], results: Path, jobs: int | None = None) -> Planned:
    """Build the suite and plan the run (timed as its setup stage), running nothing. Bad settings fail here."""
    if jobs is not None and jobs < 1:
        raise BenchError(f"--jobs {jobs}: expected 1 or more processes")
    times = StageTimes()
    with times.stage("setup"):
        suite = suite_factory()
        store = ResultStore(results)
        asked = requested(suite, scenarios_to_run(suite, scenario_names), specs, seeds)
        todo = not_stored(asked, store)
    parts = parts_of(todo)
    processes = min(auto_jobs(suite) if jobs is None else jobs, len(parts))
    return Planned(suite, store, todo, len(asked) - len(todo), parts, max(processes, 1), times)


def run_jobs(suite_factory: Callable[[], Suite], scenario_names: list[str] | None, specs: list[MethodSpec],
             seeds: list[int], results: Path, eval_every: int | None = None, settings: EvalSettings = DEFAULT_EVAL,
             jobs: int | None = None, plugins: list[Path] | None = None,
             ray: RaySettings | None = None) -> tuple[StageTimes, int]:
    """Every missing unit of the run, in this process (jobs=1), in `jobs` worker processes (None: `auto_jobs`) or,
    with `ray`, as Ray tasks (see bench.ray_executor); returns the seconds by stage (summed over the processes,
    this one's setup included) and the number of units run. Bad settings fail before any work."""
    planned = prepare(suite_factory, scenario_names, specs, seeds, results, jobs)
    times, todo, store = planned.times, planned.todo, planned.store
    if not todo or (ray is None and planned.processes == 1):  # this process, every thread (run_units checks the budget)
        with _stored_when_interrupted(store, todo):
            return times, run_units(planned.suite, todo, store, eval_every, times, settings)
    # a data budget too small for one batch fails here, once, not in each worker process
    reserve_batches(planned.suite.tasks, [pair for unit in todo for pair in unit.scenario.evaluated], settings)
    job = Job(suite_factory, results, eval_every, settings, new_run_id())
    with _stored_when_interrupted(store, todo):
        if ray is None:
            log.info("%d units in %d parts (method, seed, scenario family), run by %d processes", len(todo),
                     len(planned.parts), planned.processes)
            workers = run_in_processes(job, planned.parts, planned.processes, plugins or [])
        else:
            from bench.ray_executor import run_on_ray  # imports ray

            log.info("%d units in %d parts (method, seed, scenario family), run as Ray tasks", len(todo),
                     len(planned.parts))
            workers = run_on_ray(job, planned.parts, plugins or [], ray, store)
    workers.add(times.seconds)
    return workers, len(todo)


@contextmanager
def _stored_when_interrupted(store: ResultStore, todo: list[Unit]) -> Iterator[None]:
    """Turn an interrupt into `Interrupted`, saying how many of the planned units are stored (and kept)."""
    try:
        yield
    except KeyboardInterrupt:
        stored = sum(store.path(unit.key).is_file() for unit in todo)
        raise Interrupted(f"{stored} of the {len(todo)} units this run planned are stored in {store.root}/ and kept; "
                          f"the same command resumes with the rest") from None
