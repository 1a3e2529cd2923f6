"""Consensus Merging and TALL masks: per-task masks |τ_t| > λ |τ_MTL - τ_t| on the merged task vector."""

from __future__ import annotations

import pytest
import torch
from helpers import random_pool, state_of
from safetensors.torch import save_file
from test_methods import flat_vectors, flatten_state, reference_ties

from bench.cli import main
from bench.results import ResultStore
from methods.averaging import TaskArithmetic
from methods.tall_masks import ConsensusMerging, TallMasks


def reference_merged(task_vectors: torch.Tensor, base: str) -> torch.Tensor:
    """τ_MTL: the plain sum of the task vectors, or TIES' disjoint sum of their top 20%, unscaled."""
    if base == "ties":
        return reference_ties(torch.zeros(task_vectors.shape[1]), task_vectors, 0.2, 1.0, "sum")
    return task_vectors.sum(0)


def reference_masks(task_vectors: torch.Tensor, merged: torch.Tensor, mask_lambda: float) -> torch.Tensor:
    """The TALL paper's mask of each task (a row): its own vector outweighs the rest of the merged vector."""
    return torch.stack([vector.abs() > mask_lambda * (merged - vector).abs() for vector in task_vectors])


def rewrite_experts(pool, tmp_path, task_vectors: list[dict[str, torch.Tensor]]):
    """The pool with expert i = pretrained + task_vectors[i], exactly: the pretrained weights are rounded to
    multiples of 1/1024, so that subtracting them gives back the task vectors the test wrote."""
    pretrained = {k: (v * 1024).round() / 1024 for k, v in pool.pretrained_state().items()}
    save_file(pretrained, str(tmp_path / "pretrained.safetensors"))
    for index, vectors in enumerate(task_vectors):
        save_file({k: pretrained[k] + vectors[k] for k in pretrained}, str(tmp_path / f"task{index}.safetensors"))
    return pool.subset(pool.tasks)  # opens the rewritten files


@pytest.mark.parametrize("base", ["task_arithmetic", "ties"])
def test_consensus_keeps_the_merged_vector_where_at_least_two_tasks_claim_an_entry(tmp_path, base):
    pool = random_pool(tmp_path, n_experts=4)
    pretrained, task_vectors, keys, _ = flat_vectors(pool)
    merged = flatten_state(state_of(ConsensusMerging(base=base, mask_lambda=0.4).merge(pool)), keys)
    total = reference_merged(task_vectors, base)
    claimed = reference_masks(task_vectors, total, 0.4).sum(0) >= 2
    assert 0 < claimed.float().mean() < 1
    torch.testing.assert_close(merged, pretrained + 0.3 * total * claimed)


def test_consensus_at_agreement_zero_is_task_arithmetic(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    consensus = state_of(ConsensusMerging(agreement=0).merge(pool))
    arithmetic = state_of(TaskArithmetic(scaling=0.3).merge(pool))
    for key in pool.parameter_names:
        torch.testing.assert_close(consensus[key], arithmetic[key])


@pytest.mark.parametrize("base", ["task_arithmetic", "ties"])
def test_each_task_s_tall_mask_model_is_pretrained_plus_its_mask_on_the_unscaled_merged_vector(tmp_path, base):
    pool = random_pool(tmp_path, n_experts=4)
    pretrained, task_vectors, keys, _ = flat_vectors(pool)
    models = TallMasks(base=base).merge(pool)
    total = reference_merged(task_vectors, base)
    masks = reference_masks(task_vectors, total, 0.6)
    assert list(models) == pool.tasks
    for row, task in enumerate(pool.tasks):
        torch.testing.assert_close(flatten_state(state_of(models[task]), keys), pretrained + total * masks[row])


def test_a_single_expert_claims_all_its_entries_so_tall_masks_give_it_back_and_consensus_gives_pretrained(tmp_path):
    pool = random_pool(tmp_path, n_experts=1)
    alone = state_of(TallMasks().merge(pool)["task0"])
    consensus = state_of(ConsensusMerging().merge(pool))
    for key in pool.parameter_names:
        torch.testing.assert_close(alone[key], pool.expert_tensor("task0", key))
        assert torch.equal(consensus[key], pool.pretrained_tensor(key))


def test_zero_task_vectors_give_the_pretrained_model_everywhere(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    zero = {k: torch.zeros_like(v) for k, v in pool.pretrained_state().items()}
    pool = rewrite_experts(pool, tmp_path, [zero] * 3)
    for merged in [ConsensusMerging().merge(pool), *TallMasks().merge(pool).values()]:
        assert all(torch.equal(v, pool.pretrained_tensor(k)) for k, v in state_of(merged).items())


def test_a_magnitude_tie_is_not_claimed_as_in_the_authors_strict_inequality(tmp_path):
    """Two equal task vectors at λ = 1: |τ_t| equals |τ_MTL - τ_t| everywhere, so no task claims any entry."""
    pool = random_pool(tmp_path, n_experts=2)
    same = {k: torch.full_like(v, 0.25) for k, v in pool.pretrained_state().items()}
    pool = rewrite_experts(pool, tmp_path, [same, same])
    models = TallMasks(mask_lambda=1.0).merge(pool)
    consensus = ConsensusMerging(mask_lambda=1.0, agreement=1).merge(pool)
    for merged in [consensus, *models.values()]:
        assert all(torch.equal(v, pool.pretrained_tensor(k)) for k, v in state_of(merged).items())
    slightly_less = state_of(TallMasks(mask_lambda=0.99).merge(pool)["task0"])
    torch.testing.assert_close(slightly_less, {k: pool.pretrained_tensor(k) + 0.5 for k in pool.parameter_names})


def test_consensus_and_tall_masks_run_on_the_tiny_zoo(tiny_zoo, tmp_path):
    results = tmp_path / "results"
    assert main(["run", "--method", "consensus", "--method", "tall_masks", "--scenario", "multitask",
                 "--scenario", "generalization", "--zoo", str(tiny_zoo), "--results", str(results),
                 "--reports", str(tmp_path / "reports")]) == 0
    rows = ResultStore(results).load()
    scenario = rows["scenario"].str.split("/").str[0]
    # tall_masks has a model for the merged tasks only: none for the 2 unseen tasks of each generalization split
    assert rows.groupby(["method", scenario]).size().to_dict() == {
        ("consensus", "multitask-8"): 8, ("consensus", "generalization"): 16,
        ("tall_masks", "multitask-8"): 8, ("tall_masks", "generalization"): 12}
    assert rows["value"].between(0, 1).all()
