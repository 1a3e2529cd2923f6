"""`python -m bench perf`: speed of the adaptive methods' inner loops, as ratios to a reference timed in the
same run on the same tensors (machines are noisy; ratios travel).

- AdaMerging: one adaptation step (merge the weights from the coefficients, forward, backward, Adam) over
  one forward+backward of a single model on the same batch. Goal: at most 1.5.
- WEMoE: evaluation throughput over the dense merged model's on the same batch (goal: at least 0.3 with 8
  experts), and the fast routed MLP's speed-up over the per-sample oracle at batch 64 (goal: at least 5).
- Static merges of 8 random experts the size of CLIP ViT-B/32, streamed from safetensors: time over the
  memory-bandwidth bound (every byte of the models read once and the merged model written once, at the copy
  bandwidth measured in the same run; goal: at most 3 for task arithmetic and weight averaging), TIES' time
  (goal: at most 10 s) and every merge's peak memory beyond the memory-mapped checkpoints, in models (goal:
  at most 2; TIES at most 1.5 GiB).
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import save_file

from bench.errors import BenchError
from bench.models import EncoderConfig, build_encoder
from bench.pool import ModelPool
from bench.runner import PeakMemory
from methods.adamerging import LayerwiseAdaMerging
from methods.adaptation import entropy
from methods.averaging import TaskArithmetic, WeightAveraging
from methods.base import MergeMethod
from methods.ties import TiesMerging
from methods.wemoe import WEMoE
from tasks.base import Suite

T = TypeVar("T")


@dataclass(frozen=True)
class Figure:
    """A measured value and its goal: at most `limit`, or at least it where `higher_is_better`."""

    name: str
    value: float
    limit: float
    higher_is_better: bool = False

    @property
    def goal(self) -> str:
        return f"{'>=' if self.higher_is_better else '<='} {self.limit:g}"

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    def line(self) -> str:
        return f"{self.name:<72} {self.value:8.2f}   goal {self.goal:<6} {'met' if self.met else 'NOT MET'}"


def best_time(run: Callable[[], object], repeats: int = 5) -> float:
    """The fastest of `repeats` timed calls after one warm-up call: the least disturbed by other load."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


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


VIT_B_32 = EncoderConfig(image_size=224, patch_size=32, width=768, layers=12, heads=12, embed_dim=512)


def write_synthetic_zoo(folder: Path, config: EncoderConfig, experts: int = 8, seed: int = 0,
                        spread: float = 1e-3) -> None:
    """A pretrained model of `config`'s shape and `experts` experts `task0`... (pretrained + Gaussian task vectors
    of std `spread`), random, as safetensors under `folder`: merge speed depends on sizes, not on trained values,
    and the tests check merges against their formulas on small ones."""
    generator = torch.Generator().manual_seed(seed)
    pretrained = {k: v.contiguous() for k, v in build_encoder(config).state_dict().items()}
    save_file(pretrained, str(folder / "pretrained.safetensors"))
    for index in range(experts):
        save_file({k: v + spread * torch.randn(v.shape, generator=generator) for k, v in pretrained.items()},
                  str(folder / f"task{index}.safetensors"))


def synthetic_pool(folder: Path, config: EncoderConfig, experts: int) -> ModelPool:
    def no_inputs(*_: object) -> torch.Tensor:
        raise BenchError("synthetic pool: static merges only (no task data)")

    paths = {f"task{index}": folder / f"task{index}.safetensors" for index in range(experts)}
    return ModelPool(partial(build_encoder, config), folder / "pretrained.safetensors", paths, {}, no_inputs)


def measure_merge(method: MergeMethod, folder: Path, config: EncoderConfig, experts: int) -> tuple[float, float]:
    """(seconds, bytes of anonymous memory added at the peak) of one merge, in the calling process."""
    pool = synthetic_pool(folder, config, experts)
    memory = PeakMemory()
    with memory.watch():
        start = time.perf_counter()
        method.merge(pool)
        seconds = time.perf_counter() - start
    return seconds, (memory.peak_anonymous_mb - memory.start_anonymous_mb) * 2**20


def in_fresh_process(function: Callable[..., T], *args: object) -> T:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as worker:
        return worker.submit(function, *args).result()


def copy_bandwidth(nbytes: int = 2**29) -> float:
    """Bytes per second moved by a large tensor copy (read plus written), the reference of the bounds."""
    source = torch.rand(nbytes // 4)
    target = torch.empty_like(source)
    return 2 * nbytes / best_time(lambda: target.copy_(source))


def static_merge_figures(config: EncoderConfig = VIT_B_32, experts: int = 8) -> list[Figure]:
    """Each merge runs once in a fresh process (checkpoints already in the page cache): memory freed by
    earlier work in this process would be reused and hide what the merge needs."""
    figures = []
    with tempfile.TemporaryDirectory(prefix="mergebench-perf-") as folder:
        write_synthetic_zoo(Path(folder), config, experts)
        model_bytes = (Path(folder) / "pretrained.safetensors").stat().st_size
        bandwidth = copy_bandwidth()
        size = f"{experts} experts of {model_bytes / 2**20:.0f} MiB"
        for method, models_read in ((WeightAveraging(), experts), (TaskArithmetic(), experts + 1), (TiesMerging(), experts + 1)):
            in_fresh_process(measure_merge, method, Path(folder), config, experts)  # page cache warm
            seconds, extra = in_fresh_process(measure_merge, method, Path(folder), config, experts)
            if isinstance(method, TiesMerging):
                figures.append(Figure(f"{method.title} (global top-20% trim), {size}: seconds", seconds, 10))
                figures.append(Figure(f"{method.title}, {size}: peak memory beyond the checkpoints (GiB)",
                                      extra / 2**30, 1.5))
            else:
                ratio = seconds / ((models_read + 1) * model_bytes / bandwidth)
                figures.append(Figure(f"{method.title}, {size}: time / bandwidth bound", ratio, 3))
            figures.append(Figure(f"{method.title}, {size}: peak memory beyond the checkpoints (models)",
                                  extra / model_bytes, 2))
    return figures


def run_perf(suite: Suite, static: bool = True) -> list[Figure]:
    return adamerging_figures(suite) + wemoe_figures(suite) + (static_merge_figures() if static else [])
