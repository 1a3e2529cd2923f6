"""DARE: random drops with rescaling, seeded per task and parameter, then task arithmetic or TIES."""

from __future__ import annotations

import pytest
import torch
from helpers import random_pool, state_of
from safetensors.torch import save_file
from test_methods import flat_vectors, flatten_state, reference_ties

from bench.cli import main
from bench.results import ResultStore
from methods.averaging import TaskArithmetic
from methods.dare import DareTaskArithmetic, DareTies


def kept_entries(pool, task: str, rate: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """Per parameter, the entries of `task`'s task vector that DARE keeps, read off a merge of that expert alone
    (the drops of a task do not depend on the other tasks merged)."""
    alone = pool.subset([task])
    merged = state_of(DareTaskArithmetic(rate=rate, scaling=1.0, seed=seed).merge(alone))
    return {key: merged[key] != alone.pretrained_tensor(key) for key in alone.parameter_names}


def reference_dropped(pool, rate: float, seed: int = 0) -> torch.Tensor:
    """The task vectors (flattened, one row per task) with DARE's drops: kept entries divided by 1 - p."""
    rows = []
    for task in pool.tasks:
        kept = kept_entries(pool, task, rate, seed)
        rows.append(torch.cat([(pool.task_vector(task, key) * kept[key] / (1 - rate)).flatten()
                               for key in pool.parameter_names]))
    return torch.stack(rows)


def test_a_single_expert_keeps_each_entry_unchanged_but_rescaled_by_one_over_one_minus_p_or_drops_it(tmp_path):
    pool = random_pool(tmp_path, n_experts=1)
    pretrained, task_vectors, keys, _ = flat_vectors(pool)
    delta = flatten_state(state_of(DareTaskArithmetic(rate=0.3, scaling=1.0).merge(pool)), keys) - pretrained
    kept = delta != 0
    torch.testing.assert_close(delta[kept], task_vectors[0][kept] / 0.7)
    n = kept.numel()  # dropped ~ Binomial(n, 0.3): within 5 standard deviations
    assert abs((~kept).sum().item() - 0.3 * n) < 5 * (n * 0.3 * 0.7) ** 0.5


def test_dare_task_arithmetic_is_pretrained_plus_scaled_sum_of_dropped_rescaled_task_vectors(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    pretrained, _, keys, _ = flat_vectors(pool)
    merged = flatten_state(state_of(DareTaskArithmetic(rate=0.5, scaling=0.3).merge(pool)), keys)
    torch.testing.assert_close(merged, pretrained + 0.3 * reference_dropped(pool, 0.5).sum(0))


def test_dare_ties_trims_elects_and_merges_the_dropped_task_vectors(tmp_path):
    pool = random_pool(tmp_path, n_experts=4)
    pretrained, _, keys, _ = flat_vectors(pool)
    merged = flatten_state(state_of(DareTies(rate=0.5).merge(pool)), keys)
    torch.testing.assert_close(merged, reference_ties(pretrained, reference_dropped(pool, 0.5), 0.2, 0.5, "sum"))


def test_the_drops_are_the_same_whatever_the_order_of_parameters_and_tasks(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    first = state_of(DareTies().merge(pool))
    reordered = pool.subset(reversed(pool.tasks))
    reordered.__dict__["parameter_names"] = list(reversed(pool.parameter_names))  # a cached property, overridden
    again = state_of(DareTies().merge(reordered))
    for key in pool.parameter_names:
        torch.testing.assert_close(again[key], first[key])


def test_the_same_seed_drops_the_same_entries_and_another_seed_other_ones(tmp_path):
    pool = random_pool(tmp_path, n_experts=2)
    first, again = (state_of(DareTaskArithmetic(seed=0).merge(pool)) for _ in range(2))
    other = state_of(DareTaskArithmetic(seed=1).merge(pool))
    assert all(torch.equal(first[key], again[key]) for key in pool.parameter_names)
    assert not all(torch.equal(first[key], other[key]) for key in pool.parameter_names)


def test_rate_zero_is_task_arithmetic_and_rate_one_the_pretrained_model(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    undropped = state_of(DareTaskArithmetic(rate=0.0).merge(pool))
    arithmetic = state_of(TaskArithmetic(scaling=0.3).merge(pool))
    all_dropped = state_of(DareTaskArithmetic(rate=1.0).merge(pool))
    for key in pool.parameter_names:
        torch.testing.assert_close(undropped[key], arithmetic[key])
        assert torch.equal(all_dropped[key], pool.pretrained_tensor(key))


@pytest.mark.parametrize("method", [DareTaskArithmetic(), DareTies()])
def test_zero_task_vectors_merge_to_the_pretrained_model(tmp_path, method):
    pool = random_pool(tmp_path, n_experts=2)
    for task in pool.tasks:
        save_file(pool.pretrained_state(), str(tmp_path / f"{task}.safetensors"))
    pool = pool.subset(pool.tasks)  # opens the rewritten files
    merged = state_of(method.merge(pool))
    assert all(torch.equal(merged[key], pool.pretrained_tensor(key)) for key in pool.parameter_names)


def test_dare_runs_on_the_tiny_zoo_with_a_row_per_task_and_seed(tiny_zoo, tmp_path):
    results = tmp_path / "results"
    assert main(["run", "--method", "dare_task_arithmetic", "--method", "dare_ties", "--scenario", "multitask",
                 "--seeds", "0", "1", "--zoo", str(tiny_zoo), "--results", str(results),
                 "--reports", str(tmp_path / "reports")]) == 0
    rows = ResultStore(results).load()
    methods = ("dare_task_arithmetic", "dare_ties")
    assert rows.groupby(["method", "seed"]).size().to_dict() == {(m, s): 8 for m in methods for s in (0, 1)}
    assert rows["value"].between(0, 1).all()
