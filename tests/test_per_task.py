"""One encoder per task from a shared vector, masks and rescalers, built when asked for."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from helpers import random_pool, state_of

from methods.per_task import MaskedTaskModels


def models_of(pool) -> MaskedTaskModels:
    vector = {key: torch.ones(shape) for key, shape in pool.parameter_shapes.items()}
    masks = {key: torch.stack([torch.rand(shape, generator=torch.Generator().manual_seed(row)) > 0.5
                               for row in range(len(pool.tasks))]) for key, shape in pool.parameter_shapes.items()}
    return MaskedTaskModels(pool, vector, masks, {task: 2.0 + row for row, task in enumerate(pool.tasks)})


def test_a_task_s_encoder_is_pretrained_plus_its_rescaler_times_its_mask_of_the_vector(tmp_path):
    pool = random_pool(tmp_path, n_experts=3)
    models = models_of(pool)
    merged = state_of(models["task2"])
    for key, shape in pool.parameter_shapes.items():
        mask = torch.rand(shape, generator=torch.Generator().manual_seed(2)) > 0.5
        torch.testing.assert_close(merged[key], pool.pretrained_tensor(key) + 4.0 * mask)


def test_the_last_encoder_asked_for_is_kept_and_the_one_before_freed(tmp_path):
    pool = random_pool(tmp_path, n_experts=2)
    models = models_of(pool)
    first = models["task0"]
    assert models.get("task0") is first  # asked again: not rebuilt
    freed = weakref.ref(first)
    del first
    models["task1"]
    gc.collect()
    assert freed() is None


def test_the_mapping_holds_the_pool_s_tasks_only(tmp_path):
    pool = random_pool(tmp_path, n_experts=2)
    models = models_of(pool)
    assert list(models) == ["task0", "task1"] and len(models) == 2 and "task2" not in models
    with pytest.raises(KeyError):
        models["task2"]
