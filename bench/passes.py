"""The images a method's merge pushes through the encoder, counted while it runs: what its data-driven work
(test-time adaptation, Fishers, Gram matrices, calibration) costs on a bigger encoder, in forward passes.

Counted at the patch embedding: every 2-D convolution of 3-channel images, whichever model runs it (merged,
routed, a method's own forward), so nothing in a method has to declare it. A pass run with gradients enabled is
counted apart: a backward pass follows it. Inputs batched by torch.func (`vmap`, as per-example gradients are)
count each example.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch._C import _functorch  # unwrapping torch.func's batched and grad-tracking tensors: no public API
from torch.overrides import TorchFunctionMode

from bench.synthetic import TINY, synthetic_pool, write_synthetic_zoo
from methods.base import MergeMethod


@dataclass
class Passes:
    """Images through the encoder: without gradients (forward only) and with them (forward and backward)."""

    forward: int = 0
    with_grad: int = 0


def _images(inputs: torch.Tensor) -> int:
    """Images in a [..., 3, H, W] input, the examples of any torch.func batching included."""
    while _functorch.is_batchedtensor(inputs) or _functorch.is_gradtrackingtensor(inputs):
        inputs = _functorch.get_unwrapped(inputs)
    return inputs.numel() // inputs.shape[-3:].numel()


class _PatchEmbeddings(TorchFunctionMode):
    """Counts the images of every convolution over 3 channels into `passes`."""

    def __init__(self, passes: Passes) -> None:
        super().__init__()
        self.passes = passes

    def __torch_function__(self, func: Callable, types: object, args: tuple = (), kwargs: dict | None = None) -> object:
        if func is torch.conv2d and isinstance(args[0], torch.Tensor) and args[0].shape[-3] == 3:
            if torch.is_grad_enabled():
                self.passes.with_grad += _images(args[0])
            else:
                self.passes.forward += _images(args[0])
        return func(*args, **(kwargs or {}))


@contextmanager
def counted_passes() -> Iterator[Passes]:
    """The images through every patch embedding run within, in this thread."""
    passes = Passes()
    with _PatchEmbeddings(passes):
        yield passes


def merge_passes(method: MergeMethod, experts: int, folder: Path) -> Passes:
    """The images `method.merge` pushes through the encoder on a pool of `experts` random tiny experts (written
    under `folder`, made if missing): counts depend on the method's settings and the number of tasks, not on the
    encoder's size or weights."""
    folder.mkdir(parents=True, exist_ok=True)
    write_synthetic_zoo(folder, TINY, experts)
    pool = synthetic_pool(folder, TINY, experts)
    with counted_passes() as passes:
        method.merge(pool)
    return passes
