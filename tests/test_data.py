"""The mini suite's data: deterministic, balanced, in the Hugging Face schema, cached by fingerprint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks import procedural
from tasks.base import decode_split
from tasks.mini import MiniData, load_split, preprocess
from tasks.procedural import FAMILIES


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_is_deterministic_and_balanced(family):
    images, labels = procedural.render(FAMILIES[family], seed=3, n=60, nuisance=0.7, split="train", workers=1)
    again, _ = procedural.render(FAMILIES[family], seed=3, n=60, nuisance=0.7, split="train", workers=1)
    assert images.shape == (60, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, again)
    counts = np.bincount(labels, minlength=len(FAMILIES[family].class_names))
    assert counts.max() - counts.min() <= 1
    assert 5 <= len(FAMILIES[family].class_names) <= 20


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


def test_handwritten_digits_train_and_test_come_from_disjoint_samples():
    digits = procedural._uci_digits()
    train = {image.tobytes() for image in digits["train"][0]}
    assert not any(image.tobytes() in train for image in digits["test"][0])


def test_nuisance_adds_noise_and_clutter():
    family = FAMILIES["house_numbers"]
    calm, _ = procedural.render(family, 0, 200, 0.0, "train", workers=1)
    busy, _ = procedural.render(family, 0, 200, 1.0, "train", workers=1)
    roughness = lambda images: np.abs(np.diff(images.astype(float), axis=2)).mean()  # noqa: E731
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
    assert (data_cache / "mini-data" / data.fingerprint() / "signs" / "test").is_dir()
    assert MiniData(train_per_task=21, test_per_task=10).fingerprint() != data.fingerprint()
