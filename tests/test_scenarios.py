"""Scenarios: which experts are merged, which splits are tested, and what test-time adaptation may see."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from helpers import random_pool

from bench.runner import SharedMerge
from core.errors import BenchError
from tasks.registry import GROUPS
from tasks.scenarios import (
    SCENARIOS,
    Scenario,
    ScenarioUnavailable,
    generalization,
    multitask,
    robustness,
    scenarios_for,
)
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
    half = f"test[:{len(suite.tasks['signs'].labels('test')) // 2}]"  # the mini suite's: docs/mini-suite.md
    assert suite.test_split == half
    assert {split for s in scenarios for _, split in s.evaluated} == {half} | {
        f"{half}/{s.name.split('/')[1]}@2" for s in scenarios[1:]}


def test_a_split_s_first_images_are_those_of_the_whole_split_clean_and_corrupted(suite):
    task = suite.tasks["signs"]
    for split in ("test", "test/motion_blur@2"):
        whole, labels = task.tensors(split)
        first, first_labels = task.tensors(split.replace("test", "test[:7]"))
        assert len(first_labels) == 7 and torch.equal(first_labels, labels[:7]) and torch.equal(first, whole[:7])
    assert len(task.labels("test[:100000]")) == len(task.labels("test"))  # a slice past the end: the whole split


@pytest.mark.parametrize("split", ["test[:0]", "test[3:]", "test[:-2]", "test[:2]x"])
def test_a_malformed_slice_is_refused_naming_the_split(suite, split):
    with pytest.raises(BenchError, match=re.escape(f"split {split!r}")):
        suite.tasks["signs"].labels(split)


def test_adaptation_draws_its_unlabeled_inputs_from_the_corrupted_split(suite):
    scenario = next(s for s in robustness(suite) if s.name == "robustness/gaussian_noise")
    pool = suite.pool.subset(scenario.merged_tasks, scenario.test_splits())
    task = scenario.merged_tasks[0]
    drawn = pool.test_inputs(task, 8, seed=3)
    assert dict(scenario.evaluated)[task] == f"{suite.test_split}/gaussian_noise@2"
    assert torch.equal(drawn, suite.tasks[task].sample(f"{suite.test_split}/gaussian_noise@2", 8, 3))
    assert not torch.equal(drawn, suite.tasks[task].sample(suite.test_split, 8, 3))


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
    unseen_sets = [{suite.tasks[t].counterpart for t, _ in s.evaluated}
                   - {suite.tasks[t].counterpart for t in s.merged_tasks} for s in generalization(suite)]
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


def standing_in_for(suite, counterparts: tuple[str, ...]):
    """The suite with one task per counterpart (a copy of one of its tasks, named after the counterpart)."""
    template = next(iter(suite.tasks.values()))
    tasks = {c.lower(): dataclasses.replace(template, name=c.lower(), counterpart=c) for c in counterparts}
    return dataclasses.replace(suite, tasks=tasks)


def test_an_8_task_suite_has_one_multitask_scenario_multitask_8_over_its_experts_in_the_groups_order(suite):
    (scenario,) = multitask(suite)
    assert scenario.name == "multitask-8"
    assert [suite.tasks[t].counterpart for t in scenario.merged_tasks] == list(GROUPS["8-task"])
    assert scenario.evaluated == tuple((task, suite.test_split) for task in scenario.merged_tasks)


@pytest.mark.parametrize("twenty", ["20-task", "20-task-fusionbench"])
def test_a_20_task_suite_has_a_scenario_per_task_count_each_merging_exactly_that_group(suite, twenty):
    reversed_order = standing_in_for(suite, GROUPS[twenty][::-1])
    scenarios = multitask(reversed_order)
    assert [s.name for s in scenarios] == ["multitask-8", "multitask-14", "multitask-20"]
    for scenario, group_name in zip(scenarios, ("8-task", "14-task", twenty)):
        assert [reversed_order.tasks[t].counterpart for t in scenario.merged_tasks] == list(GROUPS[group_name])
        assert scenario.evaluated == tuple((task, suite.test_split) for task in scenario.merged_tasks)


def test_a_suite_covering_no_task_count_group_merges_all_its_experts_in_one_multitask_scenario(suite):
    custom = standing_in_for(suite, ("GTSRB", "Cars", "Stripes"))
    assert [(s.name, s.merged_tasks) for s in multitask(custom)] == [("multitask", ("gtsrb", "cars", "stripes"))]
    fourteen_but_one = standing_in_for(suite, GROUPS["14-task"][:-1])
    assert [s.name for s in multitask(fourteen_but_one)] == ["multitask-8"]


def test_one_scenario_of_a_family_can_be_asked_for_by_name_and_a_missing_one_is_named(suite):
    assert [s.name for s in scenarios_for("multitask", suite)] == ["multitask-8"]
    assert [s.name for s in scenarios_for("multitask-8", suite)] == ["multitask-8"]
    assert [s.name for s in scenarios_for("robustness/clean", suite)] == ["robustness/clean"]
    with pytest.raises(ScenarioUnavailable, match="^suite 'mini' has no scenario 'multitask-14'; its multitask "
                                                  "scenarios: multitask-8$"):
        scenarios_for("multitask-14", suite)
    with pytest.raises(BenchError, match="^unknown scenario 'multitasks'"):
        scenarios_for("multitasks", suite)


class Recorder:
    """A stand-in method that counts its merges and, if asked, reads test inputs as adaptive methods do."""

    def __init__(self, reads_test_inputs: bool) -> None:
        self.reads_test_inputs, self.calls = reads_test_inputs, 0

    def merge_steps(self, pool, every):
        self.calls += 1
        if self.reads_test_inputs:
            pool.test_inputs(pool.tasks[0], 2, seed=0)
        yield None, f"model {self.calls}"


def test_a_merge_is_shared_across_scenarios_only_if_it_never_read_test_inputs(tmp_path):
    pool, shared = random_pool(tmp_path), SharedMerge()
    static, adaptive = Recorder(False), Recorder(True)
    for _ in range(3):
        models = [m for _, m, _ in shared.timed_steps(("static",), static, pool.subset(pool.tasks), None)]
        assert models == ["model 1"]
    for _ in range(2):
        list(shared.timed_steps(("adaptive",), adaptive, pool.subset(pool.tasks), None))
    assert (static.calls, adaptive.calls) == (1, 2)
