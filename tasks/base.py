"""A task (named `image`/`label` dataset splits and a frozen head) and a suite (tasks plus their model pool).

Every suite's data follows the schema of the Hugging Face copies of the real benchmark, so one evaluation
path serves the mini suite and the CLIP suite alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial

import datasets
import torch
from torch.utils.data import DataLoader

from core.errors import BenchError
from core.models import ClassificationHead
from core.pool import ModelPool
from tasks.corruptions import corrupt
from tasks.data import PixelCache, from_levels, to_levels
from tasks.splits import corrupted_split, parse_slice, parse_split

# A batch of decoded dataset images (PIL) to a tensor: pixels in [0, 1] or the encoder's inputs.
Preprocess = Callable[[list], torch.Tensor]
DECODE_BATCH = 256  # images decoded at once while a split is read into the cache


def decode_split(dataset: datasets.Dataset, preprocess: Preprocess,
                 workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All preprocessed images and labels of a split, decoded in batches of 256 images; by `workers` processes
    where more than 0 (the zoo build's training data)."""
    inputs = torch.cat(list(in_batches(len(dataset), DECODE_BATCH, workers,
                                       lambda positions: preprocess(dataset[positions]["image"]))))
    return inputs, torch.as_tensor(dataset["label"])


def in_batches(n: int, batch_size: int, workers: int,
               read: Callable[[list[int]], torch.Tensor]) -> Iterator[torch.Tensor]:
    """`read` of positions 0..n-1 in consecutive batches, in order; by `workers` processes reading ahead of the
    consumer (a DataLoader's two batches each) where more than 0."""
    if workers == 0:
        for start in range(0, n, batch_size):
            yield read(list(range(start, min(start + batch_size, n))))
    else:
        yield from DataLoader(range(n), batch_size=batch_size, num_workers=workers, collate_fn=read)


def tensor_batches(inputs: torch.Tensor, labels: torch.Tensor,
                   batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(labels), batch_size):
        yield inputs[start:start + batch_size], labels[start:start + batch_size]


