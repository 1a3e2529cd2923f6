"""Settings chosen on validation data: declared grids, the choice, the stored search, the CLI and the report."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import bench.runner
from bench.cli import main
from bench.results import ResultStore
from bench.runner import MethodSpec, run
from bench.selection import GRID, points, scores
from core.errors import BenchError
from methods.averaging import SCALING_GRID, TaskArithmetic
from methods.base import REGISTRY, get_method, setting
from methods.ties import TiesMerging
from tasks.scenarios import multitask, scenarios_for
from tasks.suites import load_suite


@pytest.fixture(scope="module")
def selected(tiny_zoo, tmp_path_factory):
    """Task arithmetic's λ chosen on validation data, in the multitask and robustness scenarios."""
    suite = load_suite("mini", zoo=tiny_zoo)
    store = ResultStore(tmp_path_factory.mktemp("selected"))
    scenarios = multitask(suite) + scenarios_for("robustness", suite)[:2]
    assert run(suite, scenarios, [MethodSpec("task_arithmetic", selection="validation", sweep=True)], [0], store) == 3
    return suite, scenarios, store


def test_a_setting_declares_the_grid_a_benchmark_may_search():
    assert TaskArithmetic().search_space() == {"scaling": SCALING_GRID}
    assert SCALING_GRID == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert TiesMerging().search_space() == {"scaling": SCALING_GRID, "keep": (0.1, 0.2, 0.3)}
    assert TiesMerging.configure("ties_paper").search_space()["scaling"][:3] == (0.8, 0.9, 1.0)
    assert len(points(tuple(TiesMerging().search_space().items()))) == 30
    with pytest.raises(BenchError, match=r"setting grid value 1.5 is out of range \[0, 1\]"):
        setting(0.2, low=0.0, high=1.0, grid=(0.5, 1.5))


def test_the_chosen_setting_has_the_best_mean_validation_accuracy_and_only_it_is_tested(selected):
    suite, _, store = selected
    rows = store.load()
    multitask_rows = rows[rows["scenario"] == "multitask-8"]
    searched = multitask_rows[(multitask_rows["selection"] == GRID) & (multitask_rows["split"] == "validation")]
    by_scaling = searched.groupby(searched["params"].map(lambda p: json.loads(p)["scaling"]))["value"].mean()
    assert sorted(by_scaling.index) == list(SCALING_GRID) and searched["task"].nunique() == len(suite.tasks)
    best = by_scaling[by_scaling >= by_scaling.max() - 1e-9].index[0]  # the first of equals, in grid order
    tested = multitask_rows[multitask_rows["selection"] == "validation"]
    assert set(tested["split"]) == {suite.test_split} and len(tested) == len(suite.tasks)
    assert {json.loads(p)["scaling"] for p in tested["params"]} == {best}
    assert set(tested["label"]) == {f"Task Arithmetic (validation: scaling={best})"}


def test_the_sweep_scenario_also_records_test_scores_of_the_grid_and_the_others_only_validation(selected):
    _, _, store = selected
    rows = store.load()
    grid = rows[rows["selection"] == GRID]
    swept = grid[grid["split"] != "validation"]
    assert set(swept["scenario"]) == {"multitask-8"}
    assert {json.loads(p)["scaling"] for p in swept["params"]} == set(SCALING_GRID)
    corrupted = rows[rows["scenario"] != "multitask-8"]
    assert set(corrupted.loc[corrupted["selection"] == GRID, "split"]) == {"validation"}


