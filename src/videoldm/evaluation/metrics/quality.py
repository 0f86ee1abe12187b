"""Per-frame image quality: PSNR against a reference, and sharpness without one.

Why sharpness: temporal smoothing can buy coherence with blur; the paper's trade (coherence up,
frame quality about equal) has to be checked, and a blurred frame has a smaller Laplacian variance.
"""
from __future__ import annotations

import numpy as np

from .video import as_videos

__all__ = ["psnr", "sharpness"]

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def psnr(a, b) -> float:
    """PSNR in dB over all pixels of all frames (one MSE), peak 1 on the [0, 1] scale (255 for uint8); inf if equal."""
    x, y = as_videos(a).astype(np.float64), as_videos(b).astype(np.float64)
    if x.shape != y.shape:
        raise ValueError(f"a and b differ in shape: {x.shape} vs {y.shape}")
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def sharpness(videos) -> float:
    """Variance of the 4-neighbour Laplacian of the luma ([0, 1] scale) per frame, averaged over frames and videos."""
    y = as_videos(videos) @ _LUMA
    lap = y[..., :-2, 1:-1] + y[..., 2:, 1:-1] + y[..., 1:-1, :-2] + y[..., 1:-1, 2:] - 4.0 * y[..., 1:-1, 1:-1]
    return float(lap.var(axis=(-2, -1)).mean())
