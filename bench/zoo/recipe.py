"""Everything that determines the mini zoo, in one hashable record."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

from bench.zoo.embeddings import SCHEMES
from bench.zoo.training import Schedule
from core.errors import BenchError
from core.models import EncoderConfig
from core.setting_values import parse_setting
from tasks.mini import MiniData
from tasks.registry import mini_families
from tasks.zoo_manifest import recipe_digest

CONTRASTS = ("own-task", "all-tasks")  # what a pretraining image competes among (bench/zoo/build.py)


@dataclass(frozen=True)
class ZooRecipe:
    """The mini zoo: a small CLIP-layout ViT pretrained on all its families, and one expert per family.

    Pretraining sees fresh images of every family (the analogue of CLIP's web data) and aligns them with
    pretraining class embeddings; the frozen zero-shot heads embed the same classes at cosine `head_fidelity`
    (see `bench.zoo.build.class_vectors`), so the pretrained model is zero-shot usable yet imprecise; each
    expert then fine-tunes all weights on its task's training split through its frozen head.
    """

    seed: int = 0
    encoder: EncoderConfig = EncoderConfig(image_size=32, patch_size=8, width=96, layers=6, heads=4, embed_dim=64)
    data: MiniData = MiniData()
    logit_scale: float = 20.0
    head_fidelity: float = 0.3
    pretrain_images_per_task: int = 24000
    pretrain_nuisance: float = 0.7
    pretrain: Schedule = Schedule(steps=6000, batch_size=128, lr=1e-3, weight_decay=0.05)
    finetune: Schedule = Schedule(steps=500, batch_size=64, lr=3e-4, weight_decay=0.1)
    tasks: tuple[str, ...] = mini_families("8-task")
    class_embeddings: str = "per-task"  # or "by-name" (bench/zoo/embeddings.py)
    pretrain_contrast: str = "own-task"  # or "all-tasks"

    def __post_init__(self) -> None:
        if self.class_embeddings not in SCHEMES:
            raise BenchError(f"recipe class_embeddings {self.class_embeddings!r}; valid: {', '.join(SCHEMES)}")
        if self.pretrain_contrast not in CONTRASTS:
            raise BenchError(f"recipe pretrain_contrast {self.pretrain_contrast!r}; valid: {', '.join(CONTRASTS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return recipe_digest(self.to_dict())

    def with_finetune(self, overrides: Mapping[str, str]) -> ZooRecipe:
        """This recipe with fields of its experts' fine-tuning schedule set from `key=value` strings, each
        parsed by its field's type: the knob of studies of how fine-tuning shapes the task vectors."""
        types = typing.get_type_hints(Schedule)
        values: dict[str, int | float] = {}
        for key, text in overrides.items():
            if key not in types:
                raise BenchError(f"--finetune {key}={text}: unknown key; valid: {', '.join(types)}")
            try:
                values[key] = parse_setting(types[key], text)
            except ValueError as error:
                raise BenchError(f"--finetune {key}={text}: {error}") from None
            positive = key in ("steps", "batch_size", "lr")
            if values[key] <= 0 if positive else values[key] < 0:
                raise BenchError(f"--finetune {key}={text}: must be {'> 0' if positive else '>= 0'}")
        return replace(self, finetune=replace(self.finetune, **values))

    def tiny(self) -> ZooRecipe:
        """This recipe in seconds on a CPU: the same code path, for tests."""
        return replace(
            self,
            encoder=EncoderConfig(image_size=32, patch_size=8, width=32, layers=2, heads=2, embed_dim=32),
            data=MiniData(train_per_task=96, test_per_task=48),
            pretrain_images_per_task=64,
            pretrain=Schedule(steps=30, batch_size=32, lr=1e-3, weight_decay=0.05),
            finetune=Schedule(steps=15, batch_size=32, lr=3e-4, weight_decay=0.1),
        )


# The zoos `bench zoo build --recipe` knows. mini-v2 pretrains on all 20 families (fewer images of each, so that
# its pretraining set is the size of mini-v1's), with class embeddings shared by class name and every image
# competing among every task's classes (docs/mini-suite.md: what each changes, measured).
RECIPES = {
    "mini-v1": ZooRecipe(),
    "mini-v2": ZooRecipe(tasks=mini_families("20-task"), class_embeddings="by-name", pretrain_contrast="all-tasks",
                         pretrain_images_per_task=9600, head_fidelity=0.2),
}
