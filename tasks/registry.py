"""The task registry: one record per task of the real benchmarks, and the named groups of tasks that suites and
scenarios are defined over (`bench list tasks`).

Adding a task is one `TaskRecord` in `RECORDS` and its name in the groups it belongs to. A record holds what is
fixed about a task wherever it is run: its hub dataset (the copy FusionBench reads; most have `image` and `label`
columns, the `label` feature naming the classes, and a `test` split; the record says where one differs), the
FusionBench expert repositories' suffix, the zero-shot prompt templates, the splits it offers, and
the mini suite's procedural family standing in for it (`tasks/procedural.py`; the family draws the images and
names the classes of the stand-in).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import BenchError
from tasks import class_names

# Prompt templates of the task-vectors work (Ilharco et al., 2023; mlfoundations/task_vectors,
# src/datasets/templates.py), with which the model-merging papers and FusionBench build their zero-shot heads.
_PHOTO = ("a photo of a {}.", "a photo of the {}.")
_NUMBER = ('a photo of the number: "{}".',)
_CIFAR = tuple(f"a {quality}photo of {article} {size}{{}}." for article in ("a", "the")
               for quality, size in (("", ""), ("blurry ", ""), ("black and white ", ""), ("low contrast ", ""),
                                     ("high contrast ", ""), ("bad ", ""), ("good ", ""), ("", "small "), ("", "big ")))
_CHARACTER = ('a photo of the digit character: "{}".',)
_AERIAL = tuple(f"{source} {view} of {article}{{}}." for article in ("", "a ", "the ")
                for view in ("imagery", "photo", "view") for source in ("satellite", "aerial"))


@dataclass(frozen=True)
class TaskRecord:
    """One task: `name` as the papers and FusionBench write it (the counterpart of a mini stand-in)."""

    name: str
    classes: int  # the real dataset's number of classes
    dataset: str  # the hub dataset repository
    expert_suffix: str | None  # FusionBench's experts of a model are the repositories f"{experts}_{expert_suffix}"
    templates: tuple[str, ...]
    mini_family: str | None = None  # the mini suite's stand-in family, where it has one
    splits: tuple[str, ...] = ("train", "validation", "test")  # what every suite offers (a hub copy may ship more)
    image_column: str = "image"  # the hub copy's columns, read as `image` and `label`
    label_column: str = "label"
    # The names the zero-shot heads take, where the label feature names no classes or others than FusionBench's
    # heads use (tasks/class_names.py); None: the label feature's.
    class_names: tuple[str, ...] | None = None
    test_split: str = "test"  # the hub split a suite's `test` reads
    # The hub split a suite's `validation` reads where the copy ships it, else (and for None) the held-out slice
    # of train (tasks/hub.py, held_out_validation).
    validation_split: str | None = "validation"
    # Images of the split a suite's `test` reads: what evaluating the task costs (`bench.grid_costs`). From the
    # datasets' cards and the torchvision datasets they copy, not counted here (no hub access).
    test_images: int = field(kw_only=True)


RECORDS: dict[str, TaskRecord] = {record.name: record for record in (
    TaskRecord("SUN397", 397, "tanganke/sun397", "sun397", _PHOTO, mini_family="scenes", test_images=19_850),
    TaskRecord("Cars", 196, "tanganke/stanford_cars", "stanford-cars",
               _PHOTO + ("a photo of my {}.", "i love my {}!", "a photo of my dirty {}.", "a photo of my clean {}.",
                         "a photo of my new {}.", "a photo of my old {}."), mini_family="vehicles", test_images=8_041),
    TaskRecord("RESISC45", 45, "tanganke/resisc45", "resisc45", _AERIAL, mini_family="aerial", test_images=6_300),
    TaskRecord("EuroSAT", 10, "tanganke/eurosat", "eurosat",
               ("a centered satellite photo of {}.", "a centered satellite photo of a {}.",
                "a centered satellite photo of the {}."), mini_family="landcover", test_images=2_700),
    TaskRecord("SVHN", 10, "tanganke/svhn", "svhn", _NUMBER, mini_family="house_numbers", test_images=26_032),
    TaskRecord("GTSRB", 43, "tanganke/gtsrb", "gtsrb",
               ('a zoomed in photo of a "{}" traffic sign.', 'a centered photo of a "{}" traffic sign.',
                'a close up photo of a "{}" traffic sign.'), mini_family="signs", test_images=12_630),
    TaskRecord("MNIST", 10, "tanganke/mnist", "mnist", _NUMBER, mini_family="digits", test_images=10_000),
    TaskRecord("DTD", 47, "tanganke/dtd", "dtd",
               tuple(f"a photo of {article} {{}} {noun}." for article in ("a", "the")
                     for noun in ("texture", "pattern", "thing", "object")), mini_family="textures", test_images=1_880),
    # The six more of the 14-task benchmark (TALL masks, Wang et al. 2024)... Datasets: FusionBench's
    # (config/dataset/image_classification/test/*.yaml), which for PCAM, FER2013 and OxfordIIITPet are not its own
    # copies; templates: the TALL-masks code's (nik-dim/tall_masks, src/datasets/templates.py).
    TaskRecord("Flowers102", 102, "dpdl-benchmark/oxford_flowers102", "oxford_flowers102",
               ("a photo of a {}, a type of flower.",), mini_family="flowers", class_names=class_names.FLOWERS102,
               test_images=6_149),
    # 1aurent/PatchCamelyon's label is a bool; its validation split is named `valid`.
    TaskRecord("PCAM", 2, "1aurent/PatchCamelyon", "pcam",
               ("this is a photo of {}",), mini_family="tissue", class_names=class_names.PCAM,
               validation_split="valid", test_images=32_768),
    # FusionBench reads clip-benchmark/wds_fer2013 (a WebDataset: train and test) through
    # fusion_bench/dataset/fer2013.py, which renames its columns jpg/cls to image/label.
    TaskRecord("FER2013", 7, "clip-benchmark/wds_fer2013", "fer2013",
               ("a photo of a {} looking face.", "a photo of a face showing the emotion: {}.",
                "a photo of a face looking {}.", "a face that looks {}.", "they look {}.", "look at how {} they are."),
               mini_family="faces", image_column="jpg", label_column="cls", class_names=class_names.FER2013,
               test_images=7_178),
    TaskRecord("OxfordIIITPet", 37, "timm/oxford-iiit-pet", "oxford-iiit-pet",
               ("a photo of a {}, a type of pet.",), mini_family="pets", test_images=3_669),
    TaskRecord("STL10", 10, "tanganke/stl10", "stl10", _PHOTO, mini_family="objects", test_images=8_000),
    TaskRecord("CIFAR100", 100, "tanganke/cifar100", "cifar100", _CIFAR, mini_family="small_objects_fine",
               test_images=10_000),
    # ...and the six of the 20-task one. EMNIST is two tasks: its digits split in the TALL-masks, TSV-M, Iso-C
    # and CART code, its letters split in FusionBench's TALL20. Both take the TALL-masks code's EMNIST template.
    TaskRecord("CIFAR10", 10, "tanganke/cifar10", "cifar10", _CIFAR, mini_family="small_objects", test_images=10_000),
    # ethz/food101 ships train and validation (Food-101's test images): FusionBench tests on its validation split
    # (config/dataset/image_classification/test/food101.yaml), so a suite's validation is the held-out slice.
    TaskRecord("Food101", 101, "ethz/food101", "food101",
               ("a photo of {}, a type of food.",), mini_family="dishes", class_names=class_names.FOOD101,
               test_split="validation", validation_split=None, test_images=25_250),
    TaskRecord("FashionMNIST", 10, "zalando-datasets/fashion_mnist", "fashion_mnist", _PHOTO,
               mini_family="garments", test_images=10_000),
    # FusionBench ships no EMNIST-digits expert (config/model/clip-vit/download_TALL20_models.sh): no suffix, and
    # a FusionBench suite over it refuses by name (tasks/hub.py, HubRepos.expert).
    TaskRecord("EMNIST", 10, "tanganke/emnist_mnist", None, _CHARACTER, mini_family="scanned_digits",
               test_images=10_000),
    TaskRecord("EMNISTLetters", 26, "tanganke/emnist_letters", "emnist_letters", _CHARACTER, mini_family="letters",
               test_images=20_800),
    TaskRecord("KMNIST", 10, "tanganke/kmnist", "kmnist",
               ("a photo of the character {}.",), mini_family="kana", test_images=10_000),
    TaskRecord("RenderedSST2", 2, "nateraw/rendered-sst2", "rendered-sst2",
               ("a {} review of a movie.",), mini_family="rendered_reviews", test_images=1_821),
)}

# Named, ordered groups of task names (the order is the merge's and the tables'). The 8 tasks of Task Arithmetic,
# TIES-Merging, AdaMerging and WEMoE; the 14 and 20 of TALL masks, TSV-M, Iso-C and CART (FusionBench's TALL20
# differs in one task, EMNIST's letters for its digits); the four of the AdaMerging and WEMoE robustness
# experiments; the seen and unseen tasks of their two generalization experiments.
_EIGHT = ("SUN397", "Cars", "RESISC45", "EuroSAT", "SVHN", "GTSRB", "MNIST", "DTD")
_FOURTEEN = _EIGHT + ("Flowers102", "PCAM", "FER2013", "OxfordIIITPet", "STL10", "CIFAR100")
GROUPS: dict[str, tuple[str, ...]] = {
    "8-task": _EIGHT,
    "14-task": _FOURTEEN,
    "20-task": _FOURTEEN + ("CIFAR10", "Food101", "FashionMNIST", "EMNIST", "KMNIST", "RenderedSST2"),
    "20-task-fusionbench": _FOURTEEN + ("CIFAR10", "Food101", "FashionMNIST", "EMNISTLetters", "KMNIST",
                                        "RenderedSST2"),
    "robustness": ("Cars", "EuroSAT", "RESISC45", "GTSRB"),
    "generalization-1-seen": ("SUN397", "Cars", "RESISC45", "DTD", "SVHN", "GTSRB"),
    "generalization-1-unseen": ("MNIST", "EuroSAT"),
    "generalization-2-seen": ("SUN397", "Cars", "GTSRB", "EuroSAT", "DTD", "MNIST"),
    "generalization-2-unseen": ("RESISC45", "SVHN"),
}


def task_record(name: str) -> TaskRecord:
    if name not in RECORDS:
        raise BenchError(f"unknown task {name!r}: no record in tasks/registry.py; known: {', '.join(RECORDS)}")
    return RECORDS[name]


def group(name: str) -> tuple[str, ...]:
    """The task names of a group, each with its record."""
    if name not in GROUPS:
        raise BenchError(f"unknown task group {name!r}; known: {', '.join(GROUPS)}")
    for task in GROUPS[name]:
        task_record(task)
    return GROUPS[name]


def groups_of(name: str) -> tuple[str, ...]:
    return tuple(group_name for group_name, members in GROUPS.items() if name in members)


def standing_in(family: str) -> TaskRecord:
    """The record of the task a mini family stands in for."""
    for record in RECORDS.values():
        if record.mini_family == family:
            return record
    raise BenchError(f"mini family {family!r} stands in for no task: no record in tasks/registry.py names it")


def mini_families(group_name: str) -> tuple[str, ...]:
    """The mini stand-ins of a group's tasks, in the group's order."""
    families = []
    for task in group(group_name):
        family = RECORDS[task].mini_family
        if family is None:
            raise BenchError(f"task group {group_name!r}: {task} has no mini family in its record (tasks/registry.py)")
        families.append(family)
    return tuple(families)
