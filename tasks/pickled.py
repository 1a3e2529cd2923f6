"""The weights of a pickled whole model (`torch.save(module)`, as the task-vectors checkpoints are), read
without running any of the code the pickle names.

`torch.load(weights_only=True)` refuses such files (they name classes such as `src.modeling.ImageEncoder`), and
plain unpickling imports those modules and calls whatever the file says. Here every global the pickle names
becomes an inert stand-in that only records what it was given, except the few torch functions that rebuild
tensors and parameters; the object graph that comes out is then walked for module state (`_parameters`,
`_buffers`, `_modules`) into a state dict, as `module.state_dict()` would have given it.

A hostile file gets one line naming it, soon and in bounded memory: whatever reading it raises, any entry of
those three that is not what a module holds, a module tree that contains itself, nests too deep or unfolds (a
submodule reused under many names) into more modules and tensors, or more tensor bytes, than any real checkpoint;
and, before any reading, the containers torch.load would hand to other code (TorchScript, tar) or that inflate.
"""

from __future__ import annotations

import collections
import pickle
import reprlib
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from core.errors import BenchError


def _rebuild_from_type(func, new_type, args, state):
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


# Bounds on the module tree a checkpoint unfolds into, far above the largest this suite reads: a task-vectors
# ViT-L/14 ImageEncoder (24-block image and 12-block text towers) nests 7 deep, its longest key being
# `model.visual.transformer.resblocks.23.attn.out_proj.weight`, and lists under a thousand modules and tensors.
MAX_DEPTH = 64
MAX_KEY_LENGTH = 1000
MAX_TREE_SIZE = 100_000  # modules visited plus tensors listed, a shared submodule once per name it is reached by
# The tensors listed may total this many times the file's bytes: a submodule shared under two names is listed
# twice (as by `state_dict()`), but no honest file lists its weights over and over, or expands a tensor over a
# storage a fraction of its size, for the merge to copy out later.
MAX_STATE_BYTES_PER_FILE_BYTE = 4
MAX_REASON_LENGTH = 300
ZIP_MAGIC = b"PK\x03\x04"  # what torch.serialization._is_zipfile reads to pick its zip reader over the legacy ones


def refusal(path: Path, reason: str) -> BenchError:
    """One line naming the file, however long or many-lined the reason a crafted file provoked."""
    reason = " ".join(reason.split())
    if len(reason) > MAX_REASON_LENGTH:
        reason = reason[:MAX_REASON_LENGTH - 3] + "..."
    return BenchError(f"{path}: {reason}")


def is_module(obj: Any) -> bool:
    """Whether `obj` was pickled as a `torch.nn.Module`, which has held these three since torch 0.1."""
    return isinstance(obj, Inert) and all(kind in vars(obj) for kind in ("_parameters", "_buffers", "_modules"))


def describe(obj: Any) -> str:
    """What a pickled object was, by the class its file named (an instance's own attributes cannot change it)."""
    return f"a pickled {type(obj).pickled_as if isinstance(obj, Inert) else type(obj).__name__}"


