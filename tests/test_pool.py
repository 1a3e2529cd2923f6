"""The model pool refuses bad checkpoints by file and tensor, and reads only safetensors."""

from __future__ import annotations

import pytest
import torch
from helpers import random_pool
from safetensors.torch import load_file, save_file

from core.errors import BenchError


def rewrite(path, change):
    state = load_file(str(path))
    change(state)
    save_file(state, str(path))


def test_a_valid_pool_passes_validation(tmp_path):
    random_pool(tmp_path).validate()


def test_shape_mismatch_names_the_file_and_tensor(tmp_path):
    pool = random_pool(tmp_path)
    rewrite(tmp_path / "task1.safetensors", lambda s: s.update({"proj": torch.zeros(3, 3)}))
    with pytest.raises(BenchError,
                       match=r"task1\.safetensors: tensor proj has shape \(3, 3\), pretrained has \(8, 4\)"):
        pool.validate()


def test_nan_names_the_file_and_tensor(tmp_path):
    pool = random_pool(tmp_path)
    rewrite(tmp_path / "task0.safetensors", lambda s: s["conv1.weight"].view(-1).__setitem__(0, float("nan")))
    with pytest.raises(BenchError, match=r"task0\.safetensors: tensor conv1\.weight holds NaN or inf"):
        pool.validate()


def test_missing_tensor_is_named(tmp_path):
    pool = random_pool(tmp_path)
    rewrite(tmp_path / "task2.safetensors", lambda s: s.pop("ln_post.bias"))
    with pytest.raises(BenchError, match=r"task2\.safetensors: missing tensor ln_post\.bias"):
        pool.validate()


def test_a_pickle_is_never_unpickled(tmp_path):
    pool = random_pool(tmp_path)
    torch.save({"proj": torch.zeros(8, 4)}, tmp_path / "task0.safetensors")
    with pytest.raises(BenchError, match=r"task0\.safetensors: cannot read as safetensors"):
        pool.validate()


def test_subset_keeps_only_the_named_experts(tmp_path):
    pool = random_pool(tmp_path)
    assert pool.subset(["task2", "task0"]).tasks == ["task2", "task0"]
