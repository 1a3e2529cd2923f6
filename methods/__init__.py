"""Merge methods. Importing this package registers the built-in ones; `MergeMethod` subclasses add more."""

from methods import adamerging, averaging, fisher, references, ties, wemoe  # noqa: F401  (registration by definition)
from methods.base import REGISTRY, Merged, MergeMethod, get_method

__all__ = ["REGISTRY", "MergeMethod", "Merged", "get_method"]
