"""`videoldm evaluate`: temporal coherence of a video model vs its image model frame by frame;
`videoldm evaluate-decoder`: flicker and seams of a temporal decoder vs the image decoder;
`evaluate-prediction`, `evaluate-interpolation`, `evaluate-rollout`: the long-video models;
`evaluate-upsampler`: a video upsampler vs itself frame by frame and bicubic;
`evaluate-ablation`: the README's table, image model -> + temporal layers -> + temporal decoder -> + upsampler."""
from __future__ import annotations

import json
from pathlib import Path

from .options import add_device_options, device_and_dtype, folder_first, positive, size_arg


def add_command(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="coherence of a video model against its image model run frame by frame",
        description="Sample the same prompts from the same noise with the video model and with its image model "
                    "frame by frame (alpha = 1); track the objects and report jerk, found fraction, flicker and "
                    "sharpness for both.",
        epilog="example:\n  videoldm evaluate runs/shapes/temporal/final --data data/shapes --kind shapes "
               "--num 32 --out docs/results/shapes")
    p.add_argument("model", help="an exported temporal-stage folder (…/final)")
    p.add_argument("--data", required=True, help="dataset folder whose manifest gives the prompts")
    p.add_argument("--kind", choices=["shapes", "driving", "footage"], default="shapes")
    p.add_argument("--num", type=positive(int), default=32, help="number of prompts (the manifest's first N)")
    p.add_argument("--frames", type=positive(int), default=16)
    p.add_argument("--steps", type=positive(int), default=25)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-model", help="another image export to put the temporal layers on (e.g. a new style)")
    p.add_argument("--size", type=size_arg, help="HxW pixels to sample at (default: the trained size; e.g. 2x it, with --frames "
                                  "4x the trained length, to test the model beyond what it was trained on)")
    p.add_argument("--out", help="folder for coherence.json and GIFs")
    add_device_options(p)
    p.set_defaults(func=run)

    ab = subparsers.add_parser(
        "evaluate-ablation", help="the README's table: image model, + temporal layers, + temporal decoder, + upsampler",
        description="Sample the same prompts from the same noise through ever more of the stack: the image model "
                    "frame by frame, the video model (image decoder), with the temporal decoder, upsampled by the "
                    "video upsampler; report the coherence numbers of each and write ablation.md (a Markdown "
                    "table), ablation.json and a GIF per row.",
        epilog="example:\n  videoldm evaluate-ablation runs/driving/prediction/final --decoder runs/driving/decoder/final "
               "--upsampler runs/driving/upsampler-video/final --data data/driving-heldout --kind driving --num 8 "
               "--out docs/results/ablation")
    ab.add_argument("model", help="an exported temporal, prediction or interpolation folder (…/final)")
    ab.add_argument("--decoder", help="an exported decoder-stage folder (adds the temporal-decoder row)")
    ab.add_argument("--upsampler", help="an exported upsampler-video folder (adds the upsampler row)")
    ab.add_argument("--data", required=True, help="dataset folder whose manifest gives the prompts")
    ab.add_argument("--kind", choices=["shapes", "driving", "footage"], default="driving")
    ab.add_argument("--num", type=positive(int), default=8, help="number of prompts (the manifest's first N)")
    ab.add_argument("--frames", type=positive(int), default=16)
    ab.add_argument("--steps", type=positive(int), default=25)
    ab.add_argument("--guidance", type=float, default=3.0)
    ab.add_argument("--upsampler-steps", type=positive(int), help="default: the upsampler's own (from its recipe)")
    ab.add_argument("--seed", type=int, default=0)
    ab.add_argument("--out", help="folder for ablation.md, ablation.json and GIFs")
    add_device_options(ab)
    ab.set_defaults(func=run_ablation)

    d = subparsers.add_parser(
        "evaluate-decoder", help="temporal decoder vs image decoder on held-out clips (flicker, PSNR, seams)",
        description="Encode held-out clips with the (frozen) encoder, decode them with the image decoder frame by "
                    "frame and with the temporal decoder; report PSNR, the temporal error |dx_hat - dx| and the "
                    "optical-flow warping error of both, per clip too, and for chunked decoding the temporal error "
                    "at chunk boundaries against elsewhere.",
        epilog="examples:\n  videoldm evaluate-decoder runs/driving/decoder/final --data data/camera-heldout "
               "--frames 48 --out docs/results/decoder/camera\n"
               "  videoldm evaluate-decoder runs/bunny/decoder/final --data data/bunny/heldout --frames 32 "
               "--clips-per-video 6 --size 64x112   # clips spread over each file, inside its shots")
    d.add_argument("decoder", help="an exported decoder-stage folder (…/final)")
    d.add_argument("--data", required=True, help="folder of held-out videos")
    d.add_argument("--num", type=positive(int), default=16, help="number of clips (the folder's first N)")
    d.add_argument("--clips-per-video", type=positive(int), default=1,
                   help="clips from each video, their starts spread over its shots (default 1: the first frames)")
    d.add_argument("--frames", type=positive(int), default=48, help="frames per clip (longer than a chunk, to see seams)")
    d.add_argument("--size", type=size_arg, default=None, help="HxW to resize to (default: the videos' own)")
    d.add_argument("--chunk", type=positive(int), default=16, help="frames per decoding chunk")
    d.add_argument("--overlaps", type=int, nargs="+", default=[4, 0], help="chunk overlaps to measure (each 0..chunk-1)")
    d.add_argument("--out", help="folder for decoder.json and decoder.gif")
    add_device_options(d)
    d.set_defaults(func=run_decoder)

    pr = subparsers.add_parser(
        "evaluate-prediction", help="does the context condition? first generated frame vs the given frames",
        description="Give a prediction model the first S frames of held-out real clips; report the error between "
                    "the first generated frame and the last given one, next to the frame-to-frame change of real "
                    "video, and the same with no context (S = 0, same noise).",
        epilog="example:\n  videoldm evaluate-prediction runs/driving/prediction/final --data data/driving-heldout "
               "--out docs/results/long")
    pr.add_argument("model", help="an exported prediction-stage folder (…/final)")
    pr.add_argument("--context", type=int, default=2, help="given frames S (default 2)")
    _clip_options(pr, frames=16)
    add_device_options(pr)
    pr.set_defaults(func=run_prediction)

    it = subparsers.add_parser(
        "evaluate-interpolation", help="interpolated frames vs the true in-between frames and linear blending",
        description="Take every k-th frame of held-out real clips (at the interpolation model's frame rate) as "
                    "keyframes, generate the frames between, and report their PSNR against the true frames, next "
                    "to linear blending of the keyframes and to the autoencoder's own reconstruction.",
        epilog="example:\n  videoldm evaluate-interpolation runs/driving/interpolation/final "
               "--data data/driving-32fps-heldout --out docs/results/long")
    it.add_argument("model", help="an exported interpolation-stage folder (…/final)")
    _clip_options(it, frames=13)
    add_device_options(it)
    it.set_defaults(func=run_interpolation)

    ro = subparsers.add_parser(
        "evaluate-rollout", help="frame change and car (or shape) tracks at a rollout's clip boundaries vs inside clips",
        description="Read a video written by `videoldm rollout` and its JSON sidecar (clip boundaries); report the "
                    "frame-to-frame change at boundaries against inside clips, and the acceleration of tracked "
                    "objects (the shapes the prompt names, or else cars) at boundaries against elsewhere.",
        epilog="examples:\n  videoldm evaluate-rollout drive.mp4\n  videoldm evaluate-rollout bunny.mp4 --track none")
    ro.add_argument("video", help="an mp4 written by `videoldm rollout` (with VIDEO.json beside it)")
    ro.add_argument("--track", choices=["auto", "none"], default="auto",
                    help="auto: the shapes the prompt names, else cars; none: frame change only (real footage, "
                         "e.g. a bunny/prediction rollout)")
    ro.set_defaults(func=run_rollout)

    up = subparsers.add_parser(
        "evaluate-upsampler", help="video upsampler vs the same upsampler frame by frame and bicubic",
        description="Downsample held-out clips by the upsampler's scale, bring them back with bicubic interpolation, "
                    "the upsampler frame by frame (alpha = 1) and the video upsampler (same noise), and report PSNR "
                    "and the temporal error |dx_hat - dx| against the true clips.",
        epilog="example:\n  videoldm evaluate-upsampler runs/driving/upsampler-video/final --data data/driving-256-heldout "
               "--out docs/results/upsampler/driving")
    up.add_argument("model", help="an exported upsampler-video folder (…/final); an upsampler-image folder gives the "
                    "bicubic and frame-by-frame rows only")
    up.add_argument("--data", required=True, help="folder of held-out high-resolution videos")
    up.add_argument("--num", type=positive(int), default=8, help="number of clips (the folder's first N)")
    up.add_argument("--frames", type=positive(int), default=8, help="frames per clip (default 8)")
    up.add_argument("--steps", type=positive(int), help="default: the upsampler's own (from its recipe; 25 if none)")
    up.add_argument("--noise-level", type=int, help="noise augmentation level (default: the model's)")
    up.add_argument("--tile", type=positive(int), help="tile size in output pixels (default: whole frames)")
    up.add_argument("--seed", type=int, default=0)
    up.add_argument("--out", help="folder for upsampler.json and upsampler.gif")
    add_device_options(up)
    up.set_defaults(func=run_upsampler)


