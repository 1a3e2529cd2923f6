"""The result store and the report folder: a broken unit file is recomputed, a report never outlives its data."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.results import ResultStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_run(tiny_zoo, tmp_path) -> Path:
    results = tmp_path / "results"
    assert main(["run", "--method", "task_arithmetic", "--method", "pretrained", "--scenario", "multitask",
                 "--zoo", str(tiny_zoo), "--results", str(results), "--reports", str(tmp_path / "reports")]) == 0
    return results


@pytest.mark.parametrize("damage", ["truncated", "not parquet", "other columns"])
def test_a_unit_file_that_cannot_be_read_is_recomputed_and_said_so(one_run, tiny_zoo, tmp_path, caplog, damage):
    complete = ResultStore(one_run).load()
    (unit,) = [path for path in one_run.rglob("task_arithmetic-*.parquet")]
    if damage == "truncated":
        unit.write_bytes(unit.read_bytes()[:300])
    elif damage == "not parquet":
        unit.write_text("not a parquet file")
    else:
        pd.DataFrame({"value": [0.5]}).to_parquet(unit)
    with caplog.at_level(logging.WARNING):
        assert main(["run", "--method", "task_arithmetic", "--method", "pretrained", "--scenario", "multitask",
                     "--zoo", str(tiny_zoo), "--results", str(one_run), "--reports", str(tmp_path / "reports")]) == 0
    assert f"{unit}: " in caplog.text and "computing the unit again" in caplog.text
    columns = ["method", "task", "value"]
    recomputed = ResultStore(one_run).load()
    pd.testing.assert_frame_equal(recomputed[columns].sort_values(columns).reset_index(drop=True),
                                  complete[columns].sort_values(columns).reset_index(drop=True))


def test_the_report_leaves_out_an_unreadable_unit_file_instead_of_failing(one_run, tmp_path, caplog):
    stray = one_run / "mini" / "multitask-8" / "stray.parquet"
    stray.write_text("not a parquet file")
    with caplog.at_level(logging.WARNING):
        assert main(["report", "--results", str(one_run), "--out", str(tmp_path / "again")]) == 0
    assert f"{stray}: unreadable as parquet" in caplog.text
    assert "| Task Arithmetic " in (tmp_path / "again" / "multitask.md").read_text()


def test_a_run_into_other_results_reports_beside_them_never_into_the_shipped_reports(one_run, tiny_zoo, tmp_path,
                                                                                   monkeypatch):
    checkout = tmp_path / "checkout"
    (checkout / "reports").mkdir(parents=True)
    (checkout / "reports" / "index.md").write_text("# mergebench report\nthe shipped one\n")
    monkeypatch.chdir(checkout)
    assert main(["run", "--method", "pretrained", "--scenario", "multitask", "--zoo", str(tiny_zoo),
                 "--results", "mine"]) == 0
    assert (checkout / "mine" / "reports" / "multitask.md").is_file()
    assert main(["report", "--results", "mine"]) == 0  # the same default for `report`
    assert [p.name for p in (checkout / "reports").iterdir()] == ["index.md"]
    assert (checkout / "reports" / "index.md").read_text() == "# mergebench report\nthe shipped one\n"


def test_a_rebuilt_report_keeps_no_file_of_a_section_no_longer_in_the_results(one_run, tmp_path):
    reports = tmp_path / "reports"
    (reports / "robustness.md").write_text("# Robustness\nfrom results that are gone\n")
    assert main(["report", "--results", str(one_run), "--out", str(reports)]) == 0
    assert not (reports / "robustness.md").exists() and (reports / "multitask.md").is_file()


@pytest.mark.parametrize("content, culprit", [({"notes.txt": "mine"}, "notes.txt"),
                                              ({"index.md": "# My notes\n"}, "index.md")])
def test_a_folder_that_is_not_a_report_is_never_replaced_by_one(one_run, tmp_path, capsys, content, culprit):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in content.items():
        (folder / name).write_text(text)
    assert main(["report", "--results", str(one_run), "--out", str(folder)]) == 2
    error = capsys.readouterr().err
    assert f"error: --out {folder}: not a mergebench report folder (it holds {culprit})" in error
    assert {p.name: p.read_text() for p in folder.iterdir()} == content
