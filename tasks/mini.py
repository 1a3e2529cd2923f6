"""The mini suite's data: procedural families as Hugging Face datasets, cached on disk by fingerprint."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
import torch

from core.atomic import publish_folder
from tasks.families import FAMILIES, generator_modules, render

MEAN, STD = 0.5, 0.25

datasets.disable_progress_bars()  # splits of a few thousand 32x32 images save in milliseconds


@dataclass(frozen=True)
class MiniData:
    """Sizes and seed of the mini suite's task data; tests use a smaller copy of the same generator.

    Each family has three splits, drawn by the same generator from separate seed streams (the split's name
    enters every seed, see `procedural.render`): `train` (the experts' fine-tuning data, the only split the zoo
    build reads), `test`, and `validation`, where a benchmark chooses settings. Validation images are not train
    images (`tests/test_data.py` compares their hashes); the digits family re-renders the train writers' UCI
    strokes with fresh nuisance, as any held-out slice of a training set shares its writers, while its test
    split keeps 500 writers' samples of its own. The validation split is an eighth of the test split's size:
    a benchmark evaluates every grid point on it, so its size is most of the search's cost (and of `run --all`'s
    time budget); settings are compared on the same images, so their differences are known better than each
    accuracy alone.
    """

    train_per_task: int = 4000
    test_per_task: int = 1000
    nuisance: float = 0.7
    seed: int = 0

    @property
    def validation_per_task(self) -> int:
        """Derived from the test split's size, so that it adds no field to the zoo recipes and manifests that
        pin these parameters; its cache folder is named with its size."""
        return self.test_per_task // 8

    def fingerprint(self, families: Iterable[str]) -> str:
        """Changes whenever these families' images would: the parameters or the generators' source code."""
        source = "".join(inspect.getsource(module) for module in generator_modules(families))
        blob = json.dumps(asdict(self), sort_keys=True) + source
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("MERGEBENCH_CACHE", Path.home() / ".cache" / "mergebench"))


def to_unit_range(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] images to float [N, 3, H, W] pixels in [0, 1]."""
    return torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255.0


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] to the encoder's inputs."""
    return (pixels - MEAN) / STD


def pixels_to_inputs(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] images to the encoder's normalised float [N, 3, H, W] inputs."""
    return normalize(to_unit_range(images))


def _build_split(family_name: str, data: MiniData, split: str) -> datasets.Dataset:
    family = FAMILIES[family_name]
    n = {"train": data.train_per_task, "test": data.test_per_task, "validation": data.validation_per_task}[split]
    images, labels = render(family_name, data.seed, n, data.nuisance, split)
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=list(family.class_names))})
    return datasets.Dataset.from_dict({"image": list(images), "label": labels.tolist()}, features=features)


def load_split(family_name: str, split: str, data: MiniData = MiniData()) -> datasets.Dataset:
    """The split as an `image`/`label` dataset, generated on first use and then read from the cache."""
    folder = f"validation-{data.validation_per_task}" if split == "validation" else split
    path = cache_root() / "mini-data" / data.fingerprint((family_name,)) / family_name / folder
    if not path.exists():  # processes generating it at once each build their own; the first published is kept
        path.parent.mkdir(parents=True, exist_ok=True)
        publish_folder(path, lambda staging: _build_split(family_name, data, split).save_to_disk(str(staging)))
    return datasets.load_from_disk(str(path))


def to_pixels(images: list) -> torch.Tensor:
    """Decoded split images (PIL) to pixels in [0, 1], where corruptions apply."""
    return to_unit_range(np.stack([np.asarray(image.convert("RGB")) for image in images]))


def preprocess(images: list) -> torch.Tensor:
    """Decoded split images (PIL) to encoder inputs: the one path of the zoo build and the harness."""
    return normalize(to_pixels(images))
