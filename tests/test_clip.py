"""The CLIP suite's building blocks, offline: checkpoint conversion and zero-shot heads."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import datasets
import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

from bench.reports import build_reports
from bench.results import ResultStore
from bench.runner import MethodSpec, run
from core.errors import BenchError
from core.models import CLIP_ENCODERS, EncoderConfig, build_encoder
from tasks.clip import ClipSpec, clip_suite
from tasks.convert import open_clip_vision_state
from tasks.hub import (
    CLIP_REPOS,
    PRETRAINED_FILE,
    HubRepos,
    Sources,
    check_available,
    check_task_vectors_folder,
    held_out_validation,
)
from tasks.registry import GROUPS, RECORDS
from tasks.scenarios import Scenario, multitask
from tasks.zeroshot import class_vectors, prompts, zero_shot_head


@pytest.fixture(scope="module")
def transformers_vit_b_32() -> CLIPVisionModelWithProjection:
    """A randomly initialised ViT-B/32 image tower in transformers' layout (its default config; no download)."""
    torch.manual_seed(0)
    return CLIPVisionModelWithProjection(CLIPVisionConfig()).eval()


@torch.no_grad()
def test_a_converted_transformers_vit_b_32_gives_the_same_image_embeddings(transformers_vit_b_32):
    encoder = build_encoder(CLIP_ENCODERS["ViT-B-32"], quick_gelu=True).eval()
    encoder.load_state_dict(open_clip_vision_state(transformers_vit_b_32.state_dict()))  # strict: every key mapped
    images = torch.randn(3, 3, 224, 224)
    expected = transformers_vit_b_32(pixel_values=images).image_embeds
    torch.testing.assert_close(encoder(images), expected, rtol=1e-5, atol=1e-5)


def test_an_expert_without_projection_takes_the_pretrained_one(transformers_vit_b_32):
    state = transformers_vit_b_32.state_dict()
    projection = state.pop("visual_projection.weight")
    with pytest.raises(BenchError, match="expert.safetensors: no visual_projection.weight"):
        open_clip_vision_state(state, source="expert.safetensors")
    assert torch.equal(open_clip_vision_state(state, projection)["proj"], projection.T)


def test_conversion_names_the_tensor_it_cannot_place(transformers_vit_b_32):
    state = dict(transformers_vit_b_32.state_dict())
    dropped = "vision_model.encoder.layers.3.self_attn.k_proj.bias"
    with pytest.raises(BenchError, match=r"e\.safetensors: missing tensor "
                                         r"vision_model\.encoder\.layers\.3\.self_attn\.k_proj\.bias"):
        open_clip_vision_state({k: v for k, v in state.items() if k != dropped}, source="e.safetensors")
    with pytest.raises(BenchError, match="unexpected tensor vision_model.extra.weight"):
        open_clip_vision_state(state | {"vision_model.extra.weight": torch.zeros(1)})


def test_each_dataset_has_the_task_vectors_and_tall_masks_prompt_templates():
    assert {task: len(record.templates) for task, record in RECORDS.items()} == {
        "SUN397": 2, "Cars": 8, "RESISC45": 18, "EuroSAT": 3, "SVHN": 1, "GTSRB": 3, "MNIST": 1, "DTD": 8,
        "Flowers102": 1, "PCAM": 1, "FER2013": 6, "OxfordIIITPet": 1, "STL10": 2, "CIFAR100": 18,
        "CIFAR10": 18, "Food101": 1, "FashionMNIST": 2, "EMNIST": 1, "EMNISTLetters": 1, "KMNIST": 1,
        "RenderedSST2": 1}
    assert prompts("CIFAR10", "cat")[-1] == "a photo of the big cat."
    assert prompts("FER2013", "happy")[-1] == "look at how happy they are."
    assert prompts("EMNIST", "7") == ['a photo of the digit character: "7".']
    assert prompts("RESISC45", "forest")[0] == "satellite imagery of forest."
    assert prompts("RESISC45", "forest")[-1] == "aerial view of the forest."
    assert prompts("DTD", "woven")[3] == "a photo of a woven object."
    assert prompts("GTSRB", "stop")[0] == 'a zoomed in photo of a "stop" traffic sign.'
    with pytest.raises(BenchError, match="unknown task 'ImageNet': no record in tasks/registry.py"):
        prompts("ImageNet", "tench")


