"""SMILE against its equations written plainly (float64 numpy, one input row at a time), on small tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import random_pool
from safetensors.torch import save_file
from spectral import pool_with_task_vectors, run_on_tiny_zoo
from torch import nn

from core.errors import BenchError
from core.pool import ModelPool
from methods.smile import Smile, SmileLinear

LINEAR_KEYS = ("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
               "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")


def reference_layer(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, updates: list[np.ndarray],
                    bias_updates: list[np.ndarray], rank: int, gate_rank: int,
                    top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row x: r_i = ||V_i[:, :gate_rank]ᵀ x||, p = softmax(r), the top_k p_i renormalised (w_i), and
    W0 x + b0 + Σ_top w_i (U_i,k S_i,k V_i,kᵀ x + Δb_i). Returns the outputs, the routing weights of the selected
    experts and the selected experts (by decreasing weight)."""
    svds = [np.linalg.svd(update, full_matrices=False) for update in updates]
    outputs, weights, chosen = [], [], []
    for row in x:
        scores = np.array([np.linalg.norm(vt[:gate_rank] @ row) for _, _, vt in svds])
        probabilities = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
        top = np.argsort(-probabilities)[:top_k]
        routing = probabilities[top] / probabilities[top].sum()
        output = weight @ row + bias
        for expert, w in zip(top, routing):
            u, s, vt = svds[expert]
            output = output + w * (u[:, :rank] @ np.diag(s[:rank]) @ vt[:rank] @ row + bias_updates[expert])
        outputs.append(output)
        weights.append(routing)
        chosen.append(top)
    return np.array(outputs), np.array(weights), np.array(chosen)


def random_layer(experts: int, out_features: int = 12, in_features: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"weight": torch.randn(out_features, in_features, generator=generator),
            "bias": torch.randn(out_features, generator=generator),
            "updates": torch.randn(experts, out_features, in_features, generator=generator),
            "bias_updates": torch.randn(experts, out_features, generator=generator)}


def as_numpy(layer: dict[str, torch.Tensor]) -> dict:
    return {"weight": layer["weight"].double().numpy(), "bias": layer["bias"].double().numpy(),
            "updates": list(layer["updates"].double().numpy()),
            "bias_updates": list(layer["bias_updates"].double().numpy())}


