"""Probes with shot cuts, measured once per file and kept in `<folder>/.videoldm/probes.jsonl`.

Why a cache: cut detection decodes every frame, too slow to repeat each time a dataset is built
(every training run, every DataLoader rank). Why next to the data: the cache moves and is deleted
with its folder, and the hidden folder is not data (`discover` skips hidden names). An entry is
keyed by the file's path relative to the folder, its size and modification time, and the detector
version: an edited file or a newer detector is measured again. Appends are single short lines, so
ranks building the same dataset at once at worst measure a file twice. A read-only folder works
without a cache.
"""
from __future__ import annotations

import json
from pathlib import Path

from .decode import VideoInfo, probe
from .shots import DETECTOR_VERSION, detect_cuts

__all__ = ["CACHE_NAME", "ProbeCache", "probe_with_shots"]

CACHE_NAME = Path(".videoldm") / "probes.jsonl"


def probe_with_shots(path: str | Path) -> VideoInfo:
    """`probe` plus the file's cuts (one full decode); raises DecodeError like `probe`."""
    info = probe(path)
    cuts = detect_cuts(path)
    # cuts at or past the probed duration (a header shorter than the stream) cannot bound a clip
    keep = [(t, k) for t, k in zip(cuts.times, cuts.frames) if 0 < t < info.duration]
    info.cuts = tuple(t for t, _ in keep)
    info.cut_frames = tuple(k for _, k in keep)
    info.shots_detected = True
    return info


class ProbeCache:
    """{relative path: VideoInfo with cuts} for the video files under `root`."""

    def __init__(self, root: str | Path, enabled: bool = True):
        self.root = Path(root)
        self.file = self.root / CACHE_NAME
        self.enabled = enabled
        self.entries: dict[str, dict] = {}
        self.hits = self.misses = 0
        if enabled and self.file.is_file():
            for line in self.file.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                    self.entries[rec["key"]] = rec
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by a killed writer: that file is measured again

    def _key(self, path: Path) -> tuple[str, dict]:
        st = path.stat()
        try:
            rel = str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:  # a manifest row pointing outside the folder
            rel = str(path.resolve())
        return rel, {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "detector": DETECTOR_VERSION}

    def probe(self, path: str | Path) -> VideoInfo:
        """The file's probe with cuts, from the cache when the file is unchanged."""
        path = Path(path)
        key, stamp = self._key(path)
        rec = self.entries.get(key)
        if rec is not None and all(rec.get(k) == v for k, v in stamp.items()):
            self.hits += 1
            return VideoInfo.from_dict(rec["info"])
        self.misses += 1
        info = probe_with_shots(path)
        if self.enabled:
            rec = {"key": key, **stamp, "info": info.to_dict()}
            self.entries[key] = rec
            try:
                self.file.parent.mkdir(exist_ok=True)
                with open(self.file, "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec) + "\n")
            except OSError:
                self.enabled = False  # a read-only dataset: measure every time, keep going
        return info

    def __repr__(self) -> str:
        return f"ProbeCache({self.file}, {len(self.entries)} entries, {self.hits} hits, {self.misses} misses)"
