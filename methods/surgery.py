"""Representation Surgery (Yang et al., ICML 2024): on top of a base merge, a small per-task module that removes
the bias of the merged encoder's representation, trained to bring it to each expert's representation.

For task t, with z the merged encoder's output (the embedding the task's head reads):
    surgery_t(z) = z - up_t(relu(down_t(z))),   down_t: d -> rank, up_t: rank -> d, no biases,
trained by Adam on the L1 distance (mean over the batch and the d features) between surgery_t(z) and the expert's
representation of the same unlabeled test inputs. Everything follows the authors' code
(github.com/EnnengYang/RepresentationSurgery, src/merging_model.py and src/main_*_with_surgery.py; FusionBench's
fusion_bench/models/surgery/surgerymodelwrapper.py is the same module): rank 16, down initialised as
kaiming_uniform(a=sqrt(5)) (nn.Linear's default: uniform within 1/sqrt(d)) and up as zeros, so training starts
at the base merge; Adam lr 1e-3, betas (0.9, 0.999), no weight decay; batches of 16 test inputs; 500
iterations, each of two batches per task, each batch its own optimiser step on its task's loss alone, so
1000 steps per task's module (`steps`).

The encoder is frozen during surgery, so the merged model's and each expert's representations of a task's test
inputs are computed once, without gradients, and the modules are trained on those cached representations: a
batch drawn from the cache is the batch the authors' loop draws from the test loader, and its loss, gradient
and Adam step are the same. The cache holds `inputs` test inputs per task (the mini suite's whole test
split; the authors draw from the whole split of the full datasets, whose images would not fit in memory at once).
The tasks' modules share no parameter and Adam updates each entry on its own gradient, so all tasks' modules
take their steps together, one batch of each task per step: each module sees the steps it sees in the authors'
loop (with `zero_grad` setting gradients to None, PyTorch 2's default, as FusionBench runs it: a module whose
task is not in a step's batch is not updated). Reading test inputs makes the method adaptive: it is merged per
scenario, and serves each task with the merged encoder followed by that task's module (the task must be known
at inference; the cost columns count the shared encoder once and each task's 2 x rank x d module weights).

The base merge (`base`: weight averaging, task arithmetic, TIES or layer-wise AdaMerging, the four the paper
reports) is built through the method registry at its own settings, with its preset `base_preset` where the
base declares one: surgery's `mini` preset (the mini suite's, tasks/suites.py) sets it to `mini`, so a layer-wise
AdaMerging base runs the same compute settings as the suite's own layer-wise AdaMerging row, and a static base,
which has no such preset, its defaults. The `mini` preset also caches 128 test inputs per task, the suite's budget
(what `run --all` affords: caching costs two forwards per input, of the merged encoder and the expert, in each
task of each scenario), not a choice made on data; surgery's steps, rank and learning rate stay the paper's.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn

from core.errors import BenchError
from core.pool import ModelPool
from core.threads import one_thread
from core.versions import INITIAL
from methods.base import Merged, MergeMethod, get_method, setting

Base = Literal["weight_averaging", "task_arithmetic", "ties_merging", "adamerging_layerwise"]  # the paper's four
FEATURE_CHUNK = 256  # inputs per no-grad forward when caching representations: bounds the activations in memory


def surgery(features: torch.Tensor, down: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """features - relu(features @ down^T) @ up^T, batched over a leading task dimension where the weights have one:
    features (..., n, d), down (..., rank, d), up (..., d, rank)."""
    return features - torch.relu(features @ down.transpose(-1, -2)) @ up.transpose(-1, -2)


def chunked_outputs(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """`model`'s outputs on `inputs`, FEATURE_CHUNK inputs per forward, on the CPU."""
    return torch.cat([model(chunk).cpu() for chunk in inputs.split(FEATURE_CHUNK)])


class SurgeredEncoder(nn.Module):
    """A task's encoder: the shared merged encoder, then the task's surgery module on its output."""

    def __init__(self, encoder: nn.Module, down: torch.Tensor, up: torch.Tensor) -> None:
        super().__init__()
        self.encoder = encoder
        self.register_buffer("down", down)
        self.register_buffer("up", up)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return surgery(self.encoder(inputs), self.down, self.up)


