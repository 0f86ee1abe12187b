"""`videoldm upsample`: a video file to 4x its size with a (video) diffusion upsampler."""
from __future__ import annotations


from .options import add_device_options, device_and_dtype, positive


def add_command(subparsers) -> None:
    p = subparsers.add_parser(
        "upsample", help="upsample a video file with a diffusion upsampler (temporally aligned if it is a video one)",
        description="Read a video, upsample every frame by the model's scale (4x) with a diffusion upsampler "
                    "conditioned frame by frame on the input (noise-augmented at a fixed level), and write mp4 or "
                    "GIF. Large outputs go in overlapping tiles (--tile), so memory is set by the tile size.",
        epilog="examples:\n"
               "  videoldm upsample drive.mp4 --model runs/driving/upsampler-video/final --out drive-4x.mp4\n"
               "  videoldm upsample big.mp4 --model runs/driving/upsampler-video/final --tile 256 --out huge.mp4\n"
               "  videoldm upsample clip.mp4 --model path/to/stable-diffusion-x4-upscaler --prompt 'a cat' --out x4.mp4")
    p.add_argument("video", help="input video file")
    p.add_argument("--model", required=True, help="an upsampler-image/-video export, or an SD x4 upscaler folder")
    p.add_argument("--temporal", help="temporal layers to inflate the model with (a video export has its own)")
    p.add_argument("--prompt", help="text, for text-conditioned upsamplers (the SD x4 upscaler)")
    p.add_argument("--steps", type=positive(int), help="sampling steps (default: the model's own, from its recipe; 25 if "
                   "it has none)")
    p.add_argument("--noise-level", type=int, help="noise augmentation level (default: the model's, 20)")
    p.add_argument("--guidance", type=float, default=1.0, help="text guidance (text upsamplers)")
    p.add_argument("--tile", type=positive(int), help="tile size in output pixels (latent pixels for latent upsamplers)")
    p.add_argument("--overlap", type=int, default=32, help="tile overlap (default 32)")
    p.add_argument("--chunk", type=positive(int), default=8, help="frames upsampled together (default 8)")
    p.add_argument("--frame-by-frame", action="store_true", help="a video upsampler with alpha = 1 (for comparison)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="upsampled.mp4", help="output .mp4 or .gif")
    add_device_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from videoldm.data.io import read_video
    from videoldm.inference.outputs import VideoOutput, check_export_path
    from videoldm.inference.upsampling import Upsampler

    check_export_path(args.out)  # before the upsampling, not after it
    device, dtype = device_and_dtype(args)
    upsampler = Upsampler.from_pretrained(args.model, temporal_layers=args.temporal).to(device, dtype)
    frames = torch.from_numpy(read_video(args.video)).permute(0, 3, 1, 2)[None].float() / 127.5 - 1
    out = upsampler(frames, args.prompt, num_inference_steps=args.steps, noise_level=args.noise_level,
                    guidance_scale=args.guidance, seed=args.seed, tile_size=args.tile, tile_overlap=args.overlap,
                    frames_per_chunk=args.chunk, frame_by_frame=args.frame_by_frame)
    import av

    with av.open(args.video) as container:
        rate = container.streams.video[0].average_rate
    path = VideoOutput(frames=out.frames, fps=float(rate) if rate else out.fps).export(args.out)
    print(f"{path}: {tuple(out.frames.shape[1:])} frames (T, 3, H, W)")
    return 0
