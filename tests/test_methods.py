"""Each static method against its formula, on a tiny random pool (the flattened reference is the spec)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from helpers import TINY_ENCODER, random_pool, state_of
from safetensors.torch import save_file

import methods.fisher as fisher_module
from bench.runner import MethodSpec
from core.models import ClassificationHead
from methods.averaging import TaskArithmetic, WeightAveraging
from methods.fisher import (
    FisherMerging,
    batch_gradient_fisher,
    exact_fisher,
    fisher_weighted_average,
    merging_weights,
    sampled_fisher,
    squared_batch_gradients,
)
from methods.references import Individual, Pretrained
from methods.ties import TiesMerging, trim_threshold
from tasks.clip import CLIP_PRESETS
from tasks.suites import MINI_PRESETS


def flat_vectors(pool) -> tuple[torch.Tensor, torch.Tensor, list[str], list[torch.Size]]:
    keys = pool.parameter_names
    pretrained = torch.cat([pool.pretrained_tensor(k).flatten() for k in keys])
    task_vectors = torch.stack([torch.cat([pool.task_vector(t, k).flatten() for k in keys]) for t in pool.tasks])
    return pretrained, task_vectors, keys, [pool.pretrained_tensor(k).shape for k in keys]


def flatten_state(state: dict[str, torch.Tensor], keys: list[str]) -> torch.Tensor:
    return torch.cat([state[k].flatten() for k in keys])


def test_weight_averaging_is_the_mean_of_the_experts_only(tmp_path):
    pool = random_pool(tmp_path)
    merged = state_of(WeightAveraging().merge(pool))
    for key in pool.parameter_names:
        expected = sum(pool.expert_tensor(t, key) for t in pool.tasks) / len(pool.tasks)
        torch.testing.assert_close(merged[key], expected)


def test_task_arithmetic_adds_the_scaled_sum_of_task_vectors(tmp_path):
    pool = random_pool(tmp_path)
    merged = state_of(TaskArithmetic(scaling=0.3).merge(pool))
    for key in pool.parameter_names:
        expected = pool.pretrained_tensor(key) + 0.3 * sum(pool.task_vector(t, key) for t in pool.tasks)
        torch.testing.assert_close(merged[key], expected)


def test_references_return_pretrained_and_each_expert(tmp_path):
    pool = random_pool(tmp_path)
    pretrained = state_of(Pretrained().merge(pool))
    individual = Individual().merge(pool)
    assert set(individual) == set(pool.tasks)
    for key in pool.parameter_names:
        torch.testing.assert_close(pretrained[key], pool.pretrained_tensor(key))
        torch.testing.assert_close(state_of(individual["task1"])[key], pool.expert_tensor("task1", key))


def reference_ties(pretrained, task_vectors, keep, scaling, disjoint, per_tensor_sizes=None):
    """TIES on flattened vectors, written from the paper's three steps."""
    n = task_vectors.shape[1]
    if per_tensor_sizes is None:
        kth = task_vectors.abs().kthvalue(n - int(n * keep), dim=1, keepdim=True).values
    else:
        kth = torch.cat([chunk.abs().kthvalue(chunk.shape[1] - int(chunk.shape[1] * keep), dim=1, keepdim=True)
                         .values.expand(-1, chunk.shape[1])
                         for chunk in task_vectors.split(per_tensor_sizes, dim=1)], 1)
    trimmed = task_vectors * (task_vectors.abs() >= kth)
    signs = torch.sign(trimmed.sum(0))
    signs[signs == 0] = torch.sign(signs.sum())
    agree = ((trimmed > 0) & (signs > 0)) | ((trimmed < 0) & (signs < 0))
    selected = (trimmed * agree).sum(0)
    if disjoint == "mean":
        selected = selected / agree.sum(0).clamp(min=1)
    return pretrained + scaling * selected