@pytest.fixture(scope="module")
def tiny_clip():
    """A randomly initialised open_clip CLIP with a one-layer text tower and CLIP's own tokenizer (bundled)."""
    torch.manual_seed(0)
    model = open_clip.CLIP(embed_dim=16,
                           vision_cfg=CLIPVisionCfg(layers=1, width=32, head_width=16, image_size=32, patch_size=16),
                           text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=1))
    return model.eval(), open_clip.get_tokenizer("ViT-B-32")


def test_a_zero_shot_class_vector_is_the_normalised_mean_of_its_normalised_prompt_embeddings(tiny_clip):
    model, tokenize = tiny_clip
    names = ["annual crop", "forest", "river"]
    vectors = class_vectors(model.encode_text, tokenize, "EuroSAT", names)
    assert vectors.shape == (3, 16)
    torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(3))
    with torch.no_grad():
        embeddings = F.normalize(model.encode_text(tokenize(prompts("EuroSAT", "forest"))), dim=-1)
    torch.testing.assert_close(vectors[1], F.normalize(embeddings.mean(0), dim=0))
    assert not torch.allclose(vectors[0], vectors[1])


def test_a_zero_shot_head_scores_cosine_similarity_times_the_logit_scale(tiny_clip):
    model, tokenize = tiny_clip
    head = zero_shot_head(model.encode_text, tokenize, "MNIST", [str(d) for d in range(10)], 100.0)
    features = torch.randn(4, 16)
    logits = head(features)
    assert logits.shape == (4, 10) and logits.abs().max() <= 100.0
    torch.testing.assert_close(logits, 100.0 * F.normalize(features, dim=-1) @ head.class_vectors.T)


TINY_CLIP = {"embed_dim": 16, "quick_gelu": True,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
TINY_TASKS = {"EuroSAT": ["forest", "river", "sea or lake"], "MNIST": [str(d) for d in range(10)]}


@pytest.fixture(scope="module")
def local_clip_folder(tmp_path_factory) -> tuple[Path, ClipSpec]:
    """A folder laid out like the hub's repositories: a tiny random open_clip CLIP, two tiny random experts in
    transformers' layout, and two tiny image datasets as parquet with ClassLabel names, one of them with a
    corrupted test split and a validation split of its own."""
    root = tmp_path_factory.mktemp("clip-hub")
    config_dir = tmp_path_factory.mktemp("open-clip-config")
    (config_dir / "tiny-test-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config_dir / "tiny-test-clip.json")
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-test-clip")
    (root / "tiny-pretrained").mkdir()  # the open_clip weights' repository
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(root / "tiny-pretrained" / PRETRAINED_FILE))
    generator = np.random.default_rng(0)
    for counterpart, names in TINY_TASKS.items():
        own = ("contrast", "validation") if counterpart == "EuroSAT" else ()  # as FusionBench's ship a corrupted split
        write_tiny_task(root, counterpart, names, ("train", "test") + own, generator)
    return root, tiny_spec("clip-tiny-test", HubRepos("someone/tiny-pretrained", "someone/tiny-experts",
                                                      tasks=tuple(TINY_TASKS)))


def tiny_spec(name: str, repos: HubRepos) -> ClipSpec:
    return ClipSpec(name, "tiny-test-clip",
                    EncoderConfig(image_size=32, patch_size=16, width=32, layers=1, heads=2, embed_dim=16), repos,
                    pretrained_tag="tiny")


def write_tiny_task(root: Path, counterpart: str, names: list[str], splits: tuple[str, ...],
                    generator: np.random.Generator, images: int = 12) -> None:
    """A tiny random expert in transformers' layout, and the task's dataset in a folder laid out like the hub's
    repositories, as its hub copy is: parquet with `image` and a `label` ClassLabel of `names`; where the record
    takes its class names from FusionBench, labels without names (PCAM's bools); FER2013's a WebDataset of
    jpg/cls files. `splits` are the hub copy's split names."""
    record = RECORDS[counterpart]
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=16)
    CLIPVisionModel(vision).save_pretrained(root / f"tiny-experts_{record.expert_suffix}")  # config + EXPERT_FILE
    folder = root / record.dataset.split("/")[-1]
    count = len(names) if record.class_names is None else len(record.class_names)
    label = datasets.ClassLabel(names=names) if record.class_names is None else datasets.Value(
        "bool" if counterpart == "PCAM" else "int64")
    features = datasets.Features({record.image_column: datasets.Image(), record.label_column: label})
    for split in splits:
        pixels = [Image.fromarray(generator.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in range(images)]
        labels = [bool(i % count) if counterpart == "PCAM" else i % count for i in range(images)]
        if counterpart == "FER2013":
            write_webdataset_shard(folder / split / "0.tar", pixels, labels)
            continue
        rows = datasets.Dataset.from_dict({record.image_column: pixels, record.label_column: labels}, features)
        rows.to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))


