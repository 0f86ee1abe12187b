"""`generate --image` and `--continue` on the shipped driving models, measured on held-out clips.

For each clip (given its own daytime and traffic): the PSNR of the video's first frame against the still (the
clip's first frame), and the first new frame's mean absolute change from the clip's last frame, as a multiple of
the clip's median frame-to-frame change.

    python benchmarks/image_to_video.py [--work /tmp/videoldm-i2v] [--num 4]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from videoldm.data.io import read_video

os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "33554432")
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "2147483647")
os.environ.setdefault("MALLOC_TOP_PAD_", "536870912")
VIDEOLDM = [sys.executable, "-m", "videoldm"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/videoldm-i2v"))
    parser.add_argument("--num", type=int, default=4)
    args = parser.parse_args()
    held = args.work / "held"
    if not (held / "manifest.jsonl").exists():
        subprocess.run([*VIDEOLDM, "data", "synth", "--kind", "driving", "--num", str(args.num), "--frames", "16",
                        "--size", "64x128", "--fps", "8", "--seed", "7", "--out", str(held)], check=True)
    psnrs, ratios = [], []
    for i, line in enumerate((held / "manifest.jsonl").read_text().splitlines()[:args.num]):
        row = json.loads(line)
        clip, attributes = held / row["path"], row["attributes"]
        given = ["--daytime", attributes["daytime"], "--crowdedness", attributes["crowdedness"], "--seconds", "2",
                 "--dtype", "float32", "--seed", str(i)]
        real = read_video(clip).astype(float)
        Image.fromarray(real[0].astype(np.uint8)).save(args.work / f"still{i}.png")
        subprocess.run([*VIDEOLDM, "generate", "--image", str(args.work / f"still{i}.png"), *given,
                        "--out", str(args.work / f"image{i}")], check=True, capture_output=True)
        first = read_video(args.work / f"image{i}" / "image.mp4")[0].astype(float)
        psnrs.append(10 * np.log10(255 ** 2 / ((first - real[0]) ** 2).mean()))
        subprocess.run([*VIDEOLDM, "generate", "--continue", str(clip), *given, "--out", str(args.work / f"cont{i}")],
                       check=True, capture_output=True)
        new = read_video(args.work / f"cont{i}" / "continued.mp4")[0].astype(float)
        step = np.median([np.abs(real[t + 1] - real[t]).mean() for t in range(len(real) - 1)])
        ratios.append(np.abs(new - real[-1]).mean() / step)
        print(f"clip {i} {attributes['daytime']}/{attributes['crowdedness']}: first frame {psnrs[-1]:.2f} dB; first new "
              f"step {np.abs(new - real[-1]).mean():.2f}/255 = {ratios[-1]:.2f}x the median {step:.2f}", flush=True)
    print(f"mean PSNR {np.mean(psnrs):.2f} dB; step ratios {np.round(ratios, 2).tolist()}, median {np.median(ratios):.2f}")


if __name__ == "__main__":
    main()
