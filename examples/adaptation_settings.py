"""How the mini presets of the test-time adaptive methods (AdaMerging, WEMoE) were chosen: on validation data only.

Steps and learning rate are compute settings: the papers' (500 steps at lr 1e-3; 1,000 at 1e-4) are sized for
ViT-B/32 and are still climbing on the mini suite. This script runs the adaptation the benchmark runs (multitask,
seed 0), except that the unlabeled inputs it adapts on are the validation split's and the accuracy it reports is
the validation split's, so no test image, label or accuracy enters the choice. The rule: the learning rate and
step count of the best mean validation accuracy, preferring fewer steps while within 0.5 points of it.

    python examples/adaptation_settings.py adamerging_layerwise --lr 1e-3 3e-3 1e-2 --steps 200 --every 25
    python examples/adaptation_settings.py wemoe --lr 1e-3 3e-3 1e-2 --steps 100 --every 25

AdaMerging runs a constant learning rate, so one run of the most steps gives every shorter run's curve; WEMoE's
cosine schedule depends on the step count, so each count is a run of its own (`--steps 50 100 200`).
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch

from bench.evaluation import evaluate
from methods.base import get_method
from tasks.scenarios import multitask
from tasks.suites import load_suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", help="an adaptive method, e.g. adamerging_layerwise or wemoe")
    parser.add_argument("--lr", type=float, nargs="+", required=True)
    parser.add_argument("--steps", type=int, nargs="+", required=True)
    parser.add_argument("--every", type=int, default=25, help="evaluate every this many steps")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    suite = load_suite("mini")
    scenario = multitask(suite)[0]
    tasks = scenario.merged_tasks
    pool = suite.pool.subset(tasks, {task: "validation" for task in tasks})  # adapts on validation inputs
    pairs = [(task, "validation") for task in tasks]
    for task in tasks:
        suite.tasks[task].load("validation")
    curves = {}
    for lr, steps in itertools.product(args.lr, args.steps):
        method = get_method(args.method).configure("default", {"lr": str(lr), "steps": str(steps),
                                                              "batches_per_step": "1"})
        for step, merged in method.merge_steps(pool, args.every):
            accuracies = evaluate(merged, suite.tasks, pairs)
            if method.schedule == "constant" or step == steps:  # a cosine schedule's midpoints are no shorter run
                curves[lr, steps, step] = 100 * sum(accuracies.values()) / len(accuracies)
            print(json.dumps({"method": args.method, "lr": lr, "steps": steps, "step": step,
                              "validation": round(100 * sum(accuracies.values()) / len(accuracies), 2)}), flush=True)
    best = max(curves.values())
    (lr, steps, step), accuracy = min(((key, value) for key, value in curves.items() if value >= best - 0.5),
                                      key=lambda item: (item[0][2], -item[1]))
    print(json.dumps({"chosen": {"lr": lr, "steps": step, "schedule_steps": steps}, "validation": round(accuracy, 2),
                      "best": round(best, 2)}))


if __name__ == "__main__":
    main()
