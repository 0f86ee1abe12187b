"""`videoldm generate`: the main job. A driving clip and a text-to-video clip, as mp4 and GIF."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import output_folder
from .data import size_arg


def add_command(subparsers) -> None:
    from videoldm.generate import DEFAULT_PROMPT

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
               "--temporal-text path/to/stable-diffusion-v1-5 --prompt 'a sks dog running on a beach'",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", help=f"text-to-video prompt (default: '{DEFAULT_PROMPT}')")
    p.add_argument("--daytime", choices=["day", "night"], help="driving: time of day (default day)")
    p.add_argument("--crowdedness", choices=["low", "medium", "high"], help="driving: traffic (default medium)")
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
    p.add_argument("--temporal", help="a temporal-layer folder for --base")
    p.add_argument("--temporal-text", metavar="SD_FOLDER",
                   help="with --base: the Stable Diffusion folder whose text encoder the temporal layers were "
                        "trained with, when --base's is fine-tuned (DreamBooth): the spatial layers then read "
                        "--base's tokens, the temporal layers these")
    p.add_argument("--models", help="folder of the shipped models (default: the ones installed with videoldm)")
    p.add_argument("--out", default="videoldm-output", help="output folder (default videoldm-output)")
    p.set_defaults(func=run)

    s = subparsers.add_parser(
        "ship", help="collect trained runs into the shipped-models tree, with a model card each",
        description="Copy the final exports of the project's recipes (runs/...) into one self-contained folder "
                    "(references between them rewritten), with a MODEL_CARD.md per model; `videoldm generate` "
                    "reads that folder. `make models` trains every recipe and then runs this.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--runs", default=".", help="folder the runs/ paths are relative to (default: here)")
    s.add_argument("--out", help="destination (default: the installed videoldm/shipped)")
    s.add_argument("--only", nargs="+", help="ship only these names (e.g. shapes/image shapes/temporal)")
    s.add_argument("--metrics", help="YAML of a measured line per shipped name, for the model cards (default: "
                                     "configs/shipped-metrics.yaml under --runs, if there)")
    s.add_argument("--full-precision", action="store_true",
                   help="keep the weights in float32 (default: stored as float16, half the size, loaded as float32)")
    s.set_defaults(func=run_ship)


def run_ship(args) -> int:
    import yaml

    from videoldm.generate import SHIPPED
    from videoldm.shipping import SHIPPED_RUNS, ship, tree_size

    names = args.only or list(SHIPPED_RUNS)
    unknown = [n for n in names if n not in SHIPPED_RUNS]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; shipped: {', '.join(SHIPPED_RUNS)}")
    metrics_file = Path(args.metrics) if args.metrics else Path(args.runs) / "configs" / "shipped-metrics.yaml"
    if args.metrics and not metrics_file.is_file():
        raise FileNotFoundError(f"--metrics {metrics_file}: no such file")
    metrics = yaml.safe_load(metrics_file.read_text()) if metrics_file.is_file() else {}
    out = ship({n: Path(args.runs) / SHIPPED_RUNS[n] for n in names}, args.out or SHIPPED, metrics=metrics,
               root=args.runs, half=not args.full_precision)
    for name in names:
        print(f"{out / name}  {tree_size(out / name) / 2 ** 20:.1f} MiB")
    print(f"{tree_size(out) / 2 ** 20:.1f} MiB in all")
    return 0


def run(args) -> int:
    from videoldm.generate import DEFAULT_PROMPT, SHIPPED, check_request, driving_video, text_video, write_outputs

    models = Path(args.models) if args.models else SHIPPED
    check_request(args.seconds, args.steps, args.base, args.temporal, args.temporal_text)
    want_text = args.prompt is not None or args.base is not None or args.size is not None
    want_driving = args.daytime is not None or args.crowdedness is not None or args.upsample
    if args.size is not None and want_driving:
        raise ValueError("--size is for the text video; the driving models make their trained size "
                         "(--upsample gives it 4x larger)")
    if not want_text and not want_driving:
        want_text = want_driving = True
    out = output_folder(args.out)  # before any sampling
    written = []
    start = time.perf_counter()
    if want_driving:
        video = driving_video(models, args.daytime or "day", args.crowdedness or "medium", args.seconds, args.fps,
                              args.steps, args.guidance, args.seed, args.upsample,
                              upsample_steps=args.upsample_steps)
        written += write_outputs(video, out, "driving")
    if want_text:
        video = text_video(models, args.prompt or DEFAULT_PROMPT, args.seconds,
                           args.fps if not want_driving else None, args.steps, args.guidance, args.seed, args.base,
                           args.temporal, args.size, temporal_text=args.temporal_text)
        written += write_outputs(video, out, "text")
    for path in written:
        print(path)
    print(f"generated in {time.perf_counter() - start:.1f} s")
    return 0
