"""`python -m bench zoo build`: train the mini zoo from its recipe and write it with a manifest."""

from __future__ import annotations

import copy
import json
import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from bench.evaluation import accuracy
from bench.machine import cpu_name
from bench.zoo import embeddings
from bench.zoo.recipe import ZooRecipe
from bench.zoo.training import train_encoder
from core.atomic import publish_folder
from core.errors import BenchError
from core.models import ClassificationHead, build_encoder
from tasks.base import decode_split, tensor_batches
from tasks.families import FAMILIES, render
from tasks.mini import load_split, pixels_to_inputs, preprocess
from tasks.zoo_manifest import MANIFEST, verify_zoo, write_manifest

log = logging.getLogger(__name__)


def class_vectors(recipe: ZooRecipe) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per task, the class embeddings of pretraining and those of the frozen zero-shot heads
    (`bench/zoo/embeddings.py`)."""
    names = {task: FAMILIES[task].class_names for task in recipe.tasks}
    for task, classes in names.items():
        if 2 * len(classes) > recipe.encoder.embed_dim:
            raise ValueError(f"recipe: embed_dim {recipe.encoder.embed_dim} < 2 x {len(classes)} classes of {task}")
    scheme = embeddings.SCHEMES[recipe.class_embeddings]
    return scheme(names, recipe.encoder.embed_dim, recipe.seed, recipe.head_fidelity)


def _pretraining_set(recipe: ZooRecipe, vectors: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Images of every family at the pretraining nuisance, labelled in the stacked class space of all tasks.

    Each image competes among its own task's classes (`pretrain_contrast` "own-task"), or among every task's
    ("all-tasks", as CLIP's captions compete across the web), where a class of the same name in another task is
    the same caption and so no rival: the encoder then has to tell the tasks apart, as CLIP's features do."""
    offsets = np.cumsum([0] + [len(vectors[t]) for t in recipe.tasks])
    stacked_names = [name for task in recipe.tasks for name in FAMILIES[task].class_names]
    inputs, targets, allowed = [], [], []
    for offset, end, task in zip(offsets[:-1], offsets[1:], recipe.tasks):
        images, labels = render(task, recipe.seed + 1, recipe.pretrain_images_per_task, recipe.pretrain_nuisance,
                                "pretrain")
        inputs.append(pixels_to_inputs(images))
        targets.append(torch.as_tensor(labels) + int(offset))
        rivals = torch.zeros(int(offsets[-1]), dtype=torch.bool)
        rivals[offset:end] = True
        if recipe.pretrain_contrast == "all-tasks":
            own = set(FAMILIES[task].class_names)
            rivals |= torch.tensor([name not in own for name in stacked_names])
        allowed.append(rivals.expand(len(labels), -1))
    return torch.cat(inputs), torch.cat(targets), torch.cat([vectors[t] for t in recipe.tasks]), torch.cat(allowed)


