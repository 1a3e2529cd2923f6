"""The families of the 20-task benchmark share content with the others under the same names, and their stroke
tables write one glyph per class."""

from __future__ import annotations

import numpy as np
import pytest

from tasks import families_tall20, procedural
from tasks.families import FAMILIES


def test_scanned_digits_are_the_digits_classes_drawn_from_the_same_writers_split(monkeypatch):
    """EMNIST's stand-in shares MNIST's content: the UCI digits, test images from the test writers only."""
    assert FAMILIES["scanned_digits"].class_names == FAMILIES["digits"].class_names
    labels = np.arange(10).repeat(2)
    blank, full = np.zeros((20, 8, 8), np.float32), np.ones((20, 8, 8), np.float32)
    monkeypatch.setattr(procedural, "_uci_digits", lambda: {"train": (blank, labels), "test": (full, labels)})
    train, _ = procedural.render(FAMILIES["scanned_digits"], 0, 20, 0.0, "train", workers=1)
    test, _ = procedural.render(FAMILIES["scanned_digits"], 0, 20, 0.0, "test", workers=1)
    assert train.max() == 0 and (test.reshape(20, -1).max(1) > 200).all()


@pytest.mark.parametrize("family, glyphs, classes", [("letters", families_tall20.LETTER_FONT.glyphs, 26),
                                                     ("kana", families_tall20.KANA_FONT.glyphs, 10)])
def test_each_stroke_family_writes_one_distinct_glyph_per_class(family, glyphs, classes):
    """Written upright and centred with a 2-pixel pen, any two glyphs differ in at least 10 pixels."""
    assert tuple(glyphs) == FAMILIES[family].class_names and len(set(glyphs)) == classes
    drawn = [families_tall20._ink(tuple(families_tall20._to_pixels(stroke, 16, 16, 11, 0) for stroke in glyph), 2.0)
             > 0.5 for glyph in glyphs.values()]
    assert min((drawn[i] ^ drawn[j]).sum() for i in range(classes) for j in range(i + 1, classes)) >= 10


def test_small_objects_name_the_objects_they_share_with_objects_alike():
    """A zero-shot head reads a class by its name: CIFAR10's automobile is STL10's car."""
    shared = set(FAMILIES["small_objects"].class_names) & set(FAMILIES["objects"].class_names)
    assert shared == {"airplane", "bird", "car", "cat", "deer", "dog", "horse", "ship", "truck"}
