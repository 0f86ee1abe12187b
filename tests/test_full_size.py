"""The real Stable Diffusion architectures, random weights, small latents: inflation changes nothing at alpha = 1."""
import pytest
import torch
from conftest import force_alpha
from diffusers import UNet2DConditionModel

from videoldm import VideoUNet
from videoldm.models.loading import architecture_config

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name, latent", [("sd15", 16), ("sd21", 16), ("x4-upscaler", 16)])
def test_full_size_architecture_alpha_one_equals_image_unet(name, latent):
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(architecture_config(name)).eval()
    video = VideoUNet.from_unet2d(unet, zero_init=False, attention_window=4)
    cfg = unet.config
    B, T = 1, 3
    x = torch.randn(B, cfg.in_channels, T, latent, latent)
    t = torch.tensor([400])
    ehs = torch.randn(B, 8, cfg.cross_attention_dim)
    extra = {"class_labels": torch.tensor([20])} if cfg.num_class_embeds else {}
    with torch.no_grad():
        frames = x.transpose(1, 2).flatten(0, 1)
        per_frame = {k: v.repeat_interleave(T) for k, v in extra.items()}
        expected = unet(frames, t.repeat_interleave(T), ehs.repeat_interleave(T, 0), **per_frame).sample
        expected = expected.view(B, T, -1, latent, latent).transpose(1, 2)
        blended = video(x, t, ehs, **extra).sample
        force_alpha(video, 1.0)
        exact = video(x, t, ehs, **extra).sample
    assert (exact - expected).abs().max().item() <= 1e-5
    assert (blended - expected).abs().max().item() > 1e-3  # the temporal layers are live at alpha = 0.5
