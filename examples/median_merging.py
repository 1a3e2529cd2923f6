"""A complete user method: element-wise median of the experts (run with --plugin)."""

import torch

from methods import MergeMethod


class MedianMerging(MergeMethod):
    """Element-wise median of the experts' weights."""

    name = "median"

    def merge(self, pool):
        return pool.merge_parameters(lambda key, pretrained, experts: torch.stack(experts).median(0).values)
