"""The weights of a pickled whole model (`torch.save(module)`, as the task-vectors checkpoints are), read
without running any of the code the pickle names.

`torch.load(weights_only=True)` refuses such files (they name classes such as `src.modeling.ImageEncoder`), and
plain unpickling imports those modules and calls whatever the file says. Here every global the pickle names
becomes an inert stand-in that only records what it was given, except the few torch functions that rebuild
tensors and parameters; the object graph that comes out is then walked for module state (`_parameters`,
`_buffers`, `_modules`) into a state dict, as `module.state_dict()` would have given it.
"""

from __future__ import annotations

import collections
import pickle
import sys
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError


def _rebuild_from_type(func, new_type, args, state):  # noqa: ANN001, ANN202  (pickle's calling convention)
    """torch's `_rebuild_from_type_v2` without the cast to the pickled (here inert) tensor subclass."""
    return func(*args)


# The only globals a pickle may reach: tensor and parameter rebuilding, and plain containers.
ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Size"): torch.Size,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,  # the name protocol 2 pickles give builtins, for Python 2's sake
    ("__builtin__", "frozenset"): frozenset,
}


class Inert:
    """What any other pickled class or function becomes: called or rebuilt, it keeps its arguments and state."""

    pickled_as = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.arguments = (args, kwargs)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            state = {**(state[0] or {}), **(state[1] or {})}  # (dict, slots) state
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.pickled_as}>"


class Unpickler(pickle.Unpickler):
    """Resolves only `ALLOWED` globals; every other one to a fresh `Inert` subclass named after it."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return ALLOWED[module, name]
        return type(name, (Inert,), {"pickled_as": f"{module}.{name}"})


def load(file: Any, **kwargs: Any) -> Any:  # the `pickle_module` interface torch.load expects
    return Unpickler(file, **kwargs).load()


def module_state(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """The persistent parameters and buffers of a rebuilt module tree, named as `state_dict()` names them."""
    attributes = vars(obj) if isinstance(obj, Inert) else {}
    transient = attributes.get("_non_persistent_buffers_set") or set()
    state = {f"{prefix}{name}": tensor.detach() for name, tensor in (attributes.get("_parameters") or {}).items()
             if tensor is not None}
    state |= {f"{prefix}{name}": tensor for name, tensor in (attributes.get("_buffers") or {}).items()
              if tensor is not None and name not in transient}
    for name, child in (attributes.get("_modules") or {}).items():
        state |= module_state(child, f"{prefix}{name}.")
    return state


def load_module_state(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of the module pickled whole in `path` (a state dict pickled plainly works too)."""
    try:
        # weights_only=False only lets torch hand the file to this module's Unpickler, which never runs its code.
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=sys.modules[__name__])
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as error:
        raise BenchError(f"{path}: not a readable torch checkpoint ({error})") from error
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    state = module_state(obj)
    if not state:
        raise BenchError(f"{path}: holds no module weights (a pickled {getattr(obj, 'pickled_as', type(obj).__name__)})")
    return state
