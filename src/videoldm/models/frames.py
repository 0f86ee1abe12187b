"""Folding videos into frames for image networks: what a video's per-video inputs become per frame.

An image UNet or VAE sees a video ``(B, C, T, H, W)`` as ``B*T`` frames; each per-video input (timestep,
tokens, class labels) is repeated for the frames of its video. The video UNet, the frame-by-frame
baseline and the autoencoders share these rules.
"""
from __future__ import annotations

import torch


def frame_timesteps(timestep, B: int, T: int, device) -> torch.Tensor:
    """A number, ``(B,)`` per video or ``(B, T)`` per frame -> ``(B*T,)``."""
    t = torch.as_tensor(timestep, device=device)
    if t.ndim == 0:
        return t.expand(B * T)
    if t.shape == (B,):
        return t.repeat_interleave(T)
    if t.shape == (B, T):
        return t.flatten()
    raise ValueError(f"timestep must be a number, ({B},) or ({B}, {T}); got shape {tuple(t.shape)}")


def frame_tokens(tokens: torch.Tensor | None, B: int, T: int, name: str) -> torch.Tensor | None:
    """Per-video ``(B, L, D)`` or per-frame ``(B, T, L, D)`` tokens as ``(B*T, L, D)`` for the image UNet."""
    if tokens is None:
        return None
    if tokens.ndim == 3 and tokens.shape[0] == B:
        return tokens.repeat_interleave(T, dim=0)
    if tokens.ndim == 4 and tokens.shape[:2] == (B, T):
        return tokens.flatten(0, 1)
    raise ValueError(f"{name} must be (B={B}, L, D) per video or (B={B}, T={T}, L, D) per frame; "
                     f"got {tuple(tokens.shape)}")


def per_frame(value, B: int, T: int):
    """Repeats per-video tensors (leading dim B) for every frame; recurses into dicts."""
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == B:
        return value.repeat_interleave(T, dim=0)
    if isinstance(value, dict):
        return {k: per_frame(v, B, T) for k, v in value.items()}
    return value


def vae_scale_factor(vae) -> int:
    """Pixels per latent pixel of an ``AutoencoderKL`` (its config), as diffusers' pipelines compute it."""
    config = getattr(vae, "config", vae)
    return 2 ** (len(config.block_out_channels) - 1)


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Starts of windows of ``window`` that cover ``length`` (frames of a chunked decode, pixels of a tiled
    upsampling), neighbours sharing at least ``overlap``; the last one is moved back to end at ``length``."""
    if window >= length:
        return [0]
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in 0..{window - 1}, got {overlap}")
    return sorted(set(range(0, length - window, window - overlap)) | {length - window})
