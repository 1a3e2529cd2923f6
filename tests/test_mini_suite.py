"""The 8-task zoo the suite shipped first (zoo/mini-v1, still shipped for `--zoo zoo/mini-v1`): intact, reproduces
its manifest, and shows the published ordering of methods."""

from __future__ import annotations

import dataclasses

import pytest

from bench.evaluation import evaluate
from methods.averaging import TaskArithmetic, WeightAveraging
from methods.references import Individual, Pretrained
from methods.ties import TiesMerging
from tasks.scenarios import multitask
from tasks.shipped_zoo import SOURCE_ZOOS
from tasks.suites import load_suite
from tasks.zoo_manifest import verify_zoo

V1_ZOO = SOURCE_ZOOS / "mini-v1"


@pytest.fixture(scope="module")
def mini_suite():
    return load_suite("mini", zoo=V1_ZOO)


def mean_accuracy_on(split: str):
    """A module-wide cache of a method's mean accuracy over the shipped zoo's 8 tasks on `split`."""
    @pytest.fixture(scope="module")
    def measure(mini_suite):
        scenario = multitask(mini_suite)[0]
        cache: dict[str, float] = {}

        def measured(method) -> float:
            if repr(method) not in cache:
                accuracies = evaluate(method.merge(mini_suite.pool), mini_suite.tasks,
                                      [(task, split) for task, _ in scenario.evaluated])
                cache[repr(method)] = sum(accuracies.values()) / len(accuracies)
            return cache[repr(method)]

        return measured
    return measure


mean_accuracy = mean_accuracy_on("test")
validation_accuracy = mean_accuracy_on("validation")


def test_the_shipped_zoo_matches_its_manifest():
    manifest = verify_zoo(V1_ZOO)
    assert len(manifest["recipe"]["tasks"]) == 8


def test_the_harness_reproduces_the_manifest_accuracies(mean_accuracy):
    manifest = verify_zoo(V1_ZOO)
    assert mean_accuracy(Individual()) == pytest.approx(manifest["accuracy"]["expert"]["mean"], abs=1e-4)
    assert mean_accuracy(Pretrained()) == pytest.approx(manifest["accuracy"]["pretrained"]["mean"], abs=1e-4)


def test_experts_are_strong_and_the_pretrained_model_is_zero_shot_usable(mean_accuracy):
    assert mean_accuracy(Individual()) >= 0.90
    assert 0.35 <= mean_accuracy(Pretrained()) <= 0.60


def test_merging_orders_as_published(mean_accuracy):
    pretrained, averaging = mean_accuracy(Pretrained()), mean_accuracy(WeightAveraging())
    arithmetic, individual = mean_accuracy(TaskArithmetic()), mean_accuracy(Individual())
    assert pretrained + 0.05 < averaging < arithmetic - 0.03 < individual - 0.10


def test_ties_beats_weight_averaging(mean_accuracy):
    assert mean_accuracy(TiesMerging()) > mean_accuracy(WeightAveraging()) + 0.03


# What `run --select validation` chooses on the shipped zoo (multitask) from the declared grids.
CHOSEN = {"task_arithmetic": TaskArithmetic(scaling=0.3), "ties_merging": TiesMerging(scaling=0.7, keep=0.2)}
NOISE = 0.002  # a few validation images: another machine's arithmetic may flip one


def grid_neighbours(method):
    """The points of the method's grid next to it, one setting one step away."""
    for name, values in method.search_space().items():
        position = values.index(getattr(method, name))
        for step in (-1, 1):
            if 0 <= position + step < len(values):
                yield dataclasses.replace(method, **{name: values[position + step]})


@pytest.mark.parametrize("name", list(CHOSEN))
def test_the_chosen_settings_are_the_best_of_their_grid_neighbours_on_validation(name, validation_accuracy):
    chosen = CHOSEN[name]
    assert all(validation_accuracy(chosen) >= validation_accuracy(other) - NOISE for other in grid_neighbours(chosen))


def test_with_settings_chosen_on_validation_ties_beats_task_arithmetic_on_test(mean_accuracy):
    """The published 8-task order, with each method's coefficients chosen on validation data, as the papers
    choose them (no setting here was chosen on test accuracy)."""
    assert mean_accuracy(CHOSEN["ties_merging"]) > mean_accuracy(CHOSEN["task_arithmetic"]) + 0.02
