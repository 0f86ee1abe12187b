"""`videoldm evaluate`: temporal coherence of a trained video model vs its image model frame by frame."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_command(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="coherence of a video model against its image model run frame by frame",
        description="Sample the same prompts from the same noise with the video model and with its image model "
                    "frame by frame (alpha = 1); track the objects and report jerk, found fraction, flicker and "
                    "sharpness for both.",
        epilog="example:\n  videoldm evaluate runs/shapes/temporal/final --data data/shapes --kind shapes "
               "--num 32 --out docs/results/shapes", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an exported temporal-stage folder (…/final)")
    p.add_argument("--data", required=True, help="dataset folder whose manifest gives the prompts")
    p.add_argument("--kind", choices=["shapes", "driving"], default="shapes")
    p.add_argument("--num", type=int, default=32, help="number of prompts (the manifest's first N)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="folder for coherence.json and GIFs")
    p.set_defaults(func=run)


def run(args) -> int:
    from videoldm.evaluation import evaluate_coherence, format_summary
    from videoldm.pipeline import VideoLDMPipeline

    manifest = Path(args.data) / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found")
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()][: args.num]
    pipeline = VideoLDMPipeline.from_pretrained(args.model)
    prompts = [r["caption"] if pipeline.conditioning == "text" else r["attributes"] for r in rows]
    summary = evaluate_coherence(pipeline, prompts, args.kind, args.out, num_frames=args.frames,
                                 num_inference_steps=args.steps, guidance_scale=args.guidance, seed=args.seed)
    print(format_summary(summary))
    return 0