def write_webdataset_shard(path: Path, pixels: list[Image.Image], labels: list[int]) -> None:
    """Images and labels as clip-benchmark's WebDatasets hold them: KEY.jpg and KEY.cls (the label as text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as shard:
        for position, (image, label) in enumerate(zip(pixels, labels)):
            jpeg = BytesIO()
            image.save(jpeg, format="JPEG")
            for suffix, payload in (("jpg", jpeg.getvalue()), ("cls", str(label).encode())):
                member = tarfile.TarInfo(f"s{position:04d}.{suffix}")
                member.size = len(payload)
                shard.addfile(member, BytesIO(payload))


def test_a_clip_suite_from_a_local_folder_runs_end_to_end(local_clip_folder, tmp_path):
    root, spec = local_clip_folder
    suite = clip_suite(spec, Sources(root))
    assert list(suite.tasks) == ["eurosat", "mnist"]
    assert suite.tasks["eurosat"].class_names == ("forest", "river", "sea or lake")
    head = suite.tasks["mnist"].head
    assert head.class_vectors.shape == (10, 16) and head.logit_scale == pytest.approx(1 / 0.07)
    inputs, labels = suite.tasks["eurosat"].tensors("test")
    assert inputs.shape == (12, 3, 32, 32) and labels.tolist()[:4] == [0, 1, 2, 0]
    corrupted, _ = suite.tasks["eurosat"].tensors("test/contrast@3")
    assert not torch.allclose(corrupted, inputs)
    scenarios = multitask(suite) + [Scenario("robustness/contrast", tuple(suite.tasks),
                                             tuple((task, "test/contrast@2") for task in suite.tasks))]
    store = ResultStore(tmp_path / "results")
    run(suite, scenarios, [MethodSpec("task_arithmetic"), MethodSpec("individual")], [0], store)
    rows = store.load()
    assert set(rows["suite"]) == {"clip-tiny-test"} and set(rows["family"]) == {suite.provenance["family"]}
    assert suite.provenance["family"].startswith("fusionbench:someone/tiny-experts@")
    assert len(rows) == 2 * 2 * 2 and rows["value"].between(0, 1).all()
    assert torch.equal(suite.pool.expert_tensor("mnist", "proj"), suite.pool.pretrained_tensor("proj"))


def test_the_validation_split_is_the_dataset_s_own_else_the_task_vectors_held_out_slice_of_train(local_clip_folder):
    root, spec = local_clip_folder
    suite = clip_suite(spec, Sources(root))
    eurosat, mnist = suite.tasks["eurosat"], suite.tasks["mnist"]
    own = datasets.load_dataset(str(root / "eurosat"), split="validation")
    assert [np.asarray(i).tobytes() for i in eurosat.split("validation")["image"]] == [
        np.asarray(i).tobytes() for i in own["image"]]
    train = [np.asarray(image).tobytes() for image in mnist.split("train")["image"]]
    assert [np.asarray(image).tobytes() for image in mnist.split("validation")["image"]] == [
        train[position] for position in held_out_validation(12)]


def test_the_held_out_slice_is_the_task_vectors_codes_10_percent_at_most_5000_seed_0():
    """task_vectors' split_train_into_train_val asserts that MNISTVal's train part starts at example 36044."""
    assert len(held_out_validation(60000)) == 5000 and len(held_out_validation(3000)) == 300
    kept = set(range(60000)) - set(held_out_validation(60000))
    train_part = torch.randperm(60000, generator=torch.Generator().manual_seed(0)).tolist()[:55000]
    assert train_part[0] == 36044 and set(train_part) == kept


def test_the_family_of_a_clip_suite_is_the_digest_of_the_weights_it_loads(local_clip_folder, tmp_path):
    root, spec = local_clip_folder
    family = clip_suite(spec, Sources(root)).provenance["family"]
    assert clip_suite(spec, Sources(root)).provenance["family"] == family
    other = tmp_path / "other-hub"
    shutil.copytree(root, other)
    expert = other / "tiny-experts_mnist" / "model.safetensors"
    weights = load_file(str(expert))
    weights = {name: tensor + 0.01 if name.endswith("post_layernorm.bias") else tensor
               for name, tensor in weights.items()}
    save_file(weights, str(expert))
    other_family = clip_suite(spec, Sources(other)).provenance["family"]
    assert other_family.startswith("fusionbench:someone/tiny-experts@") and other_family != family


def test_a_dataset_s_own_corrupted_test_split_replaces_the_one_made_here_and_rows_say_which(local_clip_folder,
                                                                                            tmp_path):
    root, spec = local_clip_folder
    suite = clip_suite(spec, Sources(root))
    eurosat, mnist = suite.tasks["eurosat"], suite.tasks["mnist"]
    assert eurosat.corrupted_test_split("contrast") == "contrast"  # the dataset ships it
    assert mnist.corrupted_test_split("contrast") == "test/contrast@2"
    assert eurosat.corrupted_test_split("pixelate") == "test/pixelate@2"
    own, _ = eurosat.tensors("contrast")
    assert torch.equal(own, eurosat.normalize(eurosat.to_pixels(eurosat.split("contrast")["image"])))
    assert not torch.allclose(own, eurosat.tensors("test/contrast@2")[0])
    scenario = Scenario("robustness/contrast", tuple(suite.tasks), tuple(
        (name, task.corrupted_test_split("contrast")) for name, task in suite.tasks.items()))
    run(suite, [scenario], [MethodSpec("task_arithmetic")], [0], ResultStore(tmp_path / "results"))
    build_reports(tmp_path / "results", tmp_path / "reports")
    assert dict(zip(*ResultStore(tmp_path / "results").load()[["task", "split"]].values.T)) == {
        "eurosat": "contrast", "mnist": "test/contrast@2"}
    assert ("Corrupted test sets: the datasets' own for eurosat contrast; the others corrupted here from the clean "
            "test sets (severity 2).") in (tmp_path / "reports" / "robustness.md").read_text()


TASK_VECTORS_MODULE = '''
import torch

class ImageEncoder(torch.nn.Module):
    """As task-vectors' src/modeling.py keeps it: the open_clip CLIP as `model`, text tower deleted."""
    def __init__(self, model, preprocess):
        super().__init__()
        self.model = model
        self.train_preprocess = self.val_preprocess = preprocess
        delattr(self.model, "transformer")
