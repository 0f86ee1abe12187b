"""A map-style dataset over a folder of video files and frame-image folders.

Files are probed once at construction, so a folder without a single usable clip fails immediately
with the reasons, and files too short for the requested clip never reach the training loop. Files
that break later (truncated data found while decoding) are skipped at load time: another clip is
loaded instead, so bad data never stops an epoch.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .clips import ClipSpec, SkipLog, to_tensor
from .decode import DecodeError, clip_times, decode_clip, probe
from .frames import IMAGE_EXTENSIONS, is_frame_folder, load_frames, probe_frames
from .metadata import find_manifest, read_manifest, read_sidecar

__all__ = ["VIDEO_EXTENSIONS", "VideoFolderDataset", "discover"]

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".gif", ".m4v")


def discover(root: Path, manifest: str | Path | None = None, extensions=VIDEO_EXTENSIONS) -> list[dict]:
    """Entries {path, kind, caption, attributes, extra} under `root`.

    With a manifest (given, or manifest.jsonl / metadata.csv ... at the root) exactly its rows, paths
    relative to the manifest's folder; otherwise every video file and frame folder found recursively,
    with sidecar captions.
    """
    root = Path(root)
    mpath = Path(manifest) if manifest is not None else find_manifest(root)
    entries = []
    if mpath is not None:
        for rec in read_manifest(mpath):
            path = Path(rec["path"])
            path = path if path.is_absolute() else mpath.parent / path
            entries.append({**rec, "path": path, "kind": "frames" if path.is_dir() else "video"})
        return entries
    exts = tuple(e.lower() for e in extensions)
    for dirpath, dirnames, filenames in os.walk(root):
        # hidden names are not data: macOS's "._clip.mp4" copies, our own ".clip.partial.mp4" writes
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        filenames = [n for n in filenames if not n.startswith(".")]
        d = Path(dirpath)
        for name in sorted(filenames):
            if name.lower().endswith(exts):
                p = d / name
                entries.append({"path": p, "kind": "video", **read_sidecar(p)})
        if d != root and any(n.lower().endswith(IMAGE_EXTENSIONS) for n in filenames) and is_frame_folder(d):
            entries.append({"path": d, "kind": "frames", **read_sidecar(d)})
    return entries


class VideoFolderDataset(Dataset):
    """Clips of `num_frames` frames at `fps` from every video (or frame folder) under `root`.

    Item: (video float32 (C, T, H, W) in [-1, 1], meta) with meta = {caption, attributes, fps,
    source_fps, path, start, timestamps, frame_indices, index}; batch with `collate_clips`.
    `size=(H, W)` resizes to cover and crops (random or center); `fps=None` keeps the file's own
    frames. `seed` makes clip choice reproducible (per index and `set_epoch`); without it the torch
    RNG is used (seeded per DataLoader worker). Skipped files: `self.skipped` ({path: reason}).
    """

    def __init__(
        self,
        root: str | Path,
        num_frames: int = 16,
        fps: float | None = 8.0,
        size=None,
        *,
        start: str | float = "random",
        crop: str = "random",
        manifest: str | Path | None = None,
        extensions=VIDEO_EXTENSIONS,
        image_fps: float = 30.0,
        seed: int | None = None,
        max_retries: int = 20,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.root}")
        self.spec = ClipSpec(num_frames=num_frames, fps=fps, size=size, start=start, crop=crop)
        self.image_fps = float(image_fps)
        self.seed, self.epoch, self.max_retries = seed, 0, max_retries
        self.skipped = SkipLog()
        entries = discover(self.root, manifest, extensions)
        if not entries:
            raise ValueError(f"no video files ({', '.join(extensions)}) or frame folders under {self.root}")
        self.items: list[dict] = []
        for e in entries:
            try:
                if e["kind"] == "frames":
                    info = probe_frames(e["path"], float(e["extra"].get("fps", self.image_fps)))
                elif not e["path"].is_file():
                    raise DecodeError("file not found")
                else:
                    info = probe(e["path"])
            except DecodeError as err:
                self.skipped.add(e["path"], str(err))
                continue
            reason = self.spec.check(info)
            if reason:
                self.skipped.add(e["path"], reason)
                continue
            self.items.append({**e, "info": info})
        if not self.items:
            raise ValueError(f"no usable video under {self.root} for {num_frames} frames at {fps} fps; {self.skipped.summary(5)}")

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """With a seed: a different but reproducible clip choice per epoch."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        return np.random.default_rng([self.seed, self.epoch, index])

    def load(self, index: int, rng: np.random.Generator | None = None):
        """The clip of item `index`; raises DecodeError instead of skipping."""
        item = self.items[index]
        rng = rng or self._rng(index)
        info, spec = item["info"], self.spec
        start, crop = spec.choose(info, rng)
        times = clip_times(start, spec.num_frames, spec.fps) if spec.fps else None
        if item["kind"] == "frames":
            times = times if times is not None else clip_times(start, spec.num_frames, info.fps)
            frames, used = load_frames(item["path"], times, info.fps, spec.size, crop)
        else:
            frames, used = decode_clip(
                item["path"], times, num_frames=spec.num_frames, start=start, size=spec.size,
                crop_pos=crop, duration=info.duration,
            )
        meta = {
            "caption": item["caption"],
            "attributes": dict(item["attributes"]),
            "fps": float(spec.fps or info.fps),
            "source_fps": info.fps,
            "path": str(item["path"]),
            "start": start,
            "timestamps": [float(t) for t in used],
            "frame_indices": [int(round(t * info.fps)) for t in used],
            "index": index,
        }
        return to_tensor(frames), meta

    def __getitem__(self, index: int):
        rng = self._rng(index)
        j = index
        for _ in range(self.max_retries + 1):
            item = self.items[j]
            if str(item["path"]) not in self.skipped:
                try:
                    return self.load(j, rng)
                except DecodeError as err:
                    self.skipped.add(item["path"], str(err))
            j = int(rng.integers(len(self.items)))
        raise RuntimeError(f"no loadable clip after {self.max_retries} retries; {self.skipped.summary(5)}")

    def record(self, index: int) -> dict:
        """The manifest/sidecar record of item `index` (ground truth of procedural datasets in `extra`)."""
        return self.items[index]
