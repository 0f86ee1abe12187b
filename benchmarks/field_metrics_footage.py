"""The weight-free field metrics on real footage and on damaged copies of it: docs/metrics.md's table.

The first 16 frames of each clip of scripts/fetch_footage.py (resized to at most 320 px wide), as they
are, with per-frame brightness jitter (uniform +-20 of 255), Gaussian noise (sigma 8), the frames
shuffled, and re-encoded with libx264 at crf 40. Prints a Markdown table.

    python benchmarks/field_metrics_footage.py
"""
from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import av
import cv2
import numpy as np

from videoldm.data.io import encode_mp4, read_video
from videoldm.evaluation.field import dynamic_degree, temporal_flickering, warping_error

ROOT = Path(__file__).resolve().parents[1]


def fetch_footage() -> dict:
    spec = importlib.util.spec_from_file_location("fetch_footage", ROOT / "scripts" / "fetch_footage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fetch()


def first_frames(path: Path, count: int = 16, max_width: int = 320) -> np.ndarray:
    v = read_video(path, max_frames=count)
    if v.shape[2] > max_width:
        h = round(v.shape[1] * max_width / v.shape[2] / 2) * 2
        v = np.stack([cv2.resize(f, (max_width, h), interpolation=cv2.INTER_AREA) for f in v])
    return v


def variants(v: np.ndarray) -> dict:
    rng = np.random.default_rng(0)
    jitter = np.clip(v.astype(np.float32) + rng.uniform(-20, 20, (len(v), 1, 1, 1)), 0, 255).astype(np.uint8)
    noise = np.clip(v + rng.normal(0, 8, v.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    encode_mp4(buf, v, 25, crf=40)
    buf.seek(0)
    with av.open(buf) as container:
        crf40 = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return {"original": v, "brightness jitter": jitter, "noise": noise, "shuffled": v[rng.permutation(len(v))],
            "crf 40": crf40}


def main() -> int:
    print("| clip | copy | flicker (higher steadier) | warping error ×10⁻³ (lower steadier) | visible | motion (px @256) |")
    print("|---|---|---|---|---|---|")
    for name, path in fetch_footage().items():
        v = first_frames(path)
        for label, video in variants(v).items():
            w = warping_error(video)
            print(f"| {name} {v.shape[2]}x{v.shape[1]} | {label} | {temporal_flickering(video)['flicker']:.4f} | "
                  f"{1000 * w['warping_error']:.3f} | {w['visible']:.2f} | {dynamic_degree(video)['motion']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
