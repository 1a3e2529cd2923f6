"""Report details that need no model: the published numbers beside the measured ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bench.reports import build_reports
from bench.results import COLUMNS, ResultStore

ROOT = Path(__file__).resolve().parents[1]


def rows(suite: str, method: str, label: str, accuracies: dict[str, float], family: str = "f",
         scenario: str = "multitask", split: str = "test", merged: bool = True) -> list[dict]:
    common = {"run_id": "r", "suite": suite, "family": family, "scenario": scenario, "method": method, "label": label,
              "preset": "default", "params": json.dumps({"preset": "default", "scaling": 0.3}), "seed": 0,
              "merged": merged, "split": split, "metric": "accuracy", "step": None, "merge_s": 0.0, "eval_s": 0.0,
              "peak_rss_mb": 0.0, "code_version": "test"}
    return [{**common, "task": task.lower(), "counterpart": task, "value": value} for task, value in accuracies.items()]


def test_report_command_imports_no_torch(tmp_path):
    store = ResultStore(tmp_path / "results")
    store.write("clean", rows("mini", "task_arithmetic", "Task Arithmetic", {"Cars": 0.7}, scenario="robustness/clean"))
    store.write("contrast", rows("mini", "task_arithmetic", "Task Arithmetic", {"Cars": 0.5},
                                 scenario="robustness/contrast", split="test/contrast@2"))
    report = subprocess.run([sys.executable, "-X", "importtime", "-m", "bench", "report", "--results",
                             str(tmp_path / "results"), "--out", str(tmp_path / "reports")],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True)
    imported = {line.rsplit("|", 1)[1].strip()
                for line in report.stderr.splitlines() if line.startswith("import time:")}
    assert "bench.reports" in imported and "tasks.splits" in imported
    assert "torch" not in imported
    assert "Contrast" in (tmp_path / "reports" / "robustness.md").read_text()


def test_tables_show_the_published_numbers_of_the_same_suite_and_checkpoint_family_under_the_measured_rows(tmp_path):
    store = ResultStore(tmp_path / "results")
    fusionbench = "fusionbench:tanganke/clip-vit-base-patch32"
    measured = {"SUN397": 0.6, "Cars": 0.8}
    store.write("a", rows("clip-vit-b-32", "task_arithmetic", "Task Arithmetic", measured, fusionbench))
    store.write("b", rows("clip-vit-b-32", "median", "median", {"SUN397": 0.5, "Cars": 0.5}, fusionbench))
    store.write("c", rows("clip-vit-b-32", "task_arithmetic", "Task Arithmetic", measured, "other:x"))
    store.write("d", rows("mini", "task_arithmetic", "Task Arithmetic", measured))
    build_reports(tmp_path / "results", tmp_path / "reports")
    markdown = (tmp_path / "reports" / "multitask.md").read_text()
    blocks = {block.split("\n")[0]: block for block in markdown.split("## Suite ")[1:]}
    clip = blocks[f"`clip-vit-b-32` ({fusionbench}): multitask"]
    assert "Published (fusionbench checkpoints): FusionBench documentation" in clip
    lines = [line.split("|")[1:-1] for line in clip.splitlines() if line.startswith("| Task Arithmetic")]
    # FusionBench's CLIP-ViT-B/32 table: task arithmetic (0.3) SUN397 57.1, Cars 55.7, average over all 8 tasks 68.0
    assert [cell.strip() for cell in lines[0]] == ["Task Arithmetic", "60.0", "80.0", "70.0", "–", "–"]
    assert [cell.strip() for cell in lines[1]] == ["Task Arithmetic (published)", "57.1", "55.7", "68.0", "–", "–"]
    assert "median (published)" not in clip  # no published number, no row
    assert "published" not in blocks["`clip-vit-b-32` (other:x): multitask"] + blocks["`mini` (f): multitask"]
    latex = (tmp_path / "reports" / "multitask.tex").read_text()
    assert r"Task Arithmetic (published) & 57.1 & 55.7 & 68.0 & -- & -- \\" in latex


def test_robustness_table_shows_the_published_averages_of_the_same_family(tmp_path):
    store = ResultStore(tmp_path / "results")
    suite, family = "clip-vit-b-32-task-vectors", "task-vectors:ViT-B-32"
    store.write("clean", rows(suite, "task_arithmetic", "Task Arithmetic", {"Cars": 0.7, "GTSRB": 0.9}, family,
                              "robustness/clean"))
    store.write("contrast", rows(suite, "task_arithmetic", "Task Arithmetic", {"Cars": 0.5, "GTSRB": 0.7}, family,
                                 "robustness/contrast", "test/contrast@2"))
    build_reports(tmp_path / "results", tmp_path / "reports")
    markdown = (tmp_path / "reports" / "robustness.md").read_text()
    average = markdown.split("## Suite ")[1]
    assert "Published (task-vectors checkpoints): WEMoE authors' result files" in average
    lines = [[cell.strip() for cell in line.split("|")[1:-1]]
             for line in average.splitlines() if line.startswith("| Task Arithmetic")]
    # The WEMoE authors' ViT-B/32 task arithmetic (0.3) over Cars, EuroSAT, RESISC45, GTSRB: clean 79.9, contrast
    # 68.8, mean over the seven corruptions 60.3.
    assert lines == [["Task Arithmetic", "80.0", "60.0", "60.0"],
                     ["Task Arithmetic (published)", "79.9", "68.8", "60.3"]]


def test_generalization_table_shows_fusionbench_published_numbers_under_the_measured_rows(tmp_path):
    store = ResultStore(tmp_path / "results")
    suite, family = "clip-vit-b-32", "fusionbench:tanganke/clip-vit-base-patch32"
    scenario = "generalization/unseen-mnist-eurosat"
    store.write("seen", rows(suite, "wemoe", "WEMoE", {"SUN397": 0.9, "Cars": 0.8}, family, scenario))
    store.write("unseen", rows(suite, "wemoe", "WEMoE", {"MNIST": 0.5, "EuroSAT": 0.3}, family, scenario, merged=False))
    build_reports(tmp_path / "results", tmp_path / "reports")
    markdown = (tmp_path / "reports" / "generalization.md").read_text()
    assert ("FusionBench documentation, CLIP-ViT model pool page (docs/modelpool/clip_vit.md), generalization table "
            "(Exp1)") in markdown
    lines = [[cell.strip() for cell in line.split("|")[1:-1]]
             for line in markdown.splitlines() if line.startswith("| WEMoE")]
    # FusionBench's WEMoE merging six experts: seen average 86.6, unseen MNIST 78.3, EuroSAT 44.0, average 61.1.
    assert lines == [["WEMoE", "85.0", "50.0", "30.0", "40.0"], ["WEMoE (published)", "86.6", "78.3", "44.0", "61.1"]]


def test_the_multitask_table_shows_storage_and_inference_cost_beside_the_average(tmp_path):
    store = ResultStore(tmp_path / "results")
    costs = {"stored_models": 2.25, "inference_cost": 1.0149}
    store.write("a", [row | costs for row in rows("mini", "tall_masks", "TALL Masks", {"SUN397": 0.9, "Cars": 0.8})])
    build_reports(tmp_path / "results", tmp_path / "reports")
    markdown = (tmp_path / "reports" / "multitask.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| Method"))
    assert [cell.strip() for cell in header.split("|")[1:-1]][-3:] == ["Avg.", "Storage (models)",
                                                                       "Inference (× pretrained)"]
    assert "| 85.0 " in markdown and "| 2.25 " in markdown and "| 1.01 " in markdown
    latex = (tmp_path / "reports" / "multitask.tex").read_text()
    assert r"Avg. & Storage (models) & Inference ($\times$ pretrained) \\" in latex
    assert r"TALL Masks & 90.0 & 80.0 & 85.0 & 2.25 & 1.01 \\" in latex


def test_units_stored_before_costs_were_measured_stay_stored_and_show_no_costs(tmp_path):
    store = ResultStore(tmp_path / "results")
    old_columns = [column for column in COLUMNS if column not in ("stored_models", "inference_cost")]
    path = store.path("mini/multitask/old")
    path.parent.mkdir(parents=True)
    pd.DataFrame(rows("mini", "task_arithmetic", "Task Arithmetic", {"SUN397": 0.6, "Cars": 0.8}),
                 columns=old_columns).to_parquet(path, index=False)
    assert store.has("mini/multitask/old")  # whole: a run does not compute it again
    assert store.load()[["stored_models", "inference_cost"]].isna().all().all()
    build_reports(tmp_path / "results", tmp_path / "reports")
    line = next(line for line in (tmp_path / "reports" / "multitask.md").read_text().splitlines()
                if line.startswith("| Task Arithmetic"))
    assert [cell.strip() for cell in line.split("|")[1:-1]] == ["Task Arithmetic", "60.0", "80.0", "70.0", "–", "–"]
