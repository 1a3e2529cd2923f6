"""What each merge costs to serve: the parameters it stores, per method, and its forward time over the pretrained
encoder's."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import built_in_methods, random_pool
from torch import nn

from bench import costs
from bench.costs import inference_cost, stored_models
from methods.base import REGISTRY, stored_parameters, tensor_parameters

TASKS = 8


def mlp_parameters(pool) -> int:
    return sum(shape.numel() for key, shape in pool.parameter_shapes.items() if ".mlp." in key)


def wemoe_models(pool) -> float:
    """Every block's MLP kept as pretrained + one task vector per task, plus a router per block (Linear(d, d), ReLU,
    Linear(d, T)); the other parameters merged into one."""
    width = pool.parameter_shapes["transformer.resblocks.0.mlp.c_fc.weight"][1]
    blocks = len({key.split(".")[2] for key in pool.parameter_names if key.startswith("transformer.resblocks.")})
    router = width * width + width + width * TASKS + TASKS
    return (pool.parameter_count + TASKS * mlp_parameters(pool) + blocks * router) / pool.parameter_count


def wemoe_sparse_models(pool) -> float:
    """As WEMoE, but one router shared by every block, and each task's MLP task vectors stored as their entries of
    magnitude above the 0.9 quantile (float32) plus a bit per entry saying where they are."""
    width = pool.parameter_shapes["transformer.resblocks.0.mlp.c_fc.weight"][1]
    router = width * width + width + width * TASKS + TASKS
    vectors = 0.0
    for key in pool.parameter_names:
        if ".mlp." in key:
            for task in pool.tasks:
                magnitudes = pool.task_vector(task, key).abs().flatten()
                kept = int((magnitudes > magnitudes.quantile(0.9)).sum())
                vectors += min(len(magnitudes), kept + len(magnitudes) / 32)
    return (pool.parameter_count + vectors + router) / pool.parameter_count


def smile_models(pool) -> float:
    """The pretrained encoder, plus for every linear map (each block's q, k and v, attention output, MLP fc1 and fc2,
    and the output projection) per task: its rank-k update as U (out x k) and S Vᵀ (k x in), a gate_k x in routing
    subspace and its bias update (k 32, gate_k 16, each at most the matrix's smaller side)."""
    shapes = pool.parameter_shapes
    linears = []  # (out, in, has bias)
    for key, shape in shapes.items():
        if key.endswith("attn.in_proj_weight"):
            linears += [(shape[0] // 3, shape[1], True)] * 3
        elif key.endswith(("out_proj.weight", "c_fc.weight", "c_proj.weight")):
            linears.append((shape[0], shape[1], True))
    linears.append((shapes["proj"][1], shapes["proj"][0], False))  # stored (in, out)
    per_task = 0
    for out, into, bias in linears:
        rank, gate = min(32, out, into), min(16, out, into)
        per_task += out * rank + rank * into + gate * into + (out if bias else 0)
    return (pool.parameter_count + TASKS * per_task) / pool.parameter_count


def twin_merging_models(pool, rank_fraction: float = 0.1) -> float:
    """The shared encoder, plus per task every vector whole and every matrix's rank-r factors U (out x r) and S Vᵀ
    (r x in), r = int(rank_fraction x its smaller side), the packed q, k, v as three matrices and the patch kernel
    as one (out, in x k x k); plus the router: Linear(d, 2d), BatchNorm(2d), Linear(2d, 2d), BatchNorm(2d),
    Linear(2d, T), each BatchNorm with its running mean and variance and an int64 step count (two float32's)."""
    per_task = 0
    for key, shape in pool.parameter_shapes.items():
        if len(shape) == 1:
            per_task += shape[0]
            continue
        blocks = 3 if key.endswith("in_proj_weight") else 1
        rows, columns = shape[0] // blocks, shape[1:].numel()
        per_task += blocks * int(rank_fraction * min(rows, columns)) * (rows + columns)
    width = pool.parameter_shapes["class_embedding"][0]
    hidden = 2 * width
    norm = 4 * hidden + 2
    router = (width * hidden + hidden) + norm + (hidden * hidden + hidden) + norm + (hidden * TASKS + TASKS)
    return (pool.parameter_count + TASKS * per_task + router) / pool.parameter_count


# Per method that stores more than one merged model, its size in models with T tasks; every other method (static
# merges, test-time adaptation of merge coefficients, and any method added without saying otherwise) stores one.
STORED_MODELS = {
    "individual": lambda pool: TASKS,
    # pretrained weights and the merged task vector (float32), T masks of one bit per parameter
    "tall_masks": lambda pool: 2 + TASKS / 32,
    # as TALL masks, plus one float32 rescaler per task
    "emr": lambda pool: 2 + TASKS / 32 + TASKS / pool.parameter_count,
    "wemoe": wemoe_models,
    "wemoe_sparse": wemoe_sparse_models,
    "smile": smile_models,
    "twin_merging": twin_merging_models,
    # the merged encoder, shared, and per task a surgery module: down (rank x d) and up (d x rank), rank 16
    "surgery": lambda pool: 1 + TASKS * 2 * 16 * pool.parameter_shapes["proj"][1] / pool.parameter_count,
}


def quick(name: str):
    """The method at its defaults, adapting for no step (its merge at the initial coefficients: the same size)."""
    cls = REGISTRY[name]
    return cls(steps=0) if "steps" in {field.name for field in dataclasses.fields(cls)} else cls()


BUILT_IN = sorted(built_in_methods())


@pytest.mark.parametrize("name", BUILT_IN)
def test_each_method_stores_what_it_needs_to_serve_every_task_in_models(tmp_path, name):
    pool = random_pool(tmp_path, n_experts=TASKS)
    expected = STORED_MODELS.get(name, lambda pool: 1.0)(pool)
    assert stored_models(quick(name).merge(pool), pool) == pytest.approx(expected, rel=1e-12)


def test_twin_merging_stores_each_task_s_rank_compressed_matrices_and_whole_vectors(tmp_path):
    """At half rank, where the tiny encoder's matrices keep singular triplets (a tenth of 8 columns keeps none)."""
    pool = random_pool(tmp_path, n_experts=TASKS)
    merged = REGISTRY["twin_merging"](rank_fraction=0.5, epochs=1).merge(pool)
    assert stored_models(merged, pool) == pytest.approx(twin_merging_models(pool, 0.5), rel=1e-12)


def test_tall_masks_with_eight_tasks_store_two_models_and_a_quarter():
    """The value the table shows for the paper's 8-task benchmark, independent of the encoder's size."""
    assert STORED_MODELS["tall_masks"](None) == 2.25


def test_wemoe_stores_the_parameters_and_buffers_of_the_model_it_returns(tmp_path):
    pool = random_pool(tmp_path, n_experts=TASKS)
    merged = REGISTRY["wemoe"](steps=0).merge(pool)
    held = sum(t.numel() for t in merged.parameters()) + sum(t.numel() for t in merged.buffers())
    assert stored_parameters(merged) == held > TASKS * mlp_parameters(pool)


def test_a_tensor_that_several_per_task_encoders_hold_is_counted_once(tmp_path):
    pool = random_pool(tmp_path, n_experts=2)
    shared = pool.pretrained_state()
    own_key = "proj"
    per_task = {task: pool.encoder(shared | {own_key: pool.expert_tensor(task, own_key)}) for task in pool.tasks}
    assert stored_parameters(per_task) == pool.parameter_count + shared[own_key].numel()


def test_a_boolean_entry_counts_one_bit_and_a_half_precision_entry_half_a_parameter():
    assert tensor_parameters(torch.zeros(64, dtype=torch.bool)) == 2
    assert tensor_parameters(torch.zeros(64, dtype=torch.float16)) == 32
    assert tensor_parameters(torch.zeros(64)) == 64


class Recording(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.calls = 0

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return inputs


def test_inference_cost_is_the_serving_encoder_s_time_over_the_pretrained_encoder_s(tmp_path, monkeypatch):
    pool = random_pool(tmp_path, n_experts=2)
    per_task = {task: Recording() for task in pool.tasks}
    def timed(runs, repeats, clock=None):  # each run once, timed at 3 s and 2 s
        return [run() or seconds for run, seconds in zip(runs, [3.0, 2.0])]

    monkeypatch.setattr(costs, "best_times", timed)
    assert inference_cost(per_task, pool, "task1", torch.zeros(4, 3, 8, 8)) == 1.5
    assert (per_task["task0"].calls, per_task["task1"].calls) == (0, 1)  # only the task's own encoder serves it


def test_timing_on_a_cpu_runs_one_thread_and_gives_the_threads_back(tmp_path, monkeypatch):
    pool = random_pool(tmp_path, n_experts=2)
    threads, seen = torch.get_num_threads(), []

    def timed(runs, repeats, clock=None):
        seen.append(torch.get_num_threads())
        return [1.0, 1.0]

    monkeypatch.setattr(costs, "best_times", timed)
    torch.set_num_threads(2)
    try:
        inference_cost(Recording(), pool, "task0", torch.zeros(4, 3, 8, 8))
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
