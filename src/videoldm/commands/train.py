"""`videoldm train` and `videoldm cache-latents`: run a training stage from a YAML recipe."""
from __future__ import annotations

import shlex
import sys

from .options import positive

EPILOG = """stages (the `stage:` key of the recipe):
  autoencoder   train a diffusers AutoencoderKL from scratch on video frames
  image         train an image LDM (UNet + text/attribute conditioning) on single frames
  temporal      Video LDM: freeze the image UNet, train only the temporal layers on clips
  decoder       temporal decoder: 3D-conv/attention layers on the autoencoder's decoder, patch-GAN loss
  prediction    a video model given 0, 1 or 2 first frames (mask conditioning), for rollouts
  interpolation a video model given every k-th frame, to raise the frame rate k times
  upsampler-image   a diffusion upsampler (pixel, or latent in the SD x4 layout) on random patches
  upsampler-video   temporal layers on a frozen upsampler-image, conditioned frame by frame

examples:
  videoldm train configs/shapes/autoencoder.yaml
  videoldm train configs/shapes/image.yaml --set run.max_steps=200 --set data.batch_size=16
  videoldm train configs/shapes/temporal.yaml --resume          # continue from the latest checkpoint
  videoldm train configs/shapes/image.yaml --export-checkpoint runs/shapes/image/checkpoint-00002500 --out /tmp/m
  videoldm cache-latents configs/shapes/temporal.yaml          # encode the clips once, to data.latents
  accelerate launch --multi_gpu --num_processes 2 -m videoldm train configs/shapes/temporal.yaml

A run folder (run.output_dir) gets log.csv, tensorboard/, samples/, checkpoint-NNNNNNNN/ and final/."""


def add_command(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a stage (autoencoder, image, temporal, decoder, prediction, ...) from a YAML recipe",
                              description="Train one stage of a Video LDM from a YAML recipe.", epilog=EPILOG)
    p.add_argument("config", help="recipe YAML (see configs/)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue from CHECKPOINT, or from the run folder's latest checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a recipe value (YAML syntax), e.g. --set run.max_steps=100")
    p.add_argument("--export-checkpoint", metavar="CHECKPOINT",
                   help="do not train: export CHECKPOINT (its EMA weights, as `final/` would be) to --out, to "
                        "evaluate a run while it trains")
    p.add_argument("--out", help="with --export-checkpoint: the folder to write (default: CHECKPOINT/export)")
    p.set_defaults(func=run_train)

    c = subparsers.add_parser("cache-latents", help="encode a recipe's clips with its autoencoder, once",
                              description="Encode every clip of the recipe's dataset with the (frozen) "
                                          "autoencoder and write them to data.latents, so image and temporal "
                                          "training skip the encoder.")
    c.add_argument("config", help="an image or temporal recipe YAML")
    c.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    c.add_argument("--batch-size", type=positive(int), default=16, help="clips encoded at once (default 16)")
    c.set_defaults(func=run_cache)


def run_train(args) -> int:
    from videoldm.training.config import load_config
    from videoldm.training.trainer import train

    if args.export_checkpoint:
        from pathlib import Path

        from videoldm.training.trainer import Trainer

        trainer = Trainer(load_config(args.config, args.set))
        trainer.resume(args.export_checkpoint)
        out = trainer.export(args.out or Path(args.export_checkpoint) / "export", samples=False)
        print(f"exported step {trainer.step}: {out}")
        return 0
    from videoldm.training.trainer import TrainingInterrupted

    try:
        final = train(load_config(args.config, args.set), resume=args.resume)
    except TrainingInterrupted as stopped:
        if stopped.checkpoint is not None:  # the main process wrote it and reports it
            again = " ".join(["videoldm train", shlex.quote(args.config), *(f"--set {shlex.quote(s)}" for s in args.set)])
            print(f"videoldm train: {stopped.summary}; go on with: {again} --resume", file=sys.stderr)
        return 128 + stopped.signum  # the shell's convention for "ended by this signal"
    print(f"done: {final}")
    return 0


def run_cache(args) -> int:
    from videoldm.training.cache import cache_latents
    from videoldm.training.config import load_config

    out = cache_latents(load_config(args.config, args.set), batch_size=args.batch_size)
    print(f"latents written to {out}")
    return 0
