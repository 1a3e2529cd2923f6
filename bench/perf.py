"""`python -m bench perf`: the suite's speed, each figure a ratio to a reference timed in the same run on the
same tensors (machines are noisy; ratios travel) or a limit, with its goal.

- AdaMerging: one adaptation step (merge the weights from the coefficients, forward, backward, Adam) over
  one forward+backward of a single model on the same batch. Goal: at most 1.5.
- WEMoE: evaluation throughput over the dense merged model's on the same batch (goal: at least 0.3 with 8
  experts), and the fast routed MLP's speed-up over the per-sample oracle at batch 64 (goal: at least 5).
- Evaluation: the harness's images per second (batches of the decoded splits, encoder, head, accuracy) over
  the bare encoder's forward on the same tensors in the same batches (goal: at least 0.85); and the first
  evaluation of a fresh suite, decoding included (a run decodes each split once).
- Static merges of 8 random experts the size of CLIP ViT-B/32, streamed from safetensors: time over the
  memory-bandwidth bound (every byte of the models read once and the merged model written once, at the copy
  bandwidth measured in the same run; goal: at most 3 for task arithmetic and weight averaging), for the
  first merge of a fresh process (which pays the first touch of every page it writes) and for a repeated
  one (which reuses them, as the benchmarks under tests/benchmarks measure), TIES' time
  (goal: at most 10 s) and every merge's peak memory beyond the memory-mapped checkpoints, in models (goal:
  at most 2; TIES at most 1.5 GiB). The Fisher-weighted average is timed given Fishers (random, as large as
  the experts): estimating them is forward-backward work, not merging.
- Memory of test-time adaptation (`--memory`; up to half an hour on 2 cores): the peak resident memory of a fresh
  process building layer-wise AdaMerging and WEMoE on 8 random experts the size of CLIP ViT-B/32 and taking one
  adaptation step at the papers' batch sizes (AdaMerging: 2 batches of 16 inputs per task; WEMoE: 16 per task),
  the mapped checkpoints included. Goal: at most 12 GiB each.
- End to end (`--end-to-end`; as long as the run itself): `run --all` on the mini suite into empty results
  and a fresh report, in seconds by stage. Goal: at most 20 minutes in all on the 20-task zoo (15 on the 8-task
  one before it).
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import torch

from bench.evaluation import DEFAULT_EVAL, EvalSettings, evaluate
from bench.parallel import run_jobs
from bench.reports import build_reports
from bench.runner import load_data, method_specs
from bench.selection import DEFAULT_SWEEP
from bench.synthetic import (
    VIT_B_32,
    PreparedMerge,
    fisher_merge_given_fishers,
    measure_merge,
    merge_memory,
    method_merge,
    synthetic_pool,
    write_synthetic_zoo,
)
from bench.timing import best_time
from core.models import EncoderConfig
from methods.adamerging import LayerwiseAdaMerging
from methods.adaptation import entropy
from methods.averaging import TaskArithmetic, WeightAveraging
from methods.base import REGISTRY
from methods.fisher import FisherMerging
from methods.ties import TiesMerging
from methods.wemoe import WEMoE
from tasks.base import Suite
from tasks.scenarios import Scenario, scenarios_to_run

T = TypeVar("T")
EVAL_BATCH = DEFAULT_EVAL.batch_size  # the harness's batch on the CPU (bench.evaluation.evaluate)


@dataclass(frozen=True)
class Figure:
    """A measured value and its goal: at most `limit`, or at least it where `higher_is_better`; no limit for a
    figure that only informs (a stage's share of a run, say)."""

    name: str
    value: float
    limit: float | None = None
    higher_is_better: bool = False

    @property
    def goal(self) -> str:
        return "" if self.limit is None else f"{'>=' if self.higher_is_better else '<='} {self.limit:g}"

    @property
    def met(self) -> bool | None:
        if self.limit is None:
            return None
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    @property
    def verdict(self) -> str:
        return {None: "", True: "met", False: "NOT MET"}[self.met]

    def line(self) -> str:
        goal = f"goal {self.goal:<6} {self.verdict}" if self.limit is not None else ""
        return f"{self.name:<84} {self.value:9.2f}   {goal}".rstrip()


def adamerging_figures(suite: Suite, batch_per_task: int = 16) -> list[Figure]:
    pool = suite.pool
    inputs = torch.cat([pool.test_inputs(task, batch_per_task, 0) for task in pool.tasks])
    head = next(iter(pool.heads.values()))
    model = LayerwiseAdaMerging().build(pool)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    single = TaskArithmetic().merge(pool).requires_grad_(True)

    def adaptation_step() -> None:
        loss = entropy(head(model(inputs))).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def forward_backward() -> None:
        entropy(head(single(inputs))).mean().backward()

    ratio = best_time(adaptation_step) / best_time(forward_backward)
    name = f"AdaMerging step / forward+backward ({len(inputs)} inputs)"
    return [Figure(name, ratio, 1.5)]


@torch.no_grad()
def wemoe_figures(suite: Suite, batch: int = 64) -> list[Figure]:
    pool = suite.pool
    inputs = torch.cat([pool.test_inputs(task, batch // len(pool.tasks) + 1, 0) for task in pool.tasks])[:batch]
    dense = TaskArithmetic().merge(pool)
    routed = WEMoE().build(pool).merged()
    throughput = best_time(lambda: dense(inputs)) / best_time(lambda: routed(inputs))
    mlp = routed.transformer.resblocks[0].mlp
    hidden = torch.randn(batch, routed.positional_embedding.shape[0], mlp.width)
    speedup = best_time(lambda: mlp.per_sample_reference(hidden)) / best_time(lambda: mlp(hidden))
    experts = len(pool.tasks)
    return [Figure(f"WEMoE eval throughput / dense merged model ({experts} experts, batch {batch})", throughput,
                   0.3, higher_is_better=True),
            Figure(f"WEMoE routed MLP: fast path speed-up over per-sample oracle (batch {batch})", speedup,
                   5, higher_is_better=True)]


def in_fresh_process(function: Callable[..., T], *args: object) -> T:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as worker:
        return worker.submit(function, *args).result()


def copy_bandwidth(nbytes: int = 2**29) -> float:
    """Bytes per second moved by a large tensor copy (read plus written), the reference of the bounds."""
    source = torch.rand(nbytes // 4)
    target = torch.empty_like(source)
    return 2 * nbytes / best_time(lambda: target.copy_(source))


def static_merge_figures(config: EncoderConfig = VIT_B_32, experts: int = 8, processes: int = 2) -> list[Figure]:
    """Each merge runs in `processes` fresh processes (checkpoints already in the page cache), the fastest time
    and the largest memory kept: memory freed by earlier work in this process would be reused and hide what the
    merge needs. The Fisher merge's Fishers are made in that process before the timing starts, so its memory
    figure is beyond experts and Fishers."""
    merges: list[tuple[str, PreparedMerge, int, float | None]] = [
        # (title, merge, models read (experts, pretrained, Fishers), goal on time / bound)
        (WeightAveraging.title, partial(method_merge, WeightAveraging()), experts, 3.0),
        (TaskArithmetic.title, partial(method_merge, TaskArithmetic()), experts + 1, 3.0),
        (f"{FisherMerging.title} given Fishers", fisher_merge_given_fishers, 2 * experts, None),
        (TiesMerging.title, partial(method_merge, TiesMerging()), experts + 1, None)]
    figures = []
    with tempfile.TemporaryDirectory(prefix="mergebench-perf-") as folder:
        write_synthetic_zoo(Path(folder), config, experts)
        model_bytes = (Path(folder) / "pretrained.safetensors").stat().st_size
        bandwidth = copy_bandwidth()
        size = f"{experts} experts of {model_bytes / 2**20:.0f} MiB"
        for checkpoint in Path(folder).glob("*.safetensors"):
            checkpoint.read_bytes()  # in the page cache, as a zoo used before
        for title, merge, models_read, limit in merges:
            runs = [in_fresh_process(measure_merge, merge, Path(folder), config, experts) for _ in range(processes)]
            first, repeated, extra = min(r[0] for r in runs), min(r[2] for r in runs), max(r[1] for r in runs)
            bound = (models_read + 1) * model_bytes / bandwidth
            figures.append(Figure(f"{title}, {size}: time / bandwidth bound, first merge of a process", first / bound,
                                  limit))
            figures.append(Figure(f"{title}, {size}: time / bandwidth bound, repeated merge", repeated / bound, limit))
            if title == TiesMerging.title:
                figures.append(Figure(f"{title} (global top-20% trim), {size}: seconds, first merge of a process",
                                      first, 10))
                figures.append(Figure(f"{title}, {size}: peak memory beyond the checkpoints (GiB)", extra / 2**30,
                                      1.5))
            figures.append(Figure(f"{title}, {size}: peak memory beyond the checkpoints (models)",
                                  extra / model_bytes, 2))
    return figures


def adaptation_memory_figures(config: EncoderConfig = VIT_B_32, experts: int = 8) -> list[Figure]:
    """One adaptation step of each adaptive method at its paper's batch sizes (its defaults), each in a fresh
    process: memory freed by earlier work in this process would be reused and hide what the method needs."""
    methods = [LayerwiseAdaMerging(steps=1), WEMoE(steps=1)]
    figures = []
    with tempfile.TemporaryDirectory(prefix="mergebench-memory-") as folder:
        write_synthetic_zoo(Path(folder), config, experts)
        model_bytes = (Path(folder) / "pretrained.safetensors").stat().st_size
        pool = partial(synthetic_pool, Path(folder), config, experts)
        for method in methods:
            peak, _ = in_fresh_process(merge_memory, pool, method)
            size = f"{experts} experts of {model_bytes / 2**20:.0f} MiB"
            inputs = f"{method.batch_size * method.batches_per_step} inputs per task"
            name = f"{method.title}, {size}, {inputs}: peak memory of the process (GiB)"
            figures.append(Figure(name, peak / 2**30, 12))
    return figures


@torch.no_grad()
def evaluation_figures(suite_factory: Callable[[], Suite]) -> list[Figure]:
    """The harness's evaluation of one merged model on every task's test split, over the bare encoder's forward
    on the same inputs in the same batches, made beforehand; and the first evaluation of a fresh suite, decoding
    included."""
    suite = suite_factory()
    pairs = [(task, "test") for task in suite.tasks]
    merged = TaskArithmetic().merge(suite.pool)
    start = time.perf_counter()
    load_data(suite, [Scenario("timing", tuple(suite.tasks), tuple(pairs))])
    evaluate(merged, suite.tasks, pairs, EvalSettings(batch_size=EVAL_BATCH))
    first = time.perf_counter() - start
    images = sum(len(suite.tasks[task].labels(split)) for task, split in pairs)

    ready = [inputs for task, split in pairs for inputs, _ in suite.tasks[task].batches(split, EVAL_BATCH)]

    def bare_forward() -> None:  # on inputs made beforehand: the harness's own making of them is what it pays
        for inputs in ready:
            merged(inputs)

    harness = best_time(lambda: evaluate(merged, suite.tasks, pairs, EvalSettings(batch_size=EVAL_BATCH)), repeats=2)
    bare = best_time(bare_forward, repeats=2)
    return [Figure(f"Evaluation: harness images/s / bare encoder forward ({images} images)", bare / harness, 0.85,
                   higher_is_better=True),
            Figure("Evaluation: harness images/s, splits decoded", images / harness),
            Figure("Evaluation: harness images/s, first evaluation of a fresh suite (decoding included)",
                   images / first)]


def end_to_end_figures(suite_factory: Callable[[], Suite], jobs: int | None = None) -> list[Figure]:
    """`run --all` (with `--jobs`; None: auto, as `run` defaults to) into empty results and a fresh report: the
    whole suite as a new user runs it, wall time, and seconds by stage (summed over the processes)."""
    from bench.plugins import load_methods

    load_methods([])
    scenarios = scenarios_to_run(suite_factory())
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mergebench-e2e-") as folder:
        results, reports = Path(folder) / "results", Path(folder) / "reports"
        # as `run --all`: every method at its fixed settings and, where it declares a grid, chosen on validation
        specs = method_specs([(name, None) for name in REGISTRY], {}, "both", every=True, sweep=DEFAULT_SWEEP)
        times, _ = run_jobs(suite_factory, None, specs, [0], results, jobs=jobs)
        with times.stage("report"):
            build_reports(results, reports)
    wall = time.perf_counter() - start
    processes = f", {times.processes} processes" if times.processes > 1 else ""
    name = (f"End to end: run --all ({len(scenarios)} scenarios, {len(REGISTRY)} methods{processes}) into empty "
            f"results (s)")
    summed = ", summed" if times.processes > 1 else ""
    return [Figure(name, wall, 1200)] + [Figure(f"End to end: stage {stage} (s{summed})", seconds)
                                        for stage, seconds in times.seconds.items()]


def run_perf(suite_factory: Callable[[], Suite], static: bool = True, end_to_end: bool = False,
             jobs: int | None = None, memory: bool = False) -> Iterator[Figure]:
    """Every figure, each as soon as it is measured."""
    suite = suite_factory()
    yield from adamerging_figures(suite)
    yield from wemoe_figures(suite)
    yield from evaluation_figures(suite_factory)
    if static:
        yield from static_merge_figures()
    if memory:
        yield from adaptation_memory_figures()
    if end_to_end:
        yield from end_to_end_figures(suite_factory, jobs)
