"""A patch discriminator of 3D convolutions, for fine-tuning the temporal decoder (Video LDM, section 3).

It judges overlapping space-time patches of a clip, so it penalises what a per-frame discriminator
cannot see: detail that changes from one frame to the next. The losses are those of the LDM autoencoders
(hinge or non-saturating), with the adversarial term weighted adaptively against the reconstruction.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


class VideoDiscriminator(ModelMixin, ConfigMixin):
    """PatchGAN in space and time: ``(B, 3, T, H, W)`` clips -> ``(B, 1, T', H', W')`` logits.

    ``num_layers`` strided convolutions halve height and width (time keeps its length), then two
    unstrided ones; the receptive field of one logit spans several frames and a patch of pixels.
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, channels: int = 32, num_layers: int = 3, temporal_kernel: int = 3,
                 max_channel_mult: int = 8):
        super().__init__()
        kt, pt = temporal_kernel, temporal_kernel // 2
        layers: list[nn.Module] = [nn.Conv3d(in_channels, channels, (kt, 4, 4), (1, 2, 2), (pt, 1, 1)),
                                   nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, num_layers + 1):
            out = channels * min(2 ** i, max_channel_mult)
            stride = (1, 2, 2) if i < num_layers else (1, 1, 1)
            layers += [nn.Conv3d(width, out, (kt, 4, 4), stride, (pt, 1, 1), bias=False),
                       nn.GroupNorm(min(32, out // 4), out), nn.LeakyReLU(0.2)]
            width = out
        layers.append(nn.Conv3d(width, 1, (kt, 4, 4), 1, (pt, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5 or video.shape[1] != self.config.in_channels:
            raise ValueError(f"the discriminator takes (B, {self.config.in_channels}, T, H, W) clips, "
                             f"got {tuple(video.shape)}")
        return self.net(video)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    if kind == "hinge":
        return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())
    if kind == "non-saturating":
        return 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())
    raise ValueError(f"discriminator loss must be hinge or non-saturating, got {kind!r}")


def generator_loss(fake_logits: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    if kind == "hinge":
        return -fake_logits.mean()
    if kind == "non-saturating":
        return F.softplus(-fake_logits).mean()
    raise ValueError(f"generator loss must be hinge or non-saturating, got {kind!r}")


def adaptive_weight(reconstruction_loss: torch.Tensor, adversarial_loss: torch.Tensor, output: torch.Tensor,
                    max_weight: float = 1e4) -> torch.Tensor:
    """``|grad rec| / |grad adv|`` at the decoder's output, so neither loss swamps the other (as in the LDM
    autoencoders, which take it at the decoder's last layer; the output works whatever is frozen)."""
    rec_grad, = torch.autograd.grad(reconstruction_loss, output, retain_graph=True)
    adv_grad, = torch.autograd.grad(adversarial_loss, output, retain_graph=True)
    return (rec_grad.norm() / (adv_grad.norm() + 1e-4)).clamp(0.0, max_weight).detach()
