"""The image encoder every suite uses (open_clip's VisionTransformer) and CLIP-style frozen heads."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from open_clip.transformer import QuickGELU, VisionTransformer
from torch import nn


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of a VisionTransformer; module names are real CLIP's (`transformer.resblocks.N.mlp.c_fc`, ...)."""

    image_size: int
    patch_size: int
    width: int
    layers: int
    heads: int
    embed_dim: int
    mlp_ratio: float = 4.0

    def to_dict(self) -> dict:
        return asdict(self)


def build_encoder(config: EncoderConfig, quick_gelu: bool = False) -> VisionTransformer:
    """`quick_gelu`: the activation of OpenAI's CLIP weights (x * sigmoid(1.702 x)), which they need."""
    return VisionTransformer(
        image_size=config.image_size,
        patch_size=config.patch_size,
        width=config.width,
        layers=config.layers,
        heads=config.heads,
        mlp_ratio=config.mlp_ratio,
        output_dim=config.embed_dim,
        act_layer=QuickGELU if quick_gelu else nn.GELU,
    )


class ClassificationHead(nn.Module):
    """Cosine classifier over fixed class embeddings, as CLIP's zero-shot heads are.

    Both the image features and the class vectors are L2-normalised and multiplied by a fixed logit scale:
    normalising only the features would cap the logits and stall fine-tuning at chance loss.
    """

    def __init__(self, class_vectors: torch.Tensor, logit_scale: float) -> None:
        super().__init__()
        self.register_buffer("class_vectors", F.normalize(class_vectors.float(), dim=-1))
        self.logit_scale = logit_scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * F.normalize(features, dim=-1) @ self.class_vectors.T