class StateWalk:
    """One walk over a rebuilt module tree into a state dict, refusing what no `torch.nn.Module` holds and
    stopping at the bounds above, so that no file makes it loop, recurse or grow without end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state: dict[str, torch.Tensor] = {}
        self.tree_size = 0
        self.state_bytes = 0
        self.max_state_bytes = MAX_STATE_BYTES_PER_FILE_BYTE * path.stat().st_size

    def visit(self, module: Any, prefix: str = "", ancestors: dict[int, str] | None = None) -> None:
        """Lists `module`'s persistent parameters and buffers under `prefix`, then its submodules';
        `ancestors` holds the prefixes of the modules above it, by identity."""
        self.count(prefix)
        attributes = vars(module) if isinstance(module, Inert) else {}
        transient = attributes.get("_non_persistent_buffers_set") or set()
        if not isinstance(transient, (set, frozenset)):
            raise refusal(self.path, f"{prefix}_non_persistent_buffers_set is {describe(transient)}, not a set")
        for kind, skipped in (("_parameters", set()), ("_buffers", transient)):
            for name, tensor in self.entries(attributes, kind, prefix):
                if tensor is not None and name not in skipped:
                    self.add(f"{prefix}{name}", tensor, f"{kind} entry")
        inner = (ancestors or {}) | {id(module): prefix}
        for name, child in self.entries(attributes, "_modules", prefix):
            if child is None:
                continue
            if not is_module(child):
                raise refusal(self.path, f"_modules entry {prefix}{name} is {describe(child)}, not a module")
            if id(child) in inner:
                above = inner[id(child)].rstrip(".")
                raise refusal(self.path, f"the module tree has a cycle: module {prefix}{name} is "
                                         + (f"the one at {above}" if above else "the top module"))
            if len(inner) > MAX_DEPTH:
                raise refusal(self.path, f"modules nest deeper than {MAX_DEPTH} levels at {prefix}{name}")
            self.visit(child, f"{prefix}{name}.", inner)

    def entries(self, attributes: dict, kind: str, prefix: str) -> list[tuple[str, Any]]:
        """The named entries of `kind` (`_parameters`, `_buffers`, `_modules`), named as torch requires."""
        named = attributes.get(kind)
        if named is None:
            return []
        if not isinstance(named, dict):
            raise refusal(self.path, f"{prefix}{kind} is {describe(named)}, not a dict")
        for name in named:
            if not isinstance(name, str) or not name or "." in name:  # torch's rule (Module.register_parameter)
                owner = prefix.rstrip(".") or "the top module"
                raise refusal(self.path, f"{kind} of {owner} has an entry named {reprlib.repr(name)}, not a "
                                         "non-empty string without '.'")
        return list(named.items())

    def add(self, key: str, tensor: Any, entry: str = "entry") -> None:
        if not isinstance(tensor, torch.Tensor):
            raise refusal(self.path, f"{entry} {key} is {describe(tensor)}, not a tensor")
        self.count(key)
        if key in self.state:
            raise refusal(self.path, f"two entries are named {key}")
        self.state_bytes += tensor.numel() * tensor.element_size()
        if self.state_bytes > self.max_state_bytes:
            raise refusal(self.path, f"its tensors, up to {key}, total over {MAX_STATE_BYTES_PER_FILE_BYTE}x the "
                                     f"file's {self.max_state_bytes // MAX_STATE_BYTES_PER_FILE_BYTE} bytes")
        self.state[key] = tensor.detach()

    def count(self, key: str) -> None:
        """Counts a module or tensor against the bounds on the tree's size and on the length of its keys."""
        self.tree_size += 1
        if self.tree_size > MAX_TREE_SIZE:
            raise refusal(self.path, f"its module tree unfolds into more than {MAX_TREE_SIZE} modules and tensors "
                                     "(a submodule counts once per name it is reached by)")
        if len(key) > MAX_KEY_LENGTH:
            raise refusal(self.path, f"a key longer than {MAX_KEY_LENGTH} characters: {reprlib.repr(key)}")


def module_state(root: Any, path: Path) -> dict[str, torch.Tensor]:
    """The persistent parameters and buffers of the module tree rebuilt from `path`, named as `state_dict()`
    names them (a submodule shared under two names is listed under both)."""
    walk = StateWalk(path)
    walk.visit(root)
    return walk.state


def plain_state(state: dict, path: Path) -> dict[str, torch.Tensor]:
    """A state dict pickled plainly, held to the same bounds."""
    walk = StateWalk(path)
    for key, tensor in state.items():
        if not isinstance(key, str):
            raise refusal(path, f"a state dict keyed by {describe(key)}: {reprlib.repr(key)}")
        walk.add(key, tensor)
    return walk.state


def check_container(path: Path) -> None:
    """Refuses the files torch.load would not hand to this module's Unpickler alone: a TorchScript archive
    (torch.jit.load runs its code), torch's earliest, tar format (loading extracts its members onto disk), and a zip
    with compressed records (torch.save never compresses; deflate inflates up to ~1000x)."""
    with path.open("rb") as file:
        is_zip = file.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    if is_zip:
        # torch.serialization._is_torchscript_zip's test, on the reader torch.load itself opens.
        if "constants.pkl" in torch._C.PyTorchFileReader(str(path)).get_all_records():
            raise refusal(path, "a TorchScript archive, whose code loading would run; save the module's "
                                "state_dict() or the module with torch.save")
        with zipfile.ZipFile(path) as archive:
            compressed = [info.filename for info in archive.infolist() if info.compress_type != zipfile.ZIP_STORED]
        if compressed:
            raise refusal(path, f"record {compressed[0]} is compressed, which torch.save never does")
    elif tarfile.is_tarfile(path):
        raise refusal(path, "a tar archive (torch's earliest format, which loading extracts onto disk); not read")


def load_module_state(path: Path | str) -> dict[str, torch.Tensor]:
    """The state dict of the module pickled whole in `path` (a state dict pickled plainly works too)."""
    path = Path(path)
    try:
        check_container(path)
        # weights_only=False only lets torch hand the file to this module's Unpickler, which never runs its code.
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=sys.modules[__name__])
    except BenchError:
        raise
    except Exception as error:  # whatever a crafted file provokes: junk fed to a rebuild function, odd state, ...
        raise refusal(path, f"not a readable torch checkpoint ({type(error).__name__}: {error})") from error
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return plain_state(obj, path)
    state = module_state(obj, path)
    if not state:
        raise refusal(path, f"holds no module weights ({describe(obj)})")
    return state
