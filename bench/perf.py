"""`python -m bench perf`: speed of the adaptive methods' inner loops, as ratios to a reference timed in the
same run on the same tensors (machines are noisy; ratios travel).

- AdaMerging: one adaptation step (merge the weights from the coefficients, forward, backward, Adam) over
  one forward+backward of a single model on the same batch. Goal: at most 1.5.
- WEMoE: evaluation throughput over the dense merged model's on the same batch (goal: at least 0.3 with 8
  experts), and the fast routed MLP's speed-up over the per-sample oracle at batch 64 (goal: at least 5).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from methods.adamerging import LayerwiseAdaMerging
from methods.adaptation import entropy
from methods.averaging import TaskArithmetic
from methods.wemoe import WEMoE
from tasks.base import Suite


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    goal: str
    met: bool

    def line(self) -> str:
        return f"{self.name:<72} {self.value:8.2f}   goal {self.goal:<6} {'met' if self.met else 'NOT MET'}"


def best_time(run: Callable[[], object], repeats: int = 5) -> float:
    """The fastest of `repeats` timed calls after one warm-up call: the least disturbed by other load."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def adamerging_figures(suite: Suite, batch_per_task: int = 16) -> list[Figure]:
    pool = suite.pool
    inputs = torch.cat([pool.test_inputs(task, batch_per_task, 0) for task in pool.tasks])
    head = next(iter(pool.heads.values()))
    model = LayerwiseAdaMerging().build(pool)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    single = TaskArithmetic().merge(pool).requires_grad_(True)

    def adaptation_step() -> None:
        loss = entropy(head(model(inputs))).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def forward_backward() -> None:
        entropy(head(single(inputs))).mean().backward()

    ratio = best_time(adaptation_step) / best_time(forward_backward)
    name = f"AdaMerging step / forward+backward ({len(inputs)} inputs)"
    return [Figure(name, ratio, "<= 1.5", ratio <= 1.5)]


@torch.no_grad()
def wemoe_figures(suite: Suite, batch: int = 64) -> list[Figure]:
    pool = suite.pool
    inputs = torch.cat([pool.test_inputs(task, batch // len(pool.tasks) + 1, 0) for task in pool.tasks])[:batch]
    dense = TaskArithmetic().merge(pool)
    routed = WEMoE().build(pool).merged()
    throughput = best_time(lambda: dense(inputs)) / best_time(lambda: routed(inputs))
    mlp = routed.transformer.resblocks[0].mlp
    hidden = torch.randn(batch, routed.positional_embedding.shape[0], mlp.width)
    speedup = best_time(lambda: mlp.per_sample_reference(hidden)) / best_time(lambda: mlp(hidden))
    experts = len(pool.tasks)
    return [Figure(f"WEMoE eval throughput / dense merged model ({experts} experts, batch {batch})", throughput,
                   ">= 0.3", throughput >= 0.3),
            Figure(f"WEMoE routed MLP: fast path speed-up over per-sample oracle (batch {batch})", speedup,
                   ">= 5", speedup >= 5)]


def run_perf(suite: Suite) -> list[Figure]:
    return adamerging_figures(suite) + wemoe_figures(suite)
