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

from bench.memory import PeakMemory
from bench.timing import best_time
from core.models import CLIP_ENCODERS, ClassificationHead, EncoderConfig, build_encoder
from core.pool import ModelPool
from methods.base import MergeMethod
from methods.fisher import fisher_merge

VIT_B_32 = CLIP_ENCODERS["ViT-B-32"]
TINY = EncoderConfig(image_size=32, patch_size=16, width=32, layers=2, heads=2, embed_dim=16)  # seconds on a CPU


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


def synthetic_pool(folder: Path, config: EncoderConfig, experts: int, classes: int = 10,
                   device: str = "cpu") -> ModelPool:
    """The pool of a zoo written by `write_synthetic_zoo`, with random heads of `classes` classes and random
    normal inputs (seeded by the draw's seed), its models on `device`: test-time adaptation's memory and time
    depend on sizes too."""
    def random_inputs(task: str, split: str, n: int, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(n, 3, config.image_size, config.image_size, generator=generator)

    generator = torch.Generator().manual_seed(0)
    paths = {f"task{index}": folder / f"task{index}.safetensors" for index in range(experts)}
    heads = {task: ClassificationHead(torch.randn(classes, config.embed_dim, generator=generator), 100.0)
             for task in paths}
    return ModelPool(partial(build_encoder, config), folder / "pretrained.safetensors", paths, heads, random_inputs,
                     device)


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
    extra_bytes = (memory.peak_anonymous_mb - memory.start_anonymous_mb) * 2**20
    return first, extra_bytes, best_time(merge, repeats, warm_up=False)


def merge_memory(pool: Callable[[], ModelPool], method: MergeMethod) -> tuple[float, float]:
    """Of one merge by `method` in the calling process, on the pool that `pool()` builds (before the watch): the
    process's peak resident memory, and the anonymous memory the merge added at its peak (without the file pages
    of the memory-mapped checkpoints), in bytes."""
    built = pool()
    memory = PeakMemory()
    with memory.watch():
        method.merge(built)
    return memory.peak_mb * 2**20, (memory.peak_anonymous_mb - memory.start_anonymous_mb) * 2**20
