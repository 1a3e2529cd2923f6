"""Merges linear in one coefficient: pretrained + `scaling` x an update of the task vectors that does not depend on
it (task arithmetic, TIES, Consensus Merging, TSV-M, Iso-C/CTS). The papers choose that coefficient on validation
data from a grid of 10 to 30 values, so a search computes the update once per value of the other settings and
only rescales it: for the SVD-based updates that is nearly all of each merge."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import torch

from core.pool import ModelPool
from methods.base import Merged, MergeMethod

StateDict = dict[str, torch.Tensor]


def scaled(update: StateDict, scaling: float, pool: ModelPool, in_place: bool = False) -> StateDict:
    """pretrained + scaling x update, parameter by parameter, in the update's dtype and then the checkpoint's (an
    update computed in float32 from lower-precision experts is added to the pretrained weights in float32)."""
    merged = {}
    for key, tensor in update.items():
        pretrained = pool.pretrained_tensor(key)
        scaled_tensor = tensor.mul_(scaling) if in_place else tensor.mul(scaling)
        merged[key] = scaled_tensor.add_(pretrained).to(pretrained.dtype)
    return merged


class ScaledUpdate(MergeMethod):
    """pretrained + `scaling` x `update(pool)`. A subclass declares the float setting `scaling` (its default, grid
    and source) and the update; `merge` and a search's `merges` follow."""

    def update(self, pool: ModelPool) -> StateDict:
        """The unscaled update of every parameter, each in a tensor of its own (the merge scales it in place)."""
        raise NotImplementedError

    def merge(self, pool: ModelPool) -> Merged:
        return pool.encoder(scaled(self.update(pool), self.scaling, pool, in_place=True))

    def merges(self, pool: ModelPool, points: list[dict[str, float]]) -> Iterator[tuple[dict[str, float], Merged]]:
        """The points grouped by their other settings, the update computed once per group; the merged models are
        the ones `merge` gives at each point (the same operations, in the same order)."""
        groups: dict[str, list[dict[str, float]]] = {}
        for point in points:
            groups.setdefault(json.dumps(_others(point), sort_keys=True), []).append(point)
        for group in groups.values():
            update = dataclasses.replace(self, **_others(group[0])).update(pool)
            for point in group:
                yield point, pool.encoder(scaled(update, point.get("scaling", self.scaling), pool))


def _others(point: dict[str, float]) -> dict[str, float]:
    return {name: value for name, value in point.items() if name != "scaling"}