@pytest.mark.parametrize(("experts", "rank", "gate_rank", "top_k"), [(4, 3, 2, 1), (4, 5, 1, 2), (3, 10, 4, 3)])
def test_smile_linear_routes_each_token_to_its_top_k_experts_and_adds_their_rank_k_updates(experts, rank, gate_rank,
                                                                                            top_k):
    layer = random_layer(experts)
    x = torch.randn(3, 5, 10, generator=torch.Generator().manual_seed(1))  # (batch, tokens, in): routed per token
    smile = SmileLinear(layer["weight"], layer["bias"], layer["updates"], layer["bias_updates"], rank, gate_rank, top_k)
    expected, weights, chosen = reference_layer(x.reshape(-1, 10).double().numpy(), **as_numpy(layer), rank=rank,
                                                gate_rank=gate_rank, top_k=top_k)
    routing_weights, selected = smile.routing(x.reshape(-1, 10))
    np.testing.assert_array_equal(selected.numpy(), chosen)
    np.testing.assert_allclose(routing_weights.double().numpy(), weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(smile(x).double().numpy(), expected.reshape(3, 5, 12), rtol=1e-4, atol=1e-4)


def test_smile_linear_with_top_1_gives_each_token_a_single_expert_with_weight_1():
    layer = random_layer(experts=4)
    smile = SmileLinear(layer["weight"], layer["bias"], layer["updates"], layer["bias_updates"], 3, 2, top_k=1)
    weights, experts = smile.routing(torch.randn(50, 10, generator=torch.Generator().manual_seed(2)))
    assert torch.equal(weights, torch.ones(50, 1)) and len(experts.unique()) > 1


def test_smile_linear_of_one_expert_at_full_rank_is_that_expert_s_layer():
    layer = random_layer(experts=1)
    smile = SmileLinear(layer["weight"], layer["bias"], layer["updates"], layer["bias_updates"], 10, 4, top_k=1)
    x = torch.randn(6, 10, generator=torch.Generator().manual_seed(3))
    expert = nn.functional.linear(x, layer["weight"] + layer["updates"][0], layer["bias"] + layer["bias_updates"][0])
    torch.testing.assert_close(smile(x), expert, rtol=1e-5, atol=1e-5)


def test_smile_linear_keeps_only_the_top_k_singular_directions_of_each_update():
    layer = random_layer(experts=1)
    smile = SmileLinear(layer["weight"], torch.zeros(12), layer["updates"], torch.zeros(1, 12), 3, 4, top_k=1)
    effective = smile(torch.eye(10)).T - layer["weight"]  # the update the layer applies, as a matrix
    assert torch.linalg.matrix_rank(effective).item() == 3


def pool_with_linear_updates(tmp_path: Path, experts: int, seed: int = 0) -> ModelPool:
    """Experts that differ from the pretrained model only in the weights and biases of linear maps (attention,
    MLP, output projection): SMILE keeps every other parameter pretrained."""
    pool = random_pool(tmp_path, n_experts=experts)
    generator = torch.Generator().manual_seed(seed)
    for index in range(experts):
        expert = {}
        for key in pool.parameter_names:
            value = pool.pretrained_tensor(key)
            linear = key == "proj" or key.split(".", 3)[-1] in LINEAR_KEYS
            expert[key] = value + 0.3 * torch.randn(value.shape, generator=generator) if linear else value
        save_file(expert, str(tmp_path / f"task{index}.safetensors"))
    return pool.subset(pool.tasks)


def test_smile_of_one_expert_at_full_rank_is_that_expert_whole_encoder(tmp_path):
    """q, k, v, the attention output, both MLP layers and the output projection each become the expert's."""
    pool = pool_with_linear_updates(tmp_path, experts=1)
    images = pool.sample_inputs("task0", "test", 16)
    expert = pool.encoder(pool.expert_state("task0"))
    merged = Smile(k=64, gate_k=2, top_k=1).merge(pool)
    with torch.no_grad():
        torch.testing.assert_close(merged(images), expert(images), rtol=1e-4, atol=1e-4)


def test_smile_of_zero_task_vectors_keeps_every_layer_pretrained(tmp_path):
    pool = pool_with_task_vectors(tmp_path, lambda index, value: torch.zeros_like(value))
    merged = Smile().merge(pool)
    images = pool.sample_inputs("task0", "test", 16)
    assert not any(isinstance(module, SmileLinear) for module in merged.modules())
    with torch.no_grad():
        torch.testing.assert_close(merged(images), pool.encoder(pool.pretrained_state())(images), rtol=1e-5, atol=1e-5)


def test_smile_keeps_parameters_outside_linear_layers_pretrained(tmp_path):
    pool = pool_with_task_vectors(tmp_path, lambda index, value: torch.full_like(value, 0.1 * (index + 1)))
    state = Smile().merge(pool).state_dict()
    for key in ("conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight", "ln_post.bias",
                "transformer.resblocks.0.ln_1.weight", "transformer.resblocks.0.ln_2.bias"):
        assert torch.equal(state[f"encoder.{key}"], pool.pretrained_tensor(key)), key


def test_smile_stores_per_linear_layer_each_expert_s_rank_k_factors_router_and_bias_update(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    merged = Smile(k=2, gate_k=1).merge(pool)
    width, hidden, embed = 8, 32, 4  # helpers.TINY_ENCODER
    layers = [(width, width)] * 4 + [(hidden, width), (width, hidden)]  # (out, in): q, k, v, out_proj, c_fc, c_proj
    extra = sum(3 * (2 * (out + inp) + out + 1 * inp) for out, inp in layers) + 3 * (2 * (embed + width) + width)
    stored = sum(tensor.numel() for tensor in merged.state_dict().values())
    assert stored == sum(pool.parameter_shapes[key].numel() for key in pool.parameter_names) + extra


def test_smile_refuses_more_experts_per_token_than_the_pool_has(tmp_path):
    with pytest.raises(BenchError, match=r"^smile: top_k=4 exceeds the 3 experts of this pool$"):
        Smile(top_k=4).merge(random_pool(tmp_path, n_experts=3))


def test_smile_runs_on_the_tiny_zoo(tiny_zoo, tmp_path):
    rows = run_on_tiny_zoo(tiny_zoo, tmp_path, ["smile"])
    assert set(rows["method"]) == {"smile"} and len(rows) == 8 and rows["value"].between(0, 1).all()
