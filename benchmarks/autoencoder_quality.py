"""How much of a driving video survives the autoencoder: PSNR of the reconstructions of held-out clips, and
the cars the tracker finds in them against the originals (the diffusion models can draw no more than this).

    python benchmarks/autoencoder_quality.py runs/driving/autoencoder-roads/final --data data/driving-heldout \\
        --num 6 --frames 16
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("autoencoder", help="an autoencoder export (or a folder with vae/)")
    p.add_argument("--data", required=True, help="held-out driving clips")
    p.add_argument("--num", type=int, default=6)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    from videoldm.data import VideoFolderDataset
    from videoldm.evaluation.metrics import psnr
    from videoldm.evaluation.metrics.driving_tracking import daytime_of, track_cars
    from videoldm.evaluation.metrics.video import as_videos
    from videoldm.export import load_autoencoder

    torch.set_num_threads(args.threads)
    vae = load_autoencoder(args.autoencoder).eval()
    dataset = VideoFolderDataset(args.data, num_frames=args.frames, fps=None, start=0, crop="center")
    manifest = [json.loads(line) for line in Path(args.data, "manifest.jsonl").read_text().splitlines()]
    rows = []
    for i in range(min(args.num, len(dataset))):
        clip = dataset[i][0]  # (3, T, H, W) in [-1, 1]
        with torch.no_grad():
            frames = clip.transpose(0, 1)
            recon = vae.decode(vae.encode(frames).latent_dist.mode()).sample.clamp(-1, 1).transpose(0, 1)
        daytime = daytime_of(manifest[i].get("attributes") or manifest[i].get("caption"))
        real, made = as_videos(clip)[0], as_videos(recon)[0]
        cars = [track_cars(v, daytime)[1] for v in (real, made)]
        rows.append({"psnr": psnr(recon, clip), "cars_real": float(cars[0].mean()), "cars_recon": float(cars[1].mean()),
                     "found_real": float((cars[0] > 0).mean()), "found_recon": float((cars[1] > 0).mean())})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    print(f"{args.autoencoder}: {len(rows)} clips x {args.frames} frames")
    print(f"PSNR {mean['psnr']:.2f} dB; cars per frame {mean['cars_recon']:.2f} (originals {mean['cars_real']:.2f}); "
          f"a car found in {mean['found_recon']:.0%} of frames (originals {mean['found_real']:.0%})")


if __name__ == "__main__":
    main()
