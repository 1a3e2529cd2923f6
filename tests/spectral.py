"""Plain float64 numpy versions of the SVD-based merges' equations, and pools with chosen task vectors, for
tests/test_tsv.py, test_isotropic.py and test_cart.py. Nothing here calls the methods' own helpers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from helpers import random_pool, state_of
from safetensors.torch import save_file

from bench.cli import main
from bench.results import ResultStore
from core.pool import ModelPool
from methods.base import MergeMethod


def closest_orthonormal(a: np.ndarray) -> np.ndarray:
    """The polar factor of a full-rank matrix, from the eigendecomposition of its Gram matrix:
    A (AᵀA)^(-1/2) for a tall A, (AAᵀ)^(-1/2) A for a wide one."""
    tall = a.shape[0] >= a.shape[1]
    gram = a.T @ a if tall else a @ a.T
    values, vectors = np.linalg.eigh(gram)
    inverse_root = vectors @ np.diag(values ** -0.5) @ vectors.T
    return a @ inverse_root if tall else inverse_root @ a


def top_svd(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    return u[:, :rank], s[:rank], vt[:rank]


def numpy_state(pool: ModelPool, task: str | None = None) -> dict[str, np.ndarray]:
    """The pretrained (or an expert's) tensors in float64."""
    tensor = pool.pretrained_tensor if task is None else (lambda key: pool.expert_tensor(task, key))
    return {key: tensor(key).double().numpy() for key in pool.parameter_names}


def reference_scaled_update(pool: ModelPool, matrix_update: Callable[[list[np.ndarray]], np.ndarray],
                            scaling: float) -> dict[str, np.ndarray]:
    """pretrained + scaling x (matrix_update for 2-D tensors, the mean task vector for the others)."""
    pretrained, merged = numpy_state(pool), {}
    experts = [numpy_state(pool, task) for task in pool.tasks]
    for key, base in pretrained.items():
        vectors = [expert[key] - base for expert in experts]
        update = matrix_update(vectors) if base.ndim == 2 else sum(vectors) / len(vectors)
        merged[key] = base + scaling * update
    return merged


def assert_matches(method: MergeMethod, pool: ModelPool, expected: dict[str, np.ndarray]) -> None:
    merged = state_of(method.merge(pool))
    for key, values in expected.items():
        torch.testing.assert_close(merged[key].double(), torch.from_numpy(values), rtol=1e-4, atol=1e-5,
                                   msg=lambda text, key=key: f"{key}: {text}")


def pool_with_task_vectors(tmp_path: Path, task_vectors: Callable[[int, torch.Tensor], torch.Tensor],
                           experts: int = 3) -> ModelPool:
    """A tiny random pool whose expert i is pretrained + task_vectors(i, pretrained tensor), per parameter."""
    pool = random_pool(tmp_path, n_experts=experts)
    pretrained = {key: pool.pretrained_tensor(key).clone() for key in pool.parameter_names}
    for index in range(experts):
        save_file({key: value + task_vectors(index, value) for key, value in pretrained.items()},
                  str(tmp_path / f"task{index}.safetensors"))
    return pool.subset(pool.tasks)  # a pool that opens the rewritten files


def run_on_tiny_zoo(zoo: Path, tmp_path: Path, methods: list[str]):
    """The methods' multitask rows from a CLI run on the tiny zoo."""
    arguments = [argument for name in methods for argument in ("--method", name)]
    assert main(["run", *arguments, "--scenario", "multitask", "--zoo", str(zoo),
                 "--results", str(tmp_path / "results")]) == 0
    return ResultStore(tmp_path / "results").load()
