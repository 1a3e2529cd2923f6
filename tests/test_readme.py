"""The README's headline table is generated from the results by the report, never edited by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.readme import END, START, refresh_readme
from bench.results import ResultStore
from tasks.shipped_zoo import SHIPPED_NAME
from tasks.zoo_manifest import zoo_family

REPO_README = Path(__file__).resolve().parents[1] / "README.md"
MANIFEST = {"recipe": {}, "recipe_hash": "r", "data_fingerprint": "d", "files": {"pretrained.safetensors": "0" * 64}}
TASKS = {"scenes": "SUN397", "digits": "MNIST"}


def unit_rows(family: str, method: str, label: str, preset: str, accuracy: float) -> list[dict]:
    common = {"run_id": "r", "suite": "mini", "family": family, "scenario": "multitask", "method": method,
              "label": label, "preset": preset, "params": json.dumps({"preset": preset}), "seed": 0, "merged": True,
              "split": "test", "metric": "accuracy", "step": None, "merge_s": 0.0, "eval_s": 0.0, "peak_rss_mb": 0.0,
              "code_version": "test", "selection": "fixed"}
    return [{**common, "task": task, "counterpart": counterpart, "value": accuracy}
            for task, counterpart in TASKS.items()]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A folder laid out as a checkout: the repository's README, a shipped zoo's manifest, and results of that zoo
    (task arithmetic, layer-wise AdaMerging with the mini preset) and of another zoo."""
    shutil.copy(REPO_README, tmp_path / "README.md")
    zoo = tmp_path / "zoo" / SHIPPED_NAME
    zoo.mkdir(parents=True)
    (zoo / "manifest.json").write_text(json.dumps(MANIFEST))
    store = ResultStore(tmp_path / "results")
    shipped = zoo_family(MANIFEST)
    store.write("ta", unit_rows(shipped, "task_arithmetic", "Task Arithmetic", "default", 0.625))
    store.write("ada", unit_rows(shipped, "adamerging_layerwise", "Layer-wise AdaMerging (mini)", "mini", 0.5))
    store.write("other", unit_rows("mini-zoo:other", "task_arithmetic", "Task Arithmetic", "default", 0.25))
    return tmp_path


def parts(text: str) -> tuple[str, str, str]:
    head, rest = text.split(START)
    block, tail = rest.split(END)
    return head, block, tail


def test_the_repository_readme_holds_the_headline_markers_once_in_order():
    text = REPO_README.read_text()
    assert text.count(START) == 1 and text.count(END) == 1 and text.index(START) < text.index(END)


def test_refresh_replaces_the_headline_block_from_the_shipped_zoo_results_and_leaves_the_rest_untouched(checkout):
    readme = checkout / "README.md"
    before = parts(readme.read_text())
    assert refresh_readme(readme, checkout / "results")
    head, block, tail = parts(readme.read_text())
    assert (head, tail) == (before[0], before[2])
    lines = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
             for line in block.splitlines() if line.startswith("| ") and "---" not in line}
    # Published 8-task averages on CLIP ViT-B/32: task arithmetic 69.1 (task-vectors checkpoints, AdaMerging's
    # table) and 68.0 (FusionBench's); layer-wise AdaMerging 80.1 and 82.6, matched without the suite's preset.
    assert lines["Task Arithmetic"] == ["62.5", "69.1", "68.0"]
    assert lines["Layer-wise AdaMerging (mini)"] == ["50.0", "80.1", "82.6"]
    assert "25.0" not in block  # the other zoo's rows stay out
    assert "measured here" in lines["Method"][0] and "published" in lines["Method"][1]


def test_refresh_twice_gives_the_same_readme(checkout):
    readme = checkout / "README.md"
    refresh_readme(readme, checkout / "results")
    once = readme.read_text()
    refresh_readme(readme, checkout / "results")
    assert readme.read_text() == once


def test_a_readme_without_the_markers_is_left_alone(checkout):
    readme = checkout / "README.md"
    readme.write_text("# my notes\n")
    assert not refresh_readme(readme, checkout / "results")
    assert readme.read_text() == "# my notes\n"


def test_report_of_the_default_results_rewrites_the_readme_and_of_other_results_does_not(checkout, monkeypatch):
    monkeypatch.chdir(checkout)
    readme = checkout / "README.md"
    original = readme.read_text()
    shutil.copytree(checkout / "results", checkout / "elsewhere")
    assert main(["report", "--results", "elsewhere"]) == 0
    assert readme.read_text() == original
    assert main(["report"]) == 0
    assert readme.read_text() != original and "62.5" in parts(readme.read_text())[1]


def test_results_without_the_shipped_zoo_leave_the_readme_as_it_was(checkout):
    readme = checkout / "README.md"
    original = readme.read_text()
    shutil.rmtree(checkout / "results")
    ResultStore(checkout / "results").write("other", unit_rows("mini-zoo:other", "task_arithmetic", "Task Arithmetic",
                                                               "default", 0.25))
    assert not refresh_readme(readme, checkout / "results")
    assert readme.read_text() == original
