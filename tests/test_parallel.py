"""How `--jobs` deals a run out to its processes."""

import os
import time
from functools import partial
from types import SimpleNamespace

import torch

from bench.parallel import auto_jobs, parts_of, run_jobs
from bench.runner import MethodSpec
from core.pool import ModelPool
from methods.base import get_method
from tasks.suites import load_suite

SCENARIOS = ["multitask", *(f"robustness/{split}" for split in ("clean", "contrast", "pixelate")),
             "generalization/a", "generalization/b"]


def planned_units(methods: list[str]) -> list[SimpleNamespace]:
    """Stand-ins of planned units: each method in each of SCENARIOS."""
    return [SimpleNamespace(method=get_method(name)(), seed=0, scenario=SimpleNamespace(name=scenario))
            for name in methods for scenario in SCENARIOS]


def test_parts_with_more_units_are_dealt_first_so_the_longest_do_not_start_last():
    units = planned_units(["task_arithmetic", "wemoe"])
    parts = parts_of(units)
    assert [(part[0].method.name, part[0].scenario.name.split("/")[0]) for part in parts] == [
        ("task_arithmetic", "robustness"), ("wemoe", "robustness"),
        ("task_arithmetic", "generalization"), ("wemoe", "generalization"),
        ("task_arithmetic", "multitask"), ("wemoe", "multitask")]
    assert [unit.scenario.name for unit in parts[0]] == [f"robustness/{name}"
                                                         for name in ("clean", "contrast", "pixelate")]
    assert sorted(id(unit) for part in parts for unit in part) == sorted(map(id, units))  # each in one part


def test_a_method_that_memoises_per_expert_runs_all_its_scenarios_in_one_part_which_estimates_each_once():
    units = planned_units(["fisher_merging", "task_arithmetic"])
    parts = parts_of(units)
    assert [unit.scenario.name for unit in parts[0]] == SCENARIOS and parts[0][0].method.name == "fisher_merging"
    assert [part[0].method.name for part in parts[1:]] == ["task_arithmetic"] * 3


def test_auto_jobs_runs_one_single_threaded_process_per_thread_only_for_a_small_model_suite_on_the_cpu():
    def suite(parallel_units: bool, device: str) -> SimpleNamespace:
        return SimpleNamespace(parallel_units=parallel_units, pool=SimpleNamespace(device=device))

    threads = torch.get_num_threads()
    torch.set_num_threads(3)  # the tests run on one thread, where "one per thread" and "one" would agree
    try:
        assert auto_jobs(suite(True, "cpu")) == 3
        assert auto_jobs(suite(True, "cuda")) == 1
        assert auto_jobs(suite(False, "cpu")) == 1
    finally:
        torch.set_num_threads(threads)


def test_a_run_of_one_part_stays_in_this_process_with_every_thread(tiny_zoo, tmp_path):
    suite_factory = partial(load_suite, "mini", zoo=tiny_zoo)
    times, done = run_jobs(suite_factory, ["multitask"], [MethodSpec("task_arithmetic")], [0], tmp_path, jobs=2)
    assert done == 1 and times.processes == 1
    times, done = run_jobs(suite_factory, ["multitask"], [MethodSpec("task_arithmetic")], [0], tmp_path, jobs=2)
    assert done == 0 and times.processes == 1  # nothing left to run: no worker is started


def slowly_built_suite(zoo, seconds: float):
    """The tiny suite, built as slowly as converting real experts and computing their heads would make it."""
    time.sleep(seconds)
    return load_suite("mini", zoo=zoo)


def test_in_one_process_the_stages_setup_included_add_up_to_the_run_s_wall_time(tiny_zoo, tmp_path):
    start = time.perf_counter()
    times, done = run_jobs(partial(slowly_built_suite, tiny_zoo, 1.0), ["multitask"],
                           [MethodSpec("task_arithmetic"), MethodSpec("weight_averaging")], [0], tmp_path, jobs=1)
    wall = time.perf_counter() - start
    assert done == 2 and times.seconds["setup"] >= 1.0
    assert abs(wall - sum(times.seconds.values())) < 0.1 * wall


def test_worker_processes_count_their_own_setup_too(tiny_zoo, tmp_path):
    times, done = run_jobs(partial(slowly_built_suite, tiny_zoo, 0.5), ["multitask"],
                           [MethodSpec("task_arithmetic"), MethodSpec("weight_averaging")], [0], tmp_path, jobs=2)
    assert done == 2 and times.processes == 2
    assert times.seconds["setup"] >= 0.5 * 2  # this process's and at least one worker's (one may run both parts)


def suite_counting_expert_checks(zoo, checks):
    """The tiny suite, whose pool appends a line `pid task` to the file `checks` for each expert it checks."""
    suite = load_suite("mini", zoo=zoo)
    check = suite.pool._validate_expert

    def counted(task, checkpoint):
        with open(checks, "a") as log:
            log.write(f"{os.getpid()} {task}\n")
        check(task, checkpoint)

    suite.pool._validate_expert = counted
    return suite


def test_the_run_is_planned_once_so_each_expert_is_read_and_checked_once_in_all_processes(tiny_zoo, tmp_path):
    """Workers receive their planned units: they neither plan again nor check the experts again."""
    checks = tmp_path / "checks.txt"
    specs = [MethodSpec("task_arithmetic"), MethodSpec("weight_averaging")]
    times, done = run_jobs(partial(suite_counting_expert_checks, tiny_zoo, checks), ["multitask", "generalization"],
                           specs, [0], tmp_path / "results", jobs=2)
    assert done == 2 * 3 and times.processes == 2
    lines = checks.read_text().splitlines()
    experts = load_suite("mini", zoo=tiny_zoo).pool.tasks
    assert sorted(lines) == sorted(f"{os.getpid()} {task}" for task in experts)  # in this process, once each


def test_a_pool_checks_each_expert_once_for_itself_and_its_subsets(tiny_zoo, monkeypatch):
    checked = []
    check = ModelPool._validate_expert
    monkeypatch.setattr(ModelPool, "_validate_expert",
                        lambda pool, task, file: checked.append(task) or check(pool, task, file))
    pool = load_suite("mini", zoo=tiny_zoo).pool
    pool.subset(pool.tasks[:2]).validate()
    pool.validate()
    pool.validate()
    assert sorted(checked) == sorted(pool.tasks)
