"""`videoldm generate`: the main job. A driving clip and a text-to-video clip, as mp4 and GIF."""
from __future__ import annotations

import time

from .options import add_device_options, device_and_dtype, output_folder, size_arg


def add_command(subparsers) -> None:
    from videoldm.data.synthetic.driving import CROWDEDNESS, DAYTIMES
    from videoldm.inference.shipped import DEFAULT_PROMPT, MODELS

    p = subparsers.add_parser(
        "generate", help="generate videos with the shipped models (or your own): the main job",
        description="With no arguments: a 2-second driving clip and a 2-second text-to-video clip from the small "
                    "models that ship with videoldm, written as mp4 and GIF to --out. --prompt asks for the text "
                    "video only; --daytime/--crowdedness for the driving video only (give both kinds to get both). "
                    "--base/--temporal use your own image model (a diffusers Stable Diffusion folder) with a "
                    "temporal-layer folder trained for it.",
        epilog="examples:\n"
               "  videoldm generate\n"
               f"  videoldm generate --prompt '{DEFAULT_PROMPT}' --seconds 4\n"
               "  videoldm generate --daytime night --crowdedness high --seconds 10 --fps 32 --upsample\n"
               "  videoldm generate --base path/to/stable-diffusion-v1-5 --temporal my-temporal-layers "
               "--prompt 'a dog running on a beach'\n"
               "  videoldm generate --base path/to/my-dreambooth --temporal my-temporal-layers "
               "--temporal-text path/to/stable-diffusion-v1-5 --prompt 'a sks dog running on a beach'\n"
               "  videoldm generate --image road.png --daytime night --seconds 4      # image-to-video\n"
               "  videoldm generate --continue videoldm-output/driving.mp4 --join      # two more seconds of it\n"
               "  videoldm generate --model bunny --seconds 4      # real footage: a clip of Big Buck Bunny")
    p.add_argument("--model", choices=MODELS,
                   help="that shipped model's video only: driving, shapes (text-to-video) or bunny (trained on the "
                        "film Big Buck Bunny; writes bunny.mp4/.gif); also picks the model of --image/--continue "
                        "(default: driving and shapes, as the other options ask)")
    p.add_argument("--prompt", help=f"text-to-video prompt (default: '{DEFAULT_PROMPT}')")
    p.add_argument("--daytime", choices=DAYTIMES, help="driving: time of day (default day)")
    p.add_argument("--crowdedness", choices=list(CROWDEDNESS), help="driving: traffic (default medium)")
    p.add_argument("--seconds", type=float, default=2.0, help="length of each video (default 2)")
    p.add_argument("--fps", type=float, help="frame rate: the model's (8), or 32 / 128 by interpolation (driving)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=25, help="sampling steps per stage (default 25)")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale (default 3)")
    p.add_argument("--upsample", action="store_true", help="driving: 4x video upsampler at the end")
    p.add_argument("--upsample-steps", type=int,
                   help="sampling steps of the upsampler (default: its own, from its recipe; --steps is for the "
                        "models that generate the frames)")
    p.add_argument("--size", type=size_arg,
                   help="text video only: HxW, multiples of 32 for the shipped model, up to 4x the trained 64x64 "
                        "(default the trained size)")
    p.add_argument("--base", help="your image model: a diffusers Stable Diffusion folder (needs --temporal)")
    p.add_argument("--temporal", help="a temporal-layer folder (or a temporal run's final/) for --base")
    p.add_argument("--base-config", metavar="SD_FOLDER",
                   help="with --base as an original single-file checkpoint (.safetensors/.ckpt): a diffusers Stable "
                        "Diffusion folder holding its configs and tokenizer (its weights are not read)")
    p.add_argument("--temporal-text", metavar="SD_FOLDER",
                   help="with --base: the Stable Diffusion folder whose text encoder the temporal layers were "
                        "trained with, when --base's is fine-tuned (DreamBooth): the spatial layers then read "
                        "--base's tokens, the temporal layers these")
    p.add_argument("--image", metavar="STILL",
                   help="image-to-video: animate this still (png, jpg, ...; resized to the model's size) with the "
                        "prediction model, driving by default (give the --daytime/--crowdedness the still shows), "
                        "or a text one with --prompt; writes image.mp4/.gif")
    p.add_argument("--continue", dest="continue_from", metavar="CLIP",
                   help="continue this clip from its last two frames; writes continued.mp4/.gif (new frames only)")
    p.add_argument("--join", action="store_true", help="with --continue: the clip and its continuation as one video")
    p.add_argument("--models", help="folder of the shipped models (default: the ones installed with videoldm)")
    p.add_argument("--out", default="videoldm-output", help="output folder (default videoldm-output)")
    add_device_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from videoldm.inference.shipped import Request, generate

    request = Request(prompt=args.prompt, daytime=args.daytime, crowdedness=args.crowdedness, seconds=args.seconds,
                      fps=args.fps, steps=args.steps, guidance=args.guidance, seed=args.seed, upsample=args.upsample,
                      upsample_steps=args.upsample_steps, size=args.size, base=args.base, temporal=args.temporal,
                      temporal_text=args.temporal_text, base_config=args.base_config, image=args.image,
                      continue_from=args.continue_from, join=args.join, model=args.model)
    # (checked whole when made, before any model is loaded)
    device, dtype = device_and_dtype(args)
    out = output_folder(args.out)  # before any sampling
    start = time.perf_counter()
    for path in generate(args.models, request, out, device=device, dtype=dtype):
        print(path)
    print(f"generated in {time.perf_counter() - start:.1f} s")
    return 0
