"""Does the image model draw what a caption asks for? Frame-level caption match of a text image model.

Samples `--frames` independent frames (the image model alone, alpha = 1) for each of the first `--num`
captions of a shapes folder, at each guidance scale, and prints the share of frames showing every named
shape in its colour (`colour found`) and in its colour and form (`caption match`, the per-frame version of
`videoldm evaluate`'s), with the forms the tracker saw for each form asked for. Cheap (about 25 s per
scale for 48 frames on one CPU thread), so a training run's checkpoints can be followed with it.

    python benchmarks/image_forms.py runs/shapes/image/final --data data/shapes-heldout --guidance 1 3 7
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an image (or video) export with text conditioning")
    p.add_argument("--data", required=True, help="a shapes folder with manifest.jsonl (captions)")
    p.add_argument("--num", type=int, default=12, help="captions (default 12)")
    p.add_argument("--frames", type=int, default=4, help="frames per caption (default 4)")
    p.add_argument("--guidance", type=float, nargs="+", default=[3.0])
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    from videoldm.evaluation.metrics.shapes_tracking import PALETTE, asked_shapes, caption_match, classify, shape_of
    from videoldm.inference.pipeline import VideoLDMPipeline

    torch.set_num_threads(args.threads)
    lines = Path(args.data, "manifest.jsonl").read_text().splitlines()
    captions = [json.loads(line)["caption"] for line in lines[:args.num]]
    pipe = VideoLDMPipeline.from_pretrained(args.model)
    names = list(PALETTE)
    print(f"{args.model}: {len(captions)} captions x {args.frames} frames, DDIM {args.steps}")
    for scale in args.guidance:
        start = time.perf_counter()
        video = pipe(captions, num_frames=args.frames, guidance_scale=scale, num_inference_steps=args.steps,
                     seed=args.seed, progress=False, frame_by_frame=True).frames
        frames = ((video.permute(0, 1, 3, 4, 2).numpy() + 1) / 2).clip(0, 1)  # (B, T, H, W, 3)
        matched = found = 0
        seen = defaultdict(Counter)  # form asked -> forms seen
        for b, caption in enumerate(captions):
            label = classify(frames[b], 40.0)
            for f in range(args.frames):
                matched += caption_match(frames[b, f:f + 1], caption)
                colours_found = True
                for colour, form in asked_shapes(caption):
                    region = label[f] == names.index(colour)
                    colours_found &= bool(region.any())
                    seen[form][shape_of(region) if region.any() else "none"] += 1
                found += colours_found
        total = len(captions) * args.frames
        forms = "; ".join(f"{form}: {dict(c.most_common())}" for form, c in sorted(seen.items()))
        print(f"guidance {scale:g}: colour found {found / total:.2f}, caption match {matched / total:.2f} "
              f"({time.perf_counter() - start:.0f} s)\n    forms seen per form asked: {forms}", flush=True)


if __name__ == "__main__":
    main()
