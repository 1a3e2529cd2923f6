"""The CLIP suites: open_clip's OpenAI CLIP as the pretrained model, FusionBench's fine-tuned experts, the 8 real
datasets, zero-shot heads from the text tower.

Everything comes from the Hugging Face hub through its cache (HF_HOME, HF_HUB_OFFLINE), or from a local folder
laid out like the hub's repositories (`--zoo`). Experts are converted to open_clip's layout once and kept,
with the pretrained image tower and the heads, under the mergebench cache.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

import datasets
import open_clip
import torch
from safetensors.torch import load_file, save_file

from bench.convert import open_clip_vision_state
from bench.errors import BenchError
from bench.models import ClassificationHead, EncoderConfig, build_encoder
from bench.pool import ModelPool
from tasks.base import Suite, Task
from tasks.mini import cache_root
from tasks.zeroshot import zero_shot_head

# counterpart: (dataset repository, expert repository suffix), as FusionBench names them.
TASKS = {
    "SUN397": ("tanganke/sun397", "sun397"),
    "Cars": ("tanganke/stanford_cars", "stanford-cars"),
    "RESISC45": ("tanganke/resisc45", "resisc45"),
    "EuroSAT": ("tanganke/eurosat", "eurosat"),
    "SVHN": ("tanganke/svhn", "svhn"),
    "GTSRB": ("tanganke/gtsrb", "gtsrb"),
    "MNIST": ("tanganke/mnist", "mnist"),
    "DTD": ("tanganke/dtd", "dtd"),
}
EXPERT_FILE = "model.safetensors"
PRETRAINED_FILE = "open_clip_model.safetensors"


@dataclass(frozen=True)
class ClipSpec:
    """One CLIP suite: the open_clip model and weights tag, the experts' repository prefix, the image tower."""

    name: str
    open_clip_model: str
    experts: str  # expert repositories are f"{experts}_{suffix}"
    encoder: EncoderConfig
    pretrained_repo: str  # where open_clip keeps the weights of `pretrained_tag` (open_clip.get_pretrained_cfg)
    pretrained_tag: str = "openai"
    tasks: tuple[str, ...] = tuple(TASKS)


@dataclass(frozen=True)
class Sources:
    """Where checkpoints and datasets come from: the hub (through its cache) or, with `root`, a local folder
    holding one folder per repository, named as the repository (`clip-vit-base-patch32_sun397/model.safetensors`,
    `sun397/` with the dataset's parquet files, `<pretrained repository>/open_clip_model.safetensors`)."""

    root: Path | None = None

    def file(self, repo: str, filename: str) -> Path:
        if self.root is None:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(repo, filename))
        path = self.root / repo.split("/")[-1] / filename
        if not path.is_file():
            raise BenchError(f"{path}: missing ({repo} in the local folder {self.root})")
        return path

    def dataset(self, repo: str, split: str) -> datasets.Dataset:
        source = repo if self.root is None else str(self.root / repo.split("/")[-1])
        return datasets.load_dataset(source, split=split)


