import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


# The smallest autoencoder and text-conditioned UNet the stage tests train (16x16 frames, 8x8 latents).
TINY_AE = {"block_out_channels": [8, 16], "down_block_types": ["DownEncoderBlock2D"] * 2,
           "up_block_types": ["UpDecoderBlock2D"] * 2, "layers_per_block": 1, "latent_channels": 4,
           "norm_num_groups": 4, "sample_size": 16}
TINY_UNET = {"sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1, "block_out_channels": [16, 32],
             "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 16, "attention_head_dim": 4,
             "norm_num_groups": 8}


def small_unet_config(**overrides) -> dict:
    """A 2-level SD-like UNet: cross-attention at the first level, a plain level below it."""
    cfg = dict(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8,
    )
    cfg.update(overrides)
    return cfg


def make_unet(seed: int = 0, **overrides):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel.from_config(small_unet_config(**overrides)).eval()


def randomize_temporal(video_unet, seed: int = 1, std: float = 0.05):
    """Fresh temporal layers are exact no-ops (zero-initialised outputs); tests need them to do something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in video_unet.temporal_layers.named_parameters():
            if not name.endswith("mix_logit"):
                p.add_(torch.randn(p.shape, generator=g) * std)
    return video_unet


def force_alpha(video_unet, value: float):
    with torch.no_grad():
        for layer in video_unet.temporal_layers.values():
            layer.mix.mix_logit.fill_(torch.logit(torch.tensor(value)).item() if 0 < value < 1 else
                                      (40.0 if value == 1 else -40.0))


@pytest.fixture
def unet():
    return make_unet()
