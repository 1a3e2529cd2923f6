"""The mini suite's data: deterministic, balanced, in the Hugging Face schema, cached by fingerprint."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from bench.evaluation import EvalSettings, reserve_batches
from bench.zoo.recipe import ZooRecipe
from core.errors import BenchError
from core.models import ClassificationHead
from tasks import procedural
from tasks.base import Task, decode_split
from tasks.data import PixelCache, parse_size
from tasks.families import FAMILIES
from tasks.mini import MiniData, load_split, normalize, preprocess, to_pixels
from tasks.registry import RECORDS, mini_families

# Every family registered, and every family a task record names (so a record naming a family nobody wrote fails).
RECORD_FAMILIES = sorted(set(FAMILIES) | {record.mini_family for record in RECORDS.values() if record.mini_family})


@pytest.mark.parametrize("family", RECORD_FAMILIES)
def test_each_family_is_deterministic_and_balanced(family):
    images, labels = procedural.render(FAMILIES[family], seed=3, n=60, nuisance=0.7, split="train", workers=1)
    again, _ = procedural.render(FAMILIES[family], seed=3, n=60, nuisance=0.7, split="train", workers=1)
    assert images.shape == (60, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, again)
    counts = np.bincount(labels, minlength=len(FAMILIES[family].class_names))
    assert counts.max() - counts.min() <= 1
    n_classes = len(FAMILIES[family].class_names)
    assert 2 <= n_classes and 2 * n_classes <= ZooRecipe().encoder.embed_dim  # the zoo embeds a task's classes in 2n


def test_rendering_does_not_depend_on_the_number_of_workers():
    family = FAMILIES["signs"]
    serial, _ = procedural.render(family, 0, 1200, 0.7, "test", workers=1)
    parallel, _ = procedural.render(family, 0, 1200, 0.7, "test", workers=2)
    np.testing.assert_array_equal(serial, parallel)


def test_train_and_test_images_differ():
    family = FAMILIES["textures"]
    train, _ = procedural.render(family, 0, 50, 0.7, "train", workers=1)
    test, _ = procedural.render(family, 0, 50, 0.7, "test", workers=1)
    assert not np.array_equal(train, test)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_no_validation_image_is_a_train_or_test_image(family, data_cache):
    data = MiniData(train_per_task=400, test_per_task=400)
    hashes = {split: {np.asarray(image).tobytes() for image in load_split(family, split, data)["image"]}
              for split in ("train", "validation", "test")}
    assert len(load_split(family, "validation", data)) == data.validation_per_task == 50
    assert len(hashes["validation"]) == 50  # and its images are distinct among themselves
    assert not hashes["validation"] & hashes["train"] and not hashes["validation"] & hashes["test"]


def test_the_validation_split_leaves_the_zoo_data_fingerprint_unchanged():
    """The shipped zoo's manifest pins the fingerprint of its train and test data (zoo/mini-v1/manifest.json)."""
    assert MiniData().fingerprint(mini_families("8-task")) == "e5cc1964f2de6f81"


def test_handwritten_digits_train_and_test_come_from_disjoint_samples():
    digits = procedural._uci_digits()
    train = {image.tobytes() for image in digits["train"][0]}
    assert not any(image.tobytes() in train for image in digits["test"][0])


def test_nuisance_adds_noise_and_clutter():
    family = FAMILIES["house_numbers"]
    calm, _ = procedural.render(family, 0, 200, 0.0, "train", workers=1)
    busy, _ = procedural.render(family, 0, 200, 1.0, "train", workers=1)
    roughness = lambda images: np.abs(np.diff(images.astype(float), axis=2)).mean()
    assert roughness(busy) > 2 * roughness(calm)


def test_splits_follow_the_hub_schema_and_are_cached_by_fingerprint(data_cache):
    data = MiniData(train_per_task=20, test_per_task=10)
    dataset = load_split("signs", "test", data)
    assert dataset.features["label"].names == list(FAMILIES["signs"].class_names)
    assert set(dataset.column_names) == {"image", "label"}
    inputs, labels = decode_split(dataset, preprocess)
    assert inputs.shape == (10, 3, 32, 32) and len(labels) == 10
    in_workers, same_labels = decode_split(dataset, preprocess, workers=2)  # --workers: the same tensors
    assert torch.equal(in_workers, inputs) and torch.equal(same_labels, labels)
    assert (data_cache / "mini-data" / data.fingerprint(["signs"]) / "signs" / "test").is_dir()
    assert MiniData(train_per_task=21, test_per_task=10).fingerprint(["signs"]) != data.fingerprint(["signs"])


