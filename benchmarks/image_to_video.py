"""`generate --image` and `--continue` on the shipped models, measured on held-out clips.

For each clip (driving: given its own daytime and traffic; shapes: a held-out caption combination, its caption as
the prompt): the PSNR of the video's first frame against the still (the clip's first frame), and the first new
frame's mean absolute change from the clip's last frame, as a multiple of the clip's median frame-to-frame change
(also against the last frame as the autoencoder reconstructs it: the new frames are decoded, the given one is not).
Shapes adds the motion of the animated stills: jerk of the tracked shapes against the image model frame by frame
on the same prompts, and the share that move as the caption says.

    python benchmarks/image_to_video.py [--kind driving|shapes] [--work /tmp/videoldm-i2v] [--num 4]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from videoldm.data.io import read_video

os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "33554432")
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "2147483647")
os.environ.setdefault("MALLOC_TOP_PAD_", "536870912")
VIDEOLDM = [sys.executable, "-m", "videoldm"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["driving", "shapes"], default="driving")
    parser.add_argument("--work", type=Path, default=Path("/tmp/videoldm-i2v"))
    parser.add_argument("--num", type=int, default=4)
    args = parser.parse_args()
    work = args.work / args.kind
    held = work / "held"
    if not (held / "manifest.jsonl").exists():
        size, split = ("64x128", []) if args.kind == "driving" else ("64x64", ["--split", "heldout"])
        subprocess.run([*VIDEOLDM, "data", "synth", "--kind", args.kind, "--num", str(args.num), "--frames", "16",
                        "--size", size, "--fps", "8", "--seed", "7", *split, "--out", str(held)], check=True)
    from videoldm.inference.pipeline import VideoLDMPipeline
    from videoldm.inference.shipped import SHIPPED

    pipe = VideoLDMPipeline.from_pretrained(SHIPPED / args.kind / "prediction")
    psnrs, ratios, recon_ratios, animated, captions = [], [], [], [], []
    for i, line in enumerate((held / "manifest.jsonl").read_text().splitlines()[:args.num]):
        row = json.loads(line)
        clip, attributes = held / row["path"], row["attributes"]
        if args.kind == "driving":
            asked = ["--daytime", attributes["daytime"], "--crowdedness", attributes["crowdedness"]]
            label = f"{attributes['daytime']}/{attributes['crowdedness']}"
        else:
            asked, label = ["--prompt", row["caption"]], row["caption"]
            captions.append(row["caption"])
        given = [*asked, "--seconds", "2", "--dtype", "float32", "--seed", str(i)]
        real = read_video(clip).astype(float)
        Image.fromarray(real[0].astype(np.uint8)).save(work / f"still{i}.png")
        subprocess.run([*VIDEOLDM, "generate", "--image", str(work / f"still{i}.png"), *given,
                        "--out", str(work / f"image{i}")], check=True, capture_output=True)
        video = read_video(work / f"image{i}" / "image.mp4")
        animated.append(video)
        first = video[0].astype(float)
        psnrs.append(10 * np.log10(255 ** 2 / ((first - real[0]) ** 2).mean()))
        subprocess.run([*VIDEOLDM, "generate", "--continue", str(clip), *given, "--out", str(work / f"cont{i}")],
                       check=True, capture_output=True)
        new = read_video(work / f"cont{i}" / "continued.mp4")[0].astype(float)
        step = np.median([np.abs(real[t + 1] - real[t]).mean() for t in range(len(real) - 1)])
        ratios.append(np.abs(new - real[-1]).mean() / step)
        last = pipe.decode(pipe.encode(torch.from_numpy(real[-1:]).permute(0, 3, 1, 2)[None].float() / 127.5 - 1),
                           progress=False)  # the last frame as the autoencoder gives it back
        last = ((last[0, 0].permute(1, 2, 0).float().numpy() + 1) * 127.5).clip(0, 255).round()
        recon_ratios.append(np.abs(new - last).mean() / step)
        print(f"clip {i} {label}: first frame {psnrs[-1]:.2f} dB; first new step {np.abs(new - real[-1]).mean():.2f}/255 "
              f"= {ratios[-1]:.2f}x the median {step:.2f} ({recon_ratios[-1]:.2f}x from the reconstructed last frame)",
              flush=True)
    print(f"mean PSNR {np.mean(psnrs):.2f} dB; step ratios {np.round(ratios, 2).tolist()}, median {np.median(ratios):.2f}; "
          f"from the reconstruction {np.round(recon_ratios, 2).tolist()}, median {np.median(recon_ratios):.2f}")
    if args.kind == "shapes":
        from videoldm.evaluation.metrics.coherence_report import coherence_report

        ours = coherence_report(np.stack(animated), "shapes", captions)
        alone = pipe(captions, num_frames=16, seed=0, frame_by_frame=True, progress=False, output_type="np").frames
        base = coherence_report(alone, "shapes", captions)
        print(f"animated stills: jerk {ours['jerk']:.2f} vs the image model frame by frame {base['jerk']:.2f} "
              f"(ratio {ours['jerk'] / base['jerk']:.2f}); direction followed {ours['direction_match']:.2f}, "
              f"jumps {ours['jump_fraction']:.2f}, colour and form {ours['caption_match']:.2f}")


if __name__ == "__main__":
    main()
