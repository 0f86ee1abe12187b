"""What the pipelines return: frames in the form asked for, with the frame rate they play at.

Like diffusers' pipeline outputs (``output_type`` "pt", "np", "pil" or "latent"), plus the frame rate,
which every stage that changes it (interpolation) updates, and ``export`` to mp4 or GIF.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers.utils import BaseOutput

from ..data.io import write_gif, write_mp4

OUTPUT_TYPES = ("pt", "np", "pil", "latent")


def check_output_type(output_type: str) -> None:
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Frames ``(..., 3, H, W)`` in [-1, 1] -> uint8 ``(..., H, W, 3)``: the one conversion to pixels."""
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()


def convert_frames(frames: torch.Tensor, output_type: str):
    """``(B, T, 3, H, W)`` in [-1, 1] -> "pt": the same tensor; "np": uint8 ``(B, T, H, W, 3)``;
    "pil": one list of PIL images per video."""
    check_output_type(output_type)
    if output_type in ("pt", "latent"):
        return frames
    arrays = to_uint8(frames)
    if output_type == "np":
        return arrays
    from PIL import Image

    return [[Image.fromarray(f) for f in video] for video in arrays]


def video_grid(videos: torch.Tensor) -> np.ndarray:
    """``(B, T, 3, H, W)`` -> ``(T, H, B*W, 3)`` uint8: the videos side by side."""
    return to_uint8(torch.cat(list(videos), dim=-1))


def _uint8(video) -> np.ndarray:
    """One video in any output form -> uint8 ``(T, H, W, 3)``."""
    if isinstance(video, torch.Tensor):
        if video.ndim != 4 or video.shape[1] != 3:
            raise ValueError(f"cannot export latents or a tensor of shape {tuple(video.shape)}: "
                             "expected frames (T, 3, H, W)")
        return to_uint8(video)
    if isinstance(video, list):
        return np.stack([np.asarray(image.convert("RGB")) for image in video])
    return np.asarray(video, dtype=np.uint8)


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """uint8 frames ``(T, H, W, 3)`` to ``path``: H.264 mp4 or animated GIF, by the suffix."""
    path = check_export_path(path)
    if path.suffix.lower() == ".gif":
        return write_gif(path, frames, fps)
    return write_mp4(path, frames, fps)


@dataclass
class VideoOutput(BaseOutput):
    """``frames``: per video, in the form of ``output_type``; ``fps``: the rate they play at."""

    frames: torch.Tensor | np.ndarray | list
    fps: float

    def uint8(self, index: int = 0) -> np.ndarray:
        """Video ``index`` as uint8 frames ``(T, H, W, 3)``, whatever the output type."""
        return _uint8(self.frames[index])

    def export(self, path: str | Path, index: int = 0) -> Path:
        """Writes video ``index`` to ``path``: H.264 mp4 or animated GIF, by the suffix."""
        return write_video(path, self.uint8(index), self.fps)


def check_export_path(path: str | Path) -> Path:
    """``path`` as a Path if :meth:`VideoOutput.export` can write it (.mp4 or .gif); check it before
    long work, so that a render is not lost to a file name."""
    path = Path(path)
    if path.suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"export writes .mp4 or .gif, got {path.name}")
    return path
