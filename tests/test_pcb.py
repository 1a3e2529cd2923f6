"""PCB-merging against the authors' equations written plainly on whole flattened task vectors (sorted, as their
vision_source_code/pcb_ES.py does), and its edge cases."""

from __future__ import annotations

import pytest
import torch
from helpers import random_pool, state_of
from safetensors.torch import save_file
from spectral import pool_with_task_vectors, run_on_tiny_zoo

from core.pool import ModelPool
from methods.pcb import Pcb


def min_max(x: torch.Tensor) -> torch.Tensor:
    """Each row rescaled to [0, 1]."""
    low, high = x.min(dim=1, keepdim=True).values, x.max(dim=1, keepdim=True).values
    return (x - low) / (high - low)


def clamp_rows(x: torch.Tensor, low_fraction: float, high_fraction: float) -> torch.Tensor:
    """Each row clamped between its entries of rank int(d low_fraction) and int(d (1 - high_fraction)) - 1."""
    d = x.shape[1]
    ordered = torch.sort(x, dim=1).values
    return torch.clamp(x, ordered[:, int(d * low_fraction)].unsqueeze(1),
                       ordered[:, int(d * (1 - high_fraction)) - 1].unsqueeze(1))


def reference_pcb(pool: ModelPool, ratio: float, scaling: float) -> dict[str, torch.Tensor]:
    """PCB on the task vectors flattened over the whole model (n x d), every step over whole rows."""
    keys = pool.parameter_names
    flat = torch.stack([torch.cat([pool.task_vector(task, key).flatten() for key in keys]) for task in pool.tasks])
    n = len(flat)
    magnitudes = clamp_rows(flat.abs(), 0.01, 0.01)
    clamped = flat.sign() * magnitudes
    normalised = flat.sign() * min_max(magnitudes)
    intra = torch.exp(n * min_max(magnitudes) ** 2)
    inter = torch.stack([torch.tanh(normalised[i] * normalised).sum(0) for i in range(n)])
    scale = min_max(clamp_rows(intra * inter, 1 - ratio, 0))
    merged = scaling * (clamped * scale).sum(0) / torch.clamp(scale.sum(0), min=1e-12)
    state, offset = {}, 0
    for key in keys:
        pretrained = pool.pretrained_tensor(key)
        state[key] = pretrained + merged[offset:offset + pretrained.numel()].view(pretrained.shape)
        offset += pretrained.numel()
    return state


@pytest.mark.parametrize(("experts", "ratio", "scaling"), [(3, 0.05, 1.2), (4, 0.2, 0.8), (2, 0.5, 1.0), (3, 1.0, 1.3)])
def test_pcb_matches_the_authors_equations_over_the_whole_flattened_model(tmp_path, experts, ratio, scaling):
    pool = random_pool(tmp_path, n_experts=experts)
    expected = reference_pcb(pool, ratio, scaling)
    merged = state_of(Pcb(ratio=ratio, scaling=scaling).merge(pool))
    for key, values in expected.items():
        torch.testing.assert_close(merged[key], values, rtol=1e-5, atol=1e-6,
                                   msg=lambda text, key=key: f"{key}: {text}")


