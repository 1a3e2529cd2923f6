"""Expert Merging (Zhang et al., 2025): task-arithmetic coefficients learned on a few unlabeled calibration inputs
per task, so that on each task's inputs the merged model's hidden states and logits match that task's expert.

Merged weights = pretrained + sum over tasks of coefficient x task vector, one coefficient per task and parameter
tensor (a "layer", as in layer-wise AdaMerging), each the sigmoid of a free parameter. The loss of an input x of
task k is T^2 x the cross-entropy of the expert's softmax(logits / T) against the merged model's (the KL of the
paper up to a constant), plus the mean squared difference of one block's output tokens; the regulariser is
gamma x the mean over coefficients of |coefficient - its initial value|, summed over tasks. Expert Merging++
then scores each tensor by sum_k coefficient_k x ||task vector_k||_1 (the paper's |alpha| x mean|tau| x
parameter count), normalised over tensors, gives tensor l floor(B I_l^kappa / sum_j I_j^kappa) chunks with a
coefficient each (the flattened tensor cut into contiguous pieces, as torch.chunk cuts it) and none to the
tensors that get 0, whose coefficient stays at its initial value, and learns the chunk coefficients afresh.

Defaults are those of the authors' code (github.com/Littleor/ExpertMerging: InternVL/model_merging.py
parse_args, global_utils/expert_merging_base.py, InternVL/parametric_task_vector_model.py): 5 calibration
inputs per task, one epoch over them in shuffled order, a coefficient update every 8 inputs (batch 1, gradient
accumulation 8), AdamW lr 0.5 (weight decay 1e-5) on the sigmoid's argument, gradient norm clipped to 1,
CosineAnnealingWarmRestarts (T_0 50, T_mult 2, floor 0.1 x lr) per update, temperature 1, regulariser weight 5,
hidden-state weight 1. Not from the code: the coefficients start at 0.3, task arithmetic's coefficient here, as
the paper initialises them at task arithmetic's (the code's 0.1 was its InternVL setting); the hidden state is
the middle block's output, the paper's example (the code's default aligns none); every parameter tensor gets
coefficients, as layer-wise AdaMerging's do (the authors' LLM code keeps norms, biases and embeddings at the
base model's values); calibration inputs come from the training split, so the validation split stays unseen;
Expert Merging++'s budget of one chunk coefficient per tensor and task (the paper reports 0.9-1.2) and kappa 1
(importance-proportional), the paper's values being in an appendix we could not read; the importance and chunk
rule are the paper's as the ICLR 2026 paper notes (papernotes) write them out, the code taking chunk counts as input.
No test input is read: the merge is static.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from core.errors import BenchError
from core.pool import ModelPool, StateDict
from methods.base import Merged, MergeMethod, setting

# The authors' optimiser and schedule (parametric_task_vector_model.py, expert_merging_base.py): not settings.
WEIGHT_DECAY = 1e-5
MAX_GRADIENT_NORM = 1.0
RESTART_PERIOD, RESTART_GROWTH, LR_FLOOR = 50, 2, 0.1


def chunk_layout(numel: int, chunks: int) -> tuple[int, int]:
    """(pieces, piece size) of a flattened tensor of `numel` elements cut as torch.chunk cuts it into `chunks`:
    pieces of ceil(numel / chunks) elements, the last one shorter, so fewer pieces than asked where that size
    fills the tensor sooner (5 elements in 4 chunks: 3 pieces of at most 2)."""
    size = math.ceil(numel / chunks)
    return math.ceil(numel / size), size


def soft_cross_entropy(logits: torch.Tensor, target_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per row, temperature^2 x the cross-entropy of softmax(target_logits / T) against softmax(logits / T): the
    KL divergence of the two up to the targets' entropy, a constant (the authors' compute_ce_loss)."""
    targets = (target_logits / temperature).softmax(-1)
    return -(targets * (logits / temperature).log_softmax(-1)).sum(-1) * temperature ** 2


