"""The families of the 14-task benchmark draw every object through one table, under one class name."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from tasks import families_tall14
from tasks.families import FAMILIES
from tasks.families_tall14 import SILHOUETTES, draw_silhouette

SILHOUETTE_FAMILIES = ("flowers", "pets", "objects", "small_objects_fine")


@pytest.mark.parametrize("family", SILHOUETTE_FAMILIES)
def test_each_class_is_drawn_by_the_silhouette_of_its_own_name(family, monkeypatch):
    """So a name two families share is one drawing, and an object two families draw has one name."""
    drawn = []

    def record(name: str, *drawing_args: object) -> None:
        drawn.append(name)

    recorders = {name: partial(record, name) for name in SILHOUETTES}
    monkeypatch.setattr(families_tall14, "SILHOUETTES", recorders)
    rng = np.random.default_rng(0)
    for label, name in enumerate(FAMILIES[family].class_names):
        drawn.clear()
        FAMILIES[family].render(rng, label, 1.0, "train")
        assert set(drawn) == {name}


def test_every_silhouette_draws_an_object_of_its_own():
    """No two names alias one drawing (which would give one object two names)."""
    images = {}
    for name in SILHOUETTES:
        canvas = np.zeros((32, 32, 3), np.float32)
        draw_silhouette(canvas, name, np.random.default_rng(0), 16, 16, 12)
        images[name] = canvas.tobytes()
        assert canvas.any(), name
    assert len(set(images.values())) == len(SILHOUETTES)


def test_the_cifar100_stand_in_shares_its_flowers_and_its_bus_with_the_other_stand_ins():
    fine = set(FAMILIES["small_objects_fine"].class_names)
    assert fine & set(FAMILIES["flowers"].class_names) == {"rose", "sunflower"}
    assert fine & set(FAMILIES["vehicles"].class_names) == {"bus"}
