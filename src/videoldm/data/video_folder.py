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
from .probe_cache import ProbeCache

__all__ = ["VIDEO_EXTENSIONS", "NOT_VIDEO_EXTENSIONS", "VideoFolderDataset", "discover", "scan"]

# Containers FFmpeg reads that carry video. Files with these names are probed; so is any file whose
# extension is in neither list (FFmpeg finds the container from the bytes, not the name).
VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".qt", ".webm", ".mkv", ".mk3d", ".avi", ".gif", ".mpg", ".mpeg", ".mpe", ".m1v",
    ".m2v", ".mpv", ".vob", ".ts", ".m2ts", ".mts", ".flv", ".f4v", ".wmv", ".asf", ".ogv", ".ogg", ".ogm",
    ".3gp", ".3g2", ".mxf", ".dv", ".nut", ".y4m", ".h264", ".264", ".h265", ".hevc", ".ivf", ".rm", ".rmvb",
    ".divx", ".apng",
)
# Obviously not video: captions and manifests, documents, audio, archives, arrays and checkpoints. Never
# probed; named in `scan`'s not-read list unless they are a video's sidecar (or a frame folder's images).
NOT_VIDEO_EXTENSIONS = (
    ".txt", ".json", ".jsonl", ".csv", ".tsv", ".md", ".rst", ".yaml", ".yml", ".toml", ".xml", ".html", ".pdf",
    ".srt", ".vtt", ".ass", ".ssa", ".sub", ".log", ".py", ".sh", ".wav", ".mp3", ".flac", ".aac", ".m4a",
    ".opus", ".tar", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".npy", ".npz", ".pt", ".pth", ".ckpt",
    ".safetensors", ".bin", ".parquet", ".tif", ".tiff", ".heic", *IMAGE_EXTENSIONS,
)


def discover(root: Path, manifest: str | Path | None = None, extensions=None) -> list[dict]:
    """Entries {path, kind, caption, attributes, extra} under `root` (see `scan`)."""
    return scan(root, manifest, extensions)[0]


def _is_candidate(name: str, extensions) -> bool:
    low = name.lower()
    if extensions is not None:
        return low.endswith(tuple(e.lower() for e in extensions))
    return low.endswith(VIDEO_EXTENSIONS) or not low.endswith(NOT_VIDEO_EXTENSIONS)


def scan(root: Path, manifest: str | Path | None = None, extensions=None) -> tuple[list[dict], list[tuple[Path, str]]]:
    """(entries, not_read): what a folder holds, and every other file with why it is not read.

    With a manifest (given, or manifest.jsonl / metadata.csv ... at the root) the entries are exactly
    its rows, paths relative to the manifest's folder, and video files it does not list are not read.
    Otherwise every file that may be a video (a container extension, or one that is neither video nor
    obviously something else: FFmpeg decides) and every frame folder, recursively, with sidecar
    captions. Why the not-read list: a folder reader that silently drops files (a `.mpg` outside an
    allow-list) loses data without anyone noticing. Hidden names are neither read nor listed: macOS's
    "._clip.mp4" copies, our own ".clip.partial.mp4" writes and ".videoldm" probe cache.
    """
    root = Path(root)
    mpath = Path(manifest) if manifest is not None else find_manifest(root)
    entries: list[dict] = []
    not_read: list[tuple[Path, str]] = []
    if mpath is not None:
        for rec in read_manifest(mpath):
            path = Path(rec["path"])
            path = path if path.is_absolute() else mpath.parent / path
            entries.append({**rec, "path": path, "kind": "frames" if path.is_dir() else "video"})
        listed = {os.path.abspath(e["path"]) for e in entries}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
            for name in sorted(filenames):
                p = Path(dirpath) / name
                if (not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS)
                        and os.path.abspath(p) not in listed):
                    not_read.append((p, f"not listed in {mpath.name}"))
        return entries, not_read
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        filenames = sorted(n for n in filenames if not n.startswith("."))
        d = Path(dirpath)
        frame_folder = d != root and any(n.lower().endswith(IMAGE_EXTENSIONS) for n in filenames) and is_frame_folder(d)
        if frame_folder:
            entries.append({"path": d, "kind": "frames", **read_sidecar(d)})
        videos = [n for n in filenames if _is_candidate(n, extensions)]
        stems = {Path(n).stem for n in videos} | set(dirnames)  # sidecars: clip.txt next to clip.mp4 or clip/
        for name in filenames:
            p = d / name
            low = name.lower()
            if name in videos:
                entries.append({"path": p, "kind": "video", **read_sidecar(p)})
            elif low.endswith((".txt", ".json")) and (p.stem in stems or (frame_folder and name in ("meta.json", "caption.txt"))):
                continue  # read as a caption
            elif frame_folder and low.endswith(IMAGE_EXTENSIONS):
                continue  # a frame of this folder's clip
            elif low.endswith(IMAGE_EXTENSIONS):
                not_read.append((p, "an image outside a frame folder (a frame folder needs 2+ images)"))
            elif extensions is not None and not low.endswith(NOT_VIDEO_EXTENSIONS):
                not_read.append((p, f"extension not among {', '.join(extensions)}"))
            else:
                not_read.append((p, f"not a video ({Path(name).suffix.lower() or 'no extension'})"))
    return entries, not_read


