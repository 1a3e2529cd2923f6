"""CLIP vision weights from transformers' layout (`CLIPVisionModel`, `CLIPModel`) to open_clip's VisionTransformer.

The experts of the merging literature on the Hugging Face hub (`tanganke/clip-vit-base-patch32_<task>`) are
transformers checkpoints; every suite here runs open_clip's VisionTransformer, so a checkpoint is converted
once, key by key: renamed, q/k/v fused into one in-projection, the visual projection transposed. Keys may carry
the `vision_model.` prefix (transformers 4, which saved the hub's experts) or not (transformers 5).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from core.errors import BenchError

PREFIX = "vision_model."
RENAMED = {
    "embeddings.class_embedding": "class_embedding",
    "embeddings.patch_embedding.weight": "conv1.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "pre_layrnorm.weight": "ln_pre.weight",  # sic: transformers spells it so
    "pre_layrnorm.bias": "ln_pre.bias",
    "post_layernorm.weight": "ln_post.weight",
    "post_layernorm.bias": "ln_post.bias",
}
RENAMED_IN_LAYER = {
    "layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}
LAYER = re.compile(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)")
QKV = ("q_proj", "k_proj", "v_proj")
# Keys of a full CLIPModel that are not the image tower's, and buffers that carry no weights.
NOT_VISION = re.compile(r"(text_model\.|text_projection\.|logit_scale)|.*position_ids$")


def open_clip_vision_state(state: Mapping[str, torch.Tensor], projection: torch.Tensor | None = None,
                           source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """open_clip VisionTransformer weights from a transformers CLIP state dict.

    `projection` is `visual_projection.weight` ([embed_dim, width]) where the state has none: a
    `CLIPVisionModel` expert does not carry it, and the merging literature keeps the pretrained model's.
    `source` names the checkpoint in errors.
    """
    converted: dict[str, torch.Tensor] = {}
    attention: dict[tuple[str, str, str], torch.Tensor] = {}  # (layer, q/k/v, weight/bias)
    for key, tensor in state.items():
        if NOT_VISION.match(key):
            continue
        if key == "visual_projection.weight":
            projection = tensor
            continue
        name = key.removeprefix(PREFIX)  # transformers 5 saves a CLIPVisionModel without the prefix
        if name in RENAMED:
            converted[RENAMED[name]] = tensor
            continue
        match = LAYER.fullmatch(name)
        if match is None:
            raise BenchError(f"{source}: unexpected tensor {key} (not a CLIP vision weight)")
        layer, module, kind = match.groups()
        if module.startswith("self_attn.") and module.split(".", 1)[1] in QKV:
            attention[layer, module.split(".", 1)[1], kind] = tensor
        elif module in RENAMED_IN_LAYER:
            converted[f"transformer.resblocks.{layer}.{RENAMED_IN_LAYER[module]}.{kind}"] = tensor
        else:
            raise BenchError(f"{source}: unexpected tensor {key} (not a CLIP vision weight)")
    for layer, _, kind in sorted({(layer, "", kind) for layer, _, kind in attention}):
        missing = [part for part in QKV if (layer, part, kind) not in attention]
        if missing:
            raise BenchError(f"{source}: missing tensor {PREFIX}encoder.layers.{layer}.self_attn.{missing[0]}.{kind}")
        converted[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat(
            [attention[layer, part, kind] for part in QKV])
    if projection is None:
        raise BenchError(f"{source}: no visual_projection.weight; pass the pretrained model's projection")
    converted["proj"] = projection.T.contiguous()
    return converted
