"""`run --dry-run`: the planned units with costs measured by stored units, nothing run or written."""

from __future__ import annotations

import shutil

from bench.cli import main
from bench.estimates import seconds_text
from bench.results import ResultStore

RUN = ["run", "--method", "task_arithmetic", "--method", "weight_averaging", "--scenario", "multitask"]


def unit_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("multitask-8 ")]


def test_a_dry_run_lists_one_line_per_unit_and_writes_no_results_and_no_report(tiny_zoo, tmp_path, capsys):
    results, reports = tmp_path / "results", tmp_path / "reports"
    assert main([*RUN, "--seeds", "0", "1", "--zoo", str(tiny_zoo), "--results", str(results),
                 "--reports", str(reports), "--dry-run"]) == 0
    lines = unit_lines(capsys.readouterr().out)
    assert len(lines) == 4 and all(line.split()[-2:] == ["unknown", "unknown"] for line in lines)
    assert not results.exists() and not reports.exists()


def test_a_dry_run_estimates_a_missing_unit_by_the_stored_cost_of_its_method(tiny_zoo, tmp_path, capsys):
    run = [*RUN, "--seeds", "0", "1", "--zoo", str(tiny_zoo)]
    assert main([*run, "--results", str(tmp_path / "full"), "--reports", str(tmp_path / "reports")]) == 0
    shutil.copytree(tmp_path / "full", tmp_path / "partial")
    removed = next((tmp_path / "partial").rglob("task_arithmetic-*-seed1*.parquet"))
    removed.unlink()
    stored = ResultStore(tmp_path / "partial").load()
    seed0 = stored[(stored["method"] == "task_arithmetic") & (stored["seed"] == 0)].iloc[0]
    capsys.readouterr()

    assert main([*run, "--results", str(tmp_path / "partial"), "--dry-run"]) == 0
    output = capsys.readouterr().out
    [line] = unit_lines(output)
    assert line.split()[:4] == ["multitask-8", "Task", "Arithmetic", "1"]
    assert f"  {seconds_text(seed0['merge_s'] + seed0['eval_s'])}  " in line
    assert line.endswith(f"{seed0['peak_rss_mb']:,.0f} MiB")
    assert "1 unit(s) to run, 3 stored unit(s) skipped" in output
    assert sorted(p.name for p in (tmp_path / "partial").rglob("*.parquet")) == sorted(
        p.name for p in (tmp_path / "full").rglob("*.parquet") if p.name != removed.name)
