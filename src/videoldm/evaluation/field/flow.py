"""Optical-flow metrics: warping error (temporal consistency) and VBench's dynamic degree (how much moves).

Flow is OpenCV's DIS (``"dis"``, medium preset) or Farneback (``"farneback"``) on the frames' luma.
``flow[y, x] = (dx, dy)`` says where pixel (x, y) of frame t is found in frame t+1.

**Warping error** (Lai et al. 2018, "Learning Blind Video Temporal Consistency"): frame t+1 is warped back
to frame t along the forward flow; the error is the mean squared difference (0-1 scale, over RGB) over the
pixels that are visible in both frames. A pixel is occluded when the forward and backward flows disagree
(Sundaram et al.'s check: |f + b|² > 0.01 (|f|² + |b|²) + 0.5) or its target falls outside the frame.
Per video it is the mean over frame pairs. It needs no reference: a video whose frames follow their own
motion warps onto itself; flicker, noise and jumbled frames do not.

**Dynamic degree** (VBench): per frame pair, the mean of the largest 5% of flow magnitudes; a video is
dynamic when at least round(4 T / 16) pairs exceed 6 px at a 256-pixel short side (VBench's thresholds,
scaled to the video's size). VBench's RAFT flow is replaced by the same DIS flow, and its sampling at
8 fps is left to the caller: the number depends on the frame rate.
"""
from __future__ import annotations

import cv2
import numpy as np

from .frames import video_list

__all__ = ["optical_flow", "warp", "occlusion_mask", "warping_error", "dynamic_degree", "FLOW_METHODS"]

FLOW_METHODS = ("dis", "farneback")


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def optical_flow(a: np.ndarray, b: np.ndarray, method: str = "dis") -> np.ndarray:
    """Flow (H, W, 2) float32 from uint8 RGB frame ``a`` to ``b``."""
    ga, gb = _gray(a), _gray(b)
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(ga, gb, None)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(ga, gb, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3,
                                            poly_n=5, poly_sigma=1.2, flags=0)
    raise ValueError(f"flow method must be one of {FLOW_METHODS}, got '{method}'")


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` sampled at (x, y) + flow (bilinear): frame t+1 brought back onto frame t."""
    h, w = flow.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)
    target = grid + flow
    return cv2.remap(image, target[..., 0], target[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def occlusion_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(H, W) bool: True where a pixel is visible in both frames (forward-backward consistent, target inside)."""
    h, w = forward.shape[:2]
    back = warp(backward, forward)                                    # backward flow at each pixel's target
    err = ((forward + back) ** 2).sum(-1)
    visible = err <= 0.01 * ((forward ** 2).sum(-1) + (back ** 2).sum(-1)) + 0.5
    x = np.arange(w)[None, :] + forward[..., 0]
    y = np.arange(h)[:, None] + forward[..., 1]
    return visible & (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def _pair_error(a: np.ndarray, b: np.ndarray, method: str) -> tuple[float, float]:
    forward, backward = optical_flow(a, b, method), optical_flow(b, a, method)
    mask = occlusion_mask(forward, backward)
    diff = ((a.astype(np.float32) - warp(b, forward).astype(np.float32)) / 255.0) ** 2
    error = float(diff.mean(-1)[mask].mean()) if mask.any() else float("nan")
    return error, float(mask.mean())


def warping_error(videos, method: str = "dis") -> dict:
    """``{"warping_error": mean over videos, "visible": mean visible fraction, "per_video": [...]}``.

    Lower is more consistent; the visible fraction says how much of the frame the error was taken on
    (a jumbled video is mostly "occluded", and the error is then that of what the flow could match).
    """
    errors, visible = [], []
    for v in video_list(videos):
        pairs = [_pair_error(v[t], v[t + 1], method) for t in range(len(v) - 1)]
        errors.append(float(np.nanmean([e for e, _ in pairs])))
        visible.append(float(np.mean([m for _, m in pairs])))
    return {"warping_error": float(np.nanmean(errors)), "visible": float(np.mean(visible)), "per_video": errors}


def dynamic_degree(videos, method: str = "dis") -> dict:
    """``{"dynamic_degree": fraction of dynamic videos, "motion": mean top-5% flow (px at a 256 short side), ...}``."""
    dynamic, motion = [], []
    for v in video_list(videos):
        scale = 256.0 / min(v.shape[1:3])
        peaks = []
        for t in range(len(v) - 1):
            magnitude = np.linalg.norm(optical_flow(v[t], v[t + 1], method), axis=-1).ravel()
            top = np.sort(magnitude)[-max(1, int(0.05 * magnitude.size)):]
            peaks.append(float(top.mean()) * scale)
        need = max(1, round(4 * len(v) / 16))
        dynamic.append(bool(sum(p > 6.0 for p in peaks) >= need))
        motion.append(float(np.mean(peaks)))
    return {"dynamic_degree": float(np.mean(dynamic)), "motion": float(np.mean(motion)),
            "per_video": [{"dynamic": d, "motion": m} for d, m in zip(dynamic, motion)]}