def importance(coefficients: dict[str, torch.Tensor], l1_norms: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per parameter tensor, sum over tasks of |coefficient| x ||task vector||_1 (mean |task vector| x its parameter
    count), as a share of the sum over tensors (all 0 where every task vector is 0)."""
    scores = {key: float((coefficients[key].abs() * l1_norms[key]).sum()) for key in coefficients}
    total = sum(scores.values())
    return {key: score / total if total > 0 else 0.0 for key, score in scores.items()}


def chunk_counts(shares: dict[str, float], budget: float, sharpness: float) -> dict[str, int]:
    """Per tensor, floor(budget x share^sharpness / sum over tensors of share^sharpness) coefficients (0 for all
    where no tensor has any importance; 0^0 = 1, so sharpness 0 spreads the budget evenly)."""
    powered = {key: share ** sharpness for key, share in shares.items()}
    total = sum(powered.values())
    return {key: math.floor(budget * value / total) if total > 0 else 0 for key, value in powered.items()}


class ChunkedCoefficientMerge(nn.Module):
    """pretrained + sum_t sum_s sigmoid(raw[t, s]) x task vector t on chunk s, per parameter tensor with chunks;
    a tensor with none is pretrained + initial x sum_t task vector t, fixed.

    All learned coefficients are one (tasks, coefficients) parameter; each tensor's task vectors are kept as
    (chunks, tasks, chunk size), zero-padded, so its merge is one batched matrix product."""

    def __init__(self, pretrained: StateDict, task_vectors: dict[str, torch.Tensor], chunks: dict[str, int],
                 initial: float) -> None:
        super().__init__()
        self.initial = initial
        self.shapes = {key: tensor.shape for key, tensor in pretrained.items()}
        self.pretrained = pretrained
        self.fixed: StateDict = {}
        self.pieces: dict[str, tuple[int, torch.Tensor]] = {}  # key -> (first coefficient, (chunks, tasks, size))
        offset = 0
        for key, vectors in task_vectors.items():
            if chunks[key] <= 0:
                self.fixed[key] = pretrained[key] + initial * vectors.sum(0)
                continue
            flat = vectors.reshape(len(vectors), -1)
            count, size = chunk_layout(flat.shape[1], chunks[key])
            padded = F.pad(flat, (0, count * size - flat.shape[1]))
            self.pieces[key] = (offset, padded.view(len(vectors), count, size).transpose(0, 1).contiguous())
            offset += count
        tasks = len(next(iter(task_vectors.values())))
        device = next(iter(pretrained.values())).device
        self.raw = nn.Parameter(torch.full((tasks, offset), math.log(initial / (1 - initial)), device=device))

    def coefficients(self) -> torch.Tensor:
        """(tasks, learned coefficients), each in (0, 1)."""
        return torch.sigmoid(self.raw)

    def regulariser(self) -> torch.Tensor:
        """Sum over tasks of the mean |coefficient - initial value| over each task's coefficients."""
        return (self.coefficients() - self.initial).abs().sum() / self.raw.shape[1]

    def tensor_coefficients(self) -> dict[str, torch.Tensor]:
        """Per tensor with chunks, its (tasks, chunks) coefficients."""
        coefficients = self.coefficients()
        return {key: coefficients[:, offset:offset + len(vectors)] for key, (offset, vectors) in self.pieces.items()}

    def state(self) -> StateDict:
        state = dict(self.fixed)
        for key, coefficients in self.tensor_coefficients().items():
            vectors = self.pieces[key][1]
            update = torch.bmm(coefficients.T.unsqueeze(1), vectors).reshape(-1)[:self.shapes[key].numel()]
            state[key] = self.pretrained[key] + update.view(self.shapes[key])
        return {key: state[key] for key in self.shapes}


@dataclass(frozen=True)
class Calibration:
    """The calibration inputs of every task, with what each task's expert makes of its own task's."""

    inputs: torch.Tensor  # (inputs, ...): every task's, task after task
    tasks: list[str]  # the task of each input
    positions: list[int]  # each input's row in its task's logits
    hidden: torch.Tensor  # (inputs, tokens, width): the expert's output of the aligned block
    logits: dict[str, torch.Tensor]  # per task, (its inputs, classes): its expert's logits


@dataclass(frozen=True)
class Alignment:
    """What every coefficient fit aligns on: the frozen encoder (pretrained weights, replaced functionally), the
    block whose output is aligned, the task heads, the calibration set, and the tensors merged."""

    encoder: nn.Module
    block: int
    heads: dict[str, nn.Module]
    calibration: Calibration
    pretrained: StateDict
    task_vectors: dict[str, torch.Tensor]  # key -> (tasks, *shape)


@contextmanager
def block_output(encoder: nn.Module, block: int) -> Iterator[list[torch.Tensor]]:
    """Within: the outputs of the encoder's `block`-th residual block (0-based), one per forward, torch.func's
    functional calls included."""
    outputs: list[torch.Tensor] = []
    handle = encoder.transformer.resblocks[block].register_forward_hook(lambda module, args, out: outputs.append(out))
    try:
        yield outputs
    finally:
        handle.remove()


class ExpertMerging(MergeMethod):
    """Layer-wise coefficients aligning the merge's hidden states and logits to each expert on unlabeled inputs."""

    name = "expert_merging"
    title = "Expert Merging"
    reference = "https://arxiv.org/abs/2509.25712"
    calibration: int = setting(5, low=1)  # unlabeled inputs per task (--samples_per_task)
    split: Literal["train", "validation"] = "train"  # where they are drawn from (never test)
    epochs: int = setting(1, low=0)
    accumulation: int = setting(8, low=1)  # inputs per coefficient update (--gradient_accumulation_steps, batch 1)
    lr: float = setting(0.5, above=0.0)
    initial: float = setting(0.3, above=0.0)  # every coefficient's start and the regulariser's anchor; below 1
    regularisation: float = setting(5.0, low=0.0)  # gamma (--sparsity_reg_weight)
    temperature: float = setting(1.0, above=0.0)
    hidden_weight: float = setting(1.0, low=0.0)  # of the hidden-state loss (--hidden_states_weight)
    hidden_depth: float = setting(0.5, above=0.0, high=1.0)  # aligned block: round(depth x blocks); 0.5 the middle
    seed: int = 0  # of the calibration draw and order

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.initial >= 1:
            raise BenchError(f"{self.name}: initial={self.initial} must be below 1 (coefficients are sigmoids)")

    def merge(self, pool: ModelPool) -> Merged:
        pretrained = {key: pool.pretrained_tensor(key).to(pool.device) for key in pool.parameter_names}
        encoder = pool.encoder(pretrained).requires_grad_(False)
        block = self.aligned_block(encoder)
        alignment = Alignment(encoder, block, {task: pool.heads[task].to(pool.device) for task in pool.tasks},
                              self.calibration_set(pool, block), pretrained,
                              {key: pool.stacked_task_vectors(key).to(pool.device) for key in pool.parameter_names})
        final = self.refined(alignment, self.aligned(alignment, dict.fromkeys(pretrained, 1)))
        with torch.no_grad():
            return pool.encoder(final.state())

    def refined(self, alignment: Alignment, layerwise: ChunkedCoefficientMerge) -> ChunkedCoefficientMerge:
        """The final coefficients from the layer-wise ones: those themselves (Expert Merging++ refines them)."""
        return layerwise

    def aligned_block(self, encoder: nn.Module) -> int:
        """The block whose output is aligned (0-based): the round(hidden_depth x blocks)-th, at least the first."""
        return max(1, round(self.hidden_depth * len(encoder.transformer.resblocks))) - 1

    def calibration_set(self, pool: ModelPool, block: int) -> Calibration:
        inputs, tasks, positions, hidden, logits = [], [], [], [], {}
        for task in pool.tasks:
            key = ("expert_merging calibration", task, self.split, self.calibration, self.seed, block)
            task_inputs, task_hidden, logits[task] = pool.memo(key, partial(self.expert_outputs, pool, task, block))
            inputs.append(task_inputs)
            hidden.append(task_hidden)
            tasks += [task] * len(task_inputs)
            positions += range(len(task_inputs))
        return Calibration(torch.cat(inputs), tasks, positions, torch.cat(hidden), logits)

    def expert_outputs(self, pool: ModelPool, task: str, block: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A task's calibration inputs, its expert's output of the aligned block on them, and its logits: the same
        whichever experts it is merged with, so the pool keeps them for every scenario that merges it."""
        inputs = pool.sample_inputs(task, self.split, self.calibration, self.seed).to(pool.device)
        expert = pool.encoder(pool.expert_state(task))
        with torch.no_grad(), block_output(expert, block) as hidden:
            logits = pool.heads[task].to(pool.device)(expert(inputs))
        return inputs, hidden[0], logits

    def aligned(self, alignment: Alignment, chunks: dict[str, int]) -> ChunkedCoefficientMerge:
        """Coefficients (`chunks` per tensor) learned from their initial value on the calibration set."""
        model = ChunkedCoefficientMerge(alignment.pretrained, alignment.task_vectors, chunks, self.initial)
        if model.raw.numel() == 0:
            return model
        optimizer = torch.optim.AdamW([model.raw], lr=self.lr, betas=(0.9, 0.999), weight_decay=WEIGHT_DECAY)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=RESTART_PERIOD, T_mult=RESTART_GROWTH, eta_min=LR_FLOOR * self.lr)
        order = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            for batch in torch.randperm(len(alignment.calibration.tasks), generator=order).split(self.accumulation):
                optimizer.zero_grad()
                loss = self.alignment_loss(alignment, model.state(), batch.tolist())
                (loss + self.regularisation * model.regulariser()).backward()
                torch.nn.utils.clip_grad_norm_([model.raw], MAX_GRADIENT_NORM)
                optimizer.step()
                scheduler.step()
        return model

    def alignment_loss(self, alignment: Alignment, state: StateDict, batch: list[int]) -> torch.Tensor:
        """Mean over the batch's calibration inputs of the soft cross-entropy of the merged model's logits against
        the expert's, plus hidden_weight x the mean squared difference of the aligned block's outputs, each input
        against its own task's expert."""
        calibration = alignment.calibration
        with block_output(alignment.encoder, alignment.block) as hidden:
            features = functional_call(alignment.encoder, state, (calibration.inputs[batch],))
        hidden_loss = (hidden[0] - calibration.hidden[batch]).pow(2).flatten(1).mean(1)
        logit_loss = features.new_zeros(len(batch))
        for task in dict.fromkeys(calibration.tasks[index] for index in batch):
            rows = [row for row, index in enumerate(batch) if calibration.tasks[index] == task]
            targets = calibration.logits[task][[calibration.positions[batch[row]] for row in rows]]
            logit_loss[rows] = soft_cross_entropy(alignment.heads[task](features[rows]), targets, self.temperature)
        return (logit_loss + self.hidden_weight * hidden_loss).mean()


class ExpertMergingPlus(ExpertMerging):
    """Expert Merging++: more coefficients (chunks) for the tensors the layer-wise merge found most important."""

    name = "expert_merging_plus"
    title = "Expert Merging++"
    budget: float = setting(1.0, above=0.0)  # chunk coefficients per task, per parameter tensor on average (B / L)
    sharpness: float = setting(1.0, low=0.0)  # kappa: 0 spreads them evenly, above 1 on the most important tensors

    def refined(self, alignment: Alignment, layerwise: ChunkedCoefficientMerge) -> ChunkedCoefficientMerge:
        """Chunk counts from the layer-wise coefficients' importance, then chunk coefficients learned afresh."""
        with torch.no_grad():
            coefficients = {key: tensor[:, 0] for key, tensor in layerwise.tensor_coefficients().items()}
            l1_norms = {key: vectors.flatten(1).abs().sum(1) for key, vectors in alignment.task_vectors.items()}
        shares = importance(coefficients, l1_norms)
        return self.aligned(alignment, chunk_counts(shares, self.budget * len(shares), self.sharpness))