@pytest.mark.parametrize("name", ["task_arithmetic", "ties_merging", "consensus", "tsv_merge", "iso_cts", "pcb"])
def test_a_search_merges_each_point_as_merge_does_computing_the_update_once_per_other_setting(name, tiny_zoo,
                                                                                            monkeypatch):
    method = get_method(name)()
    grid_points = points(tuple(method.search_space().items()))
    pool = load_suite("mini", zoo=tiny_zoo).pool
    updates = []
    update = type(method).update
    monkeypatch.setattr(type(method), "update", lambda self, pool: updates.append(self) or update(self, pool))
    searched = {json.dumps(point, sort_keys=True): merged for point, merged in method.merges(pool, grid_points)}
    others = {json.dumps({k: v for k, v in point.items() if k != "scaling"}) for point in grid_points}
    assert len(updates) == len(others) < len(grid_points)
    assert len(searched) == len(grid_points)
    for point in grid_points[::7]:
        alone = dataclasses.replace(method, **point).merge(pool).state_dict()
        merged = searched[json.dumps(point, sort_keys=True)].state_dict()
        assert all(torch.equal(alone[key], merged[key]) for key in alone)  # bit for bit: stored results stay valid


def test_only_the_swept_methods_are_tested_along_their_grid(tiny_zoo, tmp_path, capsys):
    args = ["run", "--method", "task_arithmetic", "--method", "ties_merging", "--select", "validation", "--scenario",
            "multitask", "--zoo", str(tiny_zoo), "--reports", str(tmp_path / "p")]
    assert main(args + ["--sweep", "ties_merging", "--param", "ties_merging.keep=0.2",
                        "--results", str(tmp_path / "r")]) == 0
    rows = ResultStore(tmp_path / "r").load()
    tested = rows[(rows["selection"] == GRID) & (rows["split"] != "validation")]
    assert set(tested["method"]) == {"ties_merging"}
    assert main(args + ["--sweep", "emr", "--results", str(tmp_path / "r")]) == 2
    assert "error: --sweep emr: method emr is not in this run (add --method emr)" in capsys.readouterr().err


def test_scenarios_merging_the_same_experts_share_one_search(selected):
    _, scenarios, store = selected
    rows = store.load()
    robustness = rows[(rows["selection"] == GRID) & rows["scenario"].str.startswith("robustness/")]
    first, second = (group.sort_values(["params", "task"])["value"].tolist()
                     for _, group in robustness.groupby("scenario"))
    assert first == second and len(first) == len(SCALING_GRID) * len(scenarios[1].merged_tasks)


def test_a_selected_unit_is_stored_apart_from_the_fixed_one_and_resumes(selected, tiny_zoo):
    suite, scenarios, store = selected
    specs = [MethodSpec("task_arithmetic", selection="validation", sweep=True), MethodSpec("task_arithmetic")]
    assert run(suite, scenarios, specs, [0], store) == 3  # only the fixed units are new
    rows = store.load()
    assert set(rows.loc[rows["selection"] == "fixed", "label"]) == {"Task Arithmetic"}


def test_a_method_without_a_grid_cannot_be_selected_on_validation(tiny_zoo, tmp_path):
    suite = load_suite("mini", zoo=tiny_zoo)
    with pytest.raises(BenchError, match="weight_averaging: no setting to choose on validation data"):
        run(suite, multitask(suite), [MethodSpec("weight_averaging", selection="validation")], [0],
            ResultStore(tmp_path))
    with pytest.raises(BenchError, match="task_arithmetic: no setting to choose .* beyond the --param settings"):
        fixed = MethodSpec("task_arithmetic", overrides={"scaling": "0.5"}, selection="validation")
        run(suite, multitask(suite), [fixed], [0], ResultStore(tmp_path))