def synthetic_task(name: str, n: int, cache: PixelCache, size: int = 8) -> Task:
    """A task of n random size x size images, read through `cache`."""
    generator = np.random.default_rng(n)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])})
    images = [Image.fromarray(generator.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]
    split = datasets.Dataset.from_dict({"image": images, "label": [i % 3 for i in range(n)]}, features)
    return Task(name, name, ("a", "b", "c"), lambda _: split, to_pixels, normalize,
                ClassificationHead(torch.randn(3, 4), 1.0), corruption_profile="small", cache=cache)


def read_all(task: Task, split: str, batch_size: int, workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, labels = zip(*task.batches(split, batch_size, workers))
    return torch.cat(inputs), torch.cat(labels)


@pytest.mark.parametrize("split", ["test", "test/gaussian_noise@2", "test/spatter@1"])
def test_streamed_and_cached_splits_give_the_same_batches_whatever_their_size(split):
    streamed, cached = synthetic_task("t", 30, PixelCache(budget=0)), synthetic_task("t", 30, PixelCache())
    assert not streamed.load(split) and cached.load(split)
    inputs, labels = read_all(cached, split, 30)
    decoded = normalize(to_pixels(cached.split("test")["image"]))
    assert torch.equal(inputs, decoded) if split == "test" else not torch.equal(inputs, decoded)
    for batch_size, workers in ((7, 0), (30, 0), (4, 2)):
        for task in (streamed, cached):
            same_inputs, same_labels = read_all(task, split, batch_size, workers)
            assert torch.equal(same_inputs, inputs) and torch.equal(same_labels, labels)


def test_a_sample_decodes_and_corrupts_only_the_drawn_images_and_matches_the_whole_split():
    task = synthetic_task("t", 30, PixelCache(budget=0))
    whole, _ = read_all(task, "test/impulse_noise@2", 1000)
    order = torch.randperm(30, generator=torch.Generator().manual_seed(5))
    read = []
    task.to_pixels = lambda images: read.append(len(images)) or to_pixels(images)
    assert torch.equal(task.sample("test/impulse_noise@2", 6, seed=5), whole[order[:6]])
    assert read == [6]


def test_splits_beyond_the_budget_are_streamed_and_the_cache_stays_within_it():
    cache = PixelCache()
    small, large = synthetic_task("small", 40, cache), synthetic_task("large", 200, cache)
    settings = EvalSettings(batch_size=2, data_memory=100 * 8 * 8 * 3)  # 100 images of 8x8 pixels as uint8
    reserve_batches({"small": small, "large": large}, [("small", "test"), ("large", "test")], settings)
    assert cache.reserved == settings.batch_bytes(8 * 8 * 3) == 2 * 192 * 8
    assert small.load("test") and not large.load("test")
    assert cache.used == 40 * 192 and cache.used + cache.reserved <= cache.budget
    inputs, _ = read_all(large, "test", 2)
    assert torch.equal(inputs, normalize(to_pixels(large.split("test")["image"])))
    assert cache.used == 40 * 192  # reading the streamed split kept nothing


def test_a_budget_too_small_for_one_batch_is_refused_naming_the_option():
    task = synthetic_task("t", 10, PixelCache())
    with pytest.raises(BenchError, match=r"^--data-memory 1000 B: batches of 64 images \(5 in flight with "
                                         r"--workers 2\) need 480.0 KiB; raise it or lower --batch-size or --workers$"):
        reserve_batches({"t": task}, [("t", "test")], EvalSettings(batch_size=64, workers=2, data_memory=1000))


def test_sizes_read_with_their_units():
    assert parse_size("8GB", "--data-memory") == 8 * 10**9 and parse_size("512MiB", "--data-memory") == 2**29
    assert parse_size("1.5 kb", "--data-memory") == 1500 and parse_size("1000", "--data-memory") == 1000
    with pytest.raises(BenchError, match="--data-memory '8 apples'"):
        parse_size("8 apples", "--data-memory")


def test_a_family_defined_outside_procedural_is_fingerprinted_with_every_family_module_it_may_build_on():
    from tasks import drawing, families_tall14, families_tall20
    from tasks.families import generator_modules

    assert generator_modules(["signs", "digits"]) == [procedural, drawing]  # the shipped zoo's data fingerprint
    assert generator_modules(["small_objects"]) == [procedural, families_tall14, families_tall20, drawing]


def test_a_spawned_process_generates_a_split_of_a_family_outside_procedural_py(tmp_path, monkeypatch):
    """A `run --jobs` worker is spawned, and so would be the renderer's pool inside it: that pool must still know
    the families `tasks.families` registers (the split is over one render chunk, so a pool would be used)."""
    monkeypatch.setenv("MERGEBENCH_CACHE", str(tmp_path))
    data = MiniData(train_per_task=procedural.CHUNK + 100, test_per_task=10)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as worker:
        split = worker.submit(load_split, "garments", "train", data).result()
    assert len(split) == procedural.CHUNK + 100 and FAMILIES["garments"].render.__module__ != procedural.__name__
