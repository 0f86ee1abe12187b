"""sRGB to CIELAB, so colour distances are perceptual (ΔE) rather than raw RGB.

Why Lab: a small generative model shifts hue and brightness a little; in Lab a threshold of a few
tens of ΔE tolerates that evenly across the palette, where in RGB the same threshold is loose for
dark colours and tight for bright ones.
"""
from __future__ import annotations

import numpy as np

__all__ = ["rgb_to_lab", "delta_e"]

_RGB_TO_XYZ = np.array([
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
], np.float32)
_WHITE_D65 = np.array([0.950456, 1.0, 1.088754], np.float32)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values in [0, 1], shape (..., 3)."""
    rgb = np.asarray(rgb, np.float32)
    lin = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = lin @ _RGB_TO_XYZ.T / _WHITE_D65
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)


def delta_e(lab: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """CIE76 colour difference between Lab arrays (broadcast over leading dims)."""
    return np.sqrt(((lab - ref) ** 2).sum(-1))
