"""`videoldm evaluate`: temporal coherence of a video model vs its image model frame by frame;
`videoldm evaluate-decoder`: flicker and seams of a temporal decoder vs the image decoder."""
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

    d = subparsers.add_parser(
        "evaluate-decoder", help="temporal decoder vs image decoder on held-out clips (flicker, PSNR, seams)",
        description="Encode held-out clips with the (frozen) encoder, decode them with the image decoder frame by "
                    "frame and with the temporal decoder; report PSNR and the temporal error |dx_hat - dx| of both, "
                    "and for chunked decoding the temporal error at chunk boundaries against elsewhere.",
        epilog="example:\n  videoldm evaluate-decoder runs/driving/decoder/final --data data/camera-heldout "
               "--frames 48 --out docs/results/decoder/camera", formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("decoder", help="an exported decoder-stage folder (…/final)")
    d.add_argument("--data", required=True, help="folder of held-out videos")
    d.add_argument("--num", type=int, default=16, help="number of clips (the folder's first N)")
    d.add_argument("--frames", type=int, default=48, help="frames per clip (longer than a chunk, to see seams)")
    d.add_argument("--size", default=None, help="HxW to resize to (default: the videos' own)")
    d.add_argument("--chunk", type=int, default=16, help="frames per decoding chunk")
    d.add_argument("--overlaps", type=int, nargs="+", default=[4, 0], help="chunk overlaps to measure")
    d.add_argument("--out", help="folder for decoder.json and decoder.gif")
    d.set_defaults(func=run_decoder)


def run_decoder(args) -> int:
    import torch

    from videoldm.data import VideoFolderDataset
    from videoldm.evaluation import evaluate_decoder, format_decoder_summary
    from videoldm.training.decoder_stage import load_temporal_decoder

    decoder = load_temporal_decoder(args.decoder)
    size = tuple(int(v) for v in args.size.split("x")) if args.size else None
    dataset = VideoFolderDataset(args.data, num_frames=args.frames, fps=None, size=size, start=0, crop="center")
    if len(dataset) == 0:
        raise ValueError(f"no readable videos in {args.data}")
    clips = torch.stack([dataset[i][0] for i in range(min(args.num, len(dataset)))])
    summary = evaluate_decoder(decoder, clips, args.chunk, tuple(args.overlaps), args.out)
    print(format_decoder_summary(summary))
    return 0


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
