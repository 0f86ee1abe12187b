"""The paper's two orders of training on Stable Diffusion, compared on a small SD-structured model.

Section 4.2 of the paper: SD's spatial layers were trained on LAION images, not on the video data. The
temporal layers can go on the frozen SD directly (order "temporal only"), or SD is first briefly fine-tuned on
the videos' frames and frozen, then the temporal layers are trained on top (order "image, then temporal").

Here the "Stable Diffusion" is the shipped shapes image model (a UNet2DConditionModel, an AutoencoderKL and a
CLIP text encoder), written out as a diffusers StableDiffusionPipeline folder, so both orders run through the
real SD recipes (configs/sd/image.yaml, configs/sd/temporal.yaml) with small-scale overrides. The "video
data" is a domain that image model never saw: the shapes clips on a checkerboard background. Both orders get
the same temporal recipe and steps; the second also gets the image steps. Then `videoldm evaluate` on held-out
prompts (the same noise for every model): caption match, found fraction, jerk, flicker, sharpness, for the
video model and its image model frame by frame.

    python benchmarks/training_orders.py --work runs/orders       # ~1 h on a 2-core CPU; every step resumes
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "33554432")
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "2147483647")
os.environ.setdefault("MALLOC_TOP_PAD_", "536870912")

ROOT = Path(__file__).resolve().parents[1]
VIDEOLDM = [sys.executable, "-m", "videoldm"]
SHIPPED_IMAGE = ROOT / "src/videoldm/shipped/shapes/image"


def run(*args: str) -> None:
    print("$", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True)


def write_sd_folder(out: Path) -> None:
    """The shipped shapes image model as a diffusers StableDiffusionPipeline folder (float32)."""
    import torch
    from diffusers import StableDiffusionPipeline

    from videoldm.export import load_image_model

    parts = load_image_model(SHIPPED_IMAGE)
    conditioner = parts["conditioner"]
    pipe = StableDiffusionPipeline(vae=parts["vae"].float(), text_encoder=conditioner.text_encoder.float(),
                                   tokenizer=conditioner.tokenizer, unet=parts["unet"].to(torch.float32),
                                   scheduler=parts["scheduler"], safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out)


def train(recipe: str, out: Path, *sets: str) -> Path:
    final = out / "final"
    if not final.exists():
        run(*VIDEOLDM, "train", ROOT / recipe, *[x for s in sets for x in ("--set", s)],
            "--set", f"run.output_dir={out}", "--set", "data.num_workers=0", "--set", "run.grad_accum=1",
            "--set", "run.gradient_checkpointing=false", "--set", "run.sample_every=0",
            "--set", "run.mixed_precision=auto")
    return final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/orders"))
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--image-steps", type=int, default=300)
    parser.add_argument("--temporal-steps", type=int, default=400)
    parser.add_argument("--num", type=int, default=16, help="held-out prompts to evaluate")
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data, heldout, sd = work / "checker", work / "checker-heldout", work / "sd-shapes"
    if not (data / "manifest.jsonl").exists():
        run(*VIDEOLDM, "data", "synth", "--kind", "shapes", "--num", args.clips, "--frames", 16, "--size", "64x64",
            "--fps", 8, "--style", "checker", "--out", data)
    if not (heldout / "manifest.jsonl").exists():
        run(*VIDEOLDM, "data", "synth", "--kind", "shapes", "--num", args.num, "--frames", 16, "--size", "64x64",
            "--fps", 8, "--style", "checker", "--split", "heldout", "--seed", 1, "--out", heldout)
    if not (sd / "model_index.json").exists():
        write_sd_folder(sd)
    common = [f"data.path={data}", "data.size=[64, 64]"]
    temporal = [*common, "data.batch_size=2", "optim.lr=5.0e-4", "optim.warmup_steps=50", "optim.schedule=cosine",
                f"run.max_steps={args.temporal_steps}", "run.checkpoint_every=100"]
    started = time.time()
    order_a = train("configs/sd/temporal.yaml", work / "a-temporal", f"model.image_model={sd}", *temporal)
    image = train("configs/sd/image.yaml", work / "b-image", f"model.autoencoder={sd}", f"model.unet.pretrained={sd}",
                  *common, "data.batch_size=8", "data.frames_per_clip=4", "optim.lr=1.0e-4", "optim.warmup_steps=50",
                  f"run.max_steps={args.image_steps}", "run.checkpoint_every=100")
    order_b = train("configs/sd/temporal.yaml", work / "b-temporal", f"model.image_model={image}", *temporal)
    print(f"trained in {time.time() - started:.0f} s", flush=True)
    rows = {}
    for name, model in (("temporal only (frozen SD)", order_a), ("image, then temporal", order_b)):
        out = work / ("eval-" + model.parent.name)
        if not (out / "coherence.json").exists():
            run(*VIDEOLDM, "evaluate", model, "--data", heldout, "--kind", "shapes", "--num", args.num,
                "--steps", 25, "--dtype", "float32", "--out", out)
        rows[name] = json.loads((out / "coherence.json").read_text())
    keys = ("caption_match", "found_fraction", "jerk", "flicker", "background_flicker", "sharpness")
    print("\n| order | model | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for name, report in rows.items():
        for which in ("video", "frame_by_frame"):
            cells = " | ".join(f"{report[which][k]:.4g}" for k in keys)
            print(f"| {name} | {which.replace('_', ' ')} | {cells} |")


if __name__ == "__main__":
    main()
