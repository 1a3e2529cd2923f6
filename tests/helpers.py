"""Small synthetic pools, so each method can be checked against its formula on a few hundred weights."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch

from bench.synthetic import write_synthetic_zoo
from core.models import ClassificationHead, EncoderConfig, build_encoder
from core.pool import ModelPool
from methods.base import REGISTRY, MergeMethod

TINY_ENCODER = EncoderConfig(image_size=8, patch_size=4, width=8, layers=1, heads=2, embed_dim=4)


def random_pool(tmp_path: Path, n_experts: int = 3, seed: int = 0, spread: float = 0.1,
                config: EncoderConfig = TINY_ENCODER) -> ModelPool:
    """A pretrained tiny ViT (of `config`'s shape) and experts = pretrained + Gaussian task vectors, stored as
    safetensors, with random heads and inputs."""
    torch.manual_seed(seed)  # the encoder's initialisation, the heads and the inputs
    write_synthetic_zoo(tmp_path, config, n_experts, seed, spread)
    experts = {f"task{i}": tmp_path / f"task{i}.safetensors" for i in range(n_experts)}
    heads = {task: ClassificationHead(torch.randn(3, config.embed_dim), 20.0) for task in experts}
    inputs = torch.randn(64, 3, config.image_size, config.image_size)
    return ModelPool(partial(build_encoder, config), tmp_path / "pretrained.safetensors", experts, heads,
                     sample_inputs=lambda task, split, n, seed: inputs[:n])


def state_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in module.state_dict().items()}


def is_built_in(method: type[MergeMethod]) -> bool:
    """Defined by the methods package: not a plugin's method nor a test's."""
    return method.__module__.startswith("methods.")


def built_in_methods() -> dict[str, type[MergeMethod]]:
    """The registered built-in methods by name, in registration order."""
    return {name: method for name, method in REGISTRY.items() if is_built_in(method)}


@contextmanager
def registry_restored(keep: Callable[[type[MergeMethod]], bool] = lambda method: True) -> Iterator[None]:
    """Within: the method registry less the classes `keep` refuses, plus whatever registers meanwhile; after:
    exactly the registry as it was, so that methods registered by one test are unknown to the next."""
    saved = dict(REGISTRY)
    REGISTRY.clear()
    REGISTRY.update({name: method for name, method in saved.items() if keep(method)})
    try:
        yield
    finally:
        REGISTRY.clear()
        REGISTRY.update(saved)
