"""How the mini presets of the test-time adaptive methods (AdaMerging, WEMoE) were chosen: on validation data only.

Steps and learning rate are compute settings: the papers' (500 steps at lr 1e-3; 1,000 at 1e-4) are sized for
ViT-B/32 and are still climbing on the mini suite. The step count is the suite's budget, not chosen on data: 50
steps, what `run --all` affords within its 20 minutes on 2 cores (adaptation is a third of its time).
The learning rate is chosen on validation data: this script runs the adaptation the benchmark runs (on the
experts of `--scenario`, multitask-8 by default; seed 0, one batch of 16 inputs per task and step), except that
the unlabeled inputs it adapts on are the validation split's and the accuracy it reports is the validation
split's, so no test image, label or accuracy enters the choice; the learning rate of the best mean validation
accuracy at the last step wins. A preset serves every scenario, so a learning rate is best judged over the
scenarios' expert sets (the generalization splits merge six experts, the 8-task table eight) and zoo seeds.

    python examples/adaptation_settings.py adamerging_layerwise --lr 1e-2 2e-2 4e-2 8e-2 --steps 50 --every 50
    python examples/adaptation_settings.py wemoe --lr 3e-3 6e-3 1e-2 --steps 50 --every 50
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench.evaluation import evaluate
from methods.base import get_method
from tasks.scenarios import scenarios_for
from tasks.suites import load_suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", help="an adaptive method, e.g. adamerging_layerwise or wemoe")
    parser.add_argument("--lr", type=float, nargs="+", required=True)
    parser.add_argument("--steps", type=int, default=50, help="the step budget (default: 50)")
    parser.add_argument("--every", type=int, default=25, help="evaluate every this many steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scenario", default="multitask-8", help="adapt the experts this scenario merges "
                        "(default: multitask-8), e.g. generalization/unseen-mnist-eurosat")
    parser.add_argument("--zoo", type=Path, help="zoo folder (default: the shipped zoo)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    suite = load_suite("mini", zoo=args.zoo)
    scenario = scenarios_for(args.scenario, suite)[0]
    tasks = scenario.merged_tasks
    pool = suite.pool.subset(tasks, {task: "validation" for task in tasks})  # adapts on validation inputs
    pairs = [(task, "validation") for task in tasks]
    for task in tasks:
        suite.tasks[task].load("validation")
    final = {}
    for lr in args.lr:
        method = get_method(args.method).configure("default", {"lr": str(lr), "steps": str(args.steps),
                                                              "batches_per_step": "1"})
        for step, merged in method.merge_steps(pool, args.every):
            accuracies = evaluate(merged, suite.tasks, pairs)
            final[lr] = 100 * sum(accuracies.values()) / len(accuracies)
            print(json.dumps({"method": args.method, "scenario": scenario.name, "lr": lr, "step": step,
                              "validation": round(final[lr], 2)}),
                  flush=True)
    chosen = max(final, key=final.get)
    print(json.dumps({"chosen": {"lr": chosen, "steps": args.steps}, "validation": round(final[chosen], 2)}))


if __name__ == "__main__":
    main()
