"""Per-pixel temporal statistics: flicker of one video, and temporal error of a reconstruction.

All on the [0, 1] intensity scale, averaged over pixels, channels, frame pairs and videos.
"""
from __future__ import annotations

import numpy as np

from .video import as_videos

__all__ = ["flicker", "temporal_error"]


def flicker(videos, mask: np.ndarray | None = None) -> float:
    """Mean |x[t+1] - x[t]|: 0 for a static video, the noise level for a noisy one.

    It also counts real motion; `mask` (N, T, H, W) bool keeps only pixels that are in the mask in
    both frames of a pair (the report passes the pixels outside every tracked object, so what is
    left is the flicker of a background that should not change). NaN if no pixel is kept.
    """
    x = as_videos(videos)
    d = np.abs(x[:, 1:] - x[:, :-1]).mean(-1)
    if mask is None:
        return float(d.mean())
    keep = np.asarray(mask, bool).reshape(x.shape[:4])
    keep = keep[:, 1:] & keep[:, :-1]
    return float(d[keep].mean()) if keep.any() else float("nan")


def temporal_error(recon, ref) -> float:
    """Mean |Δx̂ - Δx| between the frame differences of a reconstruction and of its reference.

    Why: per-frame errors that stay fixed over time do not flicker; this counts only the error in
    how frames change, which is what a temporally fine-tuned decoder should reduce.
    """
    a, b = as_videos(recon), as_videos(ref)
    if a.shape != b.shape:
        raise ValueError(f"recon and ref differ in shape: {a.shape} vs {b.shape}")
    return float(np.abs((a[:, 1:] - a[:, :-1]) - (b[:, 1:] - b[:, :-1])).mean())
