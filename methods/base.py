"""`MergeMethod`: a merge method declared once, with typed hyper-parameters, registered by subclassing.

A subclass with a `name` becomes a dataclass whose fields are its hyper-parameters (defaults from the code
that produced the published numbers) and is registered under that name. It turns a model pool into a
merged encoder; it never reads files or writes results (the pool and the harness do).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import reprlib
import sys
import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from core.errors import BenchError
from core.setting_values import parse_setting
from core.versions import check_version

if typing.TYPE_CHECKING:
    from core.pool import ModelPool

# One encoder for every task, or (the `individual` reference) one per task.
Merged = nn.Module | Mapping[str, nn.Module]


def tensor_parameters(tensor: torch.Tensor) -> float:
    """A tensor's size in float32 parameters: its bits over 32, so a boolean mask's entry counts 1/32 (stored
    bit-packed, as the TALL masks code saves its masks: np.packbits)."""
    bits = 1 if tensor.dtype == torch.bool else 8 * tensor.element_size()
    return tensor.numel() * bits / 32


def stored_parameters(merged: Merged) -> float:
    """What must be stored to serve every task with `merged`, in float32 parameters (see `tensor_parameters`).

    Measured on what the merge returned, so it cannot drift from what a method really builds: every parameter
    and buffer of the encoder, or of each task's encoder, a tensor held by several encoders counted once (per-task
    encoders sharing a backbone add only their own tensors; the `individual` reference's T experts count T models).
    Every static merge is one model, with no code of its own. A mapping that builds each task's encoder on demand
    from shared parts (`methods.per_task.MaskedTaskModels`) holds no encoder to measure, and building them all
    would count the shared parts T times: such an object defines `stored_parameters()`, the size of its parts.
    """
    own = getattr(merged, "stored_parameters", None)
    if callable(own):
        return float(own())
    encoders = merged.values() if isinstance(merged, Mapping) else [merged]
    distinct = {(tensor.data_ptr(), tensor.dtype, tensor.shape): tensor
                for encoder in encoders for tensor in [*encoder.parameters(), *encoder.buffers()]}
    return sum(map(tensor_parameters, distinct.values()))


REGISTRY: dict[str, type[MergeMethod]] = {}


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The values a numeric setting may take: from `low` (excluded where `low_open`) to `high`, both included."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False

    def admit(self, value: float) -> bool:
        return (self.low < value if self.low_open else self.low <= value) and value <= self.high

    def __str__(self) -> str:
        opening = "(" if self.low_open or self.low == -math.inf else "["
        closing = ")" if self.high == math.inf else "]"
        return f"{opening}{self.low:g}, {self.high:g}{closing}"


def setting(default: float, *, low: float = -math.inf, high: float = math.inf, above: float | None = None,
            grid: tuple[float, ...] = ()) -> Any:
    """A hyper-parameter's default with the range it must lie in: from `low` (or strictly `above` a value) up
    to `high`. Checked whenever a method is built; a subclass that changes the default keeps the range.

    `grid`: the values a benchmark may search for it on validation data (`run --select validation`), where the
    method's paper or code chooses it so; the default stays the fixed setting that published numbers used."""
    bounds = Bounds(low, high) if above is None else Bounds(above, high, low_open=True)
    outside = [value for value in grid if not bounds.admit(value)]
    if outside:
        raise BenchError(f"setting grid value {outside[0]} is out of range {bounds}")
    return dataclasses.field(default=default, metadata={"bounds": bounds} | ({"grid": tuple(grid)} if grid else {}))


def _declared(cls: type, key: str) -> dict[str, Any]:
    """Each setting's metadata `key`, as declared by the class itself or the nearest base that declares it."""
    declared: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            declared |= {f.name: f.metadata[key] for f in dataclasses.fields(klass) if key in f.metadata}
    return declared


def declared_bounds(cls: type) -> dict[str, Bounds]:
    return _declared(cls, "bounds")


def declared_grids(cls: type) -> dict[str, tuple[float, ...]]:
    """Per setting that declares one, the values a benchmark may search (see `setting`)."""
    return _declared(cls, "grid")


