"""`videoldm rollout`: a long video from a prediction model, streamed to mp4, resumable."""
from __future__ import annotations

import json
import math
from pathlib import Path

from .options import add_device_options, device_and_dtype, positive


def add_command(subparsers) -> None:
    from videoldm.data.synthetic.driving import CROWDEDNESS, DAYTIMES

    p = subparsers.add_parser(
        "rollout", help="a long video: clips that continue the last frames of the one before",
        description="Generate a video of any length with a prediction model: the first clip from nothing, each "
                    "next one given the last frames of the one before (guidance on context). Frames are decoded "
                    "and appended to the mp4 as they come, so memory does not grow with the length. With --state, "
                    "every finished clip is kept there and an interrupted render picks up where it stopped, with "
                    "the same result. --interpolator raises the frame rate with an interpolation model.",
        epilog="examples:\n"
               "  videoldm rollout runs/driving/prediction/final --daytime night --crowdedness high --seconds 120 \\\n"
               "      --interpolator runs/driving/interpolation/final --decoder runs/driving/decoder/final \\\n"
               "      --state drive.state --out drive.mp4\n"
               "  videoldm rollout shapes/prediction --prompt 'a red circle moving left on a dark "
               "background' --clips 4 --out circle.mp4\n"
               "  videoldm rollout shapes/prediction --seconds-per-prompt 2 --out travel.mp4 \\\n"
               "      --prompt 'a red circle moving right on a dark background' \\\n"
               "      --prompt 'a red circle moving down on a dark background'\n"
               "  videoldm rollout bunny/prediction --prompt 'big buck bunny' --decoder bunny/decoder --seconds 10 "
               "--out bunny.mp4")
    p.add_argument("model", help="an exported prediction-stage folder (…/final), or a shipped one by name: "
                                 "shapes/prediction (text), driving/prediction (daytime, crowdedness), "
                                 "bunny/prediction (real footage, the prompt 'big buck bunny')")
    p.add_argument("--prompt", action="append",
                   help="caption (text models); give it again for prompts that change along the video, each for "
                        "--seconds-per-prompt (default: an equal share of the video)")
    p.add_argument("--seconds-per-prompt", type=float, help="with several --prompt: how long each one lasts")
    p.add_argument("--prompt-file", help="a schedule instead of --prompt: one 'SECONDS caption' per line, the "
                                         "second at which the caption starts (the first at 0)")
    p.add_argument("--daytime", choices=DAYTIMES, help="driving models: time of day")
    p.add_argument("--crowdedness", choices=list(CROWDEDNESS), help="driving models: traffic")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--clips", type=positive(int), help="number of clips")
    length.add_argument("--seconds", type=float, help="length of the video (clips computed from it)")
    p.add_argument("--frames", type=positive(int), default=16, help="frames per clip (default 16)")
    p.add_argument("--context", type=int, default=2, help="frames each clip continues from (default 2)")
    p.add_argument("--steps", type=positive(int), default=25)
    p.add_argument("--interpolation-steps", type=positive(int), help="sampling steps of the interpolator (default: --steps)")
    p.add_argument("--guidance", type=float, default=3.0, help="guidance on text/attributes and context together")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--decoder", help="a decoder-stage export, or a shipped one by name (driving/decoder, "
                                     "bunny/decoder): decode with the temporal decoder")
    p.add_argument("--interpolator", help="an interpolation-stage export: k times the frame rate")
    p.add_argument("--state", help="folder for per-clip state: resume an interrupted render")
    p.add_argument("--out", default="rollout.mp4", help="output mp4 (default rollout.mp4)")
    add_device_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from videoldm.inference.pipeline import VideoLDMPipeline
    from videoldm.inference.rollout import rollout
    from videoldm.inference.stack import scheduled_prompts

    if args.seconds is not None and not args.seconds > 0:
        raise ValueError(f"--seconds must be above 0, got {args.seconds:g}")
    if args.prompt_file and args.prompt:
        raise ValueError("give --prompt or --prompt-file, not both")
    if args.seconds_per_prompt is not None and not args.seconds_per_prompt > 0:
        raise ValueError(f"--seconds-per-prompt must be above 0, got {args.seconds_per_prompt:g}")
    if Path(args.out).suffix.lower() != ".mp4":
        raise ValueError(f"--out {args.out}: the rollout is written as mp4 frame by frame; give a .mp4 path "
                         "(make a GIF from it afterwards if you need one)")
    device, dtype = device_and_dtype(args)
    decoder = model_path(args.decoder) if args.decoder else None
    pipe = VideoLDMPipeline.from_pretrained(model_path(args.model), temporal_decoder=decoder).to(device, dtype)
    interpolator = VideoLDMPipeline.from_pretrained(args.interpolator).to(device, dtype) if args.interpolator else None
    if (args.prompt_file or len(args.prompt or []) > 1) and pipe.conditioning != "text":
        raise ValueError(f"prompts that change along the video are for text models; this one is conditioned on "
                         f"{pipe.conditioning}")
    if pipe.conditioning == "attributes":
        prompt = {k: v for k, v in (("daytime", args.daytime), ("crowdedness", args.crowdedness)) if v}
    elif pipe.conditioning == "text":
        if not args.prompt and not args.prompt_file:
            raise ValueError("this model is text-conditioned: give --prompt (or --prompt-file)")
        prompt = args.prompt[0] if args.prompt and len(args.prompt) == 1 else None
    else:
        prompt = None
    schedule = prompt_schedule(args) if pipe.conditioning == "text" and prompt is None else None
    fps = pipe.fps or 8.0
    clips = args.clips
    if clips is None:
        seconds = args.seconds
        if seconds is None and schedule is not None and args.seconds_per_prompt:
            seconds = len(schedule) * args.seconds_per_prompt
        elif seconds is None:
            seconds = 2 * args.frames / fps
        clips = max(1, 1 + math.ceil((seconds * fps - args.frames) / (args.frames - args.context)))
    if schedule is not None:
        if args.seconds_per_prompt is None and not args.prompt_file:  # an equal share of the video each
            total = (args.frames + (clips - 1) * (args.frames - args.context)) / fps
            schedule = [(i * total / len(schedule), p) for i, (_, p) in enumerate(schedule)]
        prompt = scheduled_prompts(schedule, clips, args.frames, args.context, fps)
    result = rollout(pipe, prompt, clips, args.out, num_frames=args.frames, context_frames=args.context,
                     guidance_scale=args.guidance, num_inference_steps=args.steps, seed=args.seed,
                     state_dir=args.state, interpolator=interpolator,
                     interpolation_steps=args.interpolation_steps)
    result["prompt"] = prompt
    # the clip boundaries, for `videoldm evaluate-rollout`
    Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


def model_path(name: str) -> Path:
    """A folder as given, or a shipped model by its name (``shapes/prediction``, ``bunny/decoder``) when no such
    folder exists."""
    from videoldm.export import is_export
    from videoldm.inference.shipped import SHIPPED

    return SHIPPED / name if not Path(name).exists() and is_export(SHIPPED / name) else Path(name)


def prompt_schedule(args) -> list[tuple[float, str]]:
    """``(start second, caption)`` pairs from several --prompt (--seconds-per-prompt each) or --prompt-file."""
    if args.prompt_file:
        schedule = []
        for number, line in enumerate(Path(args.prompt_file).read_text().splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            start, _, caption = line.strip().partition(" ")
            try:
                schedule.append((float(start), caption.strip()))
            except ValueError:
                raise ValueError(f"{args.prompt_file} line {number}: expected 'SECONDS caption', got {line!r}") from None
            if not caption.strip():
                raise ValueError(f"{args.prompt_file} line {number}: no caption after {start}")
        if not schedule:
            raise ValueError(f"{args.prompt_file}: an empty prompt schedule (lines 'SECONDS caption', the first at 0)")
        return schedule
    return [(i * (args.seconds_per_prompt or 0), p) for i, p in enumerate(args.prompt)]
