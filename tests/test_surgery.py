"""Representation Surgery: per task, z - up(relu(down(z))) on a base merge's output, fit by L1 to the expert's."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import random_pool
from torch import nn

from bench.cli import main
from bench.results import ResultStore
from bench.runner import MethodSpec, unit_versions
from core.errors import BenchError
from methods.averaging import TaskArithmetic
from methods.surgery import Surgery, surgery
from tasks.scenarios import Scenario
from tasks.suites import MINI_PRESETS


def task_arithmetic_encoder(pool, scaling: float = 0.3) -> nn.Module:
    return pool.encoder({key: pool.pretrained_tensor(key) + scaling * sum(pool.task_vector(t, key) for t in pool.tasks)
                         for key in pool.parameter_names})


def reference_surgery(pool, inputs: torch.Tensor, rank: int, steps: int, lr: float,
                      seed: int) -> dict[str, nn.Module]:
    """The authors' module and loop, written plainly, task by task: Linear(d, rank) -> ReLU -> Linear(rank, d),
    no biases, subtracted from the task-arithmetic encoder's output; Adam on nn.L1Loss against the expert's output,
    each step on the whole of `inputs` (so the order of draws does not matter)."""
    merged = task_arithmetic_encoder(pool)
    width = pool.parameter_shapes["proj"][1]
    initial = torch.rand(len(pool.tasks), rank, width, generator=torch.Generator().manual_seed(seed))
    models = {}
    for index, task in enumerate(pool.tasks):
        down, up = nn.Linear(width, rank, bias=False), nn.Linear(rank, width, bias=False)
        with torch.no_grad():
            down.weight.copy_((initial[index] * 2 - 1) / math.sqrt(width))
            up.weight.zero_()
        optimizer = torch.optim.Adam([down.weight, up.weight], lr=lr, betas=(0.9, 0.999), weight_decay=0.0)
        with torch.no_grad():
            z, target = merged(inputs), pool.encoder(pool.expert_state(task))(inputs)
        for _ in range(steps):
            loss = nn.L1Loss()(z - up(F.relu(down(z))), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        models[task] = SurgeredReference(merged, down, up)
    return models


class SurgeredReference(nn.Module):
    def __init__(self, encoder: nn.Module, down: nn.Linear, up: nn.Linear) -> None:
        super().__init__()
        self.encoder, self.down, self.up = encoder, down, up

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        z = self.encoder(inputs)
        return z - self.up(F.relu(self.down(z)))


def test_the_module_subtracts_up_of_relu_of_down_of_the_representation():
    z, down, up = torch.randn(5, 6), torch.randn(3, 6), torch.randn(6, 3)
    expected = z - torch.relu(z @ down.T) @ up.T
    torch.testing.assert_close(surgery(z, down, up), expected)
    stacked = surgery(torch.stack([z, 2 * z]), torch.stack([down, down]), torch.stack([up, -up]))
    torch.testing.assert_close(stacked[1], 2 * z + torch.relu(2 * z @ down.T) @ up.T)


def test_each_task_s_model_is_the_plainly_written_surgery_trained_on_its_expert_s_representation(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    inputs = pool.sample_inputs("task0", "test", 8)
    merged = Surgery(rank=4, steps=30, lr=1e-2, batch_size=8, inputs=8).merge(pool)
    expected = reference_surgery(pool, inputs, rank=4, steps=30, lr=1e-2, seed=0)
    assert set(merged) == set(pool.tasks)
    for task in pool.tasks:
        torch.testing.assert_close(merged[task](inputs), expected[task](inputs), rtol=1e-4, atol=1e-5)


def test_training_brings_each_task_s_representation_closer_to_its_expert_s(tmp_path):
    pool = random_pool(tmp_path, n_experts=3, spread=0.5)
    inputs = pool.sample_inputs("task0", "test", 64)
    before = Surgery(steps=0).merge(pool)
    after = Surgery(rank=4, steps=200, lr=1e-2, inputs=64).merge(pool)
    with torch.no_grad():
        for task in pool.tasks:
            expert = pool.encoder(pool.expert_state(task))(inputs)
            assert F.l1_loss(after[task](inputs), expert) < 0.8 * F.l1_loss(before[task](inputs), expert)


def test_no_step_gives_the_base_merge_s_representation_and_reads_test_inputs(tmp_path):
    pool = random_pool(tmp_path, n_experts=2)
    inputs = pool.sample_inputs("task0", "test", 8)
    merged = Surgery(steps=0).merge(pool)
    assert pool.test_inputs_read
    with torch.no_grad():
        torch.testing.assert_close(merged["task1"](inputs), task_arithmetic_encoder(pool)(inputs))


def test_every_task_shares_one_encoder_and_stores_its_own_rank_by_width_pair(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    merged = Surgery(rank=5, steps=2).merge(pool)
    encoders = {id(model.encoder) for model in merged.values()}
    width = pool.parameter_shapes["proj"][1]
    assert len(encoders) == 1
    assert all(model.down.shape == (5, width) and model.up.shape == (width, 5) for model in merged.values())


def test_a_single_expert_gets_its_own_module(tmp_path):
    pool = random_pool(tmp_path, n_experts=1)
    inputs = pool.sample_inputs("task0", "test", 8)
    merged = Surgery(rank=4, steps=20, lr=1e-2, batch_size=8, inputs=8).merge(pool)
    expected = reference_surgery(pool, inputs, rank=4, steps=20, lr=1e-2, seed=0)
    torch.testing.assert_close(merged["task0"](inputs), expected["task0"](inputs), rtol=1e-4, atol=1e-5)


def test_the_base_is_built_by_the_registry_with_its_preset_where_it_declares_one():
    adaptive = Surgery(base="adamerging_layerwise", base_preset="mini", seed=3).base_method()
    assert (adaptive.name, adaptive.preset, adaptive.steps, adaptive.seed) == ("adamerging_layerwise", "mini", 50, 3)
    static = Surgery(base="ties_merging", base_preset="mini").base_method()
    assert (static.name, static.preset) == ("ties_merging", "default")
    assert MethodSpec("surgery").build(0, MINI_PRESETS).base_preset == "mini"


def test_an_unknown_base_or_base_preset_is_refused():
    with pytest.raises(BenchError, match="surgery: base_preset='nope' is no preset of any base"):
        Surgery(base_preset="nope")
    with pytest.raises(BenchError, match="surgery: base='regmean' is not one of"):
        Surgery.configure(None, {"base": "regmean"})


def test_surgery_runs_on_the_tiny_zoo_with_one_model_per_merged_task(tiny_zoo, tmp_path):
    results = tmp_path / "results"
    assert main(["run", "--method", "surgery", "--scenario", "multitask", "--zoo", str(tiny_zoo), "--results",
                 str(results), "--reports", str(tmp_path / "reports"), "--param", "surgery.steps=20",
                 "--param", "surgery.base=ties_merging"]) == 0
    rows = ResultStore(results).load()
    assert len(rows) == 8 and rows["value"].between(0, 1).all()


def test_a_bump_of_the_base_s_version_bumps_the_version_surgery_s_units_are_stored_under(monkeypatch):
    scenario = Scenario("multitask", ("a",), (("a", "test"),))
    before = unit_versions(Surgery(base="task_arithmetic"), scenario)["method"]
    monkeypatch.setattr(TaskArithmetic, "version", TaskArithmetic.version + 1)
    assert unit_versions(Surgery(base="task_arithmetic"), scenario)["method"] == before + 1
    monkeypatch.setattr(Surgery, "version", Surgery.version + 1)
    assert unit_versions(Surgery(base="task_arithmetic"), scenario)["method"] == before + 2
    assert unit_versions(Surgery(base="weight_averaging"), scenario)["method"] == before + 1