class Surgery(MergeMethod):
    """Representation Surgery: per task, z - up(relu(down(z))) on a base merge's output, fit to the expert's (L1)."""

    name = "surgery"
    title = "Surgery"
    reference = "https://arxiv.org/abs/2402.02705"
    presets = {"mini": {"base_preset": "mini", "inputs": 128}}  # the mini suite's compute settings (docstring above)
    base: Base = "task_arithmetic"
    base_preset: str = "default"
    rank: int = setting(16, low=1)
    steps: int = setting(1000, low=0)  # Adam steps of each task's module
    lr: float = setting(1e-3, above=0.0)
    batch_size: int = setting(16, low=1)
    inputs: int = setting(1000, low=1)  # test inputs per task whose representations are cached
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        known = {"default"}.union(*(get_method(base).presets for base in typing.get_args(Base)))
        if self.base_preset not in known:
            raise BenchError(f"surgery: base_preset={self.base_preset!r} is no preset of any base; valid: "
                             f"{', '.join(sorted(known))}")

    def base_method(self) -> MergeMethod:
        """The base merge as the registry builds it: its preset `base_preset` where it declares one, this seed."""
        cls = get_method(self.base)
        preset = self.base_preset if self.base_preset in cls.presets else None
        seeded = {"seed": str(self.seed)} if "seed" in {f.name for f in dataclasses.fields(cls)} else {}
        return cls.configure(preset, seeded)

    def numerics_version(self) -> int:
        return self.version + self.base_method().numerics_version() - INITIAL  # both only go up: any bump shows

    def merge(self, pool: ModelPool) -> Merged:
        *_, (_, merged) = self.merge_steps(pool)
        return merged

    def merge_steps(self, pool: ModelPool, every: int | None = None) -> Iterator[tuple[int | None, Merged]]:
        encoder = self.base_method().merge(pool)
        if not isinstance(encoder, nn.Module):
            raise BenchError(f"surgery: base {self.base} gave one model per task; surgery needs one merged encoder")
        encoder.requires_grad_(False)
        merged, targets, counts = self.representations(pool, encoder)
        generator = torch.Generator().manual_seed(self.seed)
        n_tasks, n_inputs, width = merged.shape
        bound = 1 / math.sqrt(width)  # kaiming_uniform(a=sqrt(5)) of a Linear(width, rank)
        down = nn.Parameter((torch.rand(n_tasks, self.rank, width, generator=generator) * 2 - 1) * bound)
        up = nn.Parameter(torch.zeros(n_tasks, width, self.rank))
        optimizer = torch.optim.Adam([down, up], lr=self.lr, betas=(0.9, 0.999), weight_decay=0.0)
        rows = torch.arange(n_tasks).unsqueeze(1)
        padding = torch.arange(n_inputs) >= counts.unsqueeze(1)  # a task with fewer inputs: its cache's padding
        batch = min(self.batch_size, int(counts.min()))

        def per_task() -> Merged:
            return {task: SurgeredEncoder(encoder, down[t].detach().to(pool.device, copy=True),
                                          up[t].detach().to(pool.device, copy=True))
                    for t, task in enumerate(pool.tasks)}

        def train_step() -> None:
            # Per task, `batch` of its cached inputs drawn without replacement (as from a shuffled test loader).
            drawn = torch.rand(n_tasks, n_inputs, generator=generator).masked_fill(padding, 2.0).argsort(1)[:, :batch]
            outputs = surgery(merged[rows, drawn], down, up)
            loss = (outputs - targets[rows, drawn]).abs().mean((1, 2)).sum()  # each task's L1 loss, summed
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        if every and self.steps:
            yield 0, per_task()
        done = 0
        for stop in [*(range(every, self.steps, every) if every else ()), self.steps]:
            with one_thread():  # steps of tiny operations: threads would only wait for one another
                for _ in range(done, stop):
                    train_step()
            done = stop
            yield stop, per_task()

    @torch.no_grad()
    def representations(self, pool: ModelPool, encoder: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The merged encoder's and each task's expert's outputs on up to `inputs` test inputs of each task, each
        (tasks, inputs, d) on the CPU, zero-padded where a task has fewer, and how many each task has (one expert
        in memory at a time)."""
        merged, experts = [], []
        for task in pool.tasks:
            inputs = pool.test_inputs(task, self.inputs, self.seed).to(pool.device)
            merged.append(chunked_outputs(encoder, inputs))
            experts.append(chunked_outputs(pool.encoder(pool.expert_state(task)), inputs))  # one expert at a time
        counts = torch.tensor([len(features) for features in merged])
        pad = nn.utils.rnn.pad_sequence
        return pad(merged, batch_first=True), pad(experts, batch_first=True), counts
