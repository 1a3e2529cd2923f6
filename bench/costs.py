"""What serving a merged model costs, recorded beside its accuracy: the parameters stored to serve every task,
relative to one model, and the time of a forward pass, relative to the pretrained encoder's.

The forward is timed here, against the pretrained encoder on the same inputs in the same process, calls of the
two interleaved: runs share a loaded machine between processes (`--jobs`), so the evaluation times of two units
(their rows' eval_s) are not comparable, while a ratio measured in one process is. On a CPU the time is the
process's CPU time on one thread: the work of a forward, which neither other processes' load (it stretches wall
time) nor threads waiting for one another (they burn CPU time without work) enter; on an accelerator, wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from bench.evaluation import encoder_for
from bench.timing import best_times
from core.pool import ModelPool
from core.threads import one_thread
from methods.base import Merged, stored_parameters

if TYPE_CHECKING:
    from tasks.base import Suite
    from tasks.scenarios import Scenario

# Inputs per timed forward and timed calls of each model (the fastest kept, after one untimed call each): enough
# that the ratio of two identical models stays within a few percent on a loaded machine, few enough that timing
# a unit of the mini suite costs a small part of evaluating it. A per-sample routed WEMoE runs 16 inputs in one
# chunk, as it runs any batch: chunk by chunk.
TIMING_INPUTS = 16
TIMING_REPEATS = 5


def stored_models(merged: Merged, pool: ModelPool) -> float:
    """The parameters stored to serve every task with `merged` (see `methods.base.stored_parameters`) over one
    encoder's."""
    return stored_parameters(merged) / pool.parameter_count


@torch.no_grad()
def inference_cost(merged: Merged, pool: ModelPool, task: str, inputs: torch.Tensor) -> float:
    """Forward time of the encoder serving `task` (a method that keeps one encoder per task serves an input of
    known task with that task's one) over the pretrained encoder's, on `inputs`, at float32."""
    encoder, pretrained = encoder_for(merged, task), pool.encoder(pool.pretrained_state())
    device = next((p.device for p in encoder.parameters()), torch.device(pool.device))
    inputs = inputs.to(device)
    runs = [_forward(encoder, inputs), _forward(pretrained, inputs)]
    if device.type == "cpu":
        with one_thread():
            merged_s, pretrained_s = best_times(runs, TIMING_REPEATS, clock=time.process_time)
    else:
        merged_s, pretrained_s = best_times(runs, TIMING_REPEATS)
    return merged_s / pretrained_s


def serving_costs(merged: Merged, pool: ModelPool, suite: Suite, scenario: Scenario) -> dict[str, float]:
    """The rows' cost columns for `merged`, the model a unit of `scenario` tested. Its forward is timed on test
    inputs of the merged task evaluated last: a merge that builds each task's encoder on demand holds that one."""
    task, split = next((task, split) for task, split in reversed(scenario.evaluated) if task in scenario.merged_tasks)
    inputs = suite.tasks[task].sample(split, TIMING_INPUTS, seed=0)
    return {"stored_models": stored_models(merged, pool), "inference_cost": inference_cost(merged, pool, task, inputs)}


def _forward(encoder: nn.Module, inputs: torch.Tensor) -> Callable[[], None]:
    """A forward of `inputs`, finished when it returns (an accelerator's queued work waited for)."""
    def run() -> None:
        encoder(inputs)
        if inputs.device.type == "cuda":
            torch.cuda.synchronize(inputs.device)
    return run

