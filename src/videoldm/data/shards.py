"""WebDataset-style tar shards: streamed, split across data-parallel ranks and DataLoader workers.

A shard is a plain tar whose members are grouped by key: `0001.mp4` + `0001.txt` (caption) and/or
`0001.json` (caption, attributes, anything else) form one sample. Why tar shards: large datasets
live on network storage, where reading a few big files sequentially is fast and listing millions of
small ones is not. Each (rank, worker) reads a disjoint part: whole shards when there are at least
as many shards as readers, otherwise every k-th sample of the stream. Both cover the set exactly once
per epoch. The shard order is shuffled with a seed shared by all ranks, so the split stays disjoint.
"""
from __future__ import annotations

import glob
import io
import itertools
import json
import os
import re
import tarfile
import zlib
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .clips import ClipSpec, SkipLog, to_tensor
from .decode import DecodeError, clip_times, decode_clip, probe
from .io import replacing
from .metadata import normalize_record
from .video_folder import VIDEO_EXTENSIONS, discover

__all__ = ["ShardDataset", "expand_shards", "iter_tar_samples", "write_shards", "folder_to_shards", "dist_rank_world"]

# every container the folder reader takes: a folder packed into shards reads back whole
VIDEO_KEYS = tuple(e.lstrip(".") for e in VIDEO_EXTENSIONS)


def expand_shards(spec) -> list[str]:
    """Shard paths from a folder (its *.tar), a glob, a brace range `shard-{000..009}.tar`, or a list."""
    if isinstance(spec, (list, tuple)):
        return [p for s in spec for p in expand_shards(s)]
    spec = str(spec)
    m = re.search(r"\{(\d+)\.\.(\d+)\}", spec)
    if m:
        a, b = m.group(1), m.group(2)
        return [p for i in range(int(a), int(b) + 1) for p in expand_shards(spec[: m.start()] + str(i).zfill(len(a)) + spec[m.end() :])]
    if os.path.isdir(spec):
        return sorted(glob.glob(os.path.join(spec, "**", "*.tar"), recursive=True))
    if any(c in spec for c in "*?["):
        return sorted(glob.glob(spec, recursive=True))
    return [spec]


def dist_rank_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """Explicit values, else torch.distributed's, else RANK/WORLD_SIZE (set by torchrun), else (0, 1)."""
    if rank is not None and world_size is not None:
        r, w = rank, world_size
    elif torch.distributed.is_available() and torch.distributed.is_initialized():
        r, w = torch.distributed.get_rank(), torch.distributed.get_world_size()
    else:
        r, w = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not 0 <= r < w:
        raise ValueError(f"rank {r} outside world size {w}")
    return r, w


def _split_key(name: str) -> tuple[str, str]:
    """WebDataset naming: key = path up to the first dot of the basename; the rest is the field."""
    d, base = os.path.split(name)
    if "." not in base:
        return name, ""
    stem, ext = base.split(".", 1)
    return os.path.join(d, stem) if d else stem, ext.lower()


