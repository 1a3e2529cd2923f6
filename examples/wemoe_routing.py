"""How WEMoE's trained routers route the mini suite's test inputs, and why they fall short of routing each
input to its own expert. docs/findings/wemoe-routing.md quotes this run.

It prints, for WEMoE as `run --all` trains it (preset mini, multitask-8):
- per block, whether the largest routing weight is the input's own task, and how large the weights grow
  (bench.routing, as examples/routing_diagnostics.py prints it for SMILE and Twin-Merging);
- the adaptation objective (mean entropy of the heads' predictions) and accuracy under the trained routing,
  under routing fixed to each input's own expert alone at weight 1 or 2 (oracles), and under every task at the
  initial weight: whether the objective itself prefers the oracles;
- per block, how well the routers' input (the block's MLP input, averaged over tokens, as the routing weights
  are) tells the eight tasks apart: a logistic-regression probe trained on half the inputs, scored on the rest.

    python examples/wemoe_routing.py                    # the shipped zoo
    python examples/wemoe_routing.py --clamp            # routing weights clamped to [0, 1], as AdaMerging clamps
    python examples/wemoe_routing.py --task-marker 0.5  # the routers' input also names each input's task
    python examples/wemoe_routing.py --routing batch    # routing averaged over each task's batch (FusionBench's)

With `--routing batch` the routing statistics are those of the weights applied: each block's mean over the
inputs of one task read together.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from bench.evaluation import DEFAULT_EVAL, accuracy
from bench.routing import own_task_routing, routing_table
from methods.adaptation import AdaptiveMethod, entropy
from methods.wemoe import Router, WEMoE
from tasks.suites import load_suite


@contextmanager
def fixed_routing(encoder: nn.Module, weights: torch.Tensor):
    """Every router of `encoder` outputs `weights` (tasks,) for each sample, while inside."""
    hooks = [module.register_forward_hook(lambda _, args, out: weights.expand_as(out))
             for module in encoder.modules() if isinstance(module, Router)]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


class TaskMarker:
    """Adds to every router's input a fixed random vector of its input's task (entries N(0, scale^2)), so that
    the routers can tell the tasks apart: what they learn then. `task_of` holds the current inputs' tasks, one
    per input, or one for all."""

    def __init__(self, n_tasks: int, width: int, scale: float) -> None:
        self.vectors = scale * torch.randn(n_tasks, width, generator=torch.Generator().manual_seed(0))
        self.task_of = torch.zeros(1, dtype=torch.long)  # one for all until a step marks its inputs

    def install(self) -> None:
        """Patch the routers, and the adaptation loss to record the tasks of each step's inputs (WEMoE's preset
        mini routes per sample: one forward over every task's batch, in the order of `inputs`)."""
        route, loss = Router.forward, AdaptiveMethod._loss

        def marked_loss(method: AdaptiveMethod, model: nn.Module, heads: dict, inputs: dict) -> torch.Tensor:
            self.task_of = torch.cat([torch.full((len(x),), t) for t, x in enumerate(inputs.values())])
            return loss(method, model, heads, inputs)

        Router.forward = lambda router, hidden: route(router, hidden + self.vectors[self.task_of].unsqueeze(1))
        AdaptiveMethod._loss = marked_loss

    def of_task(self, task: int) -> None:
        """Every input from now on is of `task`."""
        self.task_of = torch.tensor([task])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--clamp", action="store_true", help="clamp the routing weights to [0, 1]")
    parser.add_argument("--inputs", type=int, default=500, help="test inputs per task read for the diagnostics")
    parser.add_argument("--task-marker", type=float, default=0.0, metavar="SCALE",
                        help="add a random vector of each input's task, entries N(0, SCALE^2), to every router's input")
    parser.add_argument("--routing", choices=["sample", "batch"], default="sample",
                        help="WEMoE's routing: per sample (the paper's code, default) or averaged over a task's batch")
    parser.add_argument("--zoo", type=Path, help="zoo folder (default: the shipped one)")
    args = parser.parse_args()
    if args.task_marker and args.routing == "batch":
        parser.error("--task-marker marks the inputs of one per-sample forward; it needs --routing sample")
    if args.clamp:
        learned = Router.forward
        Router.forward = lambda router, hidden: learned(router, hidden).clamp(0.0, 1.0)

    suite = load_suite("mini", zoo=args.zoo)
    tasks = list(suite.pool.tasks)
    marker = TaskMarker(len(tasks), suite.pool.pretrained_tensor("ln_post.weight").numel(), args.task_marker)
    if args.task_marker:
        marker.install()
    method = WEMoE.configure("mini", {"routing": args.routing})
    encoder = method.merge(suite.pool)
    inputs = {task: suite.tasks[task].tensors("test") for task in tasks}

    def encode(t: int, x: torch.Tensor) -> torch.Tensor:
        marker.of_task(t)
        return encoder(x)

    per_task = []
    for t, task in enumerate(tasks):
        marker.of_task(t)
        batches = suite.tasks[task].batches("test", DEFAULT_EVAL.batch_size)
        per_task.append(accuracy(encoder, suite.tasks[task].head, batches))
    print(f"8-task average accuracy: {100 * np.mean(per_task):.1f}% (" +
          ", ".join(f"{task} {100 * a:.1f}" for task, a in zip(tasks, per_task)) + ")")

    blocks = [block.mlp for block in encoder.transformer.resblocks]
    router_inputs: dict[int, list[torch.Tensor]] = {index: [] for index in range(len(blocks))}
    # a block's router input, averaged over tokens as its weights are
    hooks = [mlp.register_forward_hook(
        lambda module, args, out, index=index: router_inputs[index].append(args[0].mean(1)))
        for index, mlp in enumerate(blocks)]
    routing = own_task_routing(encoder, [inputs[task][0][:args.inputs] for task in tasks], batch_size=None,
                               forward=encode)
    for hook in hooks:
        hook.remove()
    print(routing_table(routing))
    last = list(routing)[-1]
    print("last block, largest weight on own task, per task: " +
          ", ".join(f"{task} {share:.2f}" for task, share in zip(tasks, routing[last].own_largest.tolist())))

    def objective(weights: Callable[[int], torch.Tensor] | None) -> tuple[float, float]:
        """Mean over tasks of the heads' mean entropy and of accuracy, on the inputs read above, with the routing
        weights of task t's inputs fixed to `weights(t)` (None: the trained routers')."""
        entropies, accuracies = [], []
        with torch.no_grad():
            for t, task in enumerate(tasks):
                x, labels = inputs[task][0][:args.inputs], inputs[task][1][:args.inputs]
                with fixed_routing(encoder, weights(t)) if weights else nullcontext():
                    logits = suite.pool.heads[task](encode(t, x))
                entropies.append(entropy(logits).mean().item())
                accuracies.append((logits.argmax(-1) == labels).float().mean().item())
        return float(np.mean(entropies)), 100 * float(np.mean(accuracies))

    routings: dict[str, Callable[[int], torch.Tensor] | None] = {"trained routers": None}
    for weight in (1.0, 2.0):
        routings[f"oracle: {weight} for the input's own task, 0 for the others"] = (
            lambda t, w=weight: w * torch.eye(len(tasks))[t])
    routings[f"every task at the initial {method.init_lambda} (task arithmetic)"] = (
        lambda t: torch.full((len(tasks),), method.init_lambda))
    print("routing                                                             entropy  accuracy")
    for name, weights in routings.items():
        scores = objective(weights)
        print(f"{name:66s}  {scores[0]:7.3f}  {scores[1]:7.1f}%")

    labels = np.repeat(np.arange(len(tasks)), [min(args.inputs, len(inputs[task][0])) for task in tasks])
    order = np.random.default_rng(0).permutation(len(labels))
    fit, held_out = order[:len(order) // 2], order[len(order) // 2:]
    print("block  task identity from the routers' input (probe accuracy on held-out inputs)")
    for index in range(len(blocks)):
        features = torch.cat(router_inputs[index]).numpy()
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(features[fit], labels[fit])
        print(f"{index:5d}  {probe.score(features[held_out], labels[held_out]):.2f}")


if __name__ == "__main__":
    main()
