"""What a merge method hands the harness, checked before it is evaluated.

Methods are user code (plugins among them): one whose merge raises, or returns something evaluation cannot
run faithfully, must fail with one line naming the method, not with a traceback or with stored rows of a
broken model's accuracy. The checks run once for each merged model a unit evaluates (not per batch), and
read each tensor once.
"""

from __future__ import annotations

import sysconfig
import time
import traceback
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn

from core.errors import BenchError
from core.pool import ModelPool

if TYPE_CHECKING:
    from methods.base import MergeMethod

T = TypeVar("T")

# The dtype of the weights the pool hands out, and the one evaluation runs (`--precision` autocasts from it).
WEIGHT_DTYPE = torch.float32
LIBRARIES = tuple({sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")})
MESSAGE_CHARS = 300  # of an exception's message (torch's state-dict errors list every mismatched tensor)


def raised(what: str, error: Exception) -> BenchError:
    """One line for an exception raised in a method's code: its type, its message (whitespace collapsed, cut
    at MESSAGE_CHARS) and where it was raised: the innermost frame outside installed libraries (torch's own
    frames do not say which line of the method failed), else the innermost."""
    frames = traceback.extract_tb(error.__traceback__)
    frame = next((f for f in reversed(frames) if not f.filename.startswith(LIBRARIES)), frames[-1])
    message = " ".join(str(error).split())
    if len(message) > MESSAGE_CHARS:
        message = message[:MESSAGE_CHARS - 3] + "..."
    return BenchError(f"{what} raised {type(error).__name__}: {message} ({frame.filename}:{frame.lineno})")


def timed(made: Iterator[T], method: MergeMethod) -> Iterator[tuple[T, float]]:
    """Each item a method's generator makes, with the seconds its making took (not the caller's work between
    items); an exception from the method's code (a plugin's bug) becomes one line naming the method (`raised`)."""
    while True:
        start = time.perf_counter()
        try:
            item = next(made)
        except StopIteration:
            return
        except BenchError:
            raise
        except Exception as error:
            raise raised(f"{method.name}: merge", error) from error
        yield item, time.perf_counter() - start


def check_merged(method: str, merged: object, pool: ModelPool, probes: Mapping[str, torch.Tensor]) -> None:
    """Refuse, naming the method, anything but an encoder or (one encoder per task) a mapping with an encoder
    for each merged task of `pool`; then check each encoder (see `check_encoder`)."""
    if isinstance(merged, nn.Module):
        check_encoder(f"{method}: its merged model", merged, pool, probes)
    elif isinstance(merged, Mapping):
        for task in pool.tasks:
            if not isinstance(merged.get(task), nn.Module):
                found = f"a {type(merged[task]).__name__}" if task in merged else "nothing"
                raise BenchError(f"{method}: its merged models (one per task) hold {found} for task {task}, "
                                 "not an nn.Module")
            check_encoder(f"{method}: its encoder for {task}", merged[task], pool,
                          {task: probes[task]} if task in probes else {})
    else:
        raise BenchError(f"{method}: merge returned {type(merged).__name__}, not an nn.Module (or a mapping from "
                         "task to nn.Module)")


def check_encoder(what: str, encoder: nn.Module, pool: ModelPool, probes: Mapping[str, torch.Tensor]) -> None:
    """Every tensor named like a pretrained parameter has its shape; every floating tensor is float32 and
    finite; one input of a task in `probes` becomes the features its head takes, finite.

    float64 (or half) weights are refused, not converted: evaluation would then run a model other than the
    one the method built, and a method computing in float64 by mistake doubles its memory unseen. The
    parameter names are not required to be all there: a method may replace modules (WEMoE's routed MLPs hold
    the experts' MLPs as buffers of other names); the probe checks that what it built maps inputs to features.
    """
    shapes = pool.parameter_shapes
    for name, tensor in encoder.state_dict().items():
        if name in shapes and tensor.shape != shapes[name]:
            raise BenchError(f"{what}: tensor {name} has shape {tuple(tensor.shape)}, the pretrained model's "
                             f"{tuple(shapes[name])}")
        if tensor.is_floating_point() and tensor.dtype != WEIGHT_DTYPE:
            raise BenchError(f"{what}: tensor {name} is {tensor.dtype}; the harness evaluates {WEIGHT_DTYPE} models")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise BenchError(f"{what}: tensor {name} holds NaN or inf")
    if not probes:
        return
    task, inputs = next(iter(probes.items()))
    device = next((p.device for p in encoder.parameters()), torch.device(pool.device))  # as evaluation finds it
    try:
        with torch.no_grad():
            features = encoder(inputs.to(device))
    except Exception as error:
        raise raised(f"{what}'s forward", error) from error
    width = pool.heads[task].class_vectors.shape[-1]
    if not isinstance(features, torch.Tensor) or features.shape != (len(inputs), width):
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise BenchError(f"{what} maps inputs of shape {tuple(inputs.shape)} to {shape}, not to the "
                         f"({len(inputs)}, {width}) features the task heads take")
    if not torch.isfinite(features).all():
        raise BenchError(f"{what} gives NaN or inf features for an input of {task}")
