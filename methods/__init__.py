"""Merge methods. Importing this package registers the built-in ones; `MergeMethod` subclasses add more."""

from methods import (  # noqa: F401  (registration by definition)
    adamerging,
    averaging,
    cart,
    dare,
    emr,
    expert_merging,
    fisher,
    isotropic,
    pcb,
    references,
    regmean,
    smile,
    surgery,
    tall_masks,
    ties,
    tsv,
    twin_merging,
    wemoe,
    wemoe_sparse,
)
from methods.base import REGISTRY, Merged, MergeMethod, get_method

__all__ = ["REGISTRY", "MergeMethod", "Merged", "get_method"]
