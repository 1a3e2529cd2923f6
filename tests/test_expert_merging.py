"""Expert Merging and Expert Merging++ against their equations written out on a tiny ViT pool."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import TINY_ENCODER, random_pool, state_of
from spectral import run_on_tiny_zoo

from bench.cli import main
from bench.results import ResultStore
from core.errors import BenchError
from core.models import EncoderConfig, build_encoder
from core.pool import ModelPool
from methods.expert_merging import (
    Alignment,
    ChunkedCoefficientMerge,
    ExpertMerging,
    ExpertMergingPlus,
    chunk_counts,
    chunk_layout,
    importance,
    soft_cross_entropy,
)

INITIAL = 0.3


def calibration_pool(tmp_path: Path, n_experts: int = 3, requested: list | None = None) -> ModelPool:
    """A tiny random ViT pool whose tasks draw different inputs; `requested` records each draw's (task, split)."""
    pool = random_pool(tmp_path, n_experts=n_experts, spread=0.3)
    generator = torch.Generator().manual_seed(1)
    inputs = {task: torch.randn(12, 3, 8, 8, generator=generator) * (i + 1) for i, task in enumerate(pool.tasks)}

    def sample(task: str, split: str, n: int, seed: int) -> torch.Tensor:
        if requested is not None:
            requested.append((task, split))
        return inputs[task][:n]

    return ModelPool(partial(build_encoder, TINY_ENCODER), tmp_path / "pretrained.safetensors",
                     {task: tmp_path / f"{task}.safetensors" for task in pool.tasks}, pool.heads, sample)


def stacked(pool: ModelPool) -> dict[str, torch.Tensor]:
    return {key: torch.stack([pool.task_vector(task, key) for task in pool.tasks]) for key in pool.parameter_names}


def block_and_features(encoder: torch.nn.Module, images: torch.Tensor, block: int) -> tuple[torch.Tensor, ...]:
    """The encoder's forward written out: the output of residual block `block` (0-based) and the image features."""
    x = encoder.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([encoder.class_embedding.expand(len(x), 1, -1), x], dim=1)
    x = encoder.ln_pre(x + encoder.positional_embedding)
    outputs = []
    for residual_block in encoder.transformer.resblocks:
        x = residual_block(x)
        outputs.append(x)
    return outputs[block], encoder.ln_post(x[:, 0]) @ encoder.proj


@pytest.mark.parametrize(("numel", "chunks"), [(12, 1), (12, 4), (13, 4), (5, 4), (7, 7), (3, 8)])
def test_chunk_layout_cuts_as_torch_chunk_does(numel, chunks):
    pieces = torch.arange(numel).chunk(chunks)
    count, size = chunk_layout(numel, chunks)
    assert count == len(pieces) and size == len(pieces[0]) and all(len(piece) <= size for piece in pieces)