def test_run_all_gives_fixed_and_selected_rows_and_the_sweep_figure_of_validation_and_test(tiny_zoo, tmp_path, capsys):
    assert main(["run", "--method", "task_arithmetic", "--method", "weight_averaging", "--select", "both",
                 "--scenario", "multitask", "--zoo", str(tiny_zoo), "--results", str(tmp_path / "r"),
                 "--reports", str(tmp_path / "p")]) == 0
    rows = ResultStore(tmp_path / "r").load()
    assert set(zip(rows["method"], rows["selection"])) == {
        ("task_arithmetic", "fixed"), ("task_arithmetic", "validation"), ("task_arithmetic", GRID),
        ("weight_averaging", "fixed")}  # weight averaging has nothing to choose
    tested = rows["selection"] != GRID  # the serving costs are the tested model's, not each grid point's
    assert rows.loc[tested, ["stored_models", "inference_cost"]].notna().all().all()
    assert rows.loc[~tested, ["stored_models", "inference_cost"]].isna().all().all()
    table = (tmp_path / "p" / "multitask.md").read_text()
    assert "| Task Arithmetic " in table and "| Task Arithmetic (validation: scaling=" in table
    assert "scaling=0.1)" not in table.replace("validation: scaling=0.1)", "")  # no grid point is a table row
    assert list((tmp_path / "p").glob("scaling-mini-*.png"))
    assert main(["run", "--method", "weight_averaging", "--select", "validation", "--zoo", str(tiny_zoo),
                 "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")]) == 2
    assert "error: weight_averaging: no setting to choose on validation data" in capsys.readouterr().err


def test_a_chosen_setting_is_named_in_the_label_even_at_its_default():
    assert TaskArithmetic(scaling=0.3).label(chosen=["scaling"]) == "Task Arithmetic (validation: scaling=0.3)"
    assert TiesMerging.configure("ties_paper", {"keep": "0.1"}).label(chosen=["scaling"]) == (
        "TIES-Merging (ties_paper, keep=0.1, validation: scaling=1.0)")


def test_an_adaptive_method_scored_on_validation_adapts_on_validation_inputs(tiny_zoo, monkeypatch):
    from methods.adamerging import TaskwiseAdaMerging

    suite = load_suite("mini", zoo=tiny_zoo)
    drawn, sample = [], suite.pool._sample_inputs
    monkeypatch.setattr(suite.pool, "_sample_inputs", lambda task, split, n, seed: drawn.append(split) or sample(
        task, split, n, seed))
    tasks = tuple(suite.tasks)[:2]
    scores(suite, tasks, TaskwiseAdaMerging(steps=1), [{}], tuple((task, "validation") for task in tasks))
    assert drawn and set(drawn) == {"validation"}


def test_a_validation_choice_equal_to_the_fixed_setting_tests_that_model_once_per_scenario(tiny_zoo, tmp_path,
                                                                                           monkeypatch):
    """A one-point grid at the default: the validation-selected unit gets the fixed unit's model and accuracies
    (the same rows but for label and selection) without merging or testing it again."""
    saved = dict(REGISTRY)

    class OnePoint(TaskArithmetic):
        name = "test_one_point"
        scaling: float = setting(0.3, low=0.0, grid=(0.3,))

    tested = []
    evaluate = bench.runner.evaluate
    monkeypatch.setattr(bench.runner, "evaluate", lambda *args, **kwargs: tested.append(args[2]) or evaluate(
        *args, **kwargs))
    try:
        suite = load_suite("mini", zoo=tiny_zoo)
        scenarios = scenarios_for("robustness", suite)[:3]
        specs = [MethodSpec("test_one_point"), MethodSpec("test_one_point", selection="validation")]
        assert run(suite, scenarios, specs, [0], ResultStore(tmp_path)) == 6
    finally:
        REGISTRY.clear()
        REGISTRY.update(saved)
    assert sorted(tested) == sorted(scenario.evaluated for scenario in scenarios)  # each once, not twice
    rows = ResultStore(tmp_path).load()
    tested_rows = rows[rows["selection"] != GRID].sort_values(["scenario", "task"])
    fixed, chosen = (tested_rows[tested_rows["selection"] == kind].reset_index(drop=True)
                     for kind in ("fixed", "validation"))
    columns = ["scenario", "task", "split", "value", "merge_s", "eval_s", "params"]
    assert len(fixed) == 3 * 4 and fixed[columns].equals(chosen[columns])
