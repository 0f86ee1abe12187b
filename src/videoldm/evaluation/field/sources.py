"""A set of videos to measure: a folder (read one video at a time) or videos already in memory.

A folder is read by the data package's ``discover``: every video file (and frame folder) under it, in
name order, with the captions of its manifest or sidecar files; ``read_video`` decodes each file when its
turn comes, so a folder of 2048 videos is never held in memory at once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ...data.frames import list_frames
from ...data.io import read_video
from ...data.metadata import read_manifest
from ...data.video_folder import discover
from .frames import video_list

__all__ = ["VideoSource", "read_prompts"]


class VideoSource:
    """``names``, ``captions`` (or None each) and, iterated, ``(name, uint8 (T, H, W, 3))`` one at a time."""

    def __init__(self, videos, label: str = "videos"):
        self.label = label
        if isinstance(videos, (str, Path)):
            root = Path(videos)
            if not root.is_dir():
                raise FileNotFoundError(f"{label}: {root} is not a folder of videos")
            entries = discover(root)
            if not entries:
                raise ValueError(f"{label}: no video files (or frame folders) under {root}")
            self.paths = [Path(e["path"]) for e in entries]
            self.names = [str(p.relative_to(root)) if p.is_relative_to(root) else p.name for p in self.paths]
            self.captions = [e.get("caption") or None for e in entries]
            self._videos = None
        else:
            self._videos = video_list(videos)
            self.paths = None
            self.names = [f"{i:05d}" for i in range(len(self._videos))]
            self.captions = [None] * len(self._videos)

    def subset(self, count: int | None, seed: int = 0) -> list[int]:
        """Keeps a seeded random ``count`` of the videos (in name order; all if None or more), e.g. FVD-2048's
        2048 of a data set; returns the indices kept, to subset lists that go with the videos."""
        keep = list(range(len(self.names)))
        if count is not None and count < len(keep):
            keep = sorted(int(i) for i in np.random.default_rng(seed).choice(len(keep), count, replace=False))
        self.names, self.captions = [self.names[i] for i in keep], [self.captions[i] for i in keep]
        if self.paths is not None:
            self.paths = [self.paths[i] for i in keep]
        else:
            self._videos = [self._videos[i] for i in keep]
        return keep

    def __len__(self) -> int:
        return len(self.names)

    def read(self, index: int) -> np.ndarray:
        if self._videos is not None:
            return self._videos[index]
        path = self.paths[index]
        try:
            if path.is_dir():
                return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in list_frames(path)])
            video = read_video(path)
        except Exception as err:  # a broken file: name it, whatever the decoder raised
            raise ValueError(f"{self.label}: cannot read {path} ({type(err).__name__}: {err})") from None
        if len(video) < 2:
            raise ValueError(f"{self.label}: {path} has {len(video)} frame(s); temporal metrics need 2 or more")
        return video

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for i, name in enumerate(self.names):
            yield name, self.read(i)


def read_prompts(path: str | Path, names: list[str]) -> list[str]:
    """The prompt of each video: a .txt file has one line per video in name order; a .jsonl/.csv manifest
    names each video's file (``path``/``file_name``/``video``) and its ``caption``/``prompt``/``text``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--prompts: no file {path}")
    if path.suffix.lower() == ".txt":
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(lines) != len(names):
            raise ValueError(f"--prompts {path}: {len(lines)} prompts for {len(names)} videos (one line per video, "
                             "in the videos' name order)")
        return lines
    by_name = {}
    for rec in read_manifest(path):
        by_name[rec["path"]] = by_name[Path(rec["path"]).name] = rec["caption"]
    missing = [n for n in names if n not in by_name and Path(n).name not in by_name]
    if missing:
        raise ValueError(f"--prompts {path}: no prompt for {len(missing)} videos, e.g. {missing[:3]}")
    return [by_name.get(n, by_name.get(Path(n).name)) for n in names]
