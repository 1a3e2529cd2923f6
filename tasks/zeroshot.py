"""Zero-shot classification heads from a CLIP text tower: each class is the mean of its prompts' embeddings.

The prompt templates are those of the task-vectors work (Ilharco et al., 2023; mlfoundations/task_vectors,
src/datasets/templates.py), which the model-merging papers and FusionBench build their heads with; one set
per dataset of the 8-task benchmark, keyed by the task's name there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from bench.errors import BenchError
from bench.models import ClassificationHead

_PHOTO = ("a photo of a {}.", "a photo of the {}.")
_NUMBER = ('a photo of the number: "{}".',)
_AERIAL = tuple(f"{source} {view} of {article}{{}}." for article in ("", "a ", "the ")
                for view in ("imagery", "photo", "view") for source in ("satellite", "aerial"))

TEMPLATES: dict[str, tuple[str, ...]] = {
    "SUN397": _PHOTO,
    "Cars": _PHOTO + ("a photo of my {}.", "i love my {}!", "a photo of my dirty {}.", "a photo of my clean {}.",
                      "a photo of my new {}.", "a photo of my old {}."),
    "RESISC45": _AERIAL,
    "EuroSAT": ("a centered satellite photo of {}.", "a centered satellite photo of a {}.",
                "a centered satellite photo of the {}."),
    "SVHN": _NUMBER,
    "GTSRB": ('a zoomed in photo of a "{}" traffic sign.', 'a centered photo of a "{}" traffic sign.',
              'a close up photo of a "{}" traffic sign.'),
    "MNIST": _NUMBER,
    "DTD": tuple(f"a photo of {article} {{}} {noun}." for article in ("a", "the")
                 for noun in ("texture", "pattern", "thing", "object")),
}

# Token ids of a batch of texts ([N, context]) and their embeddings ([N, embed_dim]).
Tokenize = Callable[[list[str]], torch.Tensor]
EncodeText = Callable[[torch.Tensor], torch.Tensor]


def prompts(task: str, class_name: str) -> list[str]:
    if task not in TEMPLATES:
        raise BenchError(f"no prompt templates for task {task!r}; known: {', '.join(TEMPLATES)}")
    return [template.format(class_name) for template in TEMPLATES[task]]


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
