"""Zero-shot classification heads from a CLIP text tower: each class is the mean of its prompts' embeddings.

Each task's prompt templates are in its record (`tasks/registry.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from core.models import ClassificationHead
from tasks.registry import task_record

# Token ids of a batch of texts ([N, context]) and their embeddings ([N, embed_dim]).
Tokenize = Callable[[list[str]], torch.Tensor]
EncodeText = Callable[[torch.Tensor], torch.Tensor]


def prompts(task: str, class_name: str) -> list[str]:
    return [template.format(class_name) for template in task_record(task).templates]


@torch.no_grad()
def class_vectors(encode_text: EncodeText, tokenize: Tokenize, task: str, class_names: Sequence[str]) -> torch.Tensor:
    """[classes, embed_dim]: per class, its prompts' embeddings, each normalised, averaged and normalised again
    (the task-vectors recipe)."""
    vectors = []
    for name in class_names:
        embeddings = F.normalize(encode_text(tokenize(prompts(task, name))).float(), dim=-1)
        vectors.append(F.normalize(embeddings.mean(0), dim=-1))
    return torch.stack(vectors)


def zero_shot_head(encode_text: EncodeText, tokenize: Tokenize, task: str, class_names: Sequence[str],
                   logit_scale: float) -> ClassificationHead:
    """The frozen head of `task`: cosine similarity to the class vectors times CLIP's learned logit scale."""
    return ClassificationHead(class_vectors(encode_text, tokenize, task, class_names), logit_scale)
