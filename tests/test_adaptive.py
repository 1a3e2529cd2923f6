"""AdaMerging and WEMoE: against their formulas at initialisation, the fast WEMoE path against its per-sample
definition, and the adaptation itself (coefficients move, entropy falls)."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
from helpers import random_pool, state_of

from core.errors import BenchError
from methods.adamerging import LayerwiseAdaMerging, TaskwiseAdaMerging, TaskwiseAdaMergingPlus
from methods.adaptation import entropy, saved_bytes_per_input
from methods.averaging import TaskArithmetic
from methods.ties import TiesMerging
from methods.wemoe import RoutedMLP, WEMoE


def mean_entropy(encoder, pool) -> float:
    with torch.no_grad():
        return sum(entropy(pool.heads[t](encoder(pool.test_inputs(t, 64, 0)))).mean().item() for t in pool.tasks)


def randomise_routers(encoder, scale: float = 0.5) -> None:
    """Routers whose outputs differ strongly from sample to sample (the initial ones are nearly constant)."""
    generator = torch.Generator().manual_seed(1)
    for name, parameter in encoder.named_parameters():
        if ".router." in name:
            parameter.data = scale * torch.randn(parameter.shape, generator=generator)


def test_entropy_is_log_classes_for_uniform_and_zero_for_certain_predictions():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(entropy(logits), torch.tensor([torch.log(torch.tensor(4.0)).item(), 0.0]))


@pytest.mark.parametrize("method", [TaskwiseAdaMerging(steps=3), LayerwiseAdaMerging(steps=3), WEMoE(steps=3)])
def test_zero_task_vectors_give_the_pretrained_model(tmp_path, method):
    pool = random_pool(tmp_path, spread=0.0)
    merged = method.merge(pool)
    inputs = pool.test_inputs("task0", 16, 0)
    with torch.no_grad():
        torch.testing.assert_close(merged(inputs), pool.encoder(pool.pretrained_state())(inputs))


def test_adamerging_at_its_prior_is_task_arithmetic_and_adamerging_plus_is_ties(tmp_path):
    pool = random_pool(tmp_path)
    for adaptive, static in [(TaskwiseAdaMerging(steps=0), TaskArithmetic(scaling=0.3)),
                             (TaskwiseAdaMergingPlus(steps=0), TiesMerging(scaling=0.3))]:
        merged, expected = state_of(adaptive.merge(pool)), state_of(static.merge(pool))
        for key in pool.parameter_names:
            torch.testing.assert_close(merged[key], expected[key])


def test_zero_steps_of_a_cosine_schedule_yield_the_initial_model_once(tmp_path):
    pool = random_pool(tmp_path)
    steps = list(WEMoE(steps=0, schedule="cosine").merge_steps(pool, every=2))
    assert [step for step, _ in steps] == [0]


@pytest.mark.parametrize("method", [LayerwiseAdaMerging(), WEMoE()], ids=lambda method: method.name)
def test_the_model_to_adapt_lives_wholly_on_the_pools_device(tmp_path, method):
    """A parameter left on the CPU would stop a step on a GPU ('meta' stands in for it: no data, same checks)."""
    pool = random_pool(tmp_path)
    pool.device = "meta"
    model = method.build(pool)
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_layerwise_coefficients_weigh_each_tensor_and_are_clamped_to_0_1(tmp_path):
    pool = random_pool(tmp_path)
    model = LayerwiseAdaMerging().build(pool)
    with torch.no_grad():
        model.coefficients[:] = torch.linspace(-0.5, 1.5, model.coefficients.numel()).view_as(model.coefficients)
    state = model.state()
    applied = model.coefficients.detach().clamp(0, 1)
    for i, key in enumerate(pool.parameter_names):
        expected = pool.pretrained_tensor(key) + sum(applied[i, j] * pool.task_vector(t, key)
                                                     for j, t in enumerate(pool.tasks))
        torch.testing.assert_close(state[key], expected)


def test_adamerging_coefficients_move_and_entropy_falls(tmp_path):
    pool = random_pool(tmp_path, spread=0.3)
    method = LayerwiseAdaMerging(steps=30, lr=1e-2, batches_per_step=1)
    before = mean_entropy(TaskArithmetic(scaling=0.3).merge(pool), pool)
    steps = list(method.merge_steps(pool, every=10))
    assert [step for step, _ in steps] == [0, 10, 20, 30]
    after = mean_entropy(steps[-1][1], pool)
    assert after < 0.9 * before
    moved = state_of(steps[-1][1])
    assert any(not torch.allclose(moved[k], state_of(steps[0][1])[k]) for k in pool.parameter_names)


def test_wemoe_routers_move_and_entropy_falls(tmp_path):
    pool = random_pool(tmp_path, spread=0.3)
    method = WEMoE(steps=30, lr=1e-2, schedule="constant")
    model = method.build(pool)
    initial = {k: v.clone() for k, v in model.named_parameters() if v.requires_grad}
    before = mean_entropy(model.merged(), pool)
    *_, (step, merged) = method.merge_steps(pool)
    assert step == 30
    after = mean_entropy(merged, pool)
    assert after < 0.9 * before
    trained = dict(merged.named_parameters())
    assert all(not torch.equal(trained[k.removeprefix("encoder.")], v) for k, v in initial.items())


@pytest.mark.parametrize("method", [LayerwiseAdaMerging(batches_per_step=2, batch_size=4), WEMoE(batch_size=8),
                                    WEMoE(batch_size=8, routing="batch")], ids=["adamerging", "wemoe", "wemoe-batch"])
@pytest.mark.parametrize("tasks_per_pass", [1, 2])
def test_gradients_backpropagated_in_parts_equal_one_backward_of_the_whole_loss(tmp_path, method, tasks_per_pass):
    pool = random_pool(tmp_path, spread=0.3)
    model = method.build(pool)
    inputs = {task: pool.test_inputs(task, 64, 0)[8 * i:8 * i + 8] for i, task in enumerate(pool.tasks)}
    trainable = [p for p in model.parameters() if p.requires_grad]
    whole = method._loss(model, pool.heads, inputs)
    expected = torch.autograd.grad(whole, trainable)
    loss = method._backward(model, pool.heads, inputs, tasks_per_pass)
    assert loss == pytest.approx(whole.item(), rel=1e-6)
    for parameter, gradient in zip(trainable, expected):
        torch.testing.assert_close(parameter.grad, gradient, rtol=1e-5, atol=1e-7)


def test_a_step_is_backpropagated_in_as_few_parts_as_its_activation_budget_allows(tmp_path, monkeypatch):
    pool = random_pool(tmp_path)
    method = LayerwiseAdaMerging()
    model, inputs = method.build(pool), pool.test_inputs("task0", 8, 0)
    per_input = saved_bytes_per_input(model, inputs)
    assert per_input > 0
    for budget, expected in [(per_input * 8 * 3, 3), (per_input * 8 * 2, 2), (per_input * 8 * 2 - 1, 1), (1, 1)]:
        monkeypatch.setattr(LayerwiseAdaMerging, "activation_budget", budget)
        assert method._tasks_per_pass(model, inputs, 3) == expected


def test_wemoe_merges_every_shared_parameter_by_task_arithmetic(tmp_path):
    pool = random_pool(tmp_path)
    encoder = WEMoE(init_lambda=0.3).build(pool).merged()
    expected = state_of(TaskArithmetic(scaling=0.3).merge(pool))
    merged = state_of(encoder)
    shared = [k for k in pool.parameter_names if ".mlp." not in k]
    assert shared
    for key in shared:
        torch.testing.assert_close(merged[key], expected[key])


@pytest.mark.parametrize("routing", ["sample", "batch"])
def test_one_hot_routing_reproduces_each_experts_mlp(tmp_path, routing):
    pool = random_pool(tmp_path)
    mlp: RoutedMLP = WEMoE(routing=routing).build(pool).merged().transformer.resblocks[0].mlp
    x = torch.randn(5, 7, mlp.width)
    for i, task in enumerate(pool.tasks):
        output = mlp.router.layers[-1]
        with torch.no_grad():
            output.weight.zero_()
            output.bias.copy_(F.one_hot(torch.tensor(i), len(pool.tasks)).float())
            expert = {name: pool.expert_tensor(task, f"transformer.resblocks.0.mlp.{name}")
                      for name in ("c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias")}
            expected = F.linear(F.gelu(F.linear(x, expert["c_fc.weight"], expert["c_fc.bias"])),
                                expert["c_proj.weight"], expert["c_proj.bias"])
            torch.testing.assert_close(mlp(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("over_budget", [False, True])
@pytest.mark.parametrize("depth", [0, 1, 2])
def test_fast_wemoe_equals_the_per_sample_oracle_with_gradients(tmp_path, depth, over_budget):
    pool = random_pool(tmp_path, n_experts=4)
    encoder = WEMoE(router_depth=depth).build(pool).merged()
    randomise_routers(encoder)
    mlp: RoutedMLP = encoder.transformer.resblocks[0].mlp
    x = torch.randn(40, 9, mlp.width)  # more samples than a chunk
    if over_budget:  # the batch's mixed weights no longer fit: chunks are recomputed in the backward pass
        mlp.memory_budget = 16 * mlp.mixed_bytes_per_sample
    assert mlp.chunk < len(x)
    fast = mlp(x)
    oracle = mlp.per_sample_reference(x)
    torch.testing.assert_close(fast, oracle, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(fast)
    router = [p for p in mlp.router.parameters()]
    fast_grads = torch.autograd.grad((fast * weights).sum(), router)
    oracle_grads = torch.autograd.grad((oracle * weights).sum(), router)
    for a, b in zip(fast_grads, oracle_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def saved_bytes(forward) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of `forward()`."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward()
    return total


def test_routed_mlp_keeps_the_mixed_weights_for_backward_only_within_its_memory_budget(tmp_path):
    pool = random_pool(tmp_path)
    encoder = WEMoE().build(pool).merged()
    mlp: RoutedMLP = encoder.transformer.resblocks[0].mlp
    x = torch.randn(40, 9, mlp.width)
    kept = saved_bytes(lambda: mlp(x))
    assert kept > len(x) * mlp.mixed_bytes_per_sample  # within budget: every sample's mixed weights are kept
    mlp.memory_budget = 16 * mlp.mixed_bytes_per_sample
    assert saved_bytes(lambda: mlp(x)) < kept - len(x) * mlp.mixed_bytes_per_sample  # over it: recomputed instead


def test_routing_differs_per_sample_only_under_sample_routing(tmp_path):
    pool = random_pool(tmp_path)
    outputs = {}
    for routing in ("sample", "batch"):
        encoder = WEMoE(routing=routing).build(pool).merged()
        randomise_routers(encoder)
        mlp = encoder.transformer.resblocks[0].mlp
        x = torch.randn(6, 5, mlp.width)
        with torch.no_grad():
            outputs[routing] = (mlp(x)[:1], mlp(x[:1]))
    torch.testing.assert_close(*outputs["sample"])  # a sample's output does not depend on its batch
    assert not torch.allclose(*outputs["batch"])  # with batch routing, it does


def test_wemoe_upscales_only_the_named_blocks_and_rejects_bad_ones(tmp_path):
    pool = random_pool(tmp_path)
    encoder = WEMoE(blocks="0").build(pool).merged()
    assert isinstance(encoder.transformer.resblocks[0].mlp, RoutedMLP)
    with pytest.raises(BenchError, match="blocks='x'"):
        WEMoE.configure(overrides={"blocks": "x"})
    with pytest.raises(BenchError, match="blocks 0..0"):
        WEMoE(blocks="3").build(pool)
    assert WEMoE.configure(overrides={"router_depth": "1"}).router_depth == 1


def test_the_adaptive_model_is_freed_before_its_final_merge_is_evaluated(tmp_path, monkeypatch):
    pool = random_pool(tmp_path)
    method, built = LayerwiseAdaMerging(steps=1), []
    build = method.build

    def remembered_build(pool):
        model = build(pool)
        built.append(weakref.ref(model))
        return model

    monkeypatch.setattr(method, "build", remembered_build)
    steps = method.merge_steps(pool)
    step, _ = next(steps)  # the generator waits here while the runner evaluates
    gc.collect()
    assert step == 1 and built[0]() is None
