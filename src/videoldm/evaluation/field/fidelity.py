"""Reconstruction metrics against a reference video of the same size: PSNR, SSIM and VMAF.

For an autoencoder's or an upsampler's output against the true clip, not for generated videos (which
have no pixel-aligned reference). PSNR and SSIM are on the [0, 1] scale over RGB (SSIM: Wang et al.'s
Gaussian 11x11 window, sigma 1.5, per channel, without padding, like scikit-image's
``gaussian_weights=True``); VMAF is Netflix's v0.6.1 model as ported by ``vmaf-torch`` (the model ships
with the package; the ``vmaf`` extra), on luma at 0-255.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .frames import video_list

__all__ = ["psnr", "ssim", "vmaf", "reconstruction_scores"]


def _pairs(videos, references):
    a, b = video_list(videos), video_list(references)
    if len(a) != len(b):
        raise ValueError(f"{len(a)} videos against {len(b)} references: they must pair up one to one")
    for x, y in zip(a, b):
        if x.shape != y.shape:
            raise ValueError(f"a video of shape {x.shape} against a reference of shape {y.shape}: "
                             "reconstruction metrics need the same size and length")
    return a, b


def _float(v: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(v).permute(0, 3, 1, 2).double() / 255.0      # (T, 3, H, W)


def psnr(videos, references) -> list[float]:
    """PSNR (dB, peak 1) of each video against its reference, one MSE over the whole video."""
    out = []
    for x, y in zip(*_pairs(videos, references)):
        mse = float(((_float(x) - _float(y)) ** 2).mean())
        out.append(float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse)))
    return out


def _ssim_frames(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of each frame pair (T,) from (T, C, H, W) in [0, 1]."""
    size, sigma = 11, 1.5
    if min(x.shape[-2:]) < size:
        raise ValueError(f"SSIM needs frames of {size}x{size} or more, got {tuple(x.shape[-2:])}")
    g = torch.exp(-((torch.arange(size, dtype=x.dtype) - size // 2) ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    c = x.shape[1]
    window = (g[:, None] * g[None, :]).expand(c, 1, size, size)
    blur = lambda z: F.conv2d(z, window, groups=c)                      # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    n = size * size
    vx, vy, cov = vx * n / (n - 1), vy * n / (n - 1), cov * n / (n - 1)  # sample covariances, as scikit-image
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def ssim(videos, references) -> list[float]:
    """SSIM of each video against its reference, the mean over frames."""
    return [float(_ssim_frames(_float(x), _float(y)).mean()) for x, y in zip(*_pairs(videos, references))]


def vmaf(videos, references) -> list[float]:
    """VMAF (0-100, higher is closer) of each video against its reference, the mean over frames."""
    try:
        from vmaf_torch import VMAF  # optional: pip install videoldm[vmaf]
    except ImportError:
        raise ImportError("VMAF needs the vmaf-torch package (its model ships with it): "
                          "pip install 'videoldm[vmaf]'") from None
    model = VMAF(temporal_pooling=True, enable_motion=True, clip_score=True)
    out = []
    for x, y in zip(*_pairs(videos, references)):
        luma = lambda v: torch.from_numpy(                                # noqa: E731  BT.601 luma, 0-255
            v.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[:, None]
        with torch.no_grad():
            out.append(float(model(luma(y), luma(x))))
    return out


def reconstruction_scores(videos, references, metrics=("psnr", "ssim")) -> dict:
    """The means of the asked reconstruction metrics (and ``per_video``) over pairs of video and reference."""
    functions = {"psnr": psnr, "ssim": ssim, "vmaf": vmaf}
    per = {m: functions[m](videos, references) for m in metrics}
    return {**{m: float(np.mean(v)) for m, v in per.items()}, "per_video": per}
