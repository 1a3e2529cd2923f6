"""A run's parts as Ray tasks (`run --executor ray`): across the CPUs and GPUs of the nodes of a Ray cluster.

The run is planned here, on the driver, as for `--jobs` (see bench.parallel): each part (one method, seed and
scenario family, the units that share a static merge) becomes one Ray task with the resources asked for. Nothing
assumes a shared filesystem: a task streams each unit's rows back as the unit finishes (a Ray generator task) and
the driver stores it, one atomic file per unit, so results live where the driver runs. Plugins travel as their
source text with the task. A worker that dies mid-part has its part run again (Ray's task retries); Ray hands
the driver each of a retried generator's items once, and the driver stores a unit only once in any case.

Ray is imported only here, and this module only on `--executor ray`: `import bench` stays light.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from bench.parallel import Job, Part, part_of, worker_suite
from bench.plugins import PluginSource, load_methods, load_plugin_source
from bench.preflight import check_device
from bench.results import ResultStore
from bench.runner import StageTimes, log_unit, unit_rows
from core.errors import BenchError

log = logging.getLogger(__name__)

MAX_RETRIES = 3  # runs of a part after its worker died (Ray's default for tasks), before the part fails for good
UNIT, DONE = "unit", "done"  # what a part's task yields: each unit's rows, then its stage times and where it ran


@dataclass(frozen=True)
class RaySettings:
    """Where the parts run and what each one holds while it runs."""

    address: str | None = None  # a running cluster (`ray start`), or None: Ray started on this machine's CPUs
    cpus_per_part: float = 1
    gpus_per_part: float = 0
    device: str = "cpu"  # the parts' (given to the suite factory as `device=`); the driver plans on the CPU, GPU or not


def part_name(part: Part) -> str:
    """A part as the user knows it: method (and how its settings are chosen), seed, scenario family."""
    method, seed, family = part_of(part[0])
    selections = ", ".join(dict.fromkeys("validation" if unit.grid else "fixed" for unit in part))
    return f"{method} ({selections}) seed {seed} {family}"


def run_on_ray(job: Job, parts: list[Part], plugins: list[Path], settings: RaySettings,
               store: ResultStore) -> StageTimes:
    """Run the parts as Ray tasks and store each unit as its rows arrive; returns the seconds by stage summed over
    the workers. A part that fails for good raises here, by name, once the others have finished. Interrupted, the
    tasks are cancelled: every unit stored so far is kept."""
    ray = _imported_ray()
    ray.init(address=settings.address, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"TQDM_DISABLE": "1"}})  # the driver's bar counts parts; workers stay quiet
    try:
        _check_resources(ray, settings)
        task = ray.remote(_run_part).options(num_cpus=settings.cpus_per_part, num_gpus=settings.gpus_per_part,
                                             max_retries=MAX_RETRIES, num_returns="streaming")
        sources = [PluginSource.of(Path(path)) for path in plugins]
        threads = max(1, int(settings.cpus_per_part))
        job = dataclasses.replace(job, suite_factory=partial(job.suite_factory, device=settings.device))
        streams = {task.remote(job, sources, pickle.dumps(part), threads, settings.device): part for part in parts}
        try:
            return _collect(ray, streams, store)
        except BaseException:
            for stream in streams:
                ray.cancel(stream, force=True)
            raise
    finally:
        ray.shutdown()


def _collect(ray: Any, streams: dict[Any, Part], store: ResultStore) -> StageTimes:
    """Store the units the tasks stream back, each once; sum their stage times; raise the first failure."""
    units = {unit.key: unit for part in streams.values() for unit in part}
    times, stored, workers, failures = StageTimes(), set(), set(), []
    pending = list(streams)
    with tqdm(total=len(streams), desc="Ray", unit="part") as bar:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for stream in ready:
                try:
                    kind, *item = ray.get(next(stream))
                except StopIteration:
                    bar.update()
                    continue
                except ray.exceptions.RayError as error:
                    failures.append((part_name(streams[stream]), error))
                    log.error("part %s failed: %s", failures[-1][0], _first_line(error))
                    bar.update()
                    continue
                pending.append(stream)
                if kind == UNIT:
                    key, rows = item
                    if key in stored:  # a retried part's unit that reached the driver before its worker died
                        continue
                    with times.stage("report"):
                        store.write(key, rows)
                    stored.add(key)
                    log_unit(units[key], rows)
                else:
                    seconds, where = item
                    times.add(seconds)
                    workers.add((where["node"], where["pid"]))
                    log.info("part %s ran on node %s (%s, pid %d)", part_name(streams[stream]), where["node"],
                             where["host"], where["pid"])
    times.processes = max(1, len(workers))
    if failures:
        raise _reported(*failures[0])
    return times


def _reported(name: str, error: Exception) -> BaseException:
    """What a part that failed for good raises: a method's own one-line error as it is; a worker that kept dying,
    one line naming the part; any other exception with its remote traceback (Ray's error)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BenchError):
        return cause
    if type(error).__name__ in ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError"):
        return BenchError(f"part {name}: its worker died {MAX_RETRIES + 1} times ({_first_line(error)})")
    return error


def _first_line(error: BaseException) -> str:
    """The first line of the exception the part raised (Ray's own error begins with where it ran)."""
    lines = str(getattr(error, "cause", None) or error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _check_resources(ray: Any, settings: RaySettings) -> None:
    """A part must fit on some node, else Ray would hold its task forever ("infeasible")."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    for option, resource, wanted in (("--cpus-per-part", "CPU", settings.cpus_per_part),
                                     ("--gpus-per-part", "GPU", settings.gpus_per_part)):
        largest = max((node.get(resource, 0) for node in nodes), default=0)
        if wanted > largest:
            raise BenchError(f"{option} {wanted:g}: no node of the Ray cluster has that many {resource}s "
                             f"(the largest has {largest:g})")


def _imported_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BenchError("--executor ray: ray is not installed (pip install -r requirements.txt)") from None
    return ray


def _run_part(job: Job, plugins: list[PluginSource], part: bytes, threads: int, device: str) -> Iterator[tuple]:
    """A Ray task: run one part's planned units, yielding (UNIT, key, rows) for each, then (DONE, seconds by
    stage, where it ran). The units are unpickled only once the plugins' classes they may hold are defined."""
    check_device("--device", device)
    load_methods([])
    for plugin in plugins:
        if plugin.module not in sys.modules:
            load_plugin_source(plugin)
    torch.set_num_threads(threads)
    times = StageTimes()
    suite = worker_suite(job, times)
    for unit, rows in unit_rows(suite, pickle.loads(part), job.eval_every, times, job.settings, job.run_id):
        yield UNIT, unit.key, rows
    node = _imported_ray().get_runtime_context().get_node_id()
    yield DONE, times.seconds, {"node": node, "host": socket.gethostname(), "pid": os.getpid()}
