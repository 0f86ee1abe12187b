"""Clips per second of the folder and shard loaders at 16x128x256 (16 frames at 8 fps), 0 and 2 workers.

Source videos: procedural driving clips at 192x384, 30 fps, 2.4 s, H.264 (so every clip is decoded
with a seek, resampled 30 -> 8 fps by timestamps, resized and cropped). Run:

    .venv/bin/python benchmarks/bench_data.py [--clips 16] [--epochs 2] [--data DIR]

Sets the glibc allocator variables (re-executing itself) before timing, as DEVELOPERS.md asks.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ALLOC = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "2147483647", "MALLOC_TOP_PAD_": "536870912"}
if any(os.environ.get(k) != v for k, v in ALLOC.items()):
    os.environ.update(ALLOC)
    os.execv(sys.executable, [sys.executable, *sys.argv])

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from videoldm.data import ShardDataset, VideoFolderDataset, collate_clips  # noqa: E402
from videoldm.data.shards import folder_to_shards  # noqa: E402
from videoldm.data.synthetic import DrivingGenerator, write_dataset  # noqa: E402


def measure(dataset, workers: int, epochs: int, batch: int = 4) -> tuple[float, int]:
    """Clips/s over `epochs` timed passes after one untimed warm-up pass (worker start-up, file cache).

    Each timed pass starts at iter(): nothing was prefetched before the clock starts.
    """
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=collate_clips,
                        persistent_workers=workers > 0, prefetch_factor=2 if workers else None)
    for video, _ in loader:
        assert video.shape[1:] == (3, 16, 128, 256), video.shape
    n, elapsed = 0, 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        for video, _ in loader:
            n += video.shape[0]
        elapsed += time.perf_counter() - t0
    return n / elapsed, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=16, help="source videos to generate (default 16)")
    ap.add_argument("--epochs", type=int, default=2, help="passes timed per configuration (default 2)")
    ap.add_argument("--data", type=Path, help="keep the generated videos here (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    root = args.data or Path(tempfile.mkdtemp(prefix="bench_data_"))
    if not (root / "videos" / "manifest.jsonl").exists():
        t0 = time.perf_counter()
        write_dataset(DrivingGenerator(frames=72, size=(192, 384), fps=30, seed=0), root / "videos", args.clips)
        folder_to_shards(root / "videos", root / "shards", per_shard=max(1, args.clips // 4))
        print(f"generated {args.clips} source clips (72 frames, 192x384, 30 fps) + shards in {time.perf_counter() - t0:.1f}s")
    spec = dict(num_frames=16, fps=8, size=(128, 256))
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads {torch.get_num_threads()}; clips of 16x128x256 at 8 fps")
    for name, make in [("folder", lambda: VideoFolderDataset(root / "videos", seed=0, **spec)),
                       ("shards", lambda: ShardDataset(root / "shards", seed=0, **spec))]:
        for workers in (0, 2):
            rate, n = measure(make(), workers, args.epochs)
            print(f"{name:7s} workers={workers}: {rate:6.1f} clips/s ({1000 / rate:5.1f} ms/clip, {n} clips timed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
