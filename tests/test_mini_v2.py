"""The shipped default zoo (zoo/mini-v2, 20 experts): intact, reproduces its manifest, and shows what issue 23 asked of
it where it holds on this zoo (docs/mini-suite.md has every target as measured over three zoo seeds)."""

from __future__ import annotations

import dataclasses

import pytest

from bench.evaluation import evaluate
from methods.averaging import TaskArithmetic, WeightAveraging
from methods.references import Individual, Pretrained
from methods.ties import TiesMerging
from methods.tsv import TaskSingularVectorsMerge
from tasks.registry import mini_families
from tasks.scenarios import multitask, scenarios_for
from tasks.shipped_zoo import SHIPPED_NAME, SOURCE_ZOO
from tasks.suites import load_suite
from tasks.zoo_manifest import verify_zoo


@pytest.fixture(scope="module")
def suite():
    return load_suite("mini")


@pytest.fixture(scope="module")
def mean_accuracy(suite):
    """A module-wide cache: a method's mean test accuracy over the evaluated tasks of a scenario (or a part of them)."""
    cache: dict[tuple, float] = {}

    def measured(method, scenario, tasks: tuple[str, ...] | None = None) -> float:
        key = (repr(method), scenario.name, tasks)
        if key not in cache:
            pool = suite.pool.subset(scenario.merged_tasks, scenario.test_splits())
            pairs = [(task, split) for task, split in scenario.evaluated if tasks is None or task in tasks]
            accuracies = evaluate(method.merge(pool), suite.tasks, pairs)
            cache[key] = sum(accuracies.values()) / len(accuracies)
        return cache[key]

    return measured


def test_the_default_zoo_is_the_shipped_mini_v2_of_the_twenty_tasks(suite):
    assert SHIPPED_NAME == "mini-v2"
    assert verify_zoo(SOURCE_ZOO)["recipe"]["tasks"] == list(mini_families("20-task")) == list(suite.tasks)
    assert [scenario.name for scenario in multitask(suite)] == ["multitask-8", "multitask-14", "multitask-20"]


def test_the_harness_reproduces_the_manifest_accuracies(suite, mean_accuracy):
    manifest = verify_zoo(SOURCE_ZOO)
    tested = multitask(suite)[-1]  # on the first half of each test split; the manifest's numbers are on the whole
    twenty = dataclasses.replace(tested, evaluated=tuple((task, "test") for task in tested.merged_tasks))
    assert mean_accuracy(Individual(), twenty) == pytest.approx(manifest["accuracy"]["expert"]["mean"], abs=1e-4)
    assert mean_accuracy(Pretrained(), twenty) == pytest.approx(manifest["accuracy"]["pretrained"]["mean"], abs=1e-4)


def test_experts_are_strong_and_the_pretrained_model_is_zero_shot_usable_on_the_eight_tasks(suite, mean_accuracy):
    eight = multitask(suite)[0]
    assert mean_accuracy(Individual(), eight) >= 0.90
    assert 0.35 <= mean_accuracy(Pretrained(), eight) <= 0.60


@pytest.mark.parametrize("method", [WeightAveraging(), TaskArithmetic(), TiesMerging()], ids=repr)
@pytest.mark.parametrize("split", ["generalization/unseen-mnist-eurosat", "generalization/unseen-resisc45-svhn"])
def test_a_static_merge_of_the_seen_tasks_beats_the_pretrained_model_on_the_unseen_ones(suite, mean_accuracy,
                                                                                         method, split):
    (scenario,) = scenarios_for(split, suite)
    unseen = tuple(task for task, _ in scenario.evaluated if task not in scenario.merged_tasks)
    assert mean_accuracy(method, scenario, unseen) > mean_accuracy(Pretrained(), scenario, unseen)


def test_task_arithmetic_loses_more_than_tsv_m_from_eight_to_twenty_tasks(suite, mean_accuracy):
    eight, _, twenty = multitask(suite)
    drop = {method.name: mean_accuracy(method, eight) - mean_accuracy(method, twenty)
            for method in (TaskArithmetic(), TaskSingularVectorsMerge())}
    assert drop["task_arithmetic"] > drop["tsv_merge"] + 0.03
