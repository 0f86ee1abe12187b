"""Helpers that make small real video files for the data tests (generated in tmp dirs, never committed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from videoldm.data.io import write_mp4

BITS = 8  # frame index written as 8 black/white columns; survives H.264 at default quality


def index_frames(n: int, h: int = 32, w: int = 64, offset: int = 0) -> np.ndarray:
    """n frames whose content encodes their index (offset + i) in binary columns."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    cw = w // BITS
    for i in range(n):
        for b in range(BITS):
            if ((i + offset) >> b) & 1:
                frames[i, :, b * cw : (b + 1) * cw] = 255
    return frames


def read_index(frame: np.ndarray) -> int:
    """Inverse of index_frames for one uint8 (H, W, 3) frame (or float in [-1, 1])."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        frame = (frame.astype(np.float32) + 1) * 127.5
    w = frame.shape[1]
    cw = w // BITS
    return sum(int(frame[:, b * cw + cw // 4 : (b + 1) * cw - cw // 4].mean() > 127) << b for b in range(BITS))


def clip_indices(video) -> list[int]:
    """Frame indices of a (C, T, H, W) clip made from index_frames."""
    v = video.permute(1, 2, 3, 0).numpy()
    return [read_index(f) for f in v]


def make_video(path: Path, n: int = 48, fps: float = 24, h: int = 32, w: int = 64, **kw) -> Path:
    return write_mp4(path, index_frames(n, h, w), fps, **kw)


def truncate(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