def _clip_options(p, frames: int) -> None:
    p.add_argument("--data", required=True, help="folder of held-out videos with a manifest (captions / attributes)")
    p.add_argument("--num", type=positive(int), default=16, help="number of clips (the folder's first N)")
    p.add_argument("--frames", type=positive(int), default=frames, help=f"frames per clip (default {frames})")
    p.add_argument("--steps", type=positive(int), default=25)
    p.add_argument("--guidance", type=float, default=2.0, help="guidance on context (and prompt)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="folder for the JSON and a GIF")


def _clips_and_prompts(args, conditioning: str, size=None):
    import torch

    from videoldm.data import VideoFolderDataset

    dataset = VideoFolderDataset(args.data, num_frames=args.frames, fps=None, size=size, start=0, crop="center")
    items = [dataset[i] for i in range(min(args.num, len(dataset)))]
    clips = torch.stack([clip for clip, _ in items])
    if conditioning == "text":
        prompts = [meta.get("caption") or "" for _, meta in items]
    elif conditioning == "attributes":
        prompts = [dict(meta.get("attributes") or {}) for _, meta in items]
    else:
        prompts = [None] * len(items)
    return clips, prompts


@folder_first
def run_prediction(args) -> int:
    from videoldm.evaluation.long_videos import evaluate_prediction
    from videoldm.inference.pipeline import VideoLDMPipeline

    pipe = VideoLDMPipeline.from_pretrained(args.model).to(*device_and_dtype(args))
    clips, prompts = _clips_and_prompts(args, pipe.conditioning)
    summary = evaluate_prediction(pipe, clips, prompts, args.context, args.steps, args.guidance, args.seed, args.out)
    print(json.dumps(summary, indent=2))
    return 0


@folder_first
def run_interpolation(args) -> int:
    from videoldm.evaluation.long_videos import evaluate_interpolation
    from videoldm.inference.pipeline import VideoLDMPipeline

    pipe = VideoLDMPipeline.from_pretrained(args.model).to(*device_and_dtype(args))
    clips, prompts = _clips_and_prompts(args, pipe.conditioning)
    summary = evaluate_interpolation(pipe, clips, prompts, None, args.steps, args.guidance, args.seed, args.out)
    print(json.dumps(summary, indent=2))
    return 0


def run_rollout(args) -> int:
    from videoldm.data.io import read_video
    from videoldm.evaluation.long_videos import rollout_joins

    sidecar = Path(args.video).with_suffix(".json")
    if not sidecar.is_file():
        raise FileNotFoundError(f"{sidecar} not found: evaluate-rollout reads the clip boundaries `videoldm rollout` "
                                "writes beside its video")
    info = json.loads(sidecar.read_text())
    summary = rollout_joins(read_video(args.video), info["clip_starts"], info.get("prompt"), track=args.track)
    print(json.dumps(summary, indent=2))
    return 0


@folder_first
def run_decoder(args) -> int:
    import torch

    from videoldm.data import VideoFolderDataset
    from videoldm.evaluation.decoder import evaluate_decoder, format_decoder_summary
    from videoldm.export import load_original_autoencoder, load_temporal_decoder

    device, dtype = device_and_dtype(args)
    decoder = load_temporal_decoder(args.decoder).to(device, dtype)
    original = load_original_autoencoder(args.decoder)
    if original is not None:
        original.to(device, dtype)
    spread = args.clips_per_video > 1
    dataset = VideoFolderDataset(args.data, num_frames=args.frames, fps=None, size=args.size,
                                 start="first" if spread else 0, crop="center", shots=spread)
    if len(dataset) == 0:
        raise ValueError(f"no readable videos in {args.data}")
    loaded = [clip for i in range(len(dataset)) for clip in (dataset.spread(i, args.clips_per_video) if spread
                                                              else [dataset[i]])][:args.num]
    clips = torch.stack([video for video, _ in loaded])
    names = [f"{Path(meta['path']).name}@{meta['start']:.1f}s" for _, meta in loaded]
    summary = evaluate_decoder(decoder, clips, args.chunk, tuple(args.overlaps), args.out, original=original,
                               names=names)
    print(format_decoder_summary(summary))
    return 0


def _prompts(data: str, num: int, pipeline) -> list:
    """The first ``num`` captions (text models) or attribute dicts of a dataset's manifest."""
    manifest = Path(data) / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found")
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()][:num]
    return [r["caption"] if pipeline.conditioning == "text" else r["attributes"] for r in rows]


