"""How a routed merge (WEMoE, sparse WEMoE, SMILE, Twin-Merging) routes the mini suite's test inputs: per routing
site (a block's routers, or the one router of Twin-Merging), how often an input's own task gets the largest routing
weight, and how large the weights are (bench.routing). The merge is the one `run --all` makes (the suite's preset,
multitask-8); the test inputs only describe it, nothing is chosen on them.

    python examples/routing_diagnostics.py smile
    python examples/routing_diagnostics.py twin_merging
    python examples/routing_diagnostics.py wemoe      # examples/wemoe_routing.py says more about WEMoE

SMILE routes every token of every linear map on its own: its rows are tokens, a block's site pooling its maps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.evaluation import DEFAULT_EVAL, accuracy
from bench.routing import own_task_routing, routing_table
from methods.base import get_method
from tasks.suites import load_suite

ROUTED = ("smile", "twin_merging", "wemoe", "wemoe_sparse")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("method", choices=ROUTED)
    parser.add_argument("--inputs", type=int, default=500, help="test inputs per task read for the routing statistics")
    parser.add_argument("--zoo", type=Path, help="zoo folder (default: the shipped one)")
    args = parser.parse_args()

    suite = load_suite("mini", zoo=args.zoo)
    tasks = list(suite.pool.tasks)
    method = get_method(args.method).configure(suite.presets.get(args.method))
    merged = method.merge(suite.pool)
    per_task = [accuracy(merged, suite.tasks[task].head, suite.tasks[task].batches("test", DEFAULT_EVAL.batch_size))
                for task in tasks]
    print(f"{method.label()}: 8-task average accuracy {100 * np.mean(per_task):.1f}% (" +
          ", ".join(f"{task} {100 * a:.1f}" for task, a in zip(tasks, per_task)) + ")")

    inputs = [suite.tasks[task].tensors("test")[0][:args.inputs] for task in tasks]
    routing = own_task_routing(merged, inputs, DEFAULT_EVAL.batch_size)
    print(routing_table(routing))
    last = list(routing)[-1]
    print(f"{last}, largest weight on own task, per task: " +
          ", ".join(f"{task} {share:.2f}" for task, share in zip(tasks, routing[last].own_largest.tolist())))


if __name__ == "__main__":
    main()
