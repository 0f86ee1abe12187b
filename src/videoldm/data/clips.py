"""What a clip is (T frames at an fps, resized/cropped to H x W) and how loaders pick one and report bad data.

Shared by the folder and the shard datasets so both give identical clips for identical files.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .decode import VideoInfo

__all__ = ["ClipSpec", "SkipLog", "SkippedFileWarning", "to_tensor", "collate_clips", "parse_size"]

_EPS = 1e-4


def parse_size(size) -> tuple[int, int] | None:
    """(H, W) from None, an int (square), a pair, or a string "HxW"."""
    if size is None:
        return None
    if isinstance(size, str):
        parts = size.lower().replace(",", "x").split("x")
        try:
            size = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"size must look like HxW (e.g. 128x256), got {size!r}") from None
        if len(size) == 1:
            size = size * 2
    elif isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"size must be two positive integers (H, W), got {size}")
    return size


@dataclass
class ClipSpec:
    """T frames at `fps` (None: the file's own frames, consecutive), resized to cover `size` and cropped.

    start: "random" (uniform over the valid range), "first", "center", or seconds from the start.
    crop: "random" or "center" (one crop window for the whole clip).
    """

    num_frames: int = 16
    fps: float | None = 8.0
    size: tuple[int, int] | None = None
    start: str | float = "random"
    crop: str = "random"

    def __post_init__(self):
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        self.size = parse_size(self.size)
        if self.crop not in ("random", "center"):
            raise ValueError(f"crop must be 'random' or 'center', got {self.crop!r}")
        if isinstance(self.start, str) and self.start not in ("random", "first", "center"):
            raise ValueError(f"start must be 'random', 'first', 'center' or seconds, got {self.start!r}")

    def span(self, info: VideoInfo) -> float:
        """Seconds from the clip's first to its last target time (at the file's rate when fps is None)."""
        return (self.num_frames - 1) / (self.fps or info.fps)

    def max_start(self, info: VideoInfo) -> float:
        """Latest start whose last frame is still on screen before the file ends.

        Native rate: T frames from `start` must exist, i.e. start <= duration - T / fps (half a frame
        of slack for rounding in container durations).
        """
        return self._last_start(info, info.duration, at_end=True)

    def _last_start(self, info: VideoInfo, end: float, at_end: bool) -> float:
        """Latest start whose frames are all shown before `end` (a cut, or the end of the file)."""
        if self.fps is None:
            return end - self.num_frames / info.fps + (0.5 / info.fps if at_end else 0.0)
        return end - self.span(info) - _EPS

    def windows(self, info: VideoInfo) -> list[tuple[float, float]]:
        """(earliest, latest) start of a clip inside each shot long enough for one; why: a clip that
        spans a cut jumps between scenes. Without detected cuts the file is one shot."""
        shots = info.shots
        out = []
        for i, (a, b) in enumerate(shots):
            hi = self._last_start(info, b, at_end=i == len(shots) - 1)
            if hi >= a - 1e-9:
                out.append((a, max(a, hi)))
        return out

    def check(self, info: VideoInfo) -> str | None:
        """Why a file cannot give a clip (None if it can)."""
        if self.fps is None and info.num_frames and info.num_frames < self.num_frames:
            return f"too short: {info.num_frames} frames < {self.num_frames}"
        if self.max_start(info) < 0:
            return f"too short: {info.duration:.3f}s is not enough for {self.num_frames} frames at {self.fps or info.fps:g} fps"
        if not isinstance(self.start, str) and self.start > self.max_start(info):
            return f"too short: clip at {self.start}s needs {self.start + self.span(info):.2f}s, file has {info.duration:.2f}s"
        if isinstance(self.start, str) and not self.windows(info):
            longest = max(b - a for a, b in info.shots)
            return (f"no shot long enough: {len(info.shots)} shots, the longest {longest:.2f}s, a clip of "
                    f"{self.num_frames} frames at {self.fps or info.fps:g} fps needs more")
        return None

    def choose(self, info: VideoInfo, rng: np.random.Generator) -> tuple[float, tuple[float, float]]:
        """(start seconds, crop position in [0, 1]^2) for one clip of this file, inside one shot.

        "random": a shot with probability proportional to its number of distinct starts, then a start
        uniform in it; "first": the first shot that fits; "center": the middle of the longest one.
        A start given in seconds is used as is (the caller chose it).
        """
        windows = self.windows(info) or [(0.0, max(self.max_start(info), 0.0))]
        if self.start == "random":
            unit = 1.0 / (self.fps or info.fps)  # a one-start window still gets a chance
            weights = np.array([hi - lo + unit for lo, hi in windows])
            lo, hi = windows[int(rng.choice(len(windows), p=weights / weights.sum()))]
            start = float(rng.uniform(lo, hi))
        elif self.start == "first":
            lo, hi = windows[0]
            start = lo
        elif self.start == "center":
            lo, hi = max(windows, key=lambda w: w[1] - w[0])
            start = (lo + hi) / 2
        else:
            lo = hi = start = float(self.start)
        if self.fps is None and isinstance(self.start, str):
            # native rate: start on a frame inside the window (the half-frame slack of the last window
            # is for container rounding, not a place to start)
            first = int(np.ceil(lo * info.fps - 1e-6))
            last = max(int(np.floor(hi * info.fps + 1e-6)), first)
            if (lo, hi) == windows[-1]:  # the file's last shot: the clamp that ignores the slack
                last = max(min(last, int(np.floor((info.duration - self.num_frames / info.fps) * info.fps + 1e-6))), first)
            start = min(max(round(start * info.fps), first), last) / info.fps
        crop = (float(rng.uniform()), float(rng.uniform())) if self.crop == "random" else (0.5, 0.5)
        return start, crop


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (C, T, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)
    return x.float().div_(127.5).sub_(1.0)


def collate_clips(batch):
    """DataLoader collate: (B, C, T, H, W) tensor and the list of per-clip metadata dicts.

    The default collate would try to merge attribute dicts whose keys differ between clips.
    """
    videos, metas = zip(*batch)
    return torch.stack(videos), list(metas)


class SkippedFileWarning(UserWarning):
    """A file a loader could not use; it was skipped and another clip was loaded instead."""


class SkipLog(dict):
    """{path: reason} of skipped files. Each path is warned about once; `summary()` for a report.

    With DataLoader workers each worker keeps its own log (skips found in workers are warned about
    from the worker processes; the log in the main process has only what it saw itself).
    """

    def add(self, path: str, reason: str) -> None:
        path = str(path)
        if path in self:
            return
        self[path] = reason
        warnings.warn(f"videoldm.data: skipping {path}: {reason}", SkippedFileWarning, stacklevel=3)

    def summary(self, limit: int = 20) -> str:
        if not self:
            return "no files skipped"
        lines = [f"{len(self)} file(s) skipped:"]
        lines += [f"  {p}: {r}" for p, r in list(self.items())[:limit]]
        if len(self) > limit:
            lines.append(f"  ... and {len(self) - limit} more")
        return "\n".join(lines)