@folder_first
def run_ablation(args) -> int:
    from videoldm.evaluation.ablation import evaluate_ablation, format_ablation
    from videoldm.inference.pipeline import VideoLDMPipeline
    from videoldm.inference.upsampling import Upsampler

    device, dtype = device_and_dtype(args)
    pipeline = VideoLDMPipeline.from_pretrained(args.model, temporal_decoder=args.decoder).to(device, dtype)
    upsampler = Upsampler.from_pretrained(args.upsampler).to(device, dtype) if args.upsampler else None
    summary = evaluate_ablation(pipeline, _prompts(args.data, args.num, pipeline), args.kind, upsampler, args.out,
                                num_frames=args.frames, num_inference_steps=args.steps, guidance_scale=args.guidance,
                                upsampler_steps=args.upsampler_steps, seed=args.seed, fps=pipeline.fps or 8.0)
    print(format_ablation(summary))
    return 0


@folder_first
def run(args) -> int:
    from videoldm.evaluation.coherence import evaluate_coherence, format_summary
    from videoldm.inference.pipeline import VideoLDMPipeline

    pipeline = VideoLDMPipeline.from_pretrained(args.model, image_model=args.image_model).to(*device_and_dtype(args))
    prompts = _prompts(args.data, args.num, pipeline)
    latent = pipeline.latent_size_for(args.size) if args.size else None
    summary = evaluate_coherence(pipeline, prompts, args.kind, args.out, num_frames=args.frames,
                                 num_inference_steps=args.steps, guidance_scale=args.guidance, seed=args.seed,
                                 latent_size=latent)
    print(format_summary(summary))
    return 0


@folder_first
def run_upsampler(args) -> int:
    import torch

    from videoldm.data import VideoFolderDataset
    from videoldm.evaluation.upsampler import evaluate_upsampler, format_upsampler_summary
    from videoldm.inference.upsampling import Upsampler

    upsampler = Upsampler.from_pretrained(args.model).to(*device_and_dtype(args))
    dataset = VideoFolderDataset(args.data, num_frames=args.frames, fps=None, start=0, crop="center")
    clips = torch.stack([dataset[i][0] for i in range(min(args.num, len(dataset)))])
    summary = evaluate_upsampler(upsampler, clips, args.steps, args.noise_level, args.seed, args.tile, args.out,
                                 upsampler.fps or 8.0)
    print(format_upsampler_summary(summary))
    return 0
