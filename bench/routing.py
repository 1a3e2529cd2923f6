"""How a routed merge routes inputs (WEMoE, SMILE, Twin-Merging): per routing site, how often an input's own task
gets the largest routing weight, and how large the weights are. A diagnostic: it reads what the routers compute in
a forward and changes nothing.

A site is where weights over the tasks are computed: WEMoE's router of each block's MLP (one weight vector per
input), SMILE's routers of each block's linear maps (one per token and map; a block's site pools its maps), and
Twin-Merging's one router (one per input). Every site's weights are recorded as (rows, tasks): SMILE's top-k
weights put in their experts' columns, the others 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from methods.smile import SmileLinear
from methods.twin_merging import TaskRouter
from methods.wemoe import RoutedMLP

Routing = dict[str, list[torch.Tensor]]  # site -> the (rows, tasks) routing weights of each routed call


def site_of(module_name: str) -> str:
    """`block N` for a module inside the N-th transformer block, else the module's own name."""
    block = re.search(r"resblocks\.(\d+)\.", module_name + ".")
    return f"block {block.group(1)}" if block else module_name


def _weights(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """The (rows, tasks) routing weights a routing module applied in the call it just made."""
    if isinstance(module, RoutedMLP):
        x = args[0]
        return module.coefficients(x)[:, 1:].expand(len(x), -1)  # the batch's mean under batch routing
    if isinstance(module, SmileLinear):
        weights, experts = module.routing(args[0].reshape(-1, module.in_features))
        return weights.new_zeros(len(weights), module.n_experts).scatter(1, experts, weights)
    return output.softmax(dim=-1)  # Twin-Merging's router: its logits' softmax weights the tasks


@contextmanager
def recorded_routing(model: nn.Module) -> Iterator[Routing]:
    """Within: every routing site's weights of each forward of `model`, appended as the routers run. Yields the
    record, empty where the model routes nothing."""
    record: Routing = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, RoutedMLP | SmileLinear | TaskRouter):
            site = site_of(name)

            def hook(module: nn.Module, args: tuple, output: torch.Tensor, site: str = site) -> None:
                record.setdefault(site, []).append(_weights(module, args, output).detach().float().cpu())

            hooks.append(module.register_forward_hook(hook))
    try:
        yield record
    finally:
        for hook in hooks:
            hook.remove()


@dataclass
class SiteRouting:
    """One site's routing of each task's inputs, per task (index = the task's position in the pool)."""

    own_largest: torch.Tensor  # share of rows whose largest weight is their own task's
    own_weight: torch.Tensor  # mean weight of the row's own task
    other_weight: torch.Tensor  # mean weight of each other task
    total: torch.Tensor  # mean sum of a row's weights


def own_task_routing(model: nn.Module, inputs_by_task: list[torch.Tensor], batch_size: int | None = 128,
                     forward: Callable[[int, torch.Tensor], object] | None = None) -> dict[str, SiteRouting]:
    """Per site, how `model` routes the inputs of each task (the i-th list entry holds inputs of task i), run in
    batches of `batch_size` inputs of one task (None: all of a task's in one), each by `forward(task, batch)`
    (default: `model(batch)`)."""
    n_tasks = len(inputs_by_task)
    run = forward or (lambda task, batch: model(batch))
    statistics: dict[str, dict[str, list[float]]] = {}
    with torch.no_grad():
        for task, inputs in enumerate(inputs_by_task):
            with recorded_routing(model) as record:
                for batch in inputs.split(batch_size or len(inputs)):
                    run(task, batch)
            for site, calls in record.items():
                weights = torch.cat(calls)
                others = torch.cat([weights[:, :task], weights[:, task + 1:]], dim=1)
                values = statistics.setdefault(
                    site, {"own_largest": [], "own_weight": [], "other_weight": [], "total": []})
                values["own_largest"].append((weights.argmax(-1) == task).float().mean().item())
                values["own_weight"].append(weights[:, task].mean().item())
                values["other_weight"].append(others.mean().item() if n_tasks > 1 else 0.0)
                values["total"].append(weights.sum(-1).mean().item())
    return {site: SiteRouting(**{key: torch.tensor(value) for key, value in values.items()})
            for site, values in statistics.items()}


def routing_table(routing: dict[str, SiteRouting]) -> str:
    """One line per site: the means over tasks of each statistic."""
    lines = ["site        largest weight on own task  own task's weight  each other task's  sum"]
    for site, stats in routing.items():
        lines.append(f"{site:10s}  {stats.own_largest.mean():26.2f}  {stats.own_weight.mean():17.2f}  "
                     f"{stats.other_weight.mean():17.2f}  {stats.total.mean():4.1f}")
    return "\n".join(lines)
