"""A local folder laid out like the hub's repositories of the `clip-vit-b-32` suite, at full size with random
weights: open_clip's ViT-B-32 (both towers), eight experts in transformers' CLIPVisionModel layout, and eight
datasets as parquet with the real class counts and 224-pixel images. Memory and time at real scale depend on
sizes, not on trained values, and nothing here needs the hub."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from tasks.hub import PRETRAINED_FILE
from tasks.registry import GROUPS, RECORDS


def write_random_images(path: Path, count: int, classes: int, seed: int, size: int = 224) -> None:
    """`count` random `size`-pixel JPEG images with labels cycling over `classes`, as a dataset's parquet split."""
    import datasets
    from PIL import Image

    generator = np.random.default_rng(seed)
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=[f"class {c}" for c in range(classes)])})

    def rows():
        for index in range(count):
            encoded = io.BytesIO()
            pixels = generator.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)  # smooth, JPEG-sized
            Image.fromarray(pixels).resize((size, size)).save(encoded, format="JPEG", quality=90)
            yield {"image": {"bytes": encoded.getvalue(), "path": None}, "label": index % classes}

    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_generator(rows, features=features).to_parquet(str(path))


def write_full_size_clip_folder(root: Path, test_images: dict[str, int], train_images: int = 64) -> Path:
    """The folder `--zoo` takes for `clip-vit-b-32`; `test_images` per task name (SUN397, ...), the others get 32."""
    import open_clip
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32")
    (root / "vit_base_patch32_clip_224.openai").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(root / "vit_base_patch32_clip_224.openai" / PRETRAINED_FILE))
    vision = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              image_size=224, patch_size=32)
    # The real datasets' class counts size the heads and the exact Fisher's cost.
    for seed, record in enumerate(RECORDS[task] for task in GROUPS["8-task"]):
        torch.manual_seed(seed + 1)
        CLIPVisionModel(vision).save_pretrained(root / f"clip-vit-base-patch32_{record.expert_suffix}")
        data = root / record.dataset.split("/")[-1] / "data"
        write_random_images(data / "train-00000-of-00001.parquet", train_images, record.classes, 2 * seed)
        write_random_images(data / "test-00000-of-00001.parquet", test_images.get(record.name, 32), record.classes,
                            2 * seed + 1)
    return root
