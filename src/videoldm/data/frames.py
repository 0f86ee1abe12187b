"""Clips stored as folders of frame images (one image per frame, sorted by name).

Some datasets ship extracted frames instead of videos; they have no timestamps, so their frame rate
comes from a sidecar (`fps` in the json) or the dataset's `image_fps`.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .decode import DecodeError, VideoInfo, resize_crop_plan

__all__ = ["IMAGE_EXTENSIONS", "list_frames", "is_frame_folder", "probe_frames", "load_frames"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _natural_key(p: Path):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


def list_frames(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, in natural order (frame2 before frame10)."""
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()), key=_natural_key)


def is_frame_folder(folder: Path, min_frames: int = 2) -> bool:
    return folder.is_dir() and len(list_frames(folder)) >= min_frames


def probe_frames(folder: Path, fps: float) -> VideoInfo:
    from PIL import Image

    frames = list_frames(folder)
    if not frames:
        raise DecodeError("no frame images")
    try:
        with Image.open(frames[0]) as im:
            w, h = im.size
    except OSError as err:
        raise DecodeError(f"cannot read {frames[0].name}: {err}") from None
    return VideoInfo(fps=fps, duration=len(frames) / fps, num_frames=len(frames), width=w, height=h, codec="images")


def load_frames(folder: Path, times, fps: float, size=None, crop_pos=(0.5, 0.5)) -> tuple[np.ndarray, np.ndarray]:
    """The frames shown at `times` (frame i is shown from i / fps), resized and cropped like videos."""
    from PIL import Image

    files = list_frames(folder)
    idx = np.floor(np.asarray(times) * fps + 1e-4).astype(int)
    if idx.min() < 0 or idx.max() >= len(files):
        raise DecodeError(f"clip needs frames {idx.min()}..{idx.max()}, folder has {len(files)}")
    cache: dict[int, np.ndarray] = {}
    out = []
    for i in idx:
        if i not in cache:
            try:
                with Image.open(files[i]) as im:
                    im = im.convert("RGB")
                    rh, rw, top, left = resize_crop_plan(im.height, im.width, size, crop_pos)
                    if (rh, rw) != (im.height, im.width):
                        im = im.resize((rw, rh), Image.Resampling.BICUBIC, reducing_gap=None)
                    arr = np.asarray(im)
            except OSError as err:
                raise DecodeError(f"cannot read {files[i].name}: {err}") from None
            if size is not None:
                arr = arr[top : top + size[0], left : left + size[1]]
            cache[i] = np.ascontiguousarray(arr)
        out.append(cache[i])
    return np.stack(out), idx / fps
