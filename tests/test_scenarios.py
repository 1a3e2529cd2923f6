"""Scenarios: which experts are merged, which splits are tested, and what test-time adaptation may see."""

from __future__ import annotations

import pytest
import torch

from tasks.scenarios import SCENARIOS, Scenario, ScenarioUnavailable, generalization, robustness
from tasks.suites import load_suite


@pytest.fixture(scope="module")
def suite(tiny_zoo):
    return load_suite("mini", zoo=tiny_zoo)


def test_robustness_merges_the_four_experts_and_tests_each_split_in_its_own_scenario(suite):
    scenarios = robustness(suite)
    assert [s.name for s in scenarios][:2] == ["robustness/clean", "robustness/motion_blur"] and len(scenarios) == 8
    counterparts = [suite.tasks[t].counterpart for t in scenarios[0].merged_tasks]
    assert counterparts == ["Cars", "EuroSAT", "RESISC45", "GTSRB"]
    assert all(s.merged_tasks == scenarios[0].merged_tasks for s in scenarios)
    assert {split for s in scenarios for _, split in s.evaluated} == {"test"} | {
        f"test/{s.name.split('/')[1]}@2" for s in scenarios[1:]}


def test_adaptation_draws_its_unlabeled_inputs_from_the_corrupted_split(suite):
    scenario = next(s for s in robustness(suite) if s.name == "robustness/gaussian_noise")
    pool = suite.pool.subset(scenario.merged_tasks, scenario.test_splits())
    task = scenario.merged_tasks[0]
    drawn = pool.test_inputs(task, 8, seed=3)
    assert torch.equal(drawn, suite.tasks[task].sample("test/gaussian_noise@2", 8, 3))
    assert not torch.equal(drawn, suite.tasks[task].sample("test", 8, 3))


def test_a_corrupted_split_is_its_clean_split_with_the_corruption_on_the_pixels(suite):
    task = suite.tasks["signs"]
    clean, labels = task.tensors("test")
    blurred, blurred_labels = task.tensors("test/motion_blur@2")
    assert torch.equal(labels, blurred_labels) and clean.shape == blurred.shape
    assert (clean - blurred).abs().mean() > 0.01


def test_generalization_never_lets_an_unseen_task_into_the_merge_or_the_adaptation(suite):
    for scenario in generalization(suite):
        seen = set(scenario.merged_tasks)
        unseen = {task for task, _ in scenario.evaluated} - seen
        assert len(seen) == 6 and len(unseen) == 2
        pool = suite.pool.subset(scenario.merged_tasks, scenario.test_splits())
        assert set(pool.tasks) == seen
        with pytest.raises(KeyError):
            pool.test_inputs(next(iter(unseen)), 4, seed=0)
    unseen_sets = [{suite.tasks[t].counterpart for t, _ in s.evaluated} - {suite.tasks[t].counterpart for t in s.merged_tasks}
                   for s in generalization(suite)]
    assert unseen_sets == [{"MNIST", "EuroSAT"}, {"RESISC45", "SVHN"}]


def test_a_suite_without_the_needed_tasks_is_told_which_are_missing(suite):
    from dataclasses import replace

    partial = replace(suite, tasks={k: v for k, v in suite.tasks.items() if v.counterpart != "GTSRB"})
    with pytest.raises(ScenarioUnavailable, match="no task standing in for GTSRB"):
        robustness(partial)


def test_every_registered_scenario_builds_on_the_mini_suite(suite):
    for builder in SCENARIOS.values():
        scenarios = builder(suite)
        assert scenarios and all(isinstance(s, Scenario) for s in scenarios)
        for s in scenarios:
            s.test_splits()