@pytest.mark.parametrize("disjoint", ["sum", "mean"])
def test_ties_matches_the_flattened_reference(tmp_path, disjoint):
    pool = random_pool(tmp_path, n_experts=4)
    pretrained, task_vectors, keys, _ = flat_vectors(pool)
    merged = flatten_state(state_of(TiesMerging(disjoint=disjoint).merge(pool)), keys)
    torch.testing.assert_close(merged, reference_ties(pretrained, task_vectors, 0.2, 0.3, disjoint))


def test_ties_per_tensor_trim_matches_the_reference(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    pretrained, task_vectors, keys, shapes = flat_vectors(pool)
    merged = flatten_state(state_of(TiesMerging(trim="per_tensor").merge(pool)), keys)
    sizes = [s.numel() for s in shapes]
    torch.testing.assert_close(merged, reference_ties(pretrained, task_vectors, 0.2, 0.3, "sum", sizes))


def test_ties_keeps_top_20_percent_of_each_task_vector_over_all_parameters(tmp_path):
    pool = random_pool(tmp_path, n_experts=1)
    _, task_vectors, keys, _ = flat_vectors(pool)
    # One expert: nothing to disagree with, so the merge is exactly 0.3 x the trimmed task vector.
    merged = flatten_state(state_of(TiesMerging().merge(pool)), keys) - flat_vectors(pool)[0]
    kept = (merged != 0).sum().item()
    n = task_vectors.numel()
    assert kept == n - (n - int(0.2 * n)) + 1  # entries >= the k-th smallest magnitude
    assert merged.abs()[merged != 0].min() >= 0.3 * task_vectors.abs().quantile(0.79)


@pytest.mark.parametrize("disjoint", ["sum", "mean"])
def test_ties_gives_weights_whose_trimmed_sum_is_zero_the_majority_sign(tmp_path, disjoint):
    """Two task vectors cancel exactly (as fp16 checkpoints can): there the elected sign is the majority's,
    here negative, set by a third, mostly negative task vector."""
    pool = random_pool(tmp_path, n_experts=3)
    generator = torch.Generator().manual_seed(1)
    pretrained = {k: (pool.pretrained_tensor(k) * 1024).round() / 1024 for k in pool.parameter_names}  # sums exact
    opposite = {k: torch.randint(-64, 65, v.shape, generator=generator) / 1024 for k, v in pretrained.items()}
    negative = {k: -torch.randint(0, 256, v.shape, generator=generator) / 1024 for k, v in pretrained.items()}
    save_file(pretrained, str(tmp_path / "pretrained.safetensors"))
    for index, vectors in enumerate([opposite, {k: -v for k, v in opposite.items()}, negative]):
        save_file({k: pretrained[k] + vectors[k] for k in pretrained}, str(tmp_path / f"task{index}.safetensors"))
    pool = pool.subset(pool.tasks)  # a pool that opens the rewritten files
    flat_pretrained, task_vectors, keys, _ = flat_vectors(pool)
    assert (task_vectors[0] == -task_vectors[1]).all()
    merged = flatten_state(state_of(TiesMerging(keep=0.5, disjoint=disjoint).merge(pool)), keys)
    torch.testing.assert_close(merged, reference_ties(flat_pretrained, task_vectors, 0.5, 0.3, disjoint))
    cancelled = (task_vectors[0] != 0) & (task_vectors[2] == 0)
    assert cancelled.any() and (merged[cancelled] <= flat_pretrained[cancelled]).all()


def test_trim_threshold_keeps_everything_at_keep_one():
    assert trim_threshold(torch.tensor([3.0, 1.0, 2.0]), 1.0) == 0.0


def test_ties_paper_preset_uses_disjoint_mean_and_scaling_one():
    method = TiesMerging.configure("ties_paper")
    assert (method.disjoint, method.scaling, method.preset) == ("mean", 1.0, "ties_paper")


def naive_exact_fisher(encoder, head, inputs):
    fisher = {n: torch.zeros_like(p) for n, p in encoder.named_parameters()}
    for x in inputs:
        log_probs = F.log_softmax(head(encoder(x[None])), -1)[0]
        for c in range(len(log_probs)):
            grads = torch.autograd.grad(log_probs[c], list(encoder.parameters()), retain_graph=True)
            for (name, _), g in zip(encoder.named_parameters(), grads):
                fisher[name] += log_probs[c].exp().detach() * g.square()
    return {n: f / len(inputs) for n, f in fisher.items()}


def test_exact_fisher_equals_the_per_example_definition(tmp_path):
    pool = random_pool(tmp_path)
    encoder, head = pool.encoder(pool.expert_state("task0")), pool.heads["task0"]
    inputs = pool.sample_inputs("task0", "train", 10, 0)
    fast, slow = exact_fisher(encoder, head, inputs, chunk=4), naive_exact_fisher(encoder, head, inputs)
    for name in slow:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-4, atol=1e-7)


