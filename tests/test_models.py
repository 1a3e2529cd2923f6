"""The project's encoder is open_clip's VisionTransformer: same weights from the same seed, same outputs."""

from __future__ import annotations

import pytest
import torch
from open_clip.transformer import QuickGELU, VisionTransformer
from torch import nn

from core.models import EncoderConfig, build_encoder

CONFIG = EncoderConfig(image_size=32, patch_size=8, width=48, layers=2, heads=4, embed_dim=16)


def open_clip_encoder(quick_gelu: bool) -> VisionTransformer:
    return VisionTransformer(image_size=CONFIG.image_size, patch_size=CONFIG.patch_size, width=CONFIG.width,
                             layers=CONFIG.layers, heads=CONFIG.heads, mlp_ratio=CONFIG.mlp_ratio,
                             output_dim=CONFIG.embed_dim, act_layer=QuickGELU if quick_gelu else nn.GELU)


@pytest.mark.parametrize("quick_gelu", [False, True])
def test_encoder_draws_open_clips_initial_weights_and_computes_its_outputs(quick_gelu: bool) -> None:
    torch.manual_seed(0)
    reference = open_clip_encoder(quick_gelu).eval()
    torch.manual_seed(0)
    ours = build_encoder(CONFIG, quick_gelu).eval()
    expected, state = reference.state_dict(), ours.state_dict()
    assert list(state) == list(expected)
    assert all(torch.equal(state[key], expected[key]) for key in expected)
    inputs = torch.randn(3, 3, CONFIG.image_size, CONFIG.image_size)
    with torch.no_grad():
        assert torch.equal(ours(inputs), reference(inputs))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(ours(inputs), reference(inputs))


def test_encoder_holds_open_clips_weights_unchanged() -> None:
    reference = open_clip_encoder(quick_gelu=True).eval()
    ours = build_encoder(CONFIG, quick_gelu=True).eval()
    ours.load_state_dict(reference.state_dict())  # strict: every name and shape as open_clip's
    inputs = torch.randn(2, 3, CONFIG.image_size, CONFIG.image_size)
    with torch.no_grad():
        assert torch.equal(ours(inputs), reference(inputs))
