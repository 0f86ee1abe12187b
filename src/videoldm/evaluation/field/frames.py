"""The one video form the field metrics read: uint8 numpy ``(T, H, W, 3)``, one video at a time.

A folder's videos differ in size and length, so the field metrics take a list of videos rather than
one array. Tensors from a model (``(C, T, H, W)`` or a batch ``(B, C, T, H, W)`` in [-1, 1]) are converted
by the coherence metrics' ``as_videos`` and rounded to uint8 like a written video file.
"""
from __future__ import annotations

import numpy as np
import torch

from ..metrics.video import as_videos

__all__ = ["video_list"]


def video_list(videos) -> list[np.ndarray]:
    """A list of uint8 ``(T, H, W, 3)`` videos from a tensor, an array, or a list of either (any sizes)."""
    if isinstance(videos, (list, tuple)):
        out = [v for item in videos for v in video_list(item)]
    elif isinstance(videos, np.ndarray) and videos.dtype == np.uint8:
        if videos.ndim not in (4, 5) or videos.shape[-1] != 3:
            raise ValueError(f"a uint8 video must be (T, H, W, 3) or (N, T, H, W, 3), got {videos.shape}")
        out = list(videos[None] if videos.ndim == 4 else videos)
    elif isinstance(videos, (np.ndarray, torch.Tensor)):
        out = list(np.round(as_videos(videos) * 255).astype(np.uint8))
    else:
        raise TypeError(f"videos must be a tensor, a uint8 array or a list of them, got {type(videos).__name__}")
    for v in out:
        if len(v) < 2:
            raise ValueError(f"a video needs 2 frames or more for temporal metrics, got one of shape {v.shape}")
    return out
