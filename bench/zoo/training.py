"""Training loops of the mini zoo: contrastive-style pretraining over all families, then one expert per task.

Both loops train the image encoder against frozen, normalised class embeddings (the analogue of CLIP's text
heads), so the pretrained model is zero-shot usable and every expert keeps the head it was evaluated with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.models import ClassificationHead


@dataclass(frozen=True)
class Schedule:
    """AdamW with linear warm-up and cosine decay."""

    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_fraction: float = 0.05


def _optimizer(model: nn.Module, schedule: Schedule) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": schedule.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=schedule.lr)
    warmup = max(1, int(schedule.warmup_fraction * schedule.steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, schedule.steps - warmup)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _batches(n: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Indices of `steps` batches, drawn as shuffled epochs over n items."""
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if len(order) < batch_size:
            order = torch.cat([order, torch.randperm(n, generator=generator)])
        yield order[:batch_size]
        order = order[batch_size:]


def train_encoder(
    encoder: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    class_vectors: torch.Tensor,
    allowed: torch.Tensor,
    logit_scale: float,
    schedule: Schedule,
    seed: int,
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Minimise cross-entropy of `encoder` through fixed `class_vectors`; returns the loss per step.

    `allowed[i]` masks the classes sample i competes among (its own task's classes), so one loop serves the
    multi-task pretraining (all tasks' classes stacked) and a single expert (one task, all allowed).
    """
    device = next(encoder.parameters()).device
    head = ClassificationHead(class_vectors, logit_scale).to(device)
    optimizer, scheduler = _optimizer(encoder, schedule)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    encoder.train()
    for step, index in enumerate(_batches(len(inputs), schedule.batch_size, schedule.steps, generator)):
        x, y, mask = inputs[index].to(device), targets[index].to(device), allowed[index].to(device)
        logits = head(encoder(x)).masked_fill(~mask, float("-inf"))
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step, loss.item())
    encoder.eval()
    return losses
