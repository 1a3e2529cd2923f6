"""The task registry: one record per task, named groups that scenarios are defined over, and a new task added
as one record, its group membership and its mini family, run end to end."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bench.cli import main
from bench.results import ResultStore
from bench.zoo.build import build_zoo
from bench.zoo.recipe import ZooRecipe
from core.errors import BenchError
from tasks.procedural import FAMILIES, Family
from tasks.registry import GROUPS, RECORDS, TaskRecord, group, mini_families, standing_in, task_record
from tasks.scenarios import generalization, robustness
from tasks.suites import load_suite


def test_every_group_member_has_a_record_and_every_mini_family_stands_in_for_its_record_s_task():
    for name in GROUPS:
        assert all(task in RECORDS for task in group(name))
    for record in RECORDS.values():
        if record.mini_family is not None:
            assert FAMILIES[record.mini_family].counterpart == record.name
            assert standing_in(record.mini_family) is record
    assert mini_families("8-task") == ZooRecipe().tasks


def test_unknown_tasks_groups_and_families_are_refused_naming_them(monkeypatch):
    with pytest.raises(BenchError, match=r"^unknown task 'ImageNet': no record in tasks/registry.py; known: SUN397, "):
        task_record("ImageNet")
    with pytest.raises(BenchError, match=r"^unknown task group '50-task'; known: 8-task, 14-task, 20-task, "):
        group("50-task")
    with pytest.raises(BenchError, match=r"^mini family 'stripes' stands in for no task"):
        standing_in("stripes")
    monkeypatch.setitem(GROUPS, "robustness", GROUPS["robustness"] + ("ImageNet",))
    with pytest.raises(BenchError, match=r"^unknown task 'ImageNet'"):
        group("robustness")


@pytest.fixture(scope="module")
def suite(tiny_zoo):
    return load_suite("mini", zoo=tiny_zoo)


def test_scenarios_merge_and_test_the_tasks_of_their_groups_in_the_groups_order(suite, monkeypatch):
    monkeypatch.setitem(GROUPS, "robustness", ("GTSRB", "Cars"))
    monkeypatch.setitem(GROUPS, "generalization-2-unseen", ("SVHN",))
    assert robustness(suite)[0].merged_tasks == ("signs", "vehicles")
    second = generalization(suite)[1]
    assert second.name == "generalization/unseen-svhn"
    assert [task for task, _ in second.evaluated if task not in second.merged_tasks] == ["house_numbers"]


def test_a_task_refuses_a_split_its_record_does_not_offer(suite):
    assert len(suite.tasks["signs"].split("test")) == ZooRecipe().tiny().data.test_per_task
    with pytest.raises(BenchError, match=r"^task signs: no split 'holdout'; valid: test, train, validation$"):
        suite.tasks["signs"].split("holdout")


def test_list_tasks_shows_each_record_with_its_stand_in_classes_groups_and_sources(capsys):
    assert main(["list", "tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["task", "mini", "stand-in", "classes", "splits", "hub", "dataset,", "experts,",
                                "prompts", "groups"]
    assert lines[2].split() == ["Cars", "vehicles", "196", "(8", "mini)", "train,", "validation,", "test",
                                "tanganke/stanford_cars,", "*_stanford-cars,", "8", "prompts", "8-task,", "14-task,",
                                "20-task,", "20-task-fusionbench,", "robustness,", "generalization-1-seen,",
                                "generalization-2-seen"]
    assert len(lines) == 1 + len(RECORDS) == 1 + 21


def _stripes(rng: np.random.Generator, label: int, nuisance: float, split: str) -> np.ndarray:
    """Horizontal (label 0) or vertical (label 1) stripes of a random period and phase."""
    period, phase = rng.integers(3, 6), rng.integers(0, 3)
    coordinate = np.arange(32)[:, None] if label == 0 else np.arange(32)[None, :]
    stripes = ((coordinate + phase) % period < period / 2).astype(np.float32)
    return np.broadcast_to(stripes[..., None], (32, 32, 3)) * rng.uniform(0.5, 1.0) + 0.1


@pytest.fixture
def stripes_task(monkeypatch):
    """A new task, added as the registry says: one record and its group membership, with a mini family."""
    monkeypatch.setitem(FAMILIES, "stripes", Family("stripes", "Stripes", ("horizontal", "vertical"), _stripes))
    monkeypatch.setitem(RECORDS, "Stripes", TaskRecord("Stripes", 2, "someone/stripes", "stripes",
                                                        ("a photo of {} stripes.",), mini_family="stripes",
                                                        test_images=100))
    monkeypatch.setitem(GROUPS, "robustness", GROUPS["robustness"] + ("Stripes",))


def test_a_task_added_by_one_record_is_built_run_and_listed_end_to_end(stripes_task, tmp_path, capsys):
    zoo = tmp_path / "zoo"
    build_zoo(replace(ZooRecipe().tiny(), tasks=mini_families("robustness")), zoo)
    assert main(["run", "--method", "task_arithmetic", "--scenario", "multitask", "--scenario", "robustness", "--zoo",
                 str(zoo), "--results", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")]) == 0
    rows = ResultStore(tmp_path / "results").load()
    stripes = rows[rows["task"] == "stripes"]
    assert set(stripes["counterpart"]) == {"Stripes"} and stripes["merged"].astype(bool).all()
    assert len(stripes) == 1 + 8  # multitask, and the robustness group's clean and 7 corrupted test sets
    assert stripes["value"].between(0, 1).all()
    assert "| Task Arithmetic " in (tmp_path / "reports" / "multitask.md").read_text()
    capsys.readouterr()
    assert main(["list", "tasks"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split() == [
        "Stripes", "stripes", "2", "(2", "mini)", "train,", "validation,", "test", "someone/stripes,", "*_stripes,",
        "1", "prompt", "robustness"]