def test_chunked_merge_weighs_each_contiguous_chunk_of_each_task_vector_by_its_own_sigmoid_coefficient(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    pretrained, vectors = pool.pretrained_state(), stacked(pool)
    keys = pool.parameter_names
    chunks = {key: [1, 3, 0, 5, 4][i % 5] for i, key in enumerate(keys)}  # 0: fixed at the initial coefficient
    model = ChunkedCoefficientMerge(pretrained, vectors, chunks, INITIAL)
    with torch.no_grad():
        model.raw.normal_()
    raw, state, offset = model.raw.detach(), model.state(), 0
    for key in keys:
        expected = pretrained[key].flatten().clone()
        if chunks[key] == 0:
            expected += INITIAL * vectors[key].sum(0).flatten()
        else:
            start = 0
            pieces = [task_vector.flatten().chunk(chunks[key]) for task_vector in vectors[key]]
            for s in range(len(pieces[0])):
                stop = start + len(pieces[0][s])
                for t in range(len(pieces)):
                    expected[start:stop] += torch.sigmoid(raw[t, offset + s]) * pieces[t][s]
                start = stop
            offset += len(pieces[0])
        torch.testing.assert_close(state[key], expected.view(pretrained[key].shape))
    assert offset == raw.shape[1]


def test_regulariser_sums_over_tasks_the_mean_distance_of_the_coefficients_from_their_initial_value(tmp_path):
    pool = random_pool(tmp_path, n_experts=2)
    model = ChunkedCoefficientMerge(pool.pretrained_state(), stacked(pool), dict.fromkeys(pool.parameter_names, 2), 0.2)
    with torch.no_grad():
        model.raw.normal_()
    coefficients = torch.sigmoid(model.raw.detach())
    expected = sum(float((coefficients[t] - 0.2).abs().mean()) for t in range(2))
    assert float(model.regulariser().detach()) == pytest.approx(expected, rel=1e-6)


def test_importance_is_each_tensors_share_of_coefficient_weighted_task_vector_mass():
    coefficients = {"a": torch.tensor([0.5, 0.1]), "b": torch.tensor([0.2, 0.4])}
    vectors = {"a": torch.tensor([[1.0, -3.0], [2.0, 2.0]]), "b": torch.tensor([[4.0, 0.0, 0.0], [-1.0, 1.0, 1.0]])}
    # |alpha| x mean|tau| x parameter count, summed over tasks
    raw = {"a": 0.5 * 2.0 * 2 + 0.1 * 2.0 * 2, "b": 0.2 * 4 / 3 * 3 + 0.4 * 1.0 * 3}
    l1_norms = {key: vector.abs().sum(1) for key, vector in vectors.items()}
    shares = importance(coefficients, l1_norms)
    assert shares == pytest.approx({key: value / sum(raw.values()) for key, value in raw.items()})
    assert importance(coefficients, {key: torch.zeros(2) for key in vectors}) == {"a": 0.0, "b": 0.0}


def test_chunk_counts_are_the_floor_of_the_budget_times_each_tensors_powered_share():
    shares = {"a": 0.6, "b": 0.3, "c": 0.1}
    assert chunk_counts(shares, 3.0, 1.0) == {"a": 1, "b": 0, "c": 0}
    assert chunk_counts(shares, 10.0, 1.0) == {"a": 6, "b": 3, "c": 1}
    powered = {"a": 0.36, "b": 0.09, "c": 0.01}
    assert chunk_counts(shares, 10.0, 2.0) == {key: math.floor(10 * v / 0.46) for key, v in powered.items()}
    assert chunk_counts(shares, 3.0, 0.0) == {"a": 1, "b": 1, "c": 1}  # kappa 0: even
    assert chunk_counts(dict.fromkeys("ab", 0.0), 3.0, 1.0) == {"a": 0, "b": 0}


def test_soft_cross_entropy_is_the_scaled_kl_divergence_plus_the_targets_entropy():
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(4, 5, generator=generator), torch.randn(4, 5, generator=generator)
    temperature = 2.0
    targets = (teacher / temperature).softmax(-1)
    kl = F.kl_div((student / temperature).log_softmax(-1), targets, reduction="none").sum(-1)
    entropy = -(targets * targets.log()).sum(-1)
    torch.testing.assert_close(soft_cross_entropy(student, teacher, temperature), temperature ** 2 * (kl + entropy))


@pytest.mark.parametrize(("blocks", "depth", "block"), [(6, 0.5, 2), (12, 0.5, 5), (6, 1.0, 5), (6, 0.01, 0)])
def test_the_aligned_block_is_the_one_at_the_depths_fraction_the_middle_one_by_default(blocks, depth, block):
    encoder = build_encoder(EncoderConfig(image_size=8, patch_size=4, width=8, layers=blocks, heads=2, embed_dim=4))
    assert ExpertMerging(hidden_depth=depth).aligned_block(encoder) == block


@pytest.mark.parametrize(("temperature", "hidden_weight", "depth"), [(1.0, 1.0, 0.5), (3.0, 0.5, 1.0), (1.0, 0.0, 0.5)])
def test_alignment_loss_matches_each_input_to_its_own_experts_logits_and_hidden_state(tmp_path, temperature,
                                                                                       hidden_weight, depth):
    pool = calibration_pool(tmp_path)
    method = ExpertMerging(calibration=4, temperature=temperature, hidden_weight=hidden_weight, hidden_depth=depth,
                           epochs=0)
    pretrained, vectors = pool.pretrained_state(), stacked(pool)
    encoder = pool.encoder(pretrained).requires_grad_(False)
    block = method.aligned_block(encoder)
    assert block == max(1, round(depth * TINY_ENCODER.layers)) - 1
    alignment = Alignment(encoder, block, pool.heads, method.calibration_set(pool, block), pretrained, vectors)
    model = ChunkedCoefficientMerge(pretrained, vectors, dict.fromkeys(pretrained, 1), INITIAL)
    with torch.no_grad():
        model.raw.normal_()
    batch = [0, 5, 6, 11, 2]  # inputs 0-3 of task0, 4-7 of task1, 8-11 of task2
    loss = method.alignment_loss(alignment, model.state(), batch)

    coefficients = torch.sigmoid(model.raw.detach())
    merged_state = {key: pretrained[key] + sum(coefficients[t, i] * vectors[key][t] for t in range(3))
                    for i, key in enumerate(pretrained)}
    merged = pool.encoder(merged_state)
    terms = []
    for index in batch:
        task, row = pool.tasks[index // 4], index % 4
        image = pool.sample_inputs(task, "train", 4, 0)[row:row + 1]
        expert = pool.encoder(pool.expert_state(task))
        with torch.no_grad():
            expert_hidden, expert_features = block_and_features(expert, image, block)
            merged_hidden, merged_features = block_and_features(merged, image, block)
        expert_p = (pool.heads[task](expert_features) / temperature).softmax(-1)
        merged_log_q = (pool.heads[task](merged_features) / temperature).log_softmax(-1)
        logit_term = -temperature ** 2 * (expert_p * merged_log_q).sum()
        terms.append(logit_term + hidden_weight * ((merged_hidden - expert_hidden) ** 2).mean())
    assert float(loss.detach()) == pytest.approx(float(sum(terms) / len(terms)), rel=1e-5)


def test_fitting_the_coefficients_lowers_the_alignment_loss(tmp_path):
    pool = calibration_pool(tmp_path)
    method = ExpertMerging(calibration=8, epochs=10, lr=0.1, regularisation=0.0, accumulation=4)
    pretrained, vectors = pool.pretrained_state(), stacked(pool)
    encoder = pool.encoder(pretrained).requires_grad_(False)
    alignment = Alignment(encoder, 0, pool.heads, method.calibration_set(pool, 0), pretrained, vectors)
    everything = list(range(24))
    layerwise = dict.fromkeys(pretrained, 1)
    initial = ChunkedCoefficientMerge(pretrained, vectors, layerwise, INITIAL)
    fitted = method.aligned(alignment, layerwise)
    with torch.no_grad():
        before, after = (method.alignment_loss(alignment, model.state(), everything) for model in (initial, fitted))
    assert float(after) < 0.9 * float(before)
    assert not torch.allclose(fitted.coefficients(), torch.full_like(fitted.coefficients(), INITIAL))


@pytest.mark.parametrize("method", [ExpertMerging, ExpertMergingPlus])
def test_no_epoch_gives_task_arithmetic_at_the_initial_coefficient(tmp_path, method):
    pool = calibration_pool(tmp_path)
    merged = state_of(method(epochs=0, initial=0.4).merge(pool))
    for key in pool.parameter_names:
        expected = pool.pretrained_tensor(key) + 0.4 * sum(pool.task_vector(task, key) for task in pool.tasks)
        torch.testing.assert_close(merged[key], expected)


@pytest.mark.parametrize("method", [ExpertMerging, ExpertMergingPlus])
def test_the_merge_reads_only_calibration_inputs_of_its_split_never_test_inputs(tmp_path, method):
    requested: list = []
    pool = calibration_pool(tmp_path, requested=requested)
    method(split="validation").merge(pool)
    assert set(requested) == {(task, "validation") for task in pool.tasks}
    assert not pool.test_inputs_read


def test_expert_merging_plus_at_sharpness_zero_is_expert_merging(tmp_path):
    """kappa 0 and a budget of one coefficient per tensor: one chunk each, learned again as in the first stage."""
    pool = calibration_pool(tmp_path)
    plain = state_of(ExpertMerging().merge(pool))
    chunked = state_of(ExpertMergingPlus(sharpness=0.0, budget=1.0).merge(pool))
    for key, value in plain.items():
        torch.testing.assert_close(chunked[key], value, rtol=0, atol=0)


def test_expert_merging_plus_keeps_the_tensors_given_no_chunk_at_the_initial_coefficient(tmp_path):
    """A steep kappa gives the whole budget to the most important tensor: every other stays task arithmetic."""
    pool = calibration_pool(tmp_path)
    merged = state_of(ExpertMergingPlus(sharpness=50.0).merge(pool))
    learned = []
    for key in pool.parameter_names:
        fixed = pool.pretrained_tensor(key) + INITIAL * sum(pool.task_vector(task, key) for task in pool.tasks)
        if not torch.allclose(merged[key], fixed):
            learned.append(key)
    assert len(learned) == 1


def test_each_experts_calibration_outputs_are_computed_once_per_pool(tmp_path, monkeypatch):
    pool = calibration_pool(tmp_path)
    calls = []
    original = ExpertMerging.expert_outputs
    monkeypatch.setattr(ExpertMerging, "expert_outputs",
                        lambda self, *args: calls.append(args[1]) or original(self, *args))
    ExpertMerging().merge(pool)
    ExpertMergingPlus().merge(pool)
    ExpertMerging(lr=0.1).merge(pool.subset(["task0", "task2"]))
    assert sorted(calls) == sorted(pool.tasks)


def test_an_initial_coefficient_of_one_is_refused():
    with pytest.raises(BenchError, match="expert_merging: initial=1.0 must be below 1"):
        ExpertMerging(initial=1.0)


def test_expert_merging_runs_on_the_tiny_zoo(tiny_zoo, tmp_path):
    rows = run_on_tiny_zoo(tiny_zoo, tmp_path, ["expert_merging", "expert_merging_plus"])
    assert set(rows["method"]) == {"expert_merging", "expert_merging_plus"} and len(rows) == 16
    assert rows["value"].between(0, 1).all() and rows["step"].isna().all()


def test_expert_merging_is_merged_once_for_the_eight_robustness_splits(tiny_zoo, tmp_path):
    assert main(["run", "--method", "expert_merging", "--scenario", "robustness", "--zoo", str(tiny_zoo),
                 "--results", str(tmp_path / "results")]) == 0
    rows = ResultStore(tmp_path / "results").load()
    assert rows["scenario"].nunique() == 8 and rows["merge_s"].nunique() == 1
