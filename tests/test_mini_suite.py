"""The shipped mini zoo: intact, reproduces its manifest, and shows the published ordering of methods."""

from __future__ import annotations

import pytest

from bench.evaluation import evaluate
from bench.zoo.manifest import verify_zoo
from methods.averaging import TaskArithmetic, WeightAveraging
from methods.references import Individual, Pretrained
from methods.ties import TiesMerging
from tasks.scenarios import multitask
from tasks.suites import SHIPPED_ZOO, load_suite


@pytest.fixture(scope="module")
def mean_accuracy():
    suite = load_suite("mini")
    scenario = multitask(suite)[0]
    cache: dict[str, float] = {}

    def measure(method) -> float:
        if repr(method) not in cache:
            accuracies = evaluate(method.merge(suite.pool), suite.tasks, scenario.evaluated)
            cache[repr(method)] = sum(accuracies.values()) / len(accuracies)
        return cache[repr(method)]

    return measure


def test_the_shipped_zoo_matches_its_manifest():
    manifest = verify_zoo(SHIPPED_ZOO)
    assert len(manifest["recipe"]["tasks"]) == 8


def test_the_harness_reproduces_the_manifest_accuracies(mean_accuracy):
    manifest = verify_zoo(SHIPPED_ZOO)
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


def test_ties_with_the_mini_keep_beats_task_arithmetic_at_the_same_scaling(mean_accuracy):
    """The published 8-task order at λ = 0.3, once the trim keeps half of each small, dense task vector."""
    assert mean_accuracy(TiesMerging.configure("mini")) > mean_accuracy(TaskArithmetic()) + 0.02
