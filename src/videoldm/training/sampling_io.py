"""Sample videos during and after training, decode them, and write them to the run folder."""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.io import write_gif


def decode_latents(vae, latents: torch.Tensor, chunk_size: int = 16, overlap: int = 4,
                   image_only: bool = False, progress: bool = False) -> torch.Tensor:
    """``(B, C, T, h, w)`` scaled latents -> ``(B, T, 3, H, W)`` frames in [-1, 1].

    ``vae``: an ``AutoencoderKL`` (frame by frame, 16 frames at a time) or a ``TemporalDecoder`` (chunks
    of ``chunk_size`` frames cross-faded over ``overlap``; ``image_only`` makes it the image decoder).
    """
    from ..models.temporal_decoder import TemporalDecoder

    with torch.no_grad():
        if isinstance(vae, TemporalDecoder):
            frames = vae.decode(latents / vae.vae.config.scaling_factor, chunk_size, overlap,
                                image_only=image_only, progress=progress)
            return frames.transpose(1, 2).clamp(-1, 1)
        B, C, T = latents.shape[:3]
        frames = latents.transpose(1, 2).flatten(0, 1) / vae.config.scaling_factor
        images = torch.cat([vae.decode(chunk).sample for chunk in frames.split(16)])
    return images.view(B, T, *images.shape[1:]).clamp(-1, 1)


def video_grid(videos: torch.Tensor):
    """``(B, T, 3, H, W)`` -> ``(T, H, B*W, 3)`` uint8: the videos side by side."""
    grid = torch.cat(list(videos), dim=-1)
    return ((grid + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def sample_and_write(stage, directory: Path, step: int, video: bool) -> Path:
    """Samples ``run.num_samples`` clips for the dataset's first captions; writes one GIF, side by side."""
    from ..sampling import make_scheduler, sample
    from .stages import condition

    run = stage.config.run
    n = min(run.num_samples, len(stage.dataset))
    items = [stage.dataset[i] for i in range(n)]
    batch = {"captions": [m.get("caption") or "" for _, m in items],
             "attributes": [m.get("attributes") or {} for _, m in items]}
    example = stage.latents_of(items[0][0][None])[0]  # (C, T, h, w)
    device = stage.device
    with torch.no_grad():
        cond = condition(stage.conditioner, batch, torch.zeros(n, dtype=torch.bool), device)
        uncond = condition(stage.conditioner, batch, torch.ones(n, dtype=torch.bool), device)
    model = stage.video_unet if video else stage.module.unet
    shape = (n, *example.shape) if video else (n * example.shape[1], example.shape[0], *example.shape[2:])
    if not video and cond is not None:  # one image per frame slot, each with its clip's caption
        T = example.shape[1]
        cond, uncond = cond.repeat_interleave(T, 0), uncond.repeat_interleave(T, 0)
    was_training = model.training
    model.eval()
    latents = sample(model, make_scheduler(run.sampler, stage.scheduler.config), shape, cond=cond,
                     uncond=uncond if cond is not None else None, guidance_scale=run.guidance_scale,
                     num_inference_steps=run.sample_steps, generator=torch.Generator().manual_seed(run.seed),
                     progress=False)
    model.train(was_training)
    if not video:
        latents = latents.view(n, example.shape[1], *latents.shape[1:]).transpose(1, 2)
    frames = decode_latents(stage.vae, latents)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{'video' if video else 'image'}-samples-{step:08d}.gif"
    write_gif(path, video_grid(frames), stage.config.data.fps or 8)
    return path
