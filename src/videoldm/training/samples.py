"""Sample videos during and after training, decode them, and write them to the run folder."""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.io import write_gif
from ..inference.outputs import video_grid
from ..inference.sampling import make_scheduler, mixed_noise, sample
from ..models.conditioning import encode_batch
from ..models.temporal_decoder import decode_latents


def sample_and_write(stage, directory: Path, step: int, video: bool) -> Path:
    """Samples ``run.num_samples`` clips for the dataset's first captions; writes one GIF, side by side."""
    run = stage.config.run
    n = min(run.num_samples, len(stage.dataset))
    items = [stage.dataset[i] for i in range(n)]
    batch = {"captions": [m.get("caption") or "" for _, m in items],
             "attributes": [m.get("attributes") or {} for _, m in items]}
    example = stage.latents_of(items[0][0][None])[0]  # (C, T, h, w)
    device = stage.device
    with torch.no_grad():
        cond, uncond = encode_batch(stage.conditioner, batch), encode_batch(stage.conditioner, batch, [True] * n)
    if cond is not None:
        cond, uncond = cond.to(device), uncond.to(device)
    model = stage.video_unet if video else stage.module.unet
    shape = (n, *example.shape) if video else (n * example.shape[1], example.shape[0], *example.shape[2:])
    if not video and cond is not None:  # one image per frame slot, each with its clip's caption
        T = example.shape[1]
        cond, uncond = cond.repeat_interleave(T, 0), uncond.repeat_interleave(T, 0)
    kwargs, uncond_kwargs, noise = {}, None, None
    generator = torch.Generator().manual_seed(run.seed)
    temporal_text = getattr(stage, "temporal_conditioner", None) if video else None
    if temporal_text is not None and cond is not None:  # the text encoder trained for the temporal layers
        with torch.no_grad():
            kwargs["temporal_encoder_hidden_states"] = encode_batch(temporal_text, batch).to(device)
            uncond_kwargs = {"temporal_encoder_hidden_states": encode_batch(temporal_text, batch, [True] * n).to(device)}
    share = getattr(stage.config.model, "shared_noise", 0.0) if video else 0.0
    if share:  # the mixed noise prior the model trained with
        noise = mixed_noise(shape, generator, share)
    was_training = model.training
    model.eval()
    latents = sample(model, make_scheduler(run.sampler, stage.scheduler.config), shape, cond=cond,
                     uncond=uncond if cond is not None else None, guidance_scale=run.guidance_scale,
                     num_inference_steps=run.sample_steps, generator=generator, progress=False,
                     model_kwargs=kwargs or None, uncond_kwargs=uncond_kwargs, latents=noise)
    model.train(was_training)
    if not video:
        latents = latents.view(n, example.shape[1], *latents.shape[1:]).transpose(1, 2)
    frames = decode_latents(stage.vae, latents)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{'video' if video else 'image'}-samples-{step:08d}.gif"
    write_gif(path, video_grid(frames), stage.config.data.fps or 8)
    return path
