"""The performance goals as pytest-benchmark benchmarks (not in the default test run: `pytest tests/benchmarks`).

Each benchmark times the measured side with the `benchmark` fixture, times its reference in the same process
on the same tensors, records the ratio in `extra_info` and asserts the goal. Rounds repeat in one process, so
merges here are the "repeated merge" figures of `python -m bench perf`, which also times the first merge of a
fresh process and the memory, and writes every figure to reports/perf.md.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch

from bench.evaluation import EvalSettings, evaluate
from bench.perf import EVAL_BATCH, copy_bandwidth
from bench.synthetic import VIT_B_32, fisher_merge_given_fishers, method_merge, synthetic_pool, write_synthetic_zoo
from bench.timing import best_time
from methods.adamerging import LayerwiseAdaMerging
from methods.adaptation import entropy
from methods.averaging import TaskArithmetic, WeightAveraging
from methods.ties import TiesMerging
from methods.wemoe import WEMoE
from tasks.suites import load_suite

EXPERTS = 8


@pytest.fixture(scope="module")
def vit_b_32_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("vit-b-32")
    write_synthetic_zoo(folder, VIT_B_32, EXPERTS)
    return folder


@pytest.fixture(scope="module")
def suite():
    return load_suite("mini")


@pytest.mark.parametrize(("prepare", "models_read", "limit"), [
    pytest.param(partial(method_merge, WeightAveraging()), EXPERTS, 3.0, id="weight_averaging"),
    pytest.param(partial(method_merge, TaskArithmetic()), EXPERTS + 1, 3.0, id="task_arithmetic"),
    pytest.param(fisher_merge_given_fishers, 2 * EXPERTS, None, id="fisher_given_fishers"),
])
def test_linear_merge_time_over_the_bandwidth_bound(benchmark, vit_b_32_zoo, prepare, models_read, limit):
    merge = prepare(synthetic_pool(vit_b_32_zoo, VIT_B_32, EXPERTS))
    benchmark.pedantic(merge, rounds=3, warmup_rounds=1)
    model_bytes = (vit_b_32_zoo / "pretrained.safetensors").stat().st_size
    ratio = benchmark.stats.stats.min / ((models_read + 1) * model_bytes / copy_bandwidth())
    benchmark.extra_info["time_over_bandwidth_bound"] = ratio
    assert limit is None or ratio <= limit


def test_ties_merges_8_vit_b_32_experts_within_10_seconds(benchmark, vit_b_32_zoo):
    benchmark.pedantic(TiesMerging().merge, args=(synthetic_pool(vit_b_32_zoo, VIT_B_32, EXPERTS),), rounds=2,
                       warmup_rounds=1)
    assert benchmark.stats.stats.min <= 10


def test_adamerging_step_costs_at_most_1_5_forward_backward(benchmark, suite):
    pool = suite.pool
    inputs = torch.cat([pool.test_inputs(task, 16, 0) for task in pool.tasks])
    head = next(iter(pool.heads.values()))
    model = LayerwiseAdaMerging().build(pool)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    single = TaskArithmetic().merge(pool).requires_grad_(True)

    def step() -> None:
        optimizer.zero_grad()
        entropy(head(model(inputs))).mean().backward()
        optimizer.step()

    benchmark.pedantic(step, rounds=10, warmup_rounds=1)
    ratio = benchmark.stats.stats.min / best_time(lambda: entropy(head(single(inputs))).mean().backward())
    benchmark.extra_info["step_over_forward_backward"] = ratio
    assert ratio <= 1.5


@torch.no_grad()
def test_wemoe_throughput_is_at_least_0_3_of_the_dense_model(benchmark, suite):
    pool = suite.pool
    inputs = torch.cat([pool.test_inputs(task, 8, 0) for task in pool.tasks])
    routed = WEMoE().build(pool).merged()
    dense = TaskArithmetic().merge(pool)
    benchmark.pedantic(routed, args=(inputs,), rounds=10, warmup_rounds=1)
    ratio = best_time(lambda: dense(inputs)) / benchmark.stats.stats.min
    benchmark.extra_info["throughput_over_dense"] = ratio
    assert ratio >= 0.3


@torch.no_grad()
def test_evaluation_harness_runs_at_0_85_of_the_bare_forward(benchmark, suite):
    pairs = [(task, "test") for task in suite.tasks]
    merged = TaskArithmetic().merge(suite.pool)
    benchmark.pedantic(evaluate, args=(merged, suite.tasks, pairs, EvalSettings(batch_size=EVAL_BATCH)), rounds=2,
                       warmup_rounds=1)

    ready = [inputs for task, split in pairs for inputs, _ in suite.tasks[task].batches(split, EVAL_BATCH)]

    def bare_forward() -> None:  # on inputs made beforehand: the harness's own making of them is what it pays
        for inputs in ready:
            merged(inputs)

    ratio = best_time(bare_forward, repeats=2) / benchmark.stats.stats.min
    benchmark.extra_info["harness_over_bare_forward"] = ratio
    assert ratio >= 0.85
