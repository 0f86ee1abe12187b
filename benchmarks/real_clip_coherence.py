"""The ablation's frame-level numbers (flicker, sharpness, warping error) on real clips of a data folder: the
row a generated clip is read against (docs/real-footage.md). Clips are taken at the same size and rate as
the models make them, their files spread evenly over the folder.

    python benchmarks/real_clip_coherence.py data/bunny/train --num 16 --frames 16 --size 64x112
"""
from __future__ import annotations

import argparse

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="a folder of videos (a manifest, if any, is read)")
    p.add_argument("--num", type=int, default=16, help="clips, one per file, files spread over the folder")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--size", default="64x112", help="HxW")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from videoldm.data import VideoFolderDataset
    from videoldm.evaluation.field.flow import warping_error
    from videoldm.evaluation.metrics.coherence_report import coherence_report

    size = tuple(int(s) for s in args.size.split("x"))
    data = VideoFolderDataset(args.data, num_frames=args.frames, fps=args.fps, size=size, crop="center",
                              seed=args.seed)
    chosen = np.unique(np.linspace(0, len(data) - 1, args.num).round().astype(int))
    videos = torch.stack([data[int(i)][0] for i in chosen])
    report = coherence_report(videos, "footage")
    print(f"| real clips ({len(chosen)} from {args.data}) | {args.size} | {report['flicker']:.4f} | "
          f"{report['sharpness']:.4f} | {warping_error(videos)['warping_error']:.4f} |")


if __name__ == "__main__":
    main()