def test_batch_gradient_fisher_squares_the_batch_summed_gradient(tmp_path):
    pool = random_pool(tmp_path)
    encoder, head = pool.encoder(pool.expert_state("task0")), pool.heads["task0"]
    inputs = pool.sample_inputs("task0", "train", 8, 0)
    fisher = batch_gradient_fisher(encoder, head, inputs, batch_size=8)
    logits = head(encoder(inputs))
    objective = (F.softmax(logits, -1).detach().sqrt() * F.log_softmax(logits, -1)).sum()
    grads = torch.autograd.grad(objective, list(encoder.parameters()))
    for (name, _), g in zip(encoder.named_parameters(), grads):
        torch.testing.assert_close(fisher[name], g.square() / 8)


def test_fisher_merging_is_the_normalised_fisher_weighted_average(tmp_path):
    pool = random_pool(tmp_path, n_experts=2)
    merged = state_of(FisherMerging(examples=6).merge(pool))
    fishers = []
    for task in pool.tasks:
        encoder = pool.encoder(pool.expert_state(task))
        exact = exact_fisher(encoder, pool.heads[task], pool.sample_inputs(task, "train", 6, 0))
        fisher = {k: f.clamp(min=1e-6) for k, f in exact.items()}
        norm = torch.sqrt(sum(f.square().sum() for f in fisher.values()))
        fishers.append({k: f / norm for k, f in fisher.items()})
    for key in pool.parameter_names:
        numerator = sum(f[key] * pool.expert_tensor(t, key) for f, t in zip(fishers, pool.tasks))
        torch.testing.assert_close(merged[key], numerator / sum(f[key] for f in fishers), rtol=1e-4, atol=1e-6)


def test_fisher_weights_clamp_at_the_floor_by_default_and_add_it_as_fusionbench_does():
    fisher = {"a": torch.tensor([0.0, 3e-7, 2.0], dtype=torch.float64),
              "b": torch.tensor([[1.0, 2.0]], dtype=torch.float64)}
    clamped = merging_weights(fisher, 1e-6, "clamp", normalize=True)
    norm = (1e-12 + 1e-12 + 4 + 1 + 4) ** 0.5  # of the clamped Fisher
    torch.testing.assert_close(clamped["a"], torch.tensor([1e-6, 1e-6, 2.0], dtype=torch.float64) / norm)
    torch.testing.assert_close(clamped["b"], torch.tensor([[1.0, 2.0]], dtype=torch.float64) / norm)
    added = merging_weights(fisher, 1e-6, "add", normalize=True)
    norm = (9e-14 + 4 + 1 + 4) ** 0.5 + 1e-6  # of the Fisher as estimated, plus the floor
    torch.testing.assert_close(added["a"], torch.tensor([1e-6, 1.3e-6, 2.000001], dtype=torch.float64) / norm)
    torch.testing.assert_close(added["b"], torch.tensor([[1.000001, 2.000001]], dtype=torch.float64) / norm)
    assert torch.equal(merging_weights(fisher, 1e-6, "add", normalize=False)["a"], fisher["a"] + 1e-6)
    assert FisherMerging.configure("fusionbench").floor_by == "add" and FisherMerging().floor_by == "clamp"


