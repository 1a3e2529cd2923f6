"""What a zoo's task vectors look like to task arithmetic and TIES: the numbers behind docs/findings/ties-trim.md
and docs/findings/task-vector-geometry.md, on why TIES at λ = 0.3 trails task arithmetic on the mini suite.

Per task it prints the task vector's norm; its cosine with the direction AdamW's weight decay pulls every
expert (minus the pretrained weights, over the decayed matrices: a component all experts share); the share of
its energy (sum of squares) that TIES' top-20% trim keeps, and the share still kept after the sign election;
and how far the task arithmetic and TIES sums (before λ) reach along the task's own vector (their projection
on it over its squared norm: what λ multiplies). Then the mean pairwise cosine of the task vectors.

    python examples/task_vector_geometry.py                      # the shipped zoo
    python examples/task_vector_geometry.py --zoo /tmp/zoo-ft2000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from methods.ties import TiesMerging, TiesVectors, disjoint_merge, trim_
from tasks.suites import load_suite


def flat(tensors: dict[str, torch.Tensor], keys: list[str]) -> torch.Tensor:
    """The tensors of `keys`, in that order, as one vector."""
    return torch.cat([tensors[key].flatten() for key in keys])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--zoo", type=Path, help="zoo folder (default: the shipped zoo)")
    args = parser.parse_args()
    pool = load_suite("mini", zoo=args.zoo).pool
    keys = pool.parameter_names
    # the weights zoo training decays
    decayed = [key for key in keys if pool.pretrained_tensor(key).ndim >= 2 and "embedding" not in key]
    ties = TiesVectors(pool, TiesMerging.keep, TiesMerging.trim)
    elected: dict[str, dict[str, torch.Tensor]] = {task: {} for task in pool.tasks}
    ties_sum = {}
    for key in keys:
        parts = [entries.clone() for entries in ties.agreeing(key)]
        for task, entries in zip(pool.tasks, parts):
            elected[task][key] = entries
        ties_sum[key] = disjoint_merge(iter(parts), TiesMerging.disjoint)
    task_vectors = {task: {key: pool.task_vector(task, key) for key in keys} for task in pool.tasks}
    vectors = torch.stack([flat(task_vectors[task], keys) for task in pool.tasks])
    decay = -flat({key: pool.pretrained_tensor(key) for key in keys}, decayed)
    task_arithmetic_sum, ties_flat = vectors.sum(0), flat(ties_sum, keys)
    print(f"{'task':<15}{'norm':>6}{'cos decay':>10}{'trim keeps':>11}{'elected':>9}{'TA reach':>9}{'TIES reach':>11}")
    for row, task in enumerate(pool.tasks):
        vector = vectors[row]
        energy = vector.pow(2).sum()
        own_decayed = flat(task_vectors[task], decayed)
        trimmed = flat({key: trim_(tensor.clone(), ties.thresholds[task, key])
                        for key, tensor in task_vectors[task].items()}, keys)
        print(f"{task:<15}{vector.norm():6.2f}{torch.cosine_similarity(own_decayed, decay, dim=0):10.3f}"
              f"{trimmed.pow(2).sum() / energy:11.2f}{flat(elected[task], keys).pow(2).sum() / energy:9.2f}"
              f"{task_arithmetic_sum @ vector / energy:9.2f}{ties_flat @ vector / energy:11.2f}")
    unit = torch.nn.functional.normalize(vectors, dim=1)
    cosines = unit @ unit.T
    pairs = cosines[~torch.eye(len(pool.tasks), dtype=torch.bool)]
    print(f"pairwise cosine of the task vectors: mean {pairs.mean():.3f} (min {pairs.min():.3f}, "
          f"max {pairs.max():.3f})")


if __name__ == "__main__":
    main()