class VideoFolderDataset(Dataset):
    """Clips of `num_frames` frames at `fps` from every video (or frame folder) under `root`.

    Item: (video float32 (C, T, H, W) in [-1, 1], meta) with meta = {caption, attributes, fps,
    source_fps, path, start, timestamps, frame_indices, shot, index}; batch with `collate_clips`.
    `size=(H, W)` resizes to cover and crops (random or center); `fps=None` keeps the file's own
    frames. `seed` makes clip choice reproducible (per index and `set_epoch`); without it the torch
    RNG is used (seeded per DataLoader worker). Skipped files: `self.skipped` ({path: reason}); files
    not read at all (not videos, not in the manifest): `self.not_read` ({path: reason}).

    `shots=True` (default) detects shot cuts in every video file (once: kept in the folder's probe
    cache, `probe_cache.py`) and samples each clip inside one shot; files without a shot long enough
    are skipped with that reason. Frame folders are one shot; so is every file when `start` is given in
    seconds (the caller placed the clip).
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
        extensions=None,
        image_fps: float = 30.0,
        seed: int | None = None,
        max_retries: int = 20,
        shots: bool = True,
        probe_cache: bool = True,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.root}")
        self.spec = ClipSpec(num_frames=num_frames, fps=fps, size=size, start=start, crop=crop)
        self.image_fps = float(image_fps)
        self.seed, self.epoch, self.max_retries = seed, 0, max_retries
        self.skipped = SkipLog()
        entries, not_read = scan(self.root, manifest, extensions)
        self.not_read = {str(p): reason for p, reason in not_read}
        if not entries:
            raise ValueError(f"no video files or frame folders under {self.root}"
                             + (f" ({len(not_read)} other files, e.g. {not_read[0][0].name}: {not_read[0][1]})" if not_read else ""))
        # a start in seconds is the caller's choice (evaluation): no clip is placed, no cuts are needed
        self.probes = ProbeCache(self.root, enabled=probe_cache) if shots and isinstance(start, str) else None
        self.items: list[dict] = []
        for e in entries:
            try:
                if e["kind"] == "frames":
                    info = probe_frames(e["path"], float(e["extra"].get("fps", self.image_fps)))
                elif not e["path"].is_file():
                    raise DecodeError("file not found")
                else:
                    info = self.probes.probe(e["path"]) if self.probes else probe(e["path"])
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

    def load(self, index: int, rng: np.random.Generator | None = None, at: float | None = None):
        """The clip of item `index` (``at``: starting there, in seconds); raises DecodeError instead of skipping."""
        item = self.items[index]
        rng = rng or self._rng(index)
        info, spec = item["info"], self.spec
        start, crop = spec.choose(info, rng)
        if at is not None:
            start = np.floor(at * info.fps + 1e-6) / info.fps if spec.fps is None else float(at)  # on a frame
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
            "shot": int(np.searchsorted(np.asarray(info.cuts, dtype=np.float64), start + 1e-6, side="right")),
            "index": index,
        }
        return to_tensor(frames), meta

    def spread(self, index: int, count: int) -> list:
        """Up to ``count`` clips of item `index` (as `load` gives them), their starts spread evenly over the file's
        shots (the first and the last start included), each clip inside one and none overlapping: evaluation over
        a whole film rather than its first seconds."""
        info = self.items[index]["info"]
        windows = self.spec.windows(info) or [(0.0, max(self.spec.max_start(info), 0.0))]
        edges = np.cumsum([0.0] + [hi - lo for lo, hi in windows])  # the windows laid end to end
        starts = []
        for position in np.linspace(0.0, edges[-1], count) if count > 1 else [edges[-1] / 2]:
            i = min(int(np.searchsorted(edges, position, side="right")) - 1, len(windows) - 1)
            start = windows[i][0] + position - edges[i]
            if not starts or start - starts[-1] >= self.spec.num_frames / (self.spec.fps or info.fps):
                starts.append(start)  # clips that do not overlap
        return [self.load(index, at=start) for start in starts]

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