'''


@pytest.fixture(scope="module")
def task_vectors_folder(local_clip_folder, tmp_path_factory) -> tuple[Path, dict[str, dict[str, torch.Tensor]]]:
    """Checkpoints in the task-vectors layout (zeroshot.pt, TASK/finetuned.pt: ImageEncoder modules pickled whole,
    by a class that is gone when they are read), and the image towers they hold."""
    folder, code = tmp_path_factory.mktemp("task-vectors"), tmp_path_factory.mktemp("task-vectors-code")
    (code / "tv_modeling.py").write_text(TASK_VECTORS_MODULE)
    sys.path.insert(0, str(code))
    try:
        import tv_modeling

        towers = {}
        for offset, name in enumerate(["zeroshot"] + list(TINY_TASKS)):
            torch.manual_seed(0)
            model, _, preprocess = open_clip.create_model_and_transforms("tiny-test-clip")
            with torch.no_grad():
                for parameter in model.visual.parameters():
                    parameter.add_(0.01 * offset * torch.randn_like(parameter))
            path = folder / ("zeroshot.pt" if name == "zeroshot" else f"{name}/finetuned.pt")
            path.parent.mkdir(exist_ok=True)
            torch.save(tv_modeling.ImageEncoder(model, preprocess), path)
            towers[name] = {k: v.clone() for k, v in model.visual.state_dict().items()}
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("tv_modeling", None)
    return folder, towers


def test_a_task_vectors_suite_reads_pickled_checkpoints_and_records_its_family(local_clip_folder, task_vectors_folder,
                                                                               tmp_path):
    root, fusionbench_spec = local_clip_folder
    folder, towers = task_vectors_folder
    spec = ClipSpec("clip-tiny-tv", "tiny-test-clip", fusionbench_spec.encoder,
                    HubRepos("someone/tiny-pretrained", None, tasks=tuple(TINY_TASKS)), pretrained_tag="tiny")
    suite = clip_suite(spec, Sources(root, checkpoints=folder))
    assert suite.provenance["family"].startswith("task-vectors:tiny-test-clip@")
    for name in ("conv1.weight", "transformer.resblocks.0.attn.in_proj_weight", "proj"):
        assert torch.equal(suite.pool.pretrained_tensor(name), towers["zeroshot"][name])
        assert torch.equal(suite.pool.expert_tensor("mnist", name), towers["MNIST"][name])
    run(suite, multitask(suite), [MethodSpec("task_arithmetic")], [0], ResultStore(tmp_path / "results"))
    assert set(ResultStore(tmp_path / "results").load()["family"]) == {suite.provenance["family"]}


def test_a_task_vectors_suite_names_the_checkpoints_it_lacks(task_vectors_folder, tmp_path):
    repos = HubRepos("someone/tiny-pretrained", None, tasks=tuple(TINY_TASKS))
    with pytest.raises(BenchError,
                       match="pass --zoo FOLDER holding zeroshot.pt, EuroSAT/finetuned.pt, MNIST/finetuned.pt"):
        check_task_vectors_folder("clip-tiny-tv", repos, None)
    (tmp_path / "EuroSAT").mkdir()
    (tmp_path / "EuroSAT" / "finetuned.pt").write_bytes(b"")
    with pytest.raises(BenchError, match=f"{tmp_path}: missing zeroshot.pt, MNIST/finetuned.pt"):
        check_task_vectors_folder("clip-tiny-tv", repos, tmp_path)


def test_a_task_vectors_suite_reads_the_tall_masks_layout_and_names_the_files_it_lacks(local_clip_folder,
                                                                                       task_vectors_folder, tmp_path):
    """The TALL-masks checkpoints (nik-dim/tall_masks): ImageEncoder state dicts in TASKVal/ folders, the pretrained
    one read from MNISTVal/nonlinear_zeroshot.pt."""
    root, _ = local_clip_folder
    _, towers = task_vectors_folder
    spec = tiny_spec("clip-tiny-tv", HubRepos("someone/tiny-pretrained", None, tasks=tuple(TINY_TASKS)))

    def save_state(tower: str, file: str) -> None:
        (tmp_path / file).parent.mkdir(exist_ok=True)
        torch.save({f"model.visual.{key}": tensor for key, tensor in towers[tower].items()}, tmp_path / file)

    save_state("zeroshot", "MNISTVal/nonlinear_zeroshot.pt")
    save_state("EuroSAT", "EuroSATVal/nonlinear_finetuned.pt")
    with pytest.raises(BenchError, match=re.escape(
            f"{tmp_path}: missing MNISTVal/nonlinear_finetuned.pt (suite clip-tiny-tv reads it in the TALL-masks "
            f"layout: MNISTVal/nonlinear_zeroshot.pt and TASKVal/nonlinear_finetuned.pt per task)")):
        check_task_vectors_folder("clip-tiny-tv", spec.repos, tmp_path)
    save_state("MNIST", "MNISTVal/nonlinear_finetuned.pt")
    suite = clip_suite(spec, Sources(root, checkpoints=tmp_path))
    assert torch.equal(suite.pool.pretrained_tensor("proj"), towers["zeroshot"]["proj"])
    assert torch.equal(suite.pool.expert_tensor("eurosat", "conv1.weight"), towers["EuroSAT"]["conv1.weight"])
    assert not torch.equal(suite.pool.expert_tensor("mnist", "conv1.weight"), towers["zeroshot"]["conv1.weight"])


@pytest.fixture(scope="module")
def tall14_folder(local_clip_folder, tmp_path_factory) -> Path:
    """A local folder with the tiny open_clip CLIP and a tiny expert and test split of each of the 14 tasks."""
    root, _ = local_clip_folder
    folder = tmp_path_factory.mktemp("clip-hub-14")
    shutil.copytree(root / "tiny-pretrained", folder / "tiny-pretrained")
    generator = np.random.default_rng(1)
    for counterpart in GROUPS["14-task"]:
        write_tiny_task(folder, counterpart, ["first", "second"], ("test",), generator, images=4)
    return folder


def tall14_spec() -> ClipSpec:
    tasks = CLIP_REPOS["clip-vit-b-32-tall14"].tasks
    return tiny_spec("clip-tiny-tall14", HubRepos("someone/tiny-pretrained", "someone/tiny-experts", tasks=tasks))


def test_a_tall14_suite_from_a_local_folder_has_the_14_tasks_in_the_published_order(tall14_folder):
    published = ("SUN397", "Cars", "RESISC45", "EuroSAT", "SVHN", "GTSRB", "MNIST", "DTD",
                 "Flowers102", "PCAM", "FER2013", "OxfordIIITPet", "STL10", "CIFAR100")
    assert CLIP_REPOS["clip-vit-b-32-tall14"].tasks == published
    assert CLIP_REPOS["clip-vit-l-14-task-vectors-tall14"].tasks == published
    suite = clip_suite(tall14_spec(), Sources(tall14_folder))
    assert [task.counterpart for task in suite.tasks.values()] == list(published)
    assert list(suite.pool.tasks) == [name.lower() for name in published]
    assert suite.tasks["fer2013"].head.class_vectors.shape == (7, 16)


def test_a_task_reads_image_and_label_columns_and_fusionbench_s_class_names_where_its_hub_copy_has_others(
        tall14_folder):
    """FER2013's WebDataset names its columns jpg/cls and its labels no classes; PCAM's label is a bool; the
    others' `label` features name their classes."""
    suite = clip_suite(tall14_spec(), Sources(tall14_folder))
    fer2013, pcam, flowers = suite.tasks["fer2013"], suite.tasks["pcam"], suite.tasks["flowers102"]
    assert fer2013.class_names == ("angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised")
    assert pcam.class_names == ("lymph node", "lymph node containing metastatic tumor tissue")
    assert flowers.class_names[:2] == ("pink primrose", "hard-leaved pocket orchid") and len(flowers.class_names) == 102
    assert suite.tasks["stl10"].class_names == ("first", "second")
    for task, labels in ((fer2013, [0, 1, 2, 3]), (pcam, [0, 1, 0, 1])):
        assert {"image", "label"} <= set(task.split("test").column_names)
        assert task.labels("test").dtype == torch.int64 and task.labels("test").tolist() == labels
        inputs, _ = task.tensors("test")
        assert inputs.shape == (4, 3, 32, 32)
    assert pcam.head.class_vectors.shape == (2, 16)


def test_a_task_whose_hub_copy_names_its_splits_otherwise_reads_the_record_s_test_and_validation_splits(
        local_clip_folder, tmp_path):
    """Food101's test is ethz/food101's validation split, so its validation is the held-out slice of train;
    PCAM's validation is 1aurent/PatchCamelyon's `valid` split."""
    root, _ = local_clip_folder
    shutil.copytree(root / "tiny-pretrained", tmp_path / "tiny-pretrained")
    generator = np.random.default_rng(2)
    write_tiny_task(tmp_path, "Food101", ["unused"], ("train", "validation"), generator)
    write_tiny_task(tmp_path, "PCAM", ["unused"], ("train", "valid", "test"), generator)
    spec = tiny_spec("clip-tiny-splits", HubRepos("someone/tiny-pretrained", "someone/tiny-experts",
                                                  tasks=("Food101", "PCAM")))
    suite = clip_suite(spec, Sources(tmp_path))
    food, pcam = suite.tasks["food101"], suite.tasks["pcam"]

    def images(rows: datasets.Dataset) -> list[bytes]:
        return [np.asarray(image).tobytes() for image in rows["image"]]

    hub = {split: datasets.load_dataset(str(tmp_path / folder), split=split)
           for folder, split in (("food101", "train"), ("food101", "validation"), ("PatchCamelyon", "valid"))}
    assert images(food.split("test")) == images(hub["validation"])
    train = images(hub["train"])
    assert images(food.split("validation")) == [train[position] for position in held_out_validation(12)]
    assert food.class_names[:3] == ("apple pie", "baby back ribs", "baklava") and len(food.class_names) == 101
    assert food.labels("test").tolist() == list(range(12))
    assert images(pcam.split("validation")) == images(hub["valid"])


def test_each_record_s_class_names_count_its_classes():
    assert all(len(record.class_names) == record.classes for record in RECORDS.values() if record.class_names)


def test_the_20_task_suites_take_fusionbench_s_emnist_letters_or_the_tall_masks_emnist_digits():
    extra = ("CIFAR10", "Food101", "FashionMNIST", "{}", "KMNIST", "RenderedSST2")
    fusionbench, task_vectors = CLIP_REPOS["clip-vit-b-32-tall20"], CLIP_REPOS["clip-vit-b-32-task-vectors-tall20"]
    assert fusionbench.tasks == GROUPS["14-task"] + tuple(t.format("EMNISTLetters") for t in extra)
    assert task_vectors.tasks == GROUPS["14-task"] + tuple(t.format("EMNIST") for t in extra)
    assert ("tanganke/clip-vit-base-patch32_emnist_letters", "model.safetensors") in fusionbench.needed()
    assert len(fusionbench.needed()) == 1 + 20 + 20 and len(task_vectors.needed()) == 1 + 20


def test_a_fusionbench_suite_names_a_missing_expert_of_a_new_task_before_any_work(tall14_folder, tmp_path,
                                                                                  monkeypatch):
    folder = tmp_path / "hub"
    shutil.copytree(tall14_folder, folder)
    shutil.rmtree(folder / "tiny-experts_pcam")
    monkeypatch.setattr(open_clip, "create_model_and_transforms", lambda *args, **kwargs: pytest.fail("work began"))
    with pytest.raises(BenchError, match=re.escape(
            f"suite clip-tiny-tall14: the local folder {folder} lacks 1 of the files and dataset folders it needs: "
            f"{folder / 'tiny-experts_pcam' / 'model.safetensors'}")):
        clip_suite(tall14_spec(), Sources(folder))


def test_a_fusionbench_suite_over_emnist_digits_is_refused_by_name_since_fusionbench_ships_no_such_expert(
        tall14_folder):
    repos = HubRepos("someone/tiny-pretrained", "someone/tiny-experts", tasks=("MNIST", "EMNIST"))
    with pytest.raises(BenchError, match=r"^task EMNIST: FusionBench ships no expert of it \(tasks/registry.py\)"):
        check_available("clip-tiny", repos, Sources(tall14_folder))


def test_offline_with_an_empty_cache_a_clip_run_stops_before_importing_any_model_code(tmp_path):
    """The check runs before torch is imported (hub clients would retry for 20-45 s; importing torch and
    open_clip alone takes seconds): one line naming every missing repository and how to fetch it."""
    script = ("import sys; from bench.cli import main; "
              "code = main(['run', '--all', '--suite', 'clip-vit-b-32', '--results', sys.argv[1]]); "
              "print(code, 'torch' in sys.modules)")
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "results")], env=env, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1], timeout=120, check=False)
    assert done.stdout.split() == ["2", "False"]
    error = done.stderr.strip()
    assert len(error.splitlines()) == 1 and "lacks 17 repositories" in error
    for repo in ("timm/vit_base_patch32_clip_224.openai (model)",
                 "tanganke/clip-vit-base-patch32_stanford-cars (model)", "tanganke/dtd (dataset)", "hf download"):
        assert repo in error
    assert not (tmp_path / "results").exists()