def test_pcb_keeps_the_top_ratio_of_balancing_scores_over_the_whole_model_not_per_tensor(tmp_path):
    """Task vectors 100x larger in one weight take all of a small kept fraction: the others stay pretrained,
    which a per-tensor drop would not do."""
    big = "transformer.resblocks.0.mlp.c_fc.weight"
    generator = torch.Generator().manual_seed(0)

    def task_vectors(index: int, value: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(value.shape, generator=generator)
        return noise if value.shape == (32, 8) else noise / 100

    pool = pool_with_task_vectors(tmp_path, task_vectors)
    assert sum(pool.pretrained_tensor(key).shape == (32, 8) for key in pool.parameter_names) == 1
    merged = state_of(Pcb(ratio=0.05).merge(pool))
    for key in pool.parameter_names:
        changed = not torch.equal(merged[key], pool.pretrained_tensor(key))
        assert changed == (key == big), key


def test_pcb_of_one_expert_adds_lambda_times_its_clamped_top_entries(tmp_path):
    """With one task every kept entry has weight s / s = 1: θ0 + λ sign(τ) clamp(|τ|) on the kept entries."""
    pool = random_pool(tmp_path, n_experts=1)
    merged = state_of(Pcb(ratio=0.5, scaling=1.0).merge(pool))
    expected = reference_pcb(pool, 0.5, 1.0)
    changed = 0
    for key in pool.parameter_names:
        torch.testing.assert_close(merged[key], expected[key])
        delta, task_vector = merged[key] - pool.pretrained_tensor(key), pool.task_vector("task0", key)
        kept = delta != 0
        assert torch.equal(delta[kept].sign(), task_vector[kept].sign())
        changed += int(kept.sum())
    total = sum(pool.pretrained_tensor(key).numel() for key in pool.parameter_names)
    assert 0.4 * total < changed <= 0.5 * total


def test_pcb_of_zero_task_vectors_is_the_pretrained_model(tmp_path):
    pool = pool_with_task_vectors(tmp_path, lambda index, value: torch.zeros_like(value))
    merged = state_of(Pcb().merge(pool))
    for key in pool.parameter_names:
        torch.testing.assert_close(merged[key], pool.pretrained_tensor(key), rtol=0, atol=0)


def pool_from_zero(tmp_path, task_vectors, experts: int) -> ModelPool:
    """A pool whose pretrained weights are all 0, so that each expert's task vector is exactly the one written
    (expert - pretrained rounds otherwise)."""
    pool = pool_with_task_vectors(tmp_path, lambda index, value: -value, experts=experts)
    save_file({key: torch.zeros(shape) for key, shape in pool.parameter_shapes.items()},
              str(tmp_path / "pretrained.safetensors"))
    for index in range(experts):
        save_file({key: task_vectors(index, torch.zeros(shape)) for key, shape in pool.parameter_shapes.items()},
                  str(tmp_path / f"task{index}.safetensors"))
    return pool.subset(pool.tasks)


def test_pcb_drops_a_task_whose_entries_all_tie_in_magnitude(tmp_path):
    """Equal magnitudes normalise to 0/0 in the authors' code; here to 0, so that task has no score to keep: every
    entry changed is λ times the other task's clamped entry, with weight s / s = 1."""
    generator = torch.Generator().manual_seed(2)
    pool = pool_from_zero(tmp_path, lambda index, value: torch.full_like(value, 0.1) if index == 0
                          else torch.randn(value.shape, generator=generator) * 0.1, experts=2)
    merged = state_of(Pcb(ratio=0.2, scaling=1.2).merge(pool))
    keys = pool.parameter_names
    other = torch.cat([pool.task_vector("task1", key).flatten() for key in keys]).unsqueeze(0)
    clamped = (other.sign() * clamp_rows(other.abs(), 0.01, 0.01))[0]
    delta = torch.cat([(merged[key] - pool.pretrained_tensor(key)).flatten() for key in keys])
    kept = delta != 0
    assert torch.isfinite(delta).all() and 0 < int(kept.sum()) <= 0.2 * len(delta)
    torch.testing.assert_close(delta[kept], 1.2 * clamped[kept])


def test_pcb_searches_the_authors_ratios_and_their_lambda_range_on_validation():
    assert Pcb().search_space() == {"ratio": (0.05, 0.1, 0.2), "scaling": (0.8, 0.9, 1.0, 1.1, 1.2, 1.3)}
    assert (Pcb().ratio, Pcb().scaling) == (0.05, 1.2)


def test_pcb_at_another_lambda_reuses_the_order_statistics_of_its_ratio(tmp_path, monkeypatch):
    pool = random_pool(tmp_path, n_experts=2)
    calls = []
    import methods.pcb as pcb_module

    original = pcb_module.PcbStatistics.drop_bounds
    monkeypatch.setattr(pcb_module.PcbStatistics, "drop_bounds",
                        lambda self, *args: calls.append(args[1]) or original(self, *args))
    for scaling in (0.8, 1.0):
        for ratio in (0.05, 0.1):
            Pcb(ratio=ratio, scaling=scaling).merge(pool)
    assert calls == [0.05, 0.1]


def test_pcb_runs_on_the_tiny_zoo(tiny_zoo, tmp_path):
    rows = run_on_tiny_zoo(tiny_zoo, tmp_path, ["pcb"])
    assert set(rows["method"]) == {"pcb"} and len(rows) == 8 and rows["value"].between(0, 1).all()
