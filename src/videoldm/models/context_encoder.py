"""Context conditioning for prediction and interpolation models (Video LDM, sections 4 and 5).

The context is ``c_S = (m_S * z, m_S)``: the clean latents of the frames the model is given (the mask
``m_S`` is 1 on them, 0 elsewhere), and the mask itself, along channels. A small downsampling encoder
turns it into features at every resolution of the UNet; a zero-initialised 1x1 projection per temporal
layer adds them to that layer's input. A new encoder is therefore a no-op, and a prediction model starts
as the video model it is fine-tuned from.

``carry`` (our addition, off by default): every frame also gets the latents of the nearest given frame
before and after it, each with a closeness weight 1 / (1 + distance in frames), 0 where there is none.
With the paper's c_S alone, a frame that is not given learns of the given ones only through temporal
attention; trained here (2000 steps on 2 CPU cores) the context helped the given frames and not the ones
after them (docs/long-videos.md). Carried latents give every frame its own copy of the nearest context,
as SVD gives every frame its conditioning image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ContextEncoder(nn.Module):
    """``(latents (B, C, T, h, w), mask (B, T))`` -> ``{layer key: (B*T, channels, h_l, w_l)}``.

    Args:
        latent_channels: C of the latents.
        widths: channels of the encoder's feature map at each UNet level (level l is 2^l times smaller).
        targets: per temporal layer, ``(level, channels)``: where it sits and how wide its input is.
        norm_groups: groups of the encoder's GroupNorms.
    """

    def __init__(self, latent_channels: int, widths: list[int], targets: dict[str, tuple[int, int]],
                 norm_groups: int = 8, carry: bool = False):
        super().__init__()
        self.latent_channels, self.carry = latent_channels, carry
        inputs = (latent_channels + 1) * (3 if carry else 1)
        self.conv_in = nn.Conv2d(inputs, widths[0], 3, padding=1)
        self.levels = nn.ModuleList()
        for level, width in enumerate(widths):
            previous = widths[max(level - 1, 0)]
            self.levels.append(nn.Sequential(
                nn.GroupNorm(_groups(norm_groups, previous), previous), nn.SiLU(),
                # the same geometry as diffusers' Downsample2D, so feature sizes match the UNet's levels
                nn.Conv2d(previous, width, 3, stride=2 if level else 1, padding=1)))
        self.projections = nn.ModuleDict()
        self.target_levels = {}
        for key, (level, channels) in targets.items():
            proj = nn.Conv2d(widths[level], channels, 1)
            nn.init.zeros_(proj.weight)
            nn.init.zeros_(proj.bias)
            self.projections[key] = proj
            self.target_levels[key] = level

    def forward(self, latents: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        B, C, T, h, w = latents.shape
        m = mask.to(latents.dtype).view(B, 1, T, 1, 1)
        c = torch.cat([latents * m, m.expand(B, 1, T, h, w)], dim=1)  # c_S = (m_S * z, m_S)
        if self.carry:
            c = torch.cat([c, *carried(latents, mask)], dim=1)
        x = self.conv_in(c.transpose(1, 2).flatten(0, 1))
        features = []
        for block in self.levels:
            x = block(x)
            features.append(x)
        return {key: proj(F.silu(features[self.target_levels[key]])) for key, proj in self.projections.items()}


def carried(latents: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame, the latents of the nearest given frame at or before it and at or after it, each followed
    by its closeness 1 / (1 + distance) as a channel; zeros where no frame is given on that side.
    ``latents`` (B, C, T, h, w), ``mask`` (B, T) -> two (B, C + 1, T, h, w)."""
    B, C, T, h, w = latents.shape
    t = torch.arange(T, device=latents.device).expand(B, T)
    given = mask > 0
    before = torch.where(given, t, torch.full_like(t, -1)).cummax(dim=1).values  # -1: none
    after = torch.where(given, t, torch.full_like(t, T)).flip(1).cummin(dim=1).values.flip(1)  # T: none
    sides = []
    for index, present in ((before, before >= 0), (after, after < T)):
        picked = latents.gather(2, index.clamp(0, T - 1).view(B, 1, T, 1, 1).expand(B, C, T, h, w))
        closeness = present.to(latents.dtype) / (1 + (index - t).abs().to(latents.dtype))
        closeness = closeness.view(B, 1, T, 1, 1)
        sides.append(torch.cat([picked * present.to(latents.dtype).view(B, 1, T, 1, 1),
                                closeness.expand(B, 1, T, h, w)], dim=1))
    return sides[0], sides[1]


def _groups(preferred: int, channels: int) -> int:
    g = min(preferred, channels)
    while channels % g:
        g -= 1
    return g


def check_context(sample: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None):
    """Validates ``context`` (B, C, T, h, w) and ``mask`` (B, T) against ``sample``; returns the mask as float.

    No context means S = 0: an all-zero mask (the unconditional branch of guidance on context).
    """
    B, C, T, h, w = sample.shape
    if context is None and mask is None:
        return torch.zeros(B, C, T, h, w, device=sample.device, dtype=sample.dtype), \
            torch.zeros(B, T, device=sample.device, dtype=sample.dtype)
    if context is None or mask is None:
        raise ValueError("give both context (the clean latents of the given frames) and context_mask, or neither")
    if context.shape != sample.shape:
        raise ValueError(f"context must have the sample's shape (B, C, T, h, w) = {tuple(sample.shape)}, "
                         f"got {tuple(context.shape)}")
    mask = torch.as_tensor(mask, device=sample.device)
    if mask.shape != (B, T):
        raise ValueError(f"context_mask must be (B, T) = ({B}, {T}), one flag per frame; got {tuple(mask.shape)}")
    if mask.device.type != "meta" and not ((mask == 0) | (mask == 1)).all():  # meta tensors hold no values
        raise ValueError("context_mask must be binary: 1 for a given frame, 0 for a frame to generate")
    return context, mask.to(sample.dtype)
