"""RegMean against its closed form written out in float64 numpy, and against least squares on a tiny linear model."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_ENCODER, random_pool, state_of
from safetensors.torch import save_file
from spectral import pool_with_task_vectors, run_on_tiny_zoo
from torch import nn

from core.errors import BenchError
from core.models import build_encoder
from core.pool import ModelPool
from methods.regmean import RegMean, attention_context

LINEAR_WEIGHTS = ("attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def task_inputs(n_tasks: int, n: int = 12) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {f"task{i}": torch.randn(n, 3, 8, 8, generator=generator) * (i + 1) for i in range(n_tasks)}


def pool_with_task_inputs(tmp_path: Path, n_experts: int) -> ModelPool:
    """A tiny random ViT pool whose tasks draw different inputs (random_pool's tasks share theirs)."""
    pool = random_pool(tmp_path, n_experts=n_experts, spread=0.3)
    inputs = task_inputs(n_experts)
    return ModelPool(partial(build_encoder, TINY_ENCODER), tmp_path / "pretrained.safetensors",
                     {task: tmp_path / f"{task}.safetensors" for task in pool.tasks}, pool.heads,
                     sample_inputs=lambda task, split, n, seed: inputs[task][:n])


def split_heads(t: np.ndarray, heads: int) -> np.ndarray:
    """(batch, tokens, width) -> (batch, heads, tokens, width / heads)."""
    return t.reshape(*t.shape[:2], heads, t.shape[-1] // heads).transpose(0, 2, 1, 3)


def recorded_inputs(encoder: nn.Module, images: torch.Tensor) -> dict[str, np.ndarray]:
    """Per block, the inputs of its four linear maps (rows: every token of every image), in float64; the
    attention context computed by hand from the in-projection (softmax(q kᵀ / √d) v per head)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for index, block in enumerate(encoder.transformer.resblocks):
        prefix = f"transformer.resblocks.{index}."
        hooks.append(block.attn.register_forward_pre_hook(
            lambda module, args, prefix=prefix: seen.__setitem__(prefix + "attn", args[0].detach().clone())))
        for name in ("c_fc", "c_proj"):
            hooks.append(getattr(block.mlp, name).register_forward_pre_hook(
                lambda module, args, key=f"{prefix}mlp.{name}": seen.__setitem__(key, args[0].detach().clone())))
    with torch.no_grad():
        encoder(images)
    for hook in hooks:
        hook.remove()
    rows = {}
    for index, block in enumerate(encoder.transformer.resblocks):
        prefix = f"transformer.resblocks.{index}."
        x = seen[prefix + "attn"].double().numpy()  # (batch, tokens, width)
        weight = block.attn.in_proj_weight.detach().double().numpy()
        bias = block.attn.in_proj_bias.detach().double().numpy()
        q, k, v = np.split(x @ weight.T + bias, 3, axis=-1)
        heads, width = block.attn.num_heads, x.shape[-1]
        q, k, v = (split_heads(t, heads) for t in (q, k, v))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(width // heads)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        context = (weights @ v).transpose(0, 2, 1, 3).reshape(x.shape)
        rows[prefix + "attn.in_proj_weight"] = x.reshape(-1, width)
        rows[prefix + "attn.out_proj.weight"] = context.reshape(-1, width)
        for name in ("c_fc", "c_proj"):
            activations = seen[f"{prefix}mlp.{name}"].double().numpy()
            rows[f"{prefix}mlp.{name}.weight"] = activations.reshape(-1, activations.shape[-1])
    return rows


def reference_regmean(pool: ModelPool, inputs: dict[str, torch.Tensor], ratio: float) -> dict[str, np.ndarray]:
    """W = (Σ_i G̃_i)⁻¹ Σ_i G̃_i W_iᵀ per linear weight, G̃_i = XᵢᵀXᵢ / rows with off-diagonals times `ratio`;
    the mean of the experts elsewhere."""
    experts = {task: {key: pool.expert_tensor(task, key).double().numpy() for key in pool.parameter_names}
               for task in pool.tasks}
    grams = {task: {key: x.T @ x / len(x) for key, x in recorded_inputs(pool.encoder(pool.expert_state(task)),
                                                                         inputs[task]).items()}
             for task in pool.tasks}
    merged = {}
    for key in pool.parameter_names:
        if not key.endswith(LINEAR_WEIGHTS):
            merged[key] = sum(expert[key] for expert in experts.values()) / len(experts)
            continue
        size = grams[pool.tasks[0]][key].shape[0]
        factor = np.full((size, size), ratio) + (1 - ratio) * np.eye(size)
        reduced = {task: grams[task][key] * factor for task in pool.tasks}
        total = sum(reduced.values())
        merged[key] = np.linalg.inv(total) @ sum(reduced[task] @ experts[task][key].T for task in pool.tasks)
        merged[key] = merged[key].T
    return merged


@pytest.mark.parametrize(("experts", "ratio"), [(3, 0.6), (2, 1.0), (4, 0.0)])
def test_regmean_matches_the_closed_form_from_each_experts_input_grams(tmp_path, experts, ratio):
    pool = pool_with_task_inputs(tmp_path, experts)
    expected = reference_regmean(pool, task_inputs(experts), ratio)
    merged = state_of(RegMean(ratio=ratio, examples=12).merge(pool))
    for key, values in expected.items():
        torch.testing.assert_close(merged[key].double(), torch.from_numpy(values), rtol=1e-4, atol=1e-5,
                                   msg=lambda text, key=key: f"{key}: {text}")


def test_regmean_merges_the_four_linear_maps_of_each_block_and_averages_the_rest(tmp_path):
    pool = pool_with_task_inputs(tmp_path, 3)
    merged = state_of(RegMean(examples=12).merge(pool))
    for key in pool.parameter_names:
        average = sum(pool.expert_tensor(task, key) for task in pool.tasks) / 3
        differs = not torch.allclose(merged[key], average, atol=1e-6)
        assert differs == key.endswith(LINEAR_WEIGHTS), key


def linear_model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def linear_pool(tmp_path: Path, inputs: dict[str, torch.Tensor], spread: float = 0.5) -> ModelPool:
    """Experts of a two-layer linear model (pretrained + Gaussian task vectors), each with its task's inputs."""
    torch.manual_seed(0)
    pretrained = {key: value.detach() for key, value in linear_model().state_dict().items()}
    save_file(pretrained, str(tmp_path / "pretrained.safetensors"))
    for task in inputs:
        save_file({key: value + spread * torch.randn_like(value) for key, value in pretrained.items()},
                  str(tmp_path / f"{task}.safetensors"))
    return ModelPool(linear_model, tmp_path / "pretrained.safetensors",
                     {task: tmp_path / f"{task}.safetensors" for task in inputs}, {},
                     sample_inputs=lambda task, split, n, seed: inputs[task][:n])


@pytest.mark.parametrize("layer", ["0", "2"])
def test_regmean_at_ratio_one_is_the_least_squares_fit_of_every_experts_outputs(tmp_path, layer):
    """RegMean's W minimises Σ_i ||X_i Wᵀ - X_i W_iᵀ||² (equal row counts): the stacked least-squares solution,
    each layer fitted on its own inputs in each expert (the second layer's are the expert's hidden units)."""
    generator = torch.Generator().manual_seed(3)
    inputs = {f"task{i}": torch.randn(20, 6, generator=generator) + i for i in range(3)}
    pool = linear_pool(tmp_path, inputs)
    merged = state_of(RegMean(ratio=1.0, examples=20).merge(pool))
    design, targets = [], []
    for task, x in inputs.items():
        expert = {key: pool.expert_tensor(task, key).double() for key in pool.parameter_names}
        layer_input = x.double() if layer == "0" else torch.relu(x.double() @ expert["0.weight"].T + expert["0.bias"])
        design.append(layer_input)
        targets.append(layer_input @ expert[f"{layer}.weight"].T)
    solution = torch.linalg.lstsq(torch.cat(design), torch.cat(targets)).solution
    torch.testing.assert_close(merged[f"{layer}.weight"].double(), solution.T, rtol=1e-4, atol=1e-5)
    bias = sum(pool.expert_tensor(task, f"{layer}.bias") for task in inputs) / 3
    torch.testing.assert_close(merged[f"{layer}.bias"], bias)


def test_regmean_at_ratio_zero_averages_each_input_column_weighted_by_its_mean_square(tmp_path):
    generator = torch.Generator().manual_seed(4)
    inputs = {f"task{i}": torch.randn(10, 6, generator=generator) * torch.linspace(0.5, 2, 6) ** i for i in range(2)}
    pool = linear_pool(tmp_path, inputs)
    merged = state_of(RegMean(ratio=0.0, examples=10).merge(pool))
    weights = {task: x.square().mean(0) for task, x in inputs.items()}
    expected = sum(weights[task] * pool.expert_tensor(task, "0.weight") for task in inputs) / sum(weights.values())
    torch.testing.assert_close(merged["0.weight"], expected)


def test_regmean_of_one_expert_is_that_expert(tmp_path):
    pool = pool_with_task_inputs(tmp_path, 1)
    merged = state_of(RegMean(examples=12).merge(pool))
    for key in pool.parameter_names:
        torch.testing.assert_close(merged[key], pool.expert_tensor("task0", key), rtol=1e-4, atol=1e-5)


def test_regmean_of_zero_task_vectors_is_the_pretrained_model(tmp_path):
    pool = pool_with_task_vectors(tmp_path, lambda index, value: torch.zeros_like(value))
    merged = state_of(RegMean(examples=16).merge(pool))
    for key in pool.parameter_names:
        torch.testing.assert_close(merged[key], pool.pretrained_tensor(key), rtol=1e-4, atol=1e-5)


def test_attention_context_is_what_the_out_projection_maps_to_the_attention_output():
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(3, 5, 8)
    with torch.no_grad():
        output = attention(x, x, x, need_weights=False)[0]
        context = attention_context(attention, x)
    torch.testing.assert_close(context @ attention.out_proj.weight.T + attention.out_proj.bias, output)


def test_regmean_computes_each_experts_grams_once_per_pool_whatever_the_ratio_or_experts_merged(tmp_path, monkeypatch):
    import methods.regmean as regmean_module

    pool = pool_with_task_inputs(tmp_path, 3)
    calls = []
    original = regmean_module.gram_matrices
    monkeypatch.setattr(regmean_module, "gram_matrices", lambda *args: calls.append(1) or original(*args))
    first = state_of(RegMean(examples=12).merge(pool))
    RegMean(examples=12, ratio=0.3).merge(pool)
    RegMean(examples=12).merge(pool.subset(["task0", "task2"]))
    again = state_of(RegMean(examples=12).merge(pool))
    assert len(calls) == 3
    for key, value in first.items():
        torch.testing.assert_close(again[key], value, rtol=0, atol=0)


def test_regmean_names_the_layer_whose_summed_gram_matrix_is_singular(tmp_path):
    pool = linear_pool(tmp_path, {"task0": torch.zeros(4, 6), "task1": torch.zeros(4, 6)})
    with pytest.raises(BenchError, match=r"regmean: the summed Gram matrix of 0\.weight is singular"):
        RegMean(ratio=1.0, examples=4).merge(pool)


def test_regmean_runs_on_the_tiny_zoo(tiny_zoo, tmp_path):
    rows = run_on_tiny_zoo(tiny_zoo, tmp_path, ["regmean"])
    assert set(rows["method"]) == {"regmean"} and len(rows) == 8 and rows["value"].between(0, 1).all()