def test_fisher_weights_with_the_floor_added_merge_as_fusionbenchs_merging_with_fisher_weights():
    generator = torch.Generator().manual_seed(0)
    experts = [torch.randn(5, 4, generator=generator, dtype=torch.float64) for _ in range(3)]
    fishers = [{"w": torch.rand(5, 4, generator=generator, dtype=torch.float64) * scale,
                "b": torch.rand(4, generator=generator, dtype=torch.float64) * scale} for scale in (1e-3, 1.0, 50.0)]
    fishers[0]["w"][0] = 0.0
    # FusionBench: coefficient_i = 1/K * (1 / (norm_i + eps)) / sum_j (1 / (norm_j + eps)), weight_i = F_i + eps
    eps, k = 1e-6, len(experts)
    inverse = torch.stack([1 / (torch.sqrt(sum(f.square().sum() for f in fisher.values())) + eps)
                           for fisher in fishers])
    coefficients = 1 / k * inverse / inverse.sum()
    numerator = sum(c * (fisher["w"] + eps) * expert for c, fisher, expert in zip(coefficients, fishers, experts))
    expected = numerator / sum(c * (fisher["w"] + eps) for c, fisher in zip(coefficients, fishers))
    weights = [merging_weights(fisher, eps, "add", normalize=True)["w"] for fisher in fishers]
    torch.testing.assert_close(fisher_weighted_average([e.clone() for e in experts], weights), expected)
    clamped = [merging_weights(fisher, eps, "clamp", normalize=True)["w"] for fisher in fishers]
    assert not torch.allclose(fisher_weighted_average([e.clone() for e in experts], clamped), expected)