def hub_is_reachable(timeout: float = 2.0) -> bool:
    """False when HF_HUB_OFFLINE is set or the hub's host does not answer within `timeout` seconds (hub clients
    would retry for 20-45 s before failing)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def missing_from_hub_cache(spec: ClipSpec) -> list[str]:
    """The repositories the suite needs that the hub cache lacks, as `repo (type)`."""
    from huggingface_hub import constants, try_to_load_from_cache

    models = [(spec.pretrained_repo, PRETRAINED_FILE)] + [(f"{spec.experts}_{TASKS[t][1]}", EXPERT_FILE) for t in spec.tasks]
    missing = [f"{repo} (model)" for repo, filename in models if not isinstance(try_to_load_from_cache(repo, filename), str)]
    for task in spec.tasks:
        snapshots = Path(constants.HF_HUB_CACHE) / f"datasets--{TASKS[task][0].replace('/', '--')}" / "snapshots"
        if not (snapshots.is_dir() and any(snapshots.iterdir())):
            missing.append(f"{TASKS[task][0]} (dataset)")
    return missing


def check_sources(spec: ClipSpec, sources: Sources) -> None:
    """Fail at once, naming every missing repository and how to fetch it, when the hub cannot be reached."""
    if sources.root is not None or hub_is_reachable():
        return
    missing = missing_from_hub_cache(spec)
    if missing:
        from huggingface_hub import constants

        raise BenchError(f"suite {spec.name}: the Hugging Face hub is offline and its cache ({constants.HF_HUB_CACHE}) "
                         f"lacks {len(missing)} repositories: {', '.join(missing)}; fetch them where there is network "
                         f"(`hf download REPO`, with `--repo-type dataset` for datasets) or pass --zoo LOCAL_FOLDER")


def clip_suite(spec: ClipSpec, sources: Sources, device: str = "cpu") -> Suite:
    check_sources(spec, sources)
    pretrained = str(sources.file(spec.pretrained_repo, PRETRAINED_FILE)) if sources.root else spec.pretrained_tag
    model, _, preprocess = open_clip.create_model_and_transforms(spec.open_clip_model, pretrained=pretrained,
                                                                 force_quick_gelu=True)
    model.eval()
    *to_tensor, normalize = preprocess.transforms  # corruptions apply to pixels, between the two
    pixels = open_clip.transform.Compose(to_tensor)
    origin = "hub" if sources.root is None else hashlib.sha256(str(sources.root.resolve()).encode()).hexdigest()[:12]
    cache = cache_root() / "clip" / spec.name / origin  # conversions of one source never serve another
    cache.mkdir(parents=True, exist_ok=True)
    pretrained_path = cache / "pretrained.safetensors"
    if not pretrained_path.is_file():
        save_atomically({k: v.contiguous() for k, v in model.visual.state_dict().items()}, pretrained_path)
    projection = model.visual.proj.detach().T  # transformers' layout: [embed_dim, width]

    tasks, experts = {}, {}
    tokenizer = open_clip.get_tokenizer(spec.open_clip_model)
    for counterpart in spec.tasks:
        dataset_repo, suffix = TASKS[counterpart]
        name = counterpart.lower()
        load_split = partial(sources.dataset, dataset_repo)
        class_names = tuple(load_split("test").features["label"].names)
        head = cached_head(cache / f"head-{name}.safetensors", partial(
            zero_shot_head, model.encode_text, tokenizer, counterpart, class_names, model.logit_scale.exp().item()))
        tasks[name] = Task(name=name, counterpart=counterpart, class_names=class_names, load_split=load_split,
                           to_pixels=lambda images: torch.stack([pixels(image) for image in images]),
                           normalize=normalize, head=head, corruption_profile="imagenet")
        experts[name] = cache / f"expert-{name}.safetensors"
        if not experts[name].is_file():
            repo = f"{spec.experts}_{suffix}"
            checkpoint = sources.file(repo, EXPERT_FILE)
            save_atomically(open_clip_vision_state(load_file(str(checkpoint)), projection, str(checkpoint)), experts[name])
    pool = ModelPool(partial(build_encoder, spec.encoder, quick_gelu=True), pretrained_path, experts,
                     {name: task.head for name, task in tasks.items()},
                     sample_inputs=lambda task, split, n, seed: tasks[task].sample(split, n, seed), device=device)
    return Suite(name=spec.name, tasks=tasks, pool=pool, provenance={"family": f"fusionbench:{spec.experts}"})


def cached_head(path: Path, build: Callable[[], ClassificationHead]) -> ClassificationHead:
    """A zero-shot head, computed once (the text tower over every prompt) and kept as safetensors."""
    if path.is_file():
        stored = load_file(str(path))
        return ClassificationHead(stored["class_vectors"], float(stored["logit_scale"]))
    head = build()
    save_atomically({"class_vectors": head.class_vectors, "logit_scale": torch.tensor(head.logit_scale)}, path)
    return head


def save_atomically(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Written under a temporary name and renamed: a run killed while writing leaves no partial file in the cache."""
    partial_path = path.with_name(path.name + ".tmp")
    save_file(tensors, str(partial_path))
    os.replace(partial_path, path)


SPECS = {spec.name: spec for spec in (
    ClipSpec("clip-vit-b-32", "ViT-B-32", "tanganke/clip-vit-base-patch32",
             EncoderConfig(image_size=224, patch_size=32, width=768, layers=12, heads=12, embed_dim=512),
             "timm/vit_base_patch32_clip_224.openai"),
    ClipSpec("clip-vit-b-16", "ViT-B-16", "tanganke/clip-vit-base-patch16",
             EncoderConfig(image_size=224, patch_size=16, width=768, layers=12, heads=12, embed_dim=512),
             "timm/vit_base_patch16_clip_224.openai"),
    ClipSpec("clip-vit-l-14", "ViT-L-14", "tanganke/clip-vit-large-patch14",
             EncoderConfig(image_size=224, patch_size=14, width=1024, layers=24, heads=16, embed_dim=768),
             "timm/vit_large_patch14_clip_224.openai"),
)}
