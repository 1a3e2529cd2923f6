"""The CLIP suites: open_clip's OpenAI CLIP as the pretrained model, fine-tuned experts of one of two checkpoint
families, the real datasets of 8, 14 or 20 tasks, zero-shot heads from the text tower.

The families: FusionBench's experts (`tanganke/clip-vit-*`, transformers' layout), and the task-vectors ones the
AdaMerging and WEMoE papers used (ImageEncoder modules pickled whole, read by `tasks/pickled.py` without running
their code; pretrained image tower from their `zeroshot.pt`), or the TALL-masks ones of the 14- and 20-task papers
(the same encoders' state dicts; `tasks/hub.py` names both layouts). Everything else comes from the Hugging Face hub
through its cache (HF_HOME, HF_HUB_OFFLINE), or from a local folder laid out like the hub's repositories;
`tasks/hub.py` names the repositories. Experts are converted to open_clip's layout once and kept, with the
pretrained image tower and the heads, under the mergebench cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import open_clip
import torch
from safetensors.torch import load_file, save_file

from core.atomic import write_atomically
from core.digest import remembered_sha256, weights_digest
from core.errors import BenchError
from core.models import CLIP_ENCODERS, ClassificationHead, EncoderConfig, build_encoder
from core.pool import ModelPool
from tasks.base import Suite, Task
from tasks.convert import open_clip_vision_state
from tasks.hub import CLIP_SUITES, EXPERT_FILE, PRETRAINED_FILE, HubRepos, Sources, check_available
from tasks.mini import cache_root
from tasks.pickled import load_module_state
from tasks.registry import task_record
from tasks.zeroshot import zero_shot_head

# The preset each method runs with on the CLIP suites: Fisher merging's sampled estimator, since their heads have
# up to 397 classes (see methods/fisher.py).
CLIP_PRESETS = {"fisher_merging": "sampled"}


@dataclass(frozen=True)
class ClipSpec:
    """One CLIP suite: the open_clip model and weights tag, the image tower's shape, its repositories."""

    name: str
    open_clip_model: str
    encoder: EncoderConfig
    repos: HubRepos  # `pretrained` holds open_clip's weights of `pretrained_tag` (open_clip.get_pretrained_cfg)
    pretrained_tag: str = "openai"


