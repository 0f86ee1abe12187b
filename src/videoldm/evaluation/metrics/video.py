"""One input format for every metric: float32 numpy (N, T, H, W, 3) in [0, 1].

Why: models hand us torch tensors (B, C, T, H, W) in [-1, 1], the data pipeline and the procedural
generators hand us uint8 (T, H, W, 3). Converting once here keeps every metric on one scale, so a
flicker of 0.01 means 1% of the full intensity range whatever the source.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_videos"]


def as_videos(videos) -> np.ndarray:
    """float32 (N, T, H, W, 3) in [0, 1] from any accepted form.

    Accepted: a torch float tensor (B, C, T, H, W) or (C, T, H, W) in [-1, 1] (the project's
    convention); a uint8 numpy array (T, H, W, 3) or (N, T, H, W, 3); a float32 numpy array of that
    shape already in [0, 1] (this function's own output, checked: a [-1, 1] or [0, 255] array is an
    error rather than a guess); a list of any of these (same sizes).
    """
    if isinstance(videos, (list, tuple)):
        return np.concatenate([as_videos(v) for v in videos], 0)
    if isinstance(videos, torch.Tensor):
        if not videos.is_floating_point() or videos.ndim not in (4, 5):
            raise ValueError(f"a tensor video must be float (B, C, T, H, W) or (C, T, H, W) in [-1, 1], got {videos.dtype} {tuple(videos.shape)}")
        x = videos.detach().float().cpu()
        x = x[None] if x.ndim == 4 else x
        if x.shape[1] != 3:
            raise ValueError(f"a tensor video must have 3 channels in dim 1, got {tuple(videos.shape)}")
        return ((x.permute(0, 2, 3, 4, 1).numpy() + 1.0) * 0.5).clip(0.0, 1.0).astype(np.float32)
    if isinstance(videos, np.ndarray) and videos.dtype == np.float32 and videos.ndim in (4, 5) and videos.shape[-1] == 3:
        if videos.size and (videos.min() < 0.0 or videos.max() > 1.0):
            raise ValueError(f"a float numpy video must be in [0, 1], got values in [{videos.min()}, {videos.max()}]")
        return videos[None] if videos.ndim == 4 else videos
    if isinstance(videos, np.ndarray):
        if videos.dtype != np.uint8 or videos.ndim not in (4, 5) or videos.shape[-1] != 3:
            raise ValueError(f"a numpy video must be uint8 (or float32 in [0, 1]) (T, H, W, 3) or (N, T, H, W, 3), got {videos.dtype} {videos.shape}")
        x = videos[None] if videos.ndim == 4 else videos
        return x.astype(np.float32) / 255.0
    raise TypeError(f"videos must be a torch tensor, a uint8 numpy array or a list of them, got {type(videos).__name__}")
