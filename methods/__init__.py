"""Merge methods. Importing this package registers the built-in ones; `MergeMethod` subclasses add more."""

from methods.base import REGISTRY, MergeMethod, Merged, get_method
from methods import averaging, fisher, references, ties  # noqa: F401  (registration by definition)

__all__ = ["REGISTRY", "MergeMethod", "Merged", "get_method"]
