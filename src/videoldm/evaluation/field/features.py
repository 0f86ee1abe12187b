"""The feature extractors of FVD and FID, fed one video at a time, batched inside.

**FVD** (StyleGAN-V's convention): clips of 16 consecutive frames, each frame resized to 224x224
(bilinear, aspect ratio not kept), scaled to [-1, 1], through the Kinetics-400 I3D as
``detector(x, rescale=False, resize=False, return_features=True)``: 400 features per clip. Which 16
frames: the first (``clips="first"``, the default) or one random window per video (``clips="random"``,
seeded). StyleGAN-V's protocol ("FVD-2048") takes 2048 clips from each set; fewer give a biased-high,
noisier estimate and the report says how many were used.

**FID** (pytorch-fid's convention): every frame (or ``frames_per_video`` evenly spaced ones) resized to
299x299 (bilinear), through FID's Inception-v3: 2048 pool features per frame.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .frechet import FeatureStats
from .i3d import I3D_FRAMES, I3D_SIZE

__all__ = ["I3DFeatures", "InceptionFeatures"]


class _Batched:
    """Collects inputs and runs ``self._run`` on ``batch_size`` of them at a time (the last, smaller, at the end)."""

    def __init__(self, batch_size: int, device):
        self.batch_size, self.device = batch_size, torch.device(device)
        self.pending: list[torch.Tensor] = []
        self.features: list[np.ndarray] = []

    def _push(self, item: torch.Tensor) -> None:
        self.pending.append(item)
        if len(self.pending) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            batch = torch.stack(self.pending).to(self.device)
            self.pending = []
            with torch.no_grad():
                out = self._run(batch)
            self.features.append(out.detach().double().cpu().numpy())

    def array(self) -> np.ndarray:
        self._flush()
        return np.concatenate(self.features) if self.features else np.zeros((0, 0))

    def stats(self) -> FeatureStats:
        return FeatureStats.of(self.array(), self.name)


class I3DFeatures(_Batched):
    """I3D features of 16-frame clips: ``add(video)`` for each uint8 (T, H, W, 3) video, then ``stats()``.

    ``size`` 224 is the network's and the protocol's; tests may use less to run fast.
    """

    def __init__(self, detector, batch_size: int = 8, device="cpu", frames: int = I3D_FRAMES, size: int = I3D_SIZE,
                 clips: str = "first", seed: int = 0):
        super().__init__(batch_size, device)
        if clips not in ("first", "random"):
            raise ValueError(f"clips must be 'first' or 'random', got '{clips}'")
        self.detector, self.frames, self.size, self.clips = detector, frames, size, clips
        self.rng = np.random.default_rng(seed)
        self.name = f"i3d-kinetics400 logits, {frames} frames at {size}x{size}"

    def add(self, video: np.ndarray) -> None:
        if len(video) < self.frames:
            raise ValueError(f"FVD takes clips of {self.frames} frames; a video has only {len(video)} "
                             f"(use fewer frames, e.g. --fvd-frames {len(video)}, and say so next to the number)")
        start = 0 if self.clips == "first" else int(self.rng.integers(0, len(video) - self.frames + 1))
        clip = torch.from_numpy(np.ascontiguousarray(video[start:start + self.frames])).permute(0, 3, 1, 2).float()
        clip = F.interpolate(clip, size=(self.size, self.size), mode="bilinear", align_corners=False)
        self._push((clip / 127.5 - 1).clamp(-1, 1).permute(1, 0, 2, 3))    # (3, T, size, size) in [-1, 1]

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        return self.detector(batch, rescale=False, resize=False, return_features=True)


class InceptionFeatures(_Batched):
    """FID's Inception features of frames: ``add(video)`` for each uint8 (T, H, W, 3) video, then ``stats()``."""

    def __init__(self, inception, batch_size: int = 32, device="cpu", frames_per_video: int | None = None):
        super().__init__(batch_size, device)
        self.model, self.frames_per_video = inception, frames_per_video
        self.name = f"fid-inception-v3 pool3, at {inception.size}x{inception.size}"

    def add(self, video: np.ndarray) -> None:
        keep = range(len(video))
        if self.frames_per_video and self.frames_per_video < len(video):
            keep = np.linspace(0, len(video) - 1, self.frames_per_video).round().astype(int)
        for t in keep:
            self._push(torch.from_numpy(np.ascontiguousarray(video[t])).permute(2, 0, 1).float() / 255.0)

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)                                             # resized to 299 inside