@dataclasses.dataclass
class MergeMethod:
    name: ClassVar[str]
    title: ClassVar[str] = ""  # the row label in tables, e.g. "Task Arithmetic"
    reference: ClassVar[str] = ""  # URL of the paper or code the defaults come from
    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # named settings of other codebases
    version: ClassVar[int] = 1  # of the numerics: bump it with any change that can move its results (core/versions.py)
    # True where `merge` keeps in the pool's memo (`ModelPool.memo`) work that one expert alone determines and that
    # dominates the merge (Fisher merging's Fishers): a parallel run then gives all of a seed's scenarios of the
    # method to one process, which does that work once per expert instead of once per scenario family.
    memoises_per_expert: ClassVar[bool] = False
    preset: str = "default"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_annotated(cls)
        dataclasses.dataclass(cls)
        if "name" not in cls.__dict__:
            return  # an abstract intermediate class
        check_version(f"method {cls.name}", cls.version)
        registered = REGISTRY.get(cls.name)
        # The same class defined again (a plugin file loaded a second time) replaces itself; any other is refused.
        if registered is not None and _origin(registered) != _origin(cls):
            raise BenchError(f"method name {cls.name!r} is registered twice ({_where(registered)} and {_where(cls)})")
        REGISTRY[cls.name] = cls

    def __post_init__(self) -> None:
        """Every setting checked, however the method was built (defaults, preset, overrides or directly)."""
        hints, bounds = typing.get_type_hints(type(self)), declared_bounds(type(self))
        for f in dataclasses.fields(self):
            _check(self.name, f.name, hints[f.name], getattr(self, f.name), bounds.get(f.name))

    def numerics_version(self) -> int:
        """The version a unit of this method is stored under: its class's, and for a method built on another
        method's merge (Surgery on its base), also the bumps of that one's, so a change to either recomputes it."""
        return self.version

    def merge(self, pool: ModelPool) -> Merged:
        raise NotImplementedError

    def merge_steps(self, pool: ModelPool, every: int | None = None) -> Iterator[tuple[int | None, Merged]]:
        """The merged models to evaluate, each with its adaptation step (None for a method that does not adapt).

        A static method yields its one merged model; a test-time adaptive one also yields the model every
        `every` steps, so accuracy can be followed along the adaptation. The last model yielded is the result.
        """
        yield None, self.merge(pool)

    def merges(self, pool: ModelPool, points: list[dict[str, float]]) -> Iterator[tuple[dict[str, float], Merged]]:
        """(point, merged model) for each point of a search, a point being settings that replace this method's,
        in an order of the method's choosing: a method whose merges at nearby points share work overrides this
        (see `methods.scaled`), giving the model `merge` would give at each point."""
        for point in points:
            yield point, dataclasses.replace(self, **point).merge(pool)

    def search_space(self) -> dict[str, tuple[float, ...]]:
        """The values `run --select validation` tries, per setting: the declared grids (see `setting`). A method
        whose grid depends on its other settings (a preset's different merge rule, say) overrides this."""
        return declared_grids(type(self))

    def label(self, chosen: Iterable[str] = ()) -> str:
        """The table row: title, preset, settings that differ from the preset (seeds are averaged over), and the
        `chosen` settings, those chosen on validation data (`validation: scaling=0.4`), whatever their value."""
        baseline = dataclasses.asdict(type(self).configure(self.preset))
        chosen = list(chosen)
        changed = [f"{k}={v}" for k, v in dataclasses.asdict(self).items()
                   if k != "seed" and k not in chosen and v != baseline[k]]
        if chosen:
            changed.append("validation: " + ", ".join(f"{k}={getattr(self, k)}" for k in chosen))
        suffix = [self.preset] if self.preset != "default" else []
        text = self.title or self.name
        return f"{text} ({', '.join(suffix + changed)})" if suffix or changed else text

    @classmethod
    def configure(cls, preset: str | None = None, overrides: Mapping[str, str] | None = None) -> MergeMethod:
        """An instance from a preset name and `key=value` strings, each value parsed by its field's type."""
        values: dict[str, Any] = {}
        if preset is not None and preset != "default":
            if preset not in cls.presets:
                raise BenchError(f"{cls.name}: unknown preset {preset!r}; valid: default, "
                                 f"{', '.join(cls.presets) or '(none)'}")
            values.update(cls.presets[preset], preset=preset)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, text in (overrides or {}).items():
            if key not in fields or key == "preset":
                valid = ", ".join(k for k in fields if k != "preset") or "(none)"
                raise BenchError(f"{cls.name}: unknown parameter {key!r}; valid: {valid}")
            values[key] = _parse(cls, key, typing.get_type_hints(cls)[key], text)
        return cls(**values)

    @classmethod
    def describe(cls) -> str:
        """One line for `bench list methods`: name, defaults, presets, the grids searched on validation data."""
        defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.name != "preset"}
        presets = f" presets: {', '.join(cls.presets)}" if cls.presets else ""
        grids = "; ".join(f"{name} {', '.join(f'{value:g}' for value in values)}"
                          for name, values in declared_grids(cls).items())
        searched = f" | validation grid: {grids}" if grids else ""
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        return f"{cls.name:<26} {doc} {json.dumps(defaults) if defaults else ''}{presets}{searched}".rstrip()


