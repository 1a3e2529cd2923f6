"""Random expert zoos of any encoder size, and timing a merge on one: merge speed and memory depend on sizes,
not on trained values. Light to import (no data or report code), since each timed merge runs in a fresh
process that imports this module."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import save_file

from bench.errors import BenchError
from bench.memory import PeakMemory
from bench.models import EncoderConfig, build_encoder
from bench.pool import ModelPool
from bench.timing import best_time
from methods.base import MergeMethod
from methods.fisher import fisher_merge

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


# Given a pool, the call a figure times (work before it, such as making Fishers, is not timed).
PreparedMerge = Callable[[ModelPool], Callable[[], object]]


def method_merge(method: MergeMethod, pool: ModelPool) -> Callable[[], object]:
    return partial(method.merge, pool)


def fisher_merge_given_fishers(pool: ModelPool, seed: int = 0) -> Callable[[], object]:
    """A Fisher-weighted average with random positive Fishers, one per expert and parameter, held in memory as
    the method holds the Fishers it estimates."""
    generator = torch.Generator().manual_seed(seed)
    fishers = {task: {key: torch.rand(pool.pretrained_tensor(key).shape, generator=generator).add_(1e-6)
                      for key in pool.parameter_names} for task in pool.tasks}
    return partial(fisher_merge, pool, fishers)


def measure_merge(prepare: PreparedMerge, folder: Path, config: EncoderConfig, experts: int,
                  repeats: int = 2) -> tuple[float, float, float]:
    """Of one merge in the calling process: the first call's seconds and the anonymous memory it added at its
    peak (bytes), then the fastest of `repeats` more calls (memory that the first call touched is reused)."""
    merge = prepare(synthetic_pool(folder, config, experts))
    memory = PeakMemory()
    with memory.watch():
        start = time.perf_counter()
        merge()
        first = time.perf_counter() - start
    return first, (memory.peak_anonymous_mb - memory.start_anonymous_mb) * 2**20, best_time(merge, repeats, warm_up=False)