def clip_suite(spec: ClipSpec, sources: Sources, device: str = "cpu") -> Suite:
    check_available(spec.name, spec.repos, sources)
    pretrained = str(sources.file(spec.repos.pretrained, PRETRAINED_FILE)) if sources.root else spec.pretrained_tag
    model, _, preprocess = open_clip.create_model_and_transforms(spec.open_clip_model, pretrained=pretrained,
                                                                 force_quick_gelu=True)
    model.eval()
    *to_tensor, normalize = preprocess.transforms  # corruptions apply to pixels, between the two
    pixels = open_clip.transform.Compose(to_tensor)
    origin_of = sources.checkpoints if spec.repos.experts is None else sources.root
    origin = "hub" if origin_of is None else hashlib.sha256(str(origin_of.resolve()).encode()).hexdigest()[:12]
    cache = cache_root() / "clip" / spec.name / origin  # conversions of one source never serve another
    cache.mkdir(parents=True, exist_ok=True)
    pretrained_path = cache / "pretrained.safetensors"
    projection = model.visual.proj.detach().T  # transformers' layout: [embed_dim, width]
    if spec.repos.experts is None:
        family = f"task-vectors:{spec.open_clip_model}"  # + the digest of the weights, below
        pretrained_state = partial(task_vectors_image_tower, sources.task_vectors_file())
        expert_state = lambda counterpart: task_vectors_image_tower(sources.task_vectors_file(counterpart))
    else:
        family = f"fusionbench:{spec.repos.experts}"
        pretrained_state = lambda: {k: v.contiguous() for k, v in model.visual.state_dict().items()}
        expert_state = partial(fusionbench_image_tower, sources, spec.repos, projection)
    if not pretrained_path.is_file():
        save_atomically(pretrained_state(), pretrained_path)

    tasks, experts, head_files = {}, {}, {}
    tokenizer = open_clip.get_tokenizer(spec.open_clip_model)
    for counterpart in spec.repos.tasks:
        name, record = counterpart.lower(), task_record(counterpart)
        load_split = partial(sources.dataset, record)
        class_names = tuple(load_split("test").features["label"].names)
        head_files[name] = cache / f"head-{name}.safetensors"
        head = cached_head(head_files[name], partial(
            zero_shot_head, model.encode_text, tokenizer, counterpart, class_names, model.logit_scale.exp().item()))
        tasks[name] = Task(name=name, counterpart=counterpart, class_names=class_names, load_split=load_split,
                           to_pixels=lambda images: torch.stack([pixels(image) for image in images]),
                           normalize=normalize, head=head, corruption_profile="imagenet", splits=record.splits,
                           shipped_splits=frozenset(sources.split_names(record.dataset)))
        experts[name] = cache / f"expert-{name}.safetensors"
        if not experts[name].is_file():
            save_atomically(expert_state(counterpart), experts[name])
    weights = [pretrained_path, *experts.values(), *head_files.values()]
    family += "@" + weights_digest({path.name: remembered_sha256(path) for path in weights})
    pool = ModelPool(partial(build_encoder, spec.encoder, quick_gelu=True), pretrained_path, experts,
                     {name: task.head for name, task in tasks.items()},
                     sample_inputs=lambda task, split, n, seed: tasks[task].sample(split, n, seed), device=device)
    return Suite(name=spec.name, tasks=tasks, pool=pool, provenance={"family": family}, presets=CLIP_PRESETS)


def fusionbench_image_tower(sources: Sources, repos: HubRepos, projection: torch.Tensor,
                            counterpart: str) -> dict[str, torch.Tensor]:
    """A FusionBench expert (transformers' CLIPVisionModel) as open_clip's image tower."""
    checkpoint = sources.file(repos.expert(counterpart), EXPERT_FILE)
    return open_clip_vision_state(load_file(str(checkpoint)), projection, str(checkpoint))


def task_vectors_image_tower(path: Path) -> dict[str, torch.Tensor]:
    """The image tower of a task-vectors checkpoint: an ImageEncoder pickled whole, whose open_clip CLIP is
    `model` (so its image tower's weights are `model.visual.*`)."""
    state = load_module_state(path)
    tower = {k.removeprefix("model.visual."): v.contiguous() for k, v in state.items() if k.startswith("model.visual.")}
    if not tower:
        raise BenchError(f"{path}: no `model.visual.*` weights; expected a task-vectors ImageEncoder checkpoint")
    return tower


def cached_head(path: Path, build: Callable[[], ClassificationHead]) -> ClassificationHead:
    """A zero-shot head, computed once (the text tower over every prompt) and kept as safetensors."""
    if path.is_file():
        stored = load_file(str(path))
        return ClassificationHead(stored["class_vectors"], float(stored["logit_scale"]))
    head = build()
    save_atomically({"class_vectors": head.class_vectors, "logit_scale": torch.tensor(head.logit_scale)}, path)
    return head


def save_atomically(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Into the cache whole or not at all (a run killed while writing leaves no partial file)."""
    write_atomically(path, lambda partial_path: save_file(tensors, str(partial_path)))


OPEN_CLIP_MODELS = {"clip-vit-b-32": "ViT-B-32", "clip-vit-b-16": "ViT-B-16", "clip-vit-l-14": "ViT-L-14"}
SPECS = {name: ClipSpec(name, OPEN_CLIP_MODELS[backbone], CLIP_ENCODERS[OPEN_CLIP_MODELS[backbone]], repos)
         for name, (backbone, repos) in CLIP_SUITES.items()}