@dataclass
class Task:
    """A task's data is read by position: encoder inputs are made per batch from the split's 8-bit pixels, kept
    in `cache` where they fit, else decoded from the dataset at each read."""

    name: str
    counterpart: str  # the task of the real 8-task benchmark this one is or stands in for
    class_names: tuple[str, ...]
    load_split: Callable[[str], datasets.Dataset]
    to_pixels: Preprocess  # images to float [N, 3, H, W] 8-bit levels (k/255), at the encoder's resolution
    normalize: Callable[[torch.Tensor], torch.Tensor]  # pixels to encoder inputs
    head: ClassificationHead
    corruption_profile: str = "imagenet"  # which parameter table of the corruptions fits the images' size
    splits: tuple[str, ...] = ("train", "validation", "test")  # what its record offers (tasks/registry.py)
    shipped_splits: frozenset[str] = frozenset()  # the dataset's split names (train, test and any corrupted copies)
    cache: PixelCache = field(default_factory=PixelCache, repr=False)  # a suite's tasks share their suite's
    _datasets: dict[str, datasets.Dataset] = field(default_factory=dict, repr=False)
    _labels: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def split(self, name: str) -> datasets.Dataset:
        """The dataset split `name`, or the first N images of one for `name[:N]` (all where it holds fewer)."""
        source, stop = parse_slice(name)
        if source not in self.splits and source not in self.shipped_splits:
            valid = ", ".join(sorted({*self.splits, *self.shipped_splits}))
            raise BenchError(f"task {self.name}: no split {source!r}; valid: {valid}")
        if name not in self._datasets:
            if stop is None:
                self._datasets[name] = self.load_split(name)
            else:
                whole = self.split(source)
                self._datasets[name] = whole.select(range(min(stop, len(whole))))
        return self._datasets[name]

    def labels(self, split: str) -> torch.Tensor:
        base, _, _ = parse_split(split)
        if base not in self._labels:
            self._labels[base] = torch.as_tensor(self.split(base)["label"])
        return self._labels[base]

    def image_bytes(self, split: str) -> int:
        """Values of one image at the encoder's resolution (its bytes as uint8; a float32 copy is 4 times more)."""
        return self.inputs(split, [0]).numel()

    def load(self, split: str, workers: int = 0) -> bool:
        """Read the split's pixels into the cache, where they fit beside what it holds (decoding by `workers`
        processes where more than 0); whether the split is cached. A corrupted split is cached as its clean one."""
        base, _, _ = parse_split(split)
        if self.cache.get(self.name, base) is None:
            n = len(self.labels(base))
            if not self.cache.fits(n * self.image_bytes(base)):
                return False
            dataset, levels = self.split(base), None
            decoded = in_batches(n, DECODE_BATCH, workers, lambda positions: to_levels(
                self.to_pixels(dataset[positions]["image"]), self.name))
            for start, batch in zip(range(0, n, DECODE_BATCH), decoded):
                levels = torch.empty((n, *batch.shape[1:]), dtype=torch.uint8) if levels is None else levels
                levels[start:start + len(batch)] = batch  # filled in place: no second copy of the split
            self.cache.keep(self.name, base, levels)
        return True

    def inputs(self, split: str, positions: Sequence[int]) -> torch.Tensor:
        """Encoder inputs of the images at `positions` of the split, from the cache or decoded from the dataset.

        A corrupted split (`test/motion_blur@2`) is its clean split with the corruption applied to the pixels,
        before normalisation, with seed 0 (each image seeded by its position, see `tasks.corruptions`).
        """
        base, corruption, severity = parse_split(split)
        positions = [int(position) for position in positions]
        cached = self.cache.get(self.name, base)
        if cached is not None:
            pixels = from_levels(cached[positions])
        else:
            pixels = self.to_pixels(self.split(base)[positions]["image"])
        if corruption is not None:
            pixels = corrupt(pixels, corruption, severity, seed=0, profile=self.corruption_profile, positions=positions)
        return self.normalize(pixels)

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All encoder inputs and labels of a split at once: for small splits (tests, examples)."""
        inputs, labels = zip(*self.batches(split, DECODE_BATCH))
        return torch.cat(inputs), torch.cat(labels)

    def corrupted_test_split(self, corruption: str, test: str = "test") -> str:
        """The dataset's own corrupted test split where it ships one named after the corruption (FusionBench's
        hub datasets do), else the `test` split corrupted here at the benchmarks' severity. The split name in
        every result row tells the two apart (`motion_blur` vs `test/motion_blur@2`)."""
        return corruption if corruption in self.shipped_splits else corrupted_split(test, corruption)

    def batches(self, split: str, batch_size: int, workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs, labels) of consecutive batches, made as they are read; by `workers` processes where more than
        0 and there is work beyond slicing the cache (decoding or corrupting)."""
        base, corruption, _ = parse_split(split)
        labels = self.labels(base)
        clean_and_cached = corruption is None and self.cache.get(self.name, base) is not None
        batches = in_batches(len(labels), batch_size, 0 if clean_and_cached else workers, partial(self.inputs, split))
        return zip(batches, labels.split(batch_size))

    def sample(self, split: str, n: int, seed: int) -> torch.Tensor:
        """n inputs drawn without replacement by a seeded generator (labels are not returned); only those are
        decoded and corrupted."""
        order = torch.randperm(len(self.labels(split)), generator=torch.Generator().manual_seed(seed))
        return self.inputs(split, order[:n].tolist())


@dataclass
class Suite:
    """Tasks and the model pool whose experts were fine-tuned on them; what a run is about."""

    name: str
    tasks: dict[str, Task]
    pool: ModelPool
    provenance: dict[str, str]  # "family": what identifies the weights (zoo recipe, checkpoint family); in every row
    # Whether a CPU run spends its cores better on several units side by side (`--jobs auto`): true where the
    # model is too small to keep the cores busy (the mini suite's: docs/performance.md).
    parallel_units: bool = False
    # The preset each method runs with on this suite where the user names none (method name -> preset name);
    # a method not listed runs at its defaults. The row label names the preset.
    presets: dict[str, str] = field(default_factory=dict)
    # The split every scenario tests on (the robustness scenario clean and corrupted at 7 corruptions): the test
    # split, or its first images (`test[:N]`) where the whole of it would cost more than a run's budget (the mini
    # suite's).
    test_split: str = "test"
    cache: PixelCache = field(default_factory=PixelCache, repr=False)  # the pixels of all its tasks, one budget

    def __post_init__(self) -> None:
        for task in self.tasks.values():
            task.cache = self.cache
