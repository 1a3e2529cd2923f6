"""How WEMoE's trained routers route the mini suite's test inputs: whether each block's largest routing weight
is the input's own task, and how large the weights grow. The README's WEMoE paragraph quotes this run.

    python examples/wemoe_routing.py            # WEMoE as `run --all` trains it (preset mini), multitask
    python examples/wemoe_routing.py --clamp    # routing weights clamped to [0, 1], as AdaMerging clamps
"""

from __future__ import annotations

import argparse

import torch

from bench.evaluation import evaluate
from methods.wemoe import Router, WEMoE
from tasks.suites import load_suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clamp", action="store_true", help="clamp the routing weights to [0, 1]")
    parser.add_argument("--inputs", type=int, default=500, help="test inputs per task whose routing is read")
    args = parser.parse_args()
    if args.clamp:
        learned = Router.forward
        Router.forward = lambda router, hidden: learned(router, hidden).clamp(0.0, 1.0)

    suite = load_suite("mini")
    tasks = list(suite.pool.tasks)
    encoder = WEMoE.configure("mini").merge(suite.pool)
    accuracy = evaluate(encoder, suite.tasks, [(task, "test") for task in tasks])
    print(f"8-task average accuracy: {100 * sum(accuracy.values()) / len(accuracy):.1f}%")

    blocks = [block.mlp for block in encoder.transformer.resblocks]
    routing: dict[int, torch.Tensor] = {}  # block -> (inputs, tasks) routing weights of the last forward
    for index, mlp in enumerate(blocks):
        mlp.router.register_forward_hook(lambda _, args, weights, index=index: routing.__setitem__(index, weights))
    own_task_picked = torch.zeros(len(blocks), len(tasks))
    own, other, total = (torch.zeros(len(blocks)) for _ in range(3))
    with torch.no_grad():
        for t, task in enumerate(tasks):
            inputs, _ = suite.tasks[task].tensors("test")
            encoder(inputs[:args.inputs])
            for index, weights in routing.items():
                own_task_picked[index, t] = (weights.argmax(-1) == t).float().mean()
                own[index] += weights[:, t].mean() / len(tasks)
                other[index] += torch.cat([weights[:, :t], weights[:, t + 1:]], 1).mean() / len(tasks)
                total[index] += weights.sum(-1).mean() / len(tasks)
    print("block  largest weight on own task  own task's weight  each other task's  sum")
    for index in range(len(blocks)):
        print(f"{index:5d}  {own_task_picked[index].mean():26.2f}  {own[index]:17.2f}  {other[index]:17.2f}  {total[index]:4.1f}")
    last = len(blocks) - 1
    print("last block, largest weight on own task, per task: " +
          ", ".join(f"{task} {own_task_picked[last, t]:.2f}" for t, task in enumerate(tasks)))


if __name__ == "__main__":
    main()
