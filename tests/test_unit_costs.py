"""`python -m bench.unit_costs` on the tiny backbone: every figure measured, on a Python where open_clip,
datasets and imagecorruptions cannot be imported (as on the GPU host it is meant for)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bench.unit_costs import main

ROOT = Path(__file__).resolve().parents[1]
WITHOUT_OPTIONAL_PACKAGES = """
import sys
for name in ("open_clip", "datasets", "imagecorruptions"):
    sys.modules[name] = None  # any import of it fails
from bench.unit_costs import main
sys.exit(main(sys.argv[1:]))
"""


def test_unit_costs_measures_every_figure_of_a_backbone_without_open_clip_or_datasets(tmp_path):
    options = ["--backbones", "tiny", "--experts", "2", "--steps", "2", "--repeats", "1", "--eval-batch", "8",
               "--wemoe-eval-batch", "4", "--out", str(tmp_path), "--temp", str(tmp_path), "--code-version", "test"]
    done = subprocess.run([sys.executable, "-c", WITHOUT_OPTIONAL_PACKAGES, *options], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = pd.read_parquet(tmp_path / "unit_costs.parquet")
    assert len(re.findall(r"^\[ *[\d.]+ s\] tiny \S+ \S+: ", done.stdout, re.MULTILINE)) == len(rows)  # each logged
    figures = set(zip(rows["method"], rows["figure"]))
    adaptation = {"setup_and_first_step", "step", "peak_memory", "adaptation_at_default_steps", "input_draw"}
    assert figures == ({("zoo", "write"), ("encoder", "model_size"), ("encoder", "eval_throughput"),
                        ("wemoe", "eval_throughput")}
                       | {(method, figure) for method in ("adamerging_layerwise", "wemoe") for figure in adaptation}
                       | {(method, figure) for method in ("task_arithmetic", "ties_merging", "tsv_merge")
                          for figure in ("merge", "selection_merges")})  # each declares a validation grid
    assert rows["unit"].str.len().gt(0).all() and rows["value"].map(math.isfinite).all() and rows["value"].gt(0).all()
    assert set(rows["code_version"]) == {"test"} and set(rows["device"]) == {"cpu"}

    def value(method: str, figure: str, **where: object) -> float:
        chosen = rows[(rows["method"] == method) & (rows["figure"] == figure)]
        for column, wanted in where.items():
            chosen = chosen[chosen[column] == wanted]
        assert len(chosen) == 1, (method, figure, where)
        return float(chosen["value"].iloc[0])

    for method, batch in (("encoder", 8), ("wemoe", 4)):
        throughput = rows[(rows["method"] == method) & (rows["figure"] == "eval_throughput")]
        assert {*throughput["precision"]} >= {"fp32", "bf16"}
        assert value(method, "eval_throughput", precision="fp32", batch=batch) > 0
    model_gib = value("encoder", "model_size") / 2**10
    assert value("adamerging_layerwise", "peak_memory") > model_gib
    assert value("adamerging_layerwise", "step", batch=2 * 16 * 2) > 0  # the paper's 2 x 16 inputs per task
    assert value("wemoe", "step", batch=16 * 2) > 0
    assert set(rows[rows["figure"] == "merge"]["compute_device"]) == {"cpu"}


def test_an_unknown_backbone_is_named_before_any_work(tmp_path, capsys):
    assert main(["--backbones", "vit-b-32,vit-h-14", "--out", str(tmp_path)]) == 2
    assert "error: --backbones vit-b-32,vit-h-14: unknown backbone 'vit-h-14'" in capsys.readouterr().err
    assert not (tmp_path / "unit_costs.parquet").exists()


def test_no_measurement_starts_past_the_budget(tmp_path, capsys):
    assert main(["--backbones", "tiny", "--budget-s", "1e-9", "--out", str(tmp_path), "--temp", str(tmp_path)]) == 0
    assert "skipped tiny zoo: past --budget-s" in capsys.readouterr().out
    assert not (tmp_path / "unit_costs.parquet").exists() and not list(tmp_path.iterdir())  # nor zoos left behind


def test_figures_static_times_only_the_named_merges_and_their_grids(tmp_path):
    options = ["--backbones", "tiny", "--experts", "2", "--figures", "static", "--static", "weight_averaging,pcb",
               "--out", str(tmp_path), "--temp", str(tmp_path), "--code-version", "test"]
    assert main(options) == 0
    rows = pd.read_parquet(tmp_path / "unit_costs.parquet")
    assert set(zip(rows["method"], rows["figure"])) == {("zoo", "write"), ("weight_averaging", "merge"),
                                                        ("pcb", "merge")}  # no device figures, no grids
    assert main([*options[:-6], "--figures", "static,selection", *options[-6:]]) == 0
    rows = pd.read_parquet(tmp_path / "unit_costs.parquet")
    assert ("pcb", "selection_merges") in set(zip(rows["method"], rows["figure"]))
    assert ("weight_averaging", "selection_merges") not in set(zip(rows["method"], rows["figure"]))  # no grid


def test_an_unknown_method_or_figure_is_named_before_any_work(tmp_path, capsys):
    assert main(["--backbones", "tiny", "--static", "task_arithmetic,ties", "--out", str(tmp_path)]) == 2
    assert "error: --static task_arithmetic,ties: unknown method 'ties'" in capsys.readouterr().err
    assert main(["--backbones", "tiny", "--figures", "static,gpu", "--out", str(tmp_path)]) == 2
    assert "error: --figures static,gpu: expected some of device, static, selection" in capsys.readouterr().err
