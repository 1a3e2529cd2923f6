"""The image encoder every suite uses (open_clip's VisionTransformer, rebuilt on torch alone) and CLIP-style
frozen heads.

The encoder is open_clip's `VisionTransformer` as CLIP's image towers configure it (class-token pooling, pre-
and post-norm, projection), with the same module names, parameter creation order and operations, so it holds
open_clip's weights unchanged, draws the same random initial weights and computes the same outputs
(tests/test_models.py checks all three against open_clip). Torch alone: a machine without open_clip (a GPU
host measuring costs, say) builds and runs every suite's encoder; open_clip is needed only to fetch CLIP's
weights, preprocessing and tokenizer (tasks/clip.py).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
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


# The image towers of OpenAI's CLIP, by open_clip's model name (open_clip/model_configs/<name>.json).
CLIP_ENCODERS = {
    "ViT-B-32": EncoderConfig(image_size=224, patch_size=32, width=768, layers=12, heads=12, embed_dim=512),
    "ViT-B-16": EncoderConfig(image_size=224, patch_size=16, width=768, layers=12, heads=12, embed_dim=512),
    "ViT-L-14": EncoderConfig(image_size=224, patch_size=14, width=1024, layers=24, heads=16, embed_dim=768),
}


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the activation OpenAI's CLIP weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class LayerNorm(nn.LayerNorm):
    """LayerNorm whose output keeps its input's dtype (under autocast too), as open_clip's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float, act_layer: type[nn.Module]) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, hidden)), ("gelu", act_layer()), ("c_proj", nn.Linear(hidden, width))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.ln_1(x)
        x = x + self.attn(normed, normed, normed, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, act_layer: type[nn.Module]) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_ratio, act_layer)
                                       for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class VisionTransformer(nn.Module):
    """Image (batch, 3, size, size) to embedding (batch, embed_dim): patches, class token, blocks, projection."""

    def __init__(self, config: EncoderConfig, act_layer: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        width, scale = config.width, config.width ** -0.5
        grid = config.image_size // config.patch_size
        self.conv1 = nn.Conv2d(3, width, kernel_size=config.patch_size, stride=config.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, config.layers, config.heads, config.mlp_ratio, act_layer)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, config.embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # (batch, patches, width)
        x = torch.cat([self.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = self.ln_pre(x + self.positional_embedding.to(x.dtype))
        pooled = self.ln_post(self.transformer(x))[:, 0]
        return pooled if self.proj is None else pooled @ self.proj  # None, as open_clip: projected elsewhere (SMILE)


def build_encoder(config: EncoderConfig, quick_gelu: bool = False) -> VisionTransformer:
    """`quick_gelu`: the activation of OpenAI's CLIP weights (x * sigmoid(1.702 x)), which they need."""
    return VisionTransformer(config, QuickGELU if quick_gelu else nn.GELU)


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