def iter_tar_samples(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {field: bytes}) of consecutive members sharing a key, read as a stream (no seeking)."""
    key, fields = None, {}
    with tarfile.open(path, mode="r|*") as tf:
        for member in tf:
            if not member.isfile():
                continue
            k, ext = _split_key(member.name)
            if k != key and key is not None:
                yield key, fields
                fields = {}
            key = k
            f = tf.extractfile(member)
            fields[ext] = f.read() if f is not None else b""
    if key is not None:
        yield key, fields


class ShardDataset(IterableDataset):
    """Clips from tar shards, with the same clip options and item format as VideoFolderDataset.

    split: "shard" (whole shards per reader; needs >= ranks x workers shards), "sample" (every reader
    streams every shard and keeps every k-th sample), or "auto" (shard when possible). With "shard",
    readers may get unequal sample counts when shards differ in size: for DDP, use equal shards or
    stop at the shortest rank. `rank`/`world_size` default to torch.distributed (or RANK/WORLD_SIZE).
    Bad samples (undecodable, too short, no video) are skipped; `self.skipped` in each process.
    """

    def __init__(
        self,
        shards,
        num_frames: int = 16,
        fps: float | None = 8.0,
        size=None,
        *,
        start: str | float = "random",
        crop: str = "random",
        rank: int | None = None,
        world_size: int | None = None,
        split: str = "auto",
        shuffle_shards: bool = True,
        shuffle_buffer: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        self.shards = expand_shards(shards)
        if not self.shards:
            raise ValueError(f"no .tar shards found for {shards!r}")
        missing = [s for s in self.shards if not os.path.isfile(s)]
        if missing:
            raise FileNotFoundError(f"shard not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        if split not in ("auto", "shard", "sample"):
            raise ValueError(f"split must be 'auto', 'shard' or 'sample', got {split!r}")
        self.spec = ClipSpec(num_frames=num_frames, fps=fps, size=size, start=start, crop=crop)
        self.rank, self.world_size, self.split = rank, world_size, split
        self.shuffle_shards, self.shuffle_buffer, self.seed = shuffle_shards, shuffle_buffer, seed
        self.epoch = 0
        self.skipped = SkipLog()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def assignment(self, worker_id: int = 0, num_workers: int = 1):
        """(shards to read, sample stride, sample offset) for one reader; the split made explicit."""
        rank, world = dist_rank_world(self.rank, self.world_size)
        total, me = world * num_workers, rank * num_workers + worker_id
        shards = list(self.shards)
        if self.shuffle_shards:
            np.random.default_rng([self.seed, self.epoch]).shuffle(shards)  # same order on every rank
        mode = self.split if self.split != "auto" else ("shard" if len(shards) >= total else "sample")
        if mode == "shard":
            if len(shards) < total:
                raise ValueError(f"split='shard' needs at least {total} shards (ranks x workers), got {len(shards)}")
            return shards[me::total], 1, 0
        return shards, total, me

    def _samples(self, shards, stride, offset) -> Iterator[tuple[str, str, dict]]:
        n = 0
        for shard in shards:
            try:
                for key, fields in iter_tar_samples(shard):
                    if n % stride == offset:
                        yield shard, key, fields
                    n += 1
            except (tarfile.TarError, OSError, EOFError) as err:
                self.skipped.add(shard, f"unreadable shard after {n} samples: {err}")

    def _decode(self, shard: str, key: str, fields: dict):
        video_key = next((k for k in VIDEO_KEYS if k in fields), None)
        if video_key is None:
            raise DecodeError(f"no video field (mp4, webm, mkv, ... {len(VIDEO_KEYS)} containers) among {sorted(fields)}")
        rec = {"caption": "", "attributes": {}, "extra": {}}
        if "json" in fields:
            try:
                rec = normalize_record(json.loads(fields["json"]), where=f"{shard}#{key}.json")
            except (json.JSONDecodeError, ValueError) as err:
                raise DecodeError(f"bad json: {err}") from None
        for k in ("txt", "caption", "text"):
            if not rec["caption"] and k in fields:
                rec["caption"] = fields[k].decode("utf-8", "replace").strip()
        data = fields[video_key]
        info = probe(data)
        reason = self.spec.check(info)
        if reason:
            raise DecodeError(reason)
        if self.seed is not None:
            rng = np.random.default_rng([self.seed, self.epoch, zlib.crc32(f"{shard}#{key}".encode())])
        else:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        start, crop = self.spec.choose(info, rng)
        times = clip_times(start, self.spec.num_frames, self.spec.fps) if self.spec.fps else None
        frames, used = decode_clip(data, times, num_frames=self.spec.num_frames, start=start,
                                   size=self.spec.size, crop_pos=crop, duration=info.duration)
        meta = {
            "caption": rec["caption"], "attributes": rec["attributes"], "fps": float(self.spec.fps or info.fps),
            "source_fps": info.fps, "path": f"{shard}#{key}", "key": key, "shard": shard, "start": start,
            "timestamps": [float(t) for t in used], "frame_indices": [int(round(t * info.fps)) for t in used],
        }
        return to_tensor(frames), meta

    def __iter__(self):
        wi = get_worker_info()
        shards, stride, offset = self.assignment(wi.id if wi else 0, wi.num_workers if wi else 1)
        buffer: list = []
        rng = np.random.default_rng([self.seed or 0, self.epoch, offset, 7])
        for shard, key, fields in self._samples(shards, stride, offset):
            try:
                item = self._decode(shard, key, fields)
            except DecodeError as err:
                self.skipped.add(f"{shard}#{key}", str(err))
                continue
            if self.shuffle_buffer <= 1:
                yield item
                continue
            buffer.append(item)
            if len(buffer) >= self.shuffle_buffer:
                yield buffer.pop(int(rng.integers(len(buffer))))
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))))


def write_shards(samples: Iterable[tuple[str, dict[str, bytes]]], out: str | Path, per_shard: int = 100, prefix: str = "shard") -> list[Path]:
    """Write (key, {field: bytes}) samples into `out/prefix-000000.tar`, ... with `per_shard` samples each.

    Each shard is written whole or not at all (`data.io.replacing`): an interrupted run leaves complete
    shards only."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for index, group in itertools.groupby(enumerate(samples), key=lambda item: item[0] // per_shard):
        path = out / f"{prefix}-{index:06d}.tar"
        with replacing(path) as partial, tarfile.open(partial, "w") as tf:
            for _, (key, fields) in group:
                for ext, data in fields.items():
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    info.mtime = 0
                    tf.addfile(info, io.BytesIO(data))
        paths.append(path)
    return paths


def folder_to_shards(root: str | Path, out: str | Path, per_shard: int = 100, manifest=None) -> list[Path]:
    """Pack a folder of videos (with sidecars or a manifest) into shards: key.<ext> + key.json."""
    entries = [e for e in discover(Path(root), manifest) if e["kind"] == "video"]
    if not entries:
        raise ValueError(f"no video files under {root}")

    def gen():
        for i, e in enumerate(entries):
            meta = {"caption": e["caption"], "attributes": e["attributes"], **e["extra"], "source": str(e["path"])}
            ext = e["path"].suffix.lower().lstrip(".")
            yield f"{i:08d}", {ext: e["path"].read_bytes(), "json": json.dumps(meta).encode()}

    return write_shards(gen(), out, per_shard)
