"""Suite registry: a name to a function that assembles tasks and model pool (`bench list suites`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from safetensors.torch import load_file

from core.errors import BenchError
from core.models import ClassificationHead, EncoderConfig, build_encoder
from core.pool import ModelPool
from tasks.base import Suite, Task
from tasks.clip import SPECS as CLIP_SPECS
from tasks.clip import ClipSpec, clip_suite
from tasks.families import FAMILIES
from tasks.hub import Sources
from tasks.mini import MiniData, load_split, normalize, to_pixels
from tasks.registry import GROUPS, standing_in
from tasks.shipped_zoo import shipped_zoo
from tasks.zoo_manifest import verify_zoo, zoo_family

# The CPU-sized suite's compute settings for the test-time adaptive methods (chosen on its validation split; see
# methods/adamerging.py, methods/wemoe.py, methods/wemoe_sparse.py).
MINI_PRESETS = {name: "mini" for name in ("adamerging_taskwise", "adamerging_layerwise", "adamerging_plus_taskwise",
                                          "adamerging_plus_layerwise", "wemoe", "wemoe_sparse", "surgery")}
SHIPPED_ZOO = shipped_zoo()

SuiteFactory = Callable[..., Suite]
SUITES: dict[str, tuple[SuiteFactory, str]] = {}


def register_suite(name: str, description: str) -> Callable[[SuiteFactory], SuiteFactory]:
    def register(factory: SuiteFactory) -> SuiteFactory:
        SUITES[name] = (factory, description)
        return factory
    return register


def load_suite(name: str, zoo: Path | None = None, device: str = "cpu") -> Suite:
    if name not in SUITES:
        raise BenchError(f"unknown suite {name!r}; valid: {', '.join(sorted(SUITES))}")
    return SUITES[name][0](zoo=zoo, device=device)


@register_suite("mini", "procedural tasks + a CLIP-layout ViT zoo trained on CPU (zoo/mini-v2: 20 tasks; "
                "zoo/mini-v1: 8)")
def mini_suite(zoo: Path | None = None, device: str = "cpu") -> Suite:
    zoo = Path(zoo) if zoo is not None else SHIPPED_ZOO
    manifest = verify_zoo(zoo)
    recipe = manifest["recipe"]
    data = MiniData(**recipe["data"])
    fingerprint = data.fingerprint(recipe["tasks"])
    if fingerprint != manifest["data_fingerprint"]:
        raise BenchError(f"{zoo}/manifest.json: the task generators changed since this zoo was built "
                         f"(data fingerprint {fingerprint} != {manifest['data_fingerprint']}); "
                         f"rebuild it with `python -m bench zoo build --out {zoo}`")
    loaded = ["pretrained.safetensors", "heads.safetensors"] + [f"experts/{t}.safetensors" for t in recipe["tasks"]]
    unlisted = [name for name in loaded if name not in manifest["files"]]
    if unlisted:
        raise BenchError(f"{zoo}/manifest.json: {unlisted[0]} is not listed, so its weights are not verified")
    class_vectors = load_file(str(zoo / "heads.safetensors"))
    heads = {t: ClassificationHead(class_vectors[t], recipe["logit_scale"]) for t in recipe["tasks"]}
    records = {t: standing_in(t) for t in recipe["tasks"]}
    tasks = {
        t: Task(name=t, counterpart=records[t].name, class_names=FAMILIES[t].class_names,
                load_split=partial(load_split, t, data=data), to_pixels=to_pixels, normalize=normalize, head=heads[t],
                corruption_profile="small", splits=records[t].splits)
        for t in recipe["tasks"]
    }
    pool = ModelPool(
        build_encoder=partial(build_encoder, EncoderConfig(**recipe["encoder"])),
        pretrained=zoo / "pretrained.safetensors",
        experts={t: zoo / "experts" / f"{t}.safetensors" for t in recipe["tasks"]},
        heads=heads,
        sample_inputs=lambda task, split, n, seed: tasks[task].sample(split, n, seed),
        device=device,
    )
    # Every scenario tests on the first half of each test split (500 images a task), so that `run --all` stays
    # within its time budget: evaluation is its largest stage (docs/performance.md).
    return Suite(name="mini", tasks=tasks, pool=pool, provenance={"family": zoo_family(manifest)},
                 parallel_units=True, presets=MINI_PRESETS, test_split=f"test[:{data.test_per_task // 2}]")


def _clip_factory(spec: ClipSpec, zoo: Path | None = None, device: str = "cpu") -> Suite:
    return clip_suite(spec, Sources.for_suite(spec.name, Path(zoo) if zoo is not None else None), device)


for _spec in CLIP_SPECS.values():
    _experts = (f"{_spec.repos.experts}_* experts" if _spec.repos.experts else
                "the task-vectors or TALL-masks experts (--zoo: their checkpoints folder)")
    _where = "Hugging Face hub or --zoo folder" if _spec.repos.experts else "Hugging Face hub"
    _group = next(name for name, tasks in GROUPS.items() if tasks == _spec.repos.tasks)
    register_suite(_spec.name, f"open_clip {_spec.open_clip_model} ({_spec.pretrained_tag}) + {_experts}, "
                   f"{len(_spec.repos.tasks)} real datasets (task group {_group}; {_where})")(
        partial(_clip_factory, _spec))
