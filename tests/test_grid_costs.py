"""The full CLIP grid on paper (`bench.grid`), the encoder passes a merge runs (`bench.passes`) and the grid's
priced cost (`bench.grid_costs`)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import is_built_in, registry_restored

from bench.estimates import time_in_processes
from bench.grid import BACKBONES, CHECKPOINT_FAMILIES, all_method_specs, grid_units
from bench.grid_costs import Figures, PricedGrid, part_key, passes_key, price_units
from bench.passes import merge_passes
from bench.reports import grid_cost_section
from bench.results import ResultStore
from bench.selection import points
from methods.adamerging import LayerwiseAdaMerging
from methods.averaging import TaskArithmetic
from methods.fisher import FisherMerging
from methods.regmean import RegMean
from tasks.corruptions import CORRUPTIONS
from tasks.hub import MAX_VALIDATION
from tasks.registry import GROUPS, RECORDS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def units():
    """The grid of the built-in methods (a module-scoped fixture is made before the per-test registry is)."""
    with registry_restored(is_built_in):
        return grid_units()


def test_the_grid_has_every_method_on_every_scenario_of_each_backbone_and_checkpoint_family(units):
    scenarios = {"multitask-8", "multitask-14", "multitask-20", "robustness/clean",
                 *(f"robustness/{name}" for name in CORRUPTIONS), "generalization/unseen-mnist-eurosat",
                 "generalization/unseen-resisc45-svhn"}
    assert len(scenarios) == 11 + 2
    per_group = Counter((u.backbone, u.family, u.unit.scenario.name) for u in units)
    assert set(per_group) == {(b, f, s) for b in BACKBONES for f in CHECKPOINT_FAMILIES.values() for s in scenarios}
    assert set(per_group.values()) == {len(all_method_specs())}  # every method spec once per scenario
    assert len(units) == 3 * 2 * 13 * len(all_method_specs())
    twenty = {u.unit.scenario.merged_tasks for u in units if u.unit.scenario.name == "multitask-20"}
    assert {len(tasks) for tasks in twenty} == {20}
    assert {"emnistletters" in tasks for tasks in twenty} == {True, False}  # FusionBench's TALL20 and the papers'
    fisher = {u.unit.method.estimator for u in units if u.unit.method.name == "fisher_merging"}
    assert fisher == {"sampled"}  # the CLIP suites' preset


def test_passes_count_every_image_through_the_encoder_with_and_without_gradients(tmp_path):
    adamerging = merge_passes(LayerwiseAdaMerging(steps=3, batch_size=2, batches_per_step=2), 3, tmp_path / "a")
    # 3 more: the probe that sizes one input's activations runs 2 inputs and then 1 (saved_bytes_per_input)
    assert (adamerging.forward, adamerging.with_grad) == (0, 3 * 2 * 2 * 3 + 3)
    fisher = merge_passes(FisherMerging(examples=5, estimator="sampled"), 2, tmp_path / "f")
    assert (fisher.forward, fisher.with_grad) == (0, 5 * 2)  # per-example gradients batched by vmap: each counted
    regmean = merge_passes(RegMean(examples=4), 3, tmp_path / "r")
    assert (regmean.forward, regmean.with_grad) == (4 * 3, 0)
    arithmetic = merge_passes(TaskArithmetic(), 3, tmp_path / "t")
    assert (arithmetic.forward, arithmetic.with_grad) == (0, 0)


def figures(units, image_s: float = 1e-3, merge_s: float = 10.0, selection_s: float = 50.0) -> Figures:
    """Round figures: every backbone at image_s, every merge measured on ViT-B/32 only, no method routed, and
    passes of 100 forward and 10 gradient images per merge of Fisher merging, none of the others'."""
    passes = {passes_key(u.unit.method, len(u.unit.scenario.merged_tasks)):
              (100, 10) if u.unit.method.name == "fisher_merging" else (0, 0) for u in units}
    names = {u.unit.method.name for u in units}
    return Figures({b: image_s for b in BACKBONES}, {b: "test" for b in BACKBONES}, {b: image_s for b in BACKBONES},
                   {(name, "clip-vit-b-32"): merge_s for name in names},
                   {(name, "clip-vit-b-32"): selection_s for name in names}, {}, {}, {}, passes)


