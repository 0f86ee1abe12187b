"""Temporal interpolation (Video LDM, section 5): more frames between given keyframes.

An interpolation model (stage ``interpolation``) is trained on clips of ``m * k + 1`` frames whose frames
0, k, 2k, ... are given; it generates the k - 1 frames between each pair. Applied to a video of N frames
it gives ``(N - 1) * k + 1`` frames at k times the frame rate: the keyframes are cut into windows of
``m + 1`` that share their boundary keyframe, each window is sampled with guidance on its keyframes, and
the given frames are kept exactly. Applying it again multiplies the rate again (x4, then x4: x16).
"""
from __future__ import annotations

import torch

from .sampling import make_scheduler, sample
from .seeding import sample_generator


@torch.no_grad()
def interpolate(pipeline, keyframes: torch.Tensor, prompt=None, *, factor: int | None = None,
                window: int | None = None, guidance_scale: float = 2.0, num_inference_steps: int = 25,
                sampler: str = "ddim", seed: int = 0) -> torch.Tensor:
    """``keyframes``: scaled latents ``(1, C, N, h, w)``; returns ``(1, C, (N - 1) * factor + 1, h, w)``.

    ``factor``: frames per keyframe interval (default: the model's ``keyframe_every``); ``window``: keyframes
    per model call (default: those of the model's training clip, ``num_frames // factor + 1``).
    """
    unet = pipeline.unet
    if getattr(unet, "context_encoder", None) is None:
        raise ValueError("interpolation needs an interpolation model (stage: interpolation)")
    if keyframes.ndim != 5 or keyframes.shape[0] != 1 or keyframes.shape[2] < 2:
        raise ValueError(f"keyframes must be latents (1, C, N >= 2, h, w), got {tuple(keyframes.shape)}")
    k = factor or pipeline.info.get("keyframe_every", 4)
    per_call = window or max(2, (pipeline.info.get("num_frames") or 4 * k + 1) // k + 1)
    N = keyframes.shape[2]
    cond, uncond = pipeline.tokens([prompt]), pipeline.tokens([prompt], uncond=True)
    temporal, temporal_uncond = pipeline.temporal_tokens([prompt]) if cond is not None else ({}, {})
    scheduler = make_scheduler(sampler, pipeline.scheduler.config)
    pieces = [keyframes[:, :, :1]]
    for w, start in enumerate(range(0, N - 1, per_call - 1)):
        keys = keyframes[:, :, start:min(start + per_call, N)]
        n = keys.shape[2]
        T = (n - 1) * k + 1
        context = torch.zeros(1, keys.shape[1], T, *keys.shape[-2:], device=keys.device)
        context[:, :, ::k] = keys
        mask = torch.zeros(1, T, device=keys.device)
        mask[:, ::k] = 1
        out = sample(unet, scheduler, tuple(context.shape), cond=cond, uncond=uncond, guidance_scale=guidance_scale,
                     num_inference_steps=num_inference_steps, generator=sample_generator(seed, w), progress=False,
                     context=context, context_mask=mask, **temporal,
                     uncond_kwargs={"context_mask": torch.zeros(1, T, device=keys.device), **temporal_uncond})
        out[:, :, ::k] = keys  # the given frames stay exactly as given
        pieces.append(out[:, :, 1:])
    return torch.cat(pieces, dim=2)