def _check_annotated(cls: type) -> None:
    """Refuse a value set in the class body without a type annotation: the dataclass would not make it a field,
    so it would silently be no setting (nor part of the result key), or leave an inherited setting's default as
    it was. Exempt: private names, callables and descriptors (methods, properties), and names a base declares
    `ClassVar` (name, title, reference, presets, ...)."""
    own = inspect.get_annotations(cls)
    for attribute, value in vars(cls).items():
        if attribute.startswith("_") or attribute in own or callable(value) or hasattr(value, "__get__"):
            continue
        if any(_is_class_var(inspect.get_annotations(base).get(attribute)) for base in cls.__mro__[1:]):
            continue
        shown, kind = reprlib.repr(value), type(value).__name__
        raise BenchError(f"{_where(cls)}: `{attribute} = {shown}` has no type annotation, so it is not a setting and "
                         f"not in the result key; write `{attribute}: {kind} = {shown}` for a setting, or "
                         f"`{attribute}: ClassVar[{kind}] = {shown}` for a constant")


def _is_class_var(annotation: Any) -> bool:
    """Whether an annotation, evaluated or a string (`from __future__ import annotations`), is a ClassVar."""
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    return annotation is ClassVar or typing.get_origin(annotation) is ClassVar


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _where(cls: type) -> str:
    """The class and the file that defines it, for a reader of an error (a plugin's module name is made up)."""
    file = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return f"{cls.__qualname__} in {file}" if file else _origin(cls)


def _check(method: str, key: str, hint: Any, value: Any, bounds: Bounds | None) -> None:
    """A setting's value against its type and declared bounds: a choice among its Literal's, or a number
    (finite, for a float) within its bounds."""
    if typing.get_origin(hint) is typing.Literal:
        if value not in typing.get_args(hint):
            raise BenchError(f"{method}: {key}={value!r} is not one of {', '.join(map(str, typing.get_args(hint)))}")
    elif hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, int if hint is int else (int, float)):
            raise BenchError(f"{method}: {key}={value!r} is not a valid {hint.__name__}")
        if not math.isfinite(value):
            raise BenchError(f"{method}: {key}={value!r} is not a finite number")
        if bounds is not None and not bounds.admit(value):
            raise BenchError(f"{method}: {key}={value!r} is out of range {bounds}")


def _parse(cls: type, key: str, hint: Any, text: str) -> Any:
    try:
        return parse_setting(hint, text)
    except ValueError as error:
        raise BenchError(f"{cls.name}: {key}={text!r} is {error}") from None


def get_method(name: str) -> type[MergeMethod]:
    if name not in REGISTRY:
        raise BenchError(f"unknown method {name!r}; valid: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]