def test_fisher_merging_estimates_each_experts_fisher_once_for_the_pool_and_its_subsets(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    pool = random_pool(tmp_path / "a", n_experts=3)
    estimated = []
    fisher = FisherMerging.fisher
    monkeypatch.setattr(FisherMerging, "fisher",
                        lambda self, pool, task: estimated.append(task) or fisher(self, pool, task))
    FisherMerging(examples=6).merge(pool)
    subset = state_of(FisherMerging(examples=6).merge(pool.subset(["task0", "task2"])))
    assert estimated == ["task0", "task1", "task2"]  # none again for the subset
    fresh_pool = random_pool(tmp_path / "b", n_experts=3).subset(["task0", "task2"])
    fresh = state_of(FisherMerging(examples=6).merge(fresh_pool))
    assert all(torch.equal(subset[key], fresh[key]) for key in fresh)
    FisherMerging(examples=8).merge(pool.subset(["task1"]))  # other settings, another Fisher
    assert estimated[3:] == ["task0", "task2", "task1"]  # the fresh pool's two, then this one


def test_trim_threshold_is_the_kth_smallest_magnitude_of_the_reference_code():
    magnitudes = torch.rand(10_001, generator=torch.Generator().manual_seed(0))
    k = magnitudes.numel() - int(magnitudes.numel() * 0.2)
    assert trim_threshold(magnitudes.clone(), 0.2) == magnitudes.kthvalue(k).values.item()


def flat(fisher):
    return torch.cat([f.flatten() for f in fisher.values()])


def test_sampled_fisher_squares_a_sum_whose_expectation_over_drawn_classes_is_the_exact_fisher(tmp_path):
    pool = random_pool(tmp_path)
    encoder, head = pool.encoder(pool.expert_state("task0")), pool.heads["task0"]
    inputs = pool.sample_inputs("task0", "train", 2, 0)
    probs = F.softmax(head(encoder(inputs)), -1).detach()
    expected = {name: torch.zeros_like(p) for name, p in encoder.named_parameters()}
    for first, second in itertools.product(range(probs.shape[1]), repeat=2):  # every pair of drawn classes
        classes = torch.tensor([[first], [second]])
        def log_likelihood(logits, classes=classes):
            return F.log_softmax(logits, -1).gather(1, classes).sum()

        given = squared_batch_gradients(encoder, head, inputs, 2, log_likelihood)
        for name, f in given.items():
            expected[name] += probs[0, first] * probs[1, second] * f
    exact = exact_fisher(encoder, head, inputs)
    for name in exact:
        torch.testing.assert_close(expected[name], exact[name], rtol=1e-4, atol=1e-8)


def test_sampled_fisher_averaged_over_seeds_approaches_the_exact_fisher_unlike_fusionbenchs(tmp_path):
    pool = random_pool(tmp_path)
    encoder, head = pool.encoder(pool.expert_state("task0")), pool.heads["task0"]
    inputs = pool.sample_inputs("task0", "train", 8, 0)
    exact = flat(exact_fisher(encoder, head, inputs))
    mean = sum(flat(sampled_fisher(encoder, head, inputs, seed, batch_size=4)) for seed in range(400)) / 400

    def error(estimate):
        return (torch.linalg.vector_norm(estimate - exact) / torch.linalg.vector_norm(exact)).item()

    assert error(mean) < 0.1 < error(flat(batch_gradient_fisher(encoder, head, inputs, batch_size=4)))


def test_sampled_fisher_costs_one_backward_pass_per_input_whatever_the_number_of_classes(tmp_path):
    pool = random_pool(tmp_path)
    encoder = pool.encoder(pool.expert_state("task0"))
    forwarded, backward_passes = [], []
    encoder.register_forward_pre_hook(lambda module, args: forwarded.append(len(args[0])))
    next(encoder.parameters()).register_hook(lambda grad: backward_passes.append(1))
    inputs = pool.sample_inputs("task0", "train", 10, 0)
    for classes in (3, 400):
        forwarded.clear(), backward_passes.clear()
        head = ClassificationHead(torch.randn(classes, TINY_ENCODER.embed_dim), 20.0)
        sampled_fisher(encoder, head, inputs, 0, batch_size=4)
        assert (sum(forwarded), len(backward_passes)) == (10, 3)  # batches of 4, 4 and 2


def test_exact_fisher_chunks_fewer_inputs_where_their_gradients_exceed_the_memory_bound(tmp_path, monkeypatch):
    pool = random_pool(tmp_path)
    encoder, head = pool.encoder(pool.expert_state("task0")), pool.heads["task0"]
    inputs = pool.sample_inputs("task0", "train", 10, 0)
    chunks = []

    def count_chunk(module, args):  # the forward pass without gradients: the probabilities', once per chunk
        if not torch.is_grad_enabled():
            chunks.append(len(args[0]))

    encoder.register_forward_pre_hook(count_chunk)
    whole = exact_fisher(encoder, head, inputs)
    gradient_bytes = sum(p.numel() * p.element_size() for p in encoder.parameters())
    monkeypatch.setattr(fisher_module, "PER_EXAMPLE_GRADIENT_BYTES", 3 * gradient_bytes)
    bounded = exact_fisher(encoder, head, inputs)
    assert chunks == [10, 3, 3, 3, 1]
    for name in whole:
        torch.testing.assert_close(bounded[name], whole[name], rtol=1e-5, atol=1e-9)


def test_the_clip_suites_estimate_the_fisher_by_sampling_and_the_mini_suite_exactly():
    assert MethodSpec("fisher_merging").build(0, MINI_PRESETS).estimator == "exact"
    method = MethodSpec("fisher_merging").build(0, CLIP_PRESETS)
    assert method.estimator == "sampled" and method.label() == "Fisher Merging (sampled)"


def test_a_suite_declares_its_presets_and_a_preset_named_like_the_suite_is_not_implied():
    assert MethodSpec("wemoe").build(0, MINI_PRESETS).preset == "mini"
    assert MethodSpec("wemoe").build(0, {}).preset == "default"  # the suite's name alone implies nothing
    assert MethodSpec("wemoe", preset="default").build(0, MINI_PRESETS).preset == "default"
    assert "mini" not in TiesMerging.presets  # its keep was chosen on test data; validation now chooses it
