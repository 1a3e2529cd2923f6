"""The mini zoo's class embeddings: what pretraining aligns images with, and what the zero-shot heads read.

They stand in for CLIP's text tower: pretraining aligns images with one embedding of each class (the web
captions), while the benchmark's heads embed the class names a little differently, as a prompt template does.
Both sets are orthonormal within a task (heads fitted on a weak encoder's own features collapse); each head vector
has cosine `head_fidelity` with its pretraining vector and is orthogonal to the task's other pretraining vectors.
So the encoder's features carry the class (experts can reach it by a small change) while the zero-shot head reads
it imperfectly, as CLIP's does.

Two schemes (`ZooRecipe.class_embeddings`):
- `per-task`: each task draws its own embeddings; a class shares nothing with a class of the same name elsewhere.
- `by-name`: the embeddings are drawn per class *name*, as a text tower embeds a name the same way in every task,
  then made orthonormal within each task by the nearest orthonormal set (so "3" of the house numbers and "3" of the
  handwritten digits point almost the same way). What one task's fine-tuning teaches about a class can then reach
  another task that has it, as SVHN's fine-tuning helps MNIST through CLIP's shared text embeddings.
"""

from __future__ import annotations

import torch

from tasks.procedural import hash_name


def per_task(tasks: dict[str, tuple[str, ...]], dim: int, seed: int, fidelity: float) -> tuple[dict, dict]:
    pretraining, heads = {}, {}
    for task, names in tasks.items():
        generator = torch.Generator().manual_seed(seed * 1_000_003 + hash_name(task))
        basis = torch.linalg.qr(torch.randn(dim, 2 * len(names), generator=generator)).Q.T
        pretraining[task], heads[task] = _heads(basis[:len(names)], basis[len(names):], fidelity)
    return pretraining, heads


def by_name(tasks: dict[str, tuple[str, ...]], dim: int, seed: int, fidelity: float) -> tuple[dict, dict]:
    pretraining, heads = {}, {}
    for task, names in tasks.items():
        drawn = torch.stack([_name_draw(name, dim, seed) for name in names])  # [n, 2, dim]
        caption = nearest_orthonormal(drawn[:, 0])
        prompt = drawn[:, 1] - drawn[:, 1] @ caption.T @ caption  # the part of the prompt reading no caption has
        pretraining[task], heads[task] = _heads(caption, nearest_orthonormal(prompt), fidelity)
    return pretraining, heads


def nearest_orthonormal(rows: torch.Tensor) -> torch.Tensor:
    """The orthonormal rows closest to `rows` in Frobenius norm (the polar factor, U Vᵀ of their SVD)."""
    u, _, vh = torch.linalg.svd(rows, full_matrices=False)
    return u @ vh


def _name_draw(name: str, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + hash_name(f"class:{name}"))
    return torch.randn(2, dim, generator=generator)


def _heads(caption: torch.Tensor, prompt: torch.Tensor, fidelity: float) -> tuple[torch.Tensor, torch.Tensor]:
    return caption.contiguous(), (fidelity * caption + (1 - fidelity**2) ** 0.5 * prompt).contiguous()


# `ZooRecipe.class_embeddings` names one of these.
SCHEMES = {"per-task": per_task, "by-name": by_name}
