"""`videoldm inflate`: what turning an image UNet into a Video LDM UNet costs, block by block."""
from __future__ import annotations


from .options import size_arg

EPILOG = """examples:
  videoldm inflate --base sd15                      # Stable Diffusion 1.5 architecture
  videoldm inflate --base sd21 --latent 40x64 --frames 16
  videoldm inflate --base path/to/pipeline_or_unet_folder
  videoldm inflate --base model.safetensors --config sd15
  videoldm inflate --base tiny --save temporal/      # also write fresh temporal layers (safetensors + json)

Counting runs on the meta device: no weights are read or allocated, so full-size models are instant."""


def add_command(subparsers) -> None:
    p = subparsers.add_parser(
        "inflate", help="report parameters and multiply-adds of the temporal layers for an image UNet",
        description="Attach Video LDM temporal layers to an image UNet and report, per block and in total, the "
                    "spatial and temporal parameter counts, the temporal share, and the extra multiply-adds per "
                    "frame at a latent size.",
        epilog=EPILOG)
    p.add_argument("--base", required=True,
                   help="architecture name (sd15, sd21, sdxl, x4-upscaler, tiny), a UNet config.json, a diffusers "
                        "model or pipeline folder, or a single-file .safetensors checkpoint")
    p.add_argument("--config", help="architecture of a single-file checkpoint (a name, config.json or folder)")
    p.add_argument("--latent", type=size_arg, default=(64, 64), help="latent size HxW (default 64x64)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    p.add_argument("--window", type=int, default=None, help="temporal attention window, frames either side")
    p.add_argument("--spatial-kernel", type=int, default=1, help="spatial kernel of the 3D convolutions (default 1)")
    p.add_argument("--save", metavar="DIR", help="also build the real model and save its fresh temporal layers here")
    p.set_defaults(func=run)


def run(args) -> int:
    from videoldm.models.loading import load_image_unet, resolve_unet_config
    from videoldm.models.size_report import inflation_report

    if args.frames < 1:
        raise ValueError("--frames must be at least 1")
    options = {"attention_window": args.window, "spatial_kernel_size": args.spatial_kernel}
    config = resolve_unet_config(args.base, args.config)
    print(f"base: {args.base} ({len(config.get('block_out_channels', []))} levels, "
          f"channels {config.get('block_out_channels')})")
    print(inflation_report(config, args.latent, args.frames, **options).format())
    if args.save:
        from videoldm import VideoUNet

        video = VideoUNet.from_unet2d(load_image_unet(args.base, args.config), **options)
        video.save_temporal_layers(args.save)
        print(f"temporal layers written to {args.save}")
    return 0
