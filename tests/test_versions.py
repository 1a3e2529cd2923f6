"""Results tied to code: a method's, a scenario's or the evaluation's version enters the unit key, so `run`
recomputes exactly the units a version bump concerns; the report names the code versions of its rows."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from helpers import built_in_methods

import bench.runner
from bench.evaluation import EVALUATION_VERSION
from bench.reports import build_reports
from bench.results import ResultStore
from bench.runner import MethodSpec, requested, run
from core.errors import BenchError
from methods.averaging import TaskArithmetic
from tasks.scenarios import SCENARIO_VERSION, scenarios_to_run
from tasks.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def versioned_method():
    """A method registered for the test only (conftest's registry fixture drops it afterwards)."""

    class VersionedArithmetic(TaskArithmetic):
        name = "test_versioned_arithmetic"

    return VersionedArithmetic


def stored_files(results: Path) -> dict[str, bytes]:
    """Every unit file under `results`, by path relative to it, with its content."""
    return {str(path.relative_to(results)): path.read_bytes() for path in sorted(results.rglob("*.parquet"))}


def run_both(suite, results: Path, scenarios=None) -> int:
    scenarios = scenarios or scenarios_to_run(suite, ["multitask", "generalization"])
    specs = [MethodSpec("test_versioned_arithmetic"), MethodSpec("weight_averaging")]
    return run(suite, scenarios, specs, [0], ResultStore(results))


def test_bumping_a_method_s_version_recomputes_its_units_and_no_others(versioned_method, tiny_zoo, tmp_path,
                                                                        monkeypatch, caplog):
    suite, results = load_suite("mini", zoo=tiny_zoo), tmp_path / "results"
    assert run_both(suite, results) == 2 * 3
    before = stored_files(results)
    assert run_both(suite, results) == 0
    monkeypatch.setattr(versioned_method, "version", 2)
    with caplog.at_level(logging.INFO):
        assert run_both(suite, results) == 3  # the method's multitask unit and two generalization units
    assert caplog.text.count("is of other code versions") == 3
    after = stored_files(results)
    assert {k: v for k, v in after.items() if "weight_averaging" in k} == {
        k: v for k, v in before.items() if "weight_averaging" in k}  # untouched, byte for byte
    recomputed = sorted(k for k in after if "test_versioned_arithmetic" in k)
    assert len(recomputed) == 3 and all("-seed0@method2" in k for k in recomputed)
    assert sorted(k.replace("@method2-", "@").replace("@method2", "") for k in recomputed) == sorted(
        k for k in before if "test_versioned_arithmetic" in k)  # each replaces its unit at version 1, removed
    rows = ResultStore(results).load()
    versions = rows.groupby("method")["versions"].unique().map(lambda texts: [json.loads(t) for t in texts])
    assert versions["test_versioned_arithmetic"] == [{"method": 2, "scenario": SCENARIO_VERSION,
                                                       "evaluation": EVALUATION_VERSION}]
    assert versions["weight_averaging"] == [{"method": 1, "scenario": SCENARIO_VERSION,
                                              "evaluation": EVALUATION_VERSION}]
    assert run_both(suite, results) == 0


def test_bumping_a_scenario_s_version_recomputes_its_units_only_and_the_evaluation_s_every_unit(
        versioned_method, tiny_zoo, tmp_path, monkeypatch):
    suite, results = load_suite("mini", zoo=tiny_zoo), tmp_path / "results"
    scenarios = scenarios_to_run(suite, ["multitask", "generalization"])
    assert run_both(suite, results, scenarios) == 2 * 3
    bumped_version = SCENARIO_VERSION + 1
    bumped = [dataclasses.replace(s, version=bumped_version) if s.name == "multitask-8" else s for s in scenarios]
    assert run_both(suite, results, bumped) == 2  # multitask, each method
    assert sorted(path.name.split("@")[1] for path in results.rglob(f"*@*scenario{bumped_version}*.parquet")) == [
        f"scenario{bumped_version}-evaluation{EVALUATION_VERSION}.parquet"] * 2
    monkeypatch.setattr(bench.runner, "EVALUATION_VERSION", 3)
    assert run_both(suite, results, bumped) == 2 * 3
    assert len(list(results.rglob("*.parquet"))) == 2 * 3  # every superseded unit removed


def test_a_method_version_must_be_a_positive_integer(versioned_method):
    with pytest.raises(BenchError, match="method test_zero_version: version 0 is not an integer >= 1"):
        class ZeroVersion(TaskArithmetic):
            name = "test_zero_version"
            version = 0


def test_the_shipped_results_hold_every_fixed_setting_unit_of_the_current_code():
    """`results/` is regenerated with every change that moves a number: each unit `run --all` plans at fixed
    settings is found under its key, versions included."""
    suite = load_suite("mini")
    specs = [MethodSpec(name) for name in built_in_methods()]
    units = requested(suite, scenarios_to_run(suite), specs, [0])
    store = ResultStore(ROOT / "results")
    assert len(units) > 100 and [unit.key for unit in units if not store.has(unit.key)] == []


def test_a_unit_stored_without_the_versions_column_is_found_and_read_as_version_1(versioned_method, tiny_zoo,
                                                                                  tmp_path):
    suite, results = load_suite("mini", zoo=tiny_zoo), tmp_path / "results"
    (unit,) = requested(suite, scenarios_to_run(suite, ["multitask"]), [MethodSpec("test_versioned_arithmetic")], [0])
    assert run(suite, [unit.scenario], [MethodSpec("test_versioned_arithmetic")], [0], ResultStore(results)) == 1
    path = ResultStore(results).path(unit.key)
    pd.read_parquet(path).drop(columns="versions").to_parquet(path)
    assert ResultStore(results).has(unit.key)
    assert json.loads(ResultStore(results).load()["versions"].unique().item()) == {
        "method": 1, "scenario": 1, "evaluation": 1}


def report_rows(code_version: str, method: str, scenario: str = "multitask") -> list[dict]:
    common = {"run_id": "r", "suite": "mini", "family": "f", "scenario": scenario, "method": method, "label": method,
              "preset": "default", "params": json.dumps({"preset": "default"}), "seed": 0, "merged": True,
              "split": "test", "metric": "accuracy", "step": None, "merge_s": 0.0, "eval_s": 0.0, "peak_rss_mb": 0.0,
              "code_version": code_version}
    return [{**common, "task": task, "counterpart": task, "value": 0.5} for task in ("Cars", "GTSRB")]


def test_the_report_names_the_code_versions_and_warns_of_each_table_that_mixes_them(tmp_path, caplog):
    store = ResultStore(tmp_path / "results")
    store.write("a", report_rows("0.1.0+aaaaaaa", "pretrained"))
    store.write("b", report_rows("0.1.0+bbbbbbb+dirty", "weight_averaging"))
    store.write("c", report_rows("0.1.0+aaaaaaa", "pretrained", "generalization/unseen-x"))
    store.write("d", report_rows("0.1.0+aaaaaaa", "weight_averaging", "generalization/unseen-x"))
    with caplog.at_level(logging.WARNING):
        build_reports(tmp_path / "results", tmp_path / "reports")
    index = (tmp_path / "reports" / "index.md").read_text()
    assert "Code versions of the results: `0.1.0+aaaaaaa` (3 units), `0.1.0+bbbbbbb+dirty` (1 unit)." in index
    note = "multitask.md, suite mini (f) mixes code versions `0.1.0+aaaaaaa`, `0.1.0+bbbbbbb+dirty`"
    assert f"- {note}" in index and note in caplog.text
    assert "generalization.md" not in index.split("**Note:**")[1].split("##")[0]  # one code version: no note


def test_a_report_of_one_code_version_names_it_and_warns_of_nothing(tmp_path, caplog):
    store = ResultStore(tmp_path / "results")
    store.write("a", report_rows("0.1.0+aaaaaaa", "pretrained"))
    store.write("b", report_rows("0.1.0+aaaaaaa", "weight_averaging"))
    with caplog.at_level(logging.WARNING):
        build_reports(tmp_path / "results", tmp_path / "reports")
    index = (tmp_path / "reports" / "index.md").read_text()
    assert "Code versions of the results: `0.1.0+aaaaaaa` (2 units)." in index
    assert "**Note:**" not in index and "mixes code versions" not in caplog.text



def test_a_run_writing_into_the_checkout_s_results_does_not_mark_its_code_dirty(tmp_path):
    import subprocess

    from core.versions import code_version

    def git(*arguments: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *arguments], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "unit.parquet").write_text("rows")
    (tmp_path / "method.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "c")
    clean = code_version(tmp_path)
    (tmp_path / "results" / "unit.parquet").write_text("other rows")
    assert code_version(tmp_path) == clean and not clean.endswith("+dirty")
    (tmp_path / "method.py").write_text("x = 2\n")
    assert code_version(tmp_path) == clean + "+dirty"