def test_a_unit_is_priced_by_its_formula_and_shared_work_is_paid_once_per_part(units):
    chosen = [u for u in units if u.suite == "clip-vit-b-32" and u.unit.method.name in ("task_arithmetic",
                                                                                       "fisher_merging")]
    seconds, unpriced = price_units(chosen, figures(chosen))
    assert not unpriced
    priced = dict(zip(((u.unit.method.name, bool(u.unit.grid), u.unit.scenario.name) for u in chosen), seconds))
    eight = sum(RECORDS[name].test_images for name in GROUPS["8-task"])
    # task arithmetic, fixed: evaluation + its merge of 8 experts (on the CPU, where the harness merges)
    assert priced["task_arithmetic", False, "multitask-8"] == pytest.approx(
        {"evaluation": eight * 1e-3, "passes": 0.0, "arithmetic": 10.0, "selection": 0.0})
    # the robustness splits share one merge of the 4 experts, paid by the first
    robustness = [priced["task_arithmetic", False, f"robustness/{name}"] for name in ("clean", *CORRUPTIONS)]
    assert [split["arithmetic"] for split in robustness] == [10.0 * 4 / 8] + [0.0] * len(CORRUPTIONS)
    # validation selection: the grid's merges + every point on 5,000 validation images a task, once per part
    grid_points = len(points(next(u.unit.grid for u in chosen if u.unit.grid)))
    selected = priced["task_arithmetic", True, "multitask-8"]
    assert selected["selection"] == pytest.approx(50.0 + grid_points * MAX_VALIDATION * 8 * 1e-3)
    assert priced["task_arithmetic", True, "robustness/motion_blur"]["selection"] == 0.0
    # Fisher merging memoises per expert: each expert's passes once in its part (all scenarios); 100 forward and
    # 10 images with gradients (a forward and a backward, 3 forwards) for 8 experts: 130 / 8 per expert
    fisher = [priced[key]["passes"] for key in priced if key[0] == "fisher_merging"]
    assert priced["fisher_merging", False, "multitask-8"]["arithmetic"] == 0.0  # its data-driven work is its cost
    assert sum(fisher) == pytest.approx(130 * 1e-3 * len(GROUPS["8-task"]) / 8)
    assert priced["fisher_merging", False, "robustness/clean"]["passes"] == 0.0  # its 4 experts were paid for


def test_wall_time_is_the_parts_dealt_to_gpus(units):
    chosen = [u for u in units if u.backbone == "clip-vit-l-14"]
    priced = PricedGrid(chosen, *price_units(chosen, figures(chosen)))
    parts = priced.part_seconds()
    assert set(parts) == {part_key(u) for u in chosen}
    total, longest = sum(parts.values()), max(parts.values())
    ordered = sorted(parts.values(), reverse=True)
    assert time_in_processes(ordered, 1) == pytest.approx(total)
    assert max(longest, total / 64) <= time_in_processes(ordered, 64) <= total / 64 + longest


def test_the_committed_grid_cost_report_is_the_one_its_figures_give(tmp_path):
    out = tmp_path / "grid-costs.md"
    done = subprocess.run([sys.executable, "-m", "bench.grid_costs", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.read_text() == (ROOT / "reports" / "grid-costs.md").read_text(), \
        "reports/grid-costs.md is stale: regenerate it with `python -m bench.grid_costs`"


def test_the_report_writes_the_grid_cost_section_where_the_results_hold_its_figures(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # as `bench report` runs: the figures' paths in the report are the results' relative ones
    results = Path("results")
    section = grid_cost_section(ResultStore(results).load(), results, tmp_path)
    assert section is not None and section.files == [tmp_path / "grid-costs.md"]
    assert section.files[0].read_text() == (ROOT / "reports" / "grid-costs.md").read_text()
    assert grid_cost_section(ResultStore(results).load(), tmp_path / "no-figures", tmp_path / "other") is None
