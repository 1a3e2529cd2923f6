"""A task (named `image`/`label` dataset splits and a frozen head) and a suite (tasks plus their model pool).

Every suite's data follows the schema of the Hugging Face copies of the real benchmark, so one evaluation
path serves the mini suite and the CLIP suite alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import datasets
import torch
from torch.utils.data import DataLoader

from bench.models import ClassificationHead
from bench.pool import ModelPool
from tasks.corruptions import corrupt, corrupted_split, parse_split

# A batch of decoded dataset images (PIL) to a tensor: pixels in [0, 1] or the encoder's inputs.
Preprocess = Callable[[list], torch.Tensor]


def decode_split(dataset: datasets.Dataset, preprocess: Preprocess, workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All preprocessed images and labels of a split, decoded in batches of 256 images; by `workers` processes
    where more than 0 (decoding and resizing 224-pixel images is most of a CLIP suite's data time)."""
    if workers == 0:
        inputs = torch.cat([preprocess(batch["image"]) for batch in dataset.iter(batch_size=256)])
    else:
        images = dataset.select_columns(["image"])
        loader = DataLoader(images, batch_size=256, num_workers=workers,
                            collate_fn=lambda rows: preprocess([row["image"] for row in rows]))
        inputs = torch.cat(list(loader))
    return inputs, torch.as_tensor(dataset["label"])


def tensor_batches(inputs: torch.Tensor, labels: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(labels), batch_size):
        yield inputs[start:start + batch_size], labels[start:start + batch_size]


@dataclass
class Task:
    name: str
    counterpart: str  # the task of the real 8-task benchmark this one is or stands in for
    class_names: tuple[str, ...]
    load_split: Callable[[str], datasets.Dataset]
    to_pixels: Preprocess  # images to float [N, 3, H, W] in [0, 1], at the encoder's resolution
    normalize: Callable[[torch.Tensor], torch.Tensor]  # pixels to encoder inputs
    head: ClassificationHead
    corruption_profile: str = "imagenet"  # which parameter table of the corruptions fits the images' size
    shipped_splits: frozenset[str] = frozenset()  # the dataset's split names (train, test and any corrupted copies)
    _inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    def split(self, name: str) -> datasets.Dataset:
        return self.load_split(name)

    def tensors(self, split: str, workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """All encoder inputs and labels of a split, decoded once (by `workers` processes, where more than 0) and
        kept: every method reuses them.

        A corrupted split (`test/motion_blur@2`) is its clean split with the corruption applied to the pixels,
        before normalisation, with seed 0.
        """
        if split not in self._inputs:
            base, corruption, severity = parse_split(split)
            pixels, labels = decode_split(self.split(base), self.to_pixels, workers)
            if corruption is not None:
                pixels = corrupt(pixels, corruption, severity, seed=0, profile=self.corruption_profile)
            self._inputs[split] = self.normalize(pixels), labels
        return self._inputs[split]

    def corrupted_test_split(self, corruption: str) -> str:
        """The dataset's own corrupted test split where it ships one named after the corruption (FusionBench's
        hub datasets do), else the test split corrupted here at the benchmarks' severity. The split name in
        every result row tells the two apart (`motion_blur` vs `test/motion_blur@2`)."""
        return corruption if corruption in self.shipped_splits else corrupted_split("test", corruption)

    def batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return tensor_batches(*self.tensors(split), batch_size)

    def sample(self, split: str, n: int, seed: int) -> torch.Tensor:
        """n inputs drawn without replacement by a seeded generator (labels are not returned)."""
        inputs, _ = self.tensors(split)
        order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(seed))
        return inputs[order[:n]]


@dataclass
class Suite:
    """Tasks and the model pool whose experts were fine-tuned on them; what a run is about."""

    name: str
    tasks: dict[str, Task]
    pool: ModelPool
    provenance: dict[str, str]  # "family": what identifies the weights (zoo recipe, checkpoint family); in every row
    # Whether a CPU run spends its cores better on several units side by side (`--jobs auto`): true where the
    # model is too small to keep the cores busy (the mini suite's runs one thread at 0.62 of two threads' speed).
    parallel_units: bool = False
