"""EMR-Merging: elected unified vector, per-task sign masks and rescalers, one model per task."""

from __future__ import annotations

import torch
from helpers import random_pool, state_of
from safetensors.torch import save_file

from bench.cli import main
from bench.results import ResultStore
from methods.emr import EMRMerging


def reference_emr(pool) -> dict[str, dict[str, torch.Tensor]]:
    """Each task's weights, following the paper's Elect, Mask and Rescale steps task by task."""
    unified, masks = {}, {}
    own, masked = [0.0] * len(pool.tasks), [0.0] * len(pool.tasks)
    for key in pool.parameter_names:
        vectors = [pool.task_vector(task, key) for task in pool.tasks]
        elected = torch.where(sum(vectors) / len(vectors) > 0, 1.0, -1.0)  # Elect: the sign of the mean (0 -> -)
        masks[key] = [(vector * elected) > 0 for vector in vectors]  # Mask: the entries agreeing with it
        largest = torch.zeros_like(vectors[0])
        for vector, mask in zip(vectors, masks[key]):
            largest = torch.maximum(largest, (vector * mask).abs())
        unified[key] = largest * elected
        for index, (vector, mask) in enumerate(zip(vectors, masks[key])):
            own[index] += vector.abs().mean().item()
            masked[index] += (unified[key] * mask).abs().mean().item()
    rescalers = [o / m for o, m in zip(own, masked)]  # Rescale: mean magnitudes, summed over tensors
    return {task: {key: pool.pretrained_tensor(key) + rescalers[index] * unified[key] * masks[key][index]
                   for key in pool.parameter_names} for index, task in enumerate(pool.tasks)}


def rewrite_experts(pool, tmp_path, task_vectors):
    """The pool with expert i = pretrained + task_vectors[i], exactly (pretrained rounded to multiples of 1/1024)."""
    pretrained = {k: (v * 1024).round() / 1024 for k, v in pool.pretrained_state().items()}
    save_file(pretrained, str(tmp_path / "pretrained.safetensors"))
    for index, vectors in enumerate(task_vectors):
        save_file({k: pretrained[k] + vectors[k] for k in pretrained}, str(tmp_path / f"task{index}.safetensors"))
    return pool.subset(pool.tasks)


def test_each_task_s_model_is_pretrained_plus_its_rescaled_mask_of_the_elected_unified_vector(tmp_path):
    pool = random_pool(tmp_path, n_experts=4)
    models, expected = EMRMerging().merge(pool), reference_emr(pool)
    assert list(models) == pool.tasks
    for task in pool.tasks:
        merged = state_of(models[task])
        for key in pool.parameter_names:
            torch.testing.assert_close(merged[key], expected[task][key])


def test_a_single_expert_is_given_back_unchanged(tmp_path):
    pool = random_pool(tmp_path, n_experts=1)
    merged = state_of(EMRMerging().merge(pool)["task0"])
    for key in pool.parameter_names:
        torch.testing.assert_close(merged[key], pool.expert_tensor("task0", key))


def test_opposite_task_vectors_tie_in_sign_and_the_negative_entries_are_elected(tmp_path):
    """τ and -τ sum to 0 everywhere; the authors' code elects - there, so each task keeps only its negative
    entries, all rescaled by one factor, and nothing elsewhere."""
    pool = random_pool(tmp_path, n_experts=2)
    vector = {k: torch.randint(-64, 65, v.shape, generator=torch.Generator().manual_seed(0)) / 256
              for k, v in pool.pretrained_state().items()}
    pool = rewrite_experts(pool, tmp_path, [vector, {k: -v for k, v in vector.items()}])
    models = EMRMerging().merge(pool)
    for task in pool.tasks:
        merged, ratios = state_of(models[task]), []
        for key in pool.parameter_names:
            own, moved = pool.task_vector(task, key), merged[key] - pool.pretrained_tensor(key)
            assert torch.equal(moved[own >= 0], torch.zeros_like(moved[own >= 0]))
            ratios.append(moved[own < 0] / own[own < 0])
        ratios = torch.cat(ratios)
        torch.testing.assert_close(ratios, torch.full_like(ratios, ratios.mean().item()))
        assert ratios.mean() > 1  # half the entries kept: the rescaler restores the mean magnitude


def test_zero_task_vectors_give_the_pretrained_model_without_dividing_by_zero(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    zero = {k: torch.zeros_like(v) for k, v in pool.pretrained_state().items()}
    pool = rewrite_experts(pool, tmp_path, [zero] * 3)
    for model in EMRMerging().merge(pool).values():
        assert all(torch.equal(v, pool.pretrained_tensor(k)) for k, v in state_of(model).items())


def test_emr_runs_on_the_tiny_zoo_with_one_model_per_merged_task(tiny_zoo, tmp_path):
    results = tmp_path / "results"
    assert main(["run", "--method", "emr", "--scenario", "multitask", "--zoo", str(tiny_zoo), "--results",
                 str(results), "--reports", str(tmp_path / "reports")]) == 0
    rows = ResultStore(results).load()
    assert len(rows) == 8 and rows["value"].between(0, 1).all()
