"""Where the CLIP suites' weights and datasets live (the Hugging Face hub, or a local folder laid out like it),
and whether they can be had.

Light on purpose (no torch, no hub client at import): `bench` decides online or offline, and fails on what is
missing, before importing any model code, since hub clients retry for 20-45 s before failing offline.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from core.errors import BenchError
from tasks.registry import GROUPS, TaskRecord, task_record

log = logging.getLogger(__name__)

EXPERT_FILE = "model.safetensors"
PRETRAINED_FILE = "open_clip_model.safetensors"


@dataclass(frozen=True)
class CheckpointLayout:
    """Where a folder of torch checkpoints of open_clip image encoders (one folder per model, such as
    checkpoints/ViT-B-32/) keeps the pretrained encoder and each task's fine-tuned one, named by the task's record."""

    name: str
    pretrained: str
    expert: str

    def files(self, tasks: tuple[str, ...]) -> list[str]:
        return [self.pretrained] + [self.expert.format(task=task) for task in tasks]

    def describe(self) -> str:
        return f"the {self.name} layout: {self.pretrained} and {self.expert.format(task='TASK')} per task"


# The task-vectors checkpoints (github.com/mlfoundations/task_vectors, as the AdaMerging and WEMoE papers used
# them), and the TALL-masks ones of the 14- and 20-task benchmarks (github.com/nik-dim/tall_masks,
# src/utils/variables_and_paths.py: state dicts, a pretrained copy in every task's folder, read from MNISTVal's;
# TSV-M's and Iso-C's code read them so too).
TASK_VECTORS_LAYOUT = CheckpointLayout("task-vectors", "zeroshot.pt", "{task}/finetuned.pt")
TALL_MASKS_LAYOUT = CheckpointLayout("TALL-masks", "MNISTVal/nonlinear_zeroshot.pt", "{task}Val/nonlinear_finetuned.pt")


def checkpoint_layout(folder: Path) -> CheckpointLayout:
    """The TALL-masks layout for a folder with its `*Val/` task folders and no task-vectors zeroshot.pt, else
    the task-vectors one."""
    tall = not (folder / TASK_VECTORS_LAYOUT.pretrained).is_file() and any(folder.glob("*Val/nonlinear_*.pt"))
    return TALL_MASKS_LAYOUT if tall else TASK_VECTORS_LAYOUT


@dataclass(frozen=True)
class HubRepos:
    """The repositories of one CLIP suite: open_clip's weights, and the experts as f"{experts}_{suffix}" (None:
    the experts are task-vectors or TALL-masks checkpoints in a local folder; the hub still serves the text tower
    and data), for its tasks (names of task records)."""

    pretrained: str
    experts: str | None
    tasks: tuple[str, ...] = GROUPS["8-task"]

    def expert(self, task: str) -> str:
        suffix = task_record(task).expert_suffix
        if suffix is None:
            raise BenchError(f"task {task}: FusionBench ships no expert of it (tasks/registry.py); its suites over 20 "
                             f"tasks take EMNISTLetters (group 20-task-fusionbench), the task-vectors suites EMNIST")
        return f"{self.experts}_{suffix}"

    def needed(self) -> list[tuple[str, str | None]]:
        """(repository, file) of open_clip's weights and each expert's, then (repository, None) of each dataset."""
        experts = [(self.expert(task), EXPERT_FILE) for task in self.tasks] if self.experts is not None else []
        datasets = [(task_record(task).dataset, None) for task in self.tasks]
        return [(self.pretrained, PRETRAINED_FILE), *experts, *datasets]

    def missing_from_cache(self) -> list[str]:
        """The repositories the hub cache lacks, as `repo (type)`."""
        from huggingface_hub import constants, try_to_load_from_cache

        def cached(repo: str, file: str | None) -> bool:
            if file is not None:
                return isinstance(try_to_load_from_cache(repo, file), str)
            snapshots = Path(constants.HF_HUB_CACHE) / f"datasets--{repo.replace('/', '--')}" / "snapshots"
            return snapshots.is_dir() and any(snapshots.iterdir())

        return [f"{repo} ({'dataset' if file is None else 'model'})" for repo, file in self.needed()
                if not cached(repo, file)]

    def missing_from_folder(self, root: Path) -> list[str]:
        """What a local folder laid out like the hub (see `Sources`) lacks, as paths under it."""
        folders = [(root / repo.split("/")[-1], file) for repo, file in self.needed()]
        return [str(folder / file if file else folder) for folder, file in folders
                if not ((folder / file).is_file() if file else folder.is_dir())]


# The CLIP backbones: open_clip's OpenAI weights (as timm's hub copies) and FusionBench's experts of each.
CLIP_BACKBONES = {
    "clip-vit-b-32": ("timm/vit_base_patch32_clip_224.openai", "tanganke/clip-vit-base-patch32"),
    "clip-vit-b-16": ("timm/vit_base_patch16_clip_224.openai", "tanganke/clip-vit-base-patch16"),
    "clip-vit-l-14": ("timm/vit_large_patch14_clip_224.openai", "tanganke/clip-vit-large-patch14"),
}
# A suite's name suffix to its task groups (tasks/registry.py): over FusionBench's experts, and over the
# task-vectors or TALL-masks checkpoints (FusionBench's 20 tasks hold EMNIST's letters, the TALL-masks code's its
# digits).
TASK_COUNTS = {"": ("8-task", "8-task"), "-tall14": ("14-task", "14-task"),
               "-tall20": ("20-task-fusionbench", "20-task")}
CLIP_SUITES: dict[str, tuple[str, HubRepos]] = {}  # a suite's name to its backbone's and its repositories
for _kind in ("", "-task-vectors"):
    for _count, _groups in TASK_COUNTS.items():
        for _backbone, (_pretrained, _experts) in CLIP_BACKBONES.items():
            CLIP_SUITES[f"{_backbone}{_kind}{_count}"] = (_backbone, HubRepos(
                _pretrained, None if _kind else _experts, GROUPS[_groups[1] if _kind else _groups[0]]))
CLIP_REPOS = {name: repos for name, (_, repos) in CLIP_SUITES.items()}


@dataclass(frozen=True)
class Sources:
    """Where checkpoints and datasets come from: the hub (through its cache) or, with `root`, a local folder
    holding one folder per repository, named as the repository (`clip-vit-base-patch32_sun397/model.safetensors`,
    `sun397/` with the dataset's parquet files, `vit_base_patch32_clip_224.openai/open_clip_model.safetensors`);
    `checkpoints`: the task-vectors checkpoints folder of a suite whose experts come from one."""

    root: Path | None = None
    checkpoints: Path | None = None

    @classmethod
    def for_suite(cls, suite: str, zoo: Path | None) -> Sources:
        """What `--zoo` means for a CLIP suite: its task-vectors checkpoints, or a local copy of its repositories."""
        return cls(checkpoints=zoo) if CLIP_REPOS[suite].experts is None else cls(root=zoo)

    def task_vectors_file(self, task: str | None = None) -> Path:
        """The checkpoint of `task`'s expert, or of the pretrained model, in the folder's layout."""
        assert self.checkpoints is not None
        layout = checkpoint_layout(self.checkpoints)
        return self.checkpoints / (layout.expert.format(task=task) if task else layout.pretrained)

    def file(self, repo: str, filename: str) -> Path:
        if self.root is None:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(repo, filename))
        path = self.root / repo.split("/")[-1] / filename
        if not path.is_file():
            raise BenchError(f"{path}: missing ({repo} in the local folder {self.root})")
        return path

    def dataset(self, record: TaskRecord, split: str):  # -> datasets.Dataset (imported here only when used)
        """A split of a task's dataset as every task reads it (`as_task_columns`): `test` is the record's
        `test_split`; `validation` its `validation_split` where the dataset ships it, else the held-out slice of
        its train split (`held_out_validation`); any other split the dataset's own of that name."""
        import datasets

        source = self._dataset_source(record.dataset)
        hub_split = {"test": record.test_split, "validation": record.validation_split}.get(split, split)
        if split == "validation" and hub_split not in self.split_names(record.dataset):
            train = as_task_columns(datasets.load_dataset(source, split="train"), record)
            return train.select(held_out_validation(len(train)))
        return as_task_columns(datasets.load_dataset(source, split=hub_split), record)

    def split_names(self, repo: str) -> list[str]:
        import datasets

        return datasets.get_dataset_split_names(self._dataset_source(repo))

    def _dataset_source(self, repo: str) -> str:
        return repo if self.root is None else str(self.root / repo.split("/")[-1])


def as_task_columns(rows, record: TaskRecord):  # datasets.Dataset -> datasets.Dataset
    """A split with the columns every task reads: `image`, and `label` as a ClassLabel naming the classes, the
    record's `class_names` where it has them (the integer labels kept; a bool label read as 0/1). The label
    column is replaced in memory, so the images are not rewritten."""
    import datasets

    renamed = {column: name for column, name in ((record.image_column, "image"), (record.label_column, "label"))
               if column != name}
    rows = rows.rename_columns(renamed) if renamed else rows
    if record.class_names is None:
        return rows
    labels = [int(label) for label in rows["label"]]
    return rows.remove_columns("label").add_column(
        "label", labels, feature=datasets.ClassLabel(names=list(record.class_names)))


VALIDATION_FRACTION, MAX_VALIDATION, VALIDATION_SEED = 0.1, 5000, 0


def held_out_validation(train_size: int) -> list[int]:
    """Positions of the validation slice of a train split of `train_size` examples, by the task-vectors code's
    rule (github.com/mlfoundations/task_vectors, src/datasets/registry.py, `split_train_into_train_val`, the
    `...Val` datasets its experts were fine-tuned without): 10% of the train split, at most 5,000 examples, the
    last part of `torch.utils.data.random_split(train, [rest, validation])` with generator seed 0.

    The same positions as that code's; the same images where the split lists them in the same order (the hub
    copies need not list them as torchvision does). The task-vectors experts never saw this slice; FusionBench's
    experts were fine-tuned on whole train splits, so for them it is held-out data of the task, not unseen data.
    """
    import torch

    size = min(int(train_size * VALIDATION_FRACTION), MAX_VALIDATION)
    order = torch.randperm(train_size, generator=torch.Generator().manual_seed(VALIDATION_SEED)).tolist()
    return order[train_size - size:]


def hub_is_reachable(timeout: float = 2.0) -> bool:
    """Whether the hub's host (HF_ENDPOINT) answers on 443 within `timeout` seconds."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # what huggingface_hub reads as set


def settle_offline_mode(needs_hub: bool) -> None:
    """Go offline (HF_HUB_OFFLINE and datasets' twin) for work that needs no hub (the mini suite), and for work
    that does when the hub does not answer, unless the user already set it: an unset or false HF_HUB_OFFLINE
    would otherwise cost the hub clients' retries, tens of seconds, before a missing file is named. Call before
    any hub client is imported."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in TRUE_VALUES:
        return
    if needs_hub and hub_is_reachable():
        return
    if needs_hub:
        log.info("the Hugging Face hub does not answer: working offline, from its cache")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"


def reads_hub(suite: str | None, zoo: Path | None) -> bool:
    """Whether a run of `suite` with this `--zoo` reads from the hub."""
    return suite in CLIP_REPOS and (zoo is None or CLIP_REPOS[suite].experts is None)


def check_available(suite: str, repos: HubRepos, sources: Sources) -> None:
    """Fail at once naming what is missing: a suite's task-vectors checkpoints; what a local folder lacks;
    offline, every repository missing from the hub cache, and how to fetch it."""
    if repos.experts is None:
        check_task_vectors_folder(suite, repos, sources.checkpoints)
    if sources.root is not None:
        missing = repos.missing_from_folder(sources.root)
        if missing:
            raise BenchError(f"suite {suite}: the local folder {sources.root} lacks {len(missing)} of the files and "
                             f"dataset folders it needs: {', '.join(missing)}")
        return
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        return
    missing = repos.missing_from_cache()
    if missing:
        raise BenchError(f"suite {suite}: the Hugging Face hub is offline and its cache ({constants.HF_HUB_CACHE}) "
                         f"lacks {len(missing)} repositories: {', '.join(missing)}; fetch them where there is network "
                         f"(`hf download REPO`, with `--repo-type dataset` for datasets) or pass --zoo LOCAL_FOLDER")


def check_task_vectors_folder(suite: str, repos: HubRepos, folder: Path | None) -> None:
    if folder is None:
        raise BenchError(f"suite {suite}: its experts are task-vectors checkpoints (github.com/mlfoundations/"
                         f"task_vectors) or TALL-masks ones (github.com/nik-dim/tall_masks); pass --zoo FOLDER holding "
                         f"{', '.join(TASK_VECTORS_LAYOUT.files(repos.tasks))}, or {TALL_MASKS_LAYOUT.describe()}")
    layout = checkpoint_layout(folder)
    missing = [name for name in layout.files(repos.tasks) if not (folder / name).is_file()]
    if missing:
        raise BenchError(f"{folder}: missing {', '.join(missing)} (suite {suite} reads it in {layout.describe()})")
