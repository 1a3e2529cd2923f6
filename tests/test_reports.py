"""Report details that need no model: the published numbers beside the measured ones."""

from __future__ import annotations

import json

from bench.reports import build_reports
from bench.results import ResultStore


def rows(suite: str, method: str, label: str, accuracies: dict[str, float]) -> list[dict]:
    common = {"run_id": "r", "suite": suite, "family": "f", "scenario": "multitask", "method": method, "label": label,
              "preset": "default", "params": json.dumps({"preset": "default", "scaling": 0.3}), "seed": 0, "merged": True,
              "split": "test", "metric": "accuracy", "step": None, "merge_s": 0.0, "eval_s": 0.0, "peak_rss_mb": 0.0,
              "code_version": "test"}
    return [{**common, "task": task, "counterpart": task, "value": value} for task, value in accuracies.items()]


def test_tables_of_a_suite_with_published_numbers_show_them_beside_the_measured_ones(tmp_path):
    store = ResultStore(tmp_path / "results")
    suite = "clip-vit-base-patch32"
    store.write("a", rows(suite, "task_arithmetic", "Task Arithmetic", {"SUN397": 0.6, "Cars": 0.8}))
    store.write("b", rows(suite, "median", "median", {"SUN397": 0.5, "Cars": 0.5}))
    store.write("c", rows("mini", "task_arithmetic", "Task Arithmetic", {"SUN397": 0.6, "Cars": 0.8}))
    build_reports(tmp_path / "results", tmp_path / "reports")
    markdown = (tmp_path / "reports" / "multitask.md").read_text()
    clip, mini = markdown.split("## Suite `mini`")
    assert "| Avg.   | Published Avg.   |" in clip and "AdaMerging (Yang et al., ICLR 2024), Table 2" in clip
    assert clip.split("| Task Arithmetic ")[1].split("\n")[0].split("|")[-3:-1] == [" 70.0   ", " 69.1             "]
    assert clip.split("| median ")[1].split("\n")[0].split("|")[-2].strip() == "–"  # no published number
    assert "Published" not in mini
    assert r"Published Avg. \\" in (tmp_path / "reports" / "multitask.tex").read_text()