def build_zoo(recipe: ZooRecipe, out_dir: Path, device: str = "cpu", pretrained_from: Path | None = None) -> dict:
    """Train pretrained model and experts, evaluate them, and write weights, heads and manifest to out_dir.

    With `pretrained_from` (a zoo of the same recipe but for its fine-tuning schedule), its pretrained model
    and heads are reused and only the experts are trained: minutes instead of the pretraining's quarter hour,
    and the experts of two schedules then differ by their fine-tuning alone.
    """
    source = None if pretrained_from is None else reusable_pretraining(recipe, pretrained_from)
    torch.manual_seed(recipe.seed)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    splits = {task: {split: decode_split(load_split(task, split, recipe.data), preprocess)
                     for split in ("train", "test")}
              for task in recipe.tasks}
    if source is None:
        pretrain_vectors, head_vectors = class_vectors(recipe)
        pretrain_set = _pretraining_set(recipe, pretrain_vectors)
        timings["data_s"] = time.perf_counter() - started
        encoder = build_encoder(recipe.encoder).to(device)
        start = time.perf_counter()
        log.info("pretraining %d steps on %d images", recipe.pretrain.steps, len(pretrain_set[0]))
        with tqdm(total=recipe.pretrain.steps, desc="pretraining", unit="step") as bar:
            losses = train_encoder(encoder, *pretrain_set, recipe.logit_scale, recipe.pretrain, recipe.seed,
                                   progress=_advance(bar))
        timings["pretrain_s"] = time.perf_counter() - start
        pretrain_loss = float(np.mean(losses[-100:]))
    else:
        timings["data_s"] = time.perf_counter() - started
        encoder = build_encoder(recipe.encoder)
        encoder.load_state_dict(load_file(str(pretrained_from / "pretrained.safetensors")))
        encoder.to(device)
        head_vectors = load_file(str(pretrained_from / "heads.safetensors"))
        pretrain_loss = source["pretrain_final_loss"]
        log.info("pretrained model and heads from %s (recipe %s)", pretrained_from, source["recipe_hash"])
    pretrained_state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}

    heads = {task: ClassificationHead(head_vectors[task], recipe.logit_scale) for task in recipe.tasks}
    accuracies: dict[str, dict[str, float]] = {"pretrained": {}, "expert": {}}
    expert_states = {}
    for index, task in enumerate(recipe.tasks):
        test_inputs, test_labels = splits[task]["test"]
        accuracies["pretrained"][task] = accuracy(encoder, heads[task], tensor_batches(test_inputs, test_labels, 1000))
        expert = copy.deepcopy(encoder)
        train_inputs, train_labels = splits[task]["train"]
        start = time.perf_counter()
        allowed = torch.ones(len(train_labels), len(head_vectors[task]), dtype=torch.bool)
        with tqdm(total=recipe.finetune.steps, desc=f"expert {task}", unit="step") as bar:
            train_encoder(expert, train_inputs, train_labels, head_vectors[task], allowed, recipe.logit_scale,
                          recipe.finetune, recipe.seed + 1 + index, progress=_advance(bar))
        timings[f"finetune_{task}_s"] = time.perf_counter() - start
        accuracies["expert"][task] = accuracy(expert, heads[task], tensor_batches(test_inputs, test_labels, 1000))
        expert_states[task] = {k: v.detach().cpu().contiguous() for k, v in expert.state_dict().items()}
        log.info("%s: pretrained %.1f%%, expert %.1f%%", task, 100 * accuracies["pretrained"][task],
                 100 * accuracies["expert"][task])
    timings["total_s"] = time.perf_counter() - started

    machine = {"platform": platform.platform(), "cpu": cpu_name(), "device": device,
               "threads": torch.get_num_threads(), "torch": torch.__version__}

    def write(staging: Path) -> dict:
        (staging / "experts").mkdir(parents=True)
        save_file(pretrained_state, str(staging / "pretrained.safetensors"))
        save_file(head_vectors, str(staging / "heads.safetensors"))
        for task, state in expert_states.items():
            save_file(state, str(staging / "experts" / f"{task}.safetensors"))
        return write_manifest(staging, recipe.to_dict(), recipe.data.fingerprint(recipe.tasks), accuracies,
                              pretrain_loss, timings, machine,
                              pretrained_from=None if source is None else source["recipe_hash"])

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return publish_folder(out_dir, write, replace=True)  # an interrupted build leaves no half zoo


def reusable_pretraining(recipe: ZooRecipe, zoo: Path) -> dict:
    """The manifest of `zoo`, once its files are verified and its recipe is `recipe` in all but the experts'
    fine-tuning schedule; otherwise its pretrained model is not this recipe's, and the first difference is named."""
    manifest = verify_zoo(zoo)
    theirs, ours = _dotted(manifest["recipe"]), _recipe_keys(recipe)
    # A field added to the recipe after that zoo was built holds its default there: the value that reproduces the
    # zoos built before it.
    theirs |= {key: value for key, value in _recipe_keys(ZooRecipe()).items() if key not in theirs}
    for key in sorted(theirs.keys() | ours.keys()):
        if not key.startswith("finetune.") and theirs.get(key) != ours.get(key):
            raise BenchError(f"{zoo / MANIFEST}: recipe {key} is {theirs.get(key)!r}, this build's is "
                             f"{ours.get(key)!r}: only the fine-tuning schedule may differ from the zoo whose "
                             f"pretrained model is reused")
    fingerprint = recipe.data.fingerprint(recipe.tasks)
    if manifest["data_fingerprint"] != fingerprint:
        raise BenchError(f"{zoo / MANIFEST}: built on other task data (fingerprint {manifest['data_fingerprint']}, now "
                         f"{fingerprint}): the task generators changed since")
    return manifest


def _recipe_keys(recipe: ZooRecipe) -> dict:
    """The recipe's fields as its manifest stores them (JSON types), flattened to `a.b` keys."""
    return _dotted(json.loads(json.dumps(recipe.to_dict())))


def _dotted(tree: dict, prefix: str = "") -> dict:
    """A nested dict flattened to `a.b.c` keys."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _advance(bar: tqdm) -> Callable[[int, float], None]:
    """A training-loop callback that moves the progress bar and shows the loss now and then."""
    def update(step: int, loss: float) -> None:
        bar.update()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss:.3f}")
    return update

