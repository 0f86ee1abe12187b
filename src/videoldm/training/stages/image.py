"""Stage `image`: the image LDM, a diffusers UNet trained (or fine-tuned) on single frames."""
from __future__ import annotations

from pathlib import Path

from diffusers import DDPMScheduler, UNet2DConditionModel
from torch import nn

from ...export import is_export, is_stable_diffusion, load_autoencoder, load_image_model, write_index
from ...models.loading import load_image_unet
from ..config import TrainConfig
from ..samples import sample_and_write
from .base import (DiffusionStage, build_conditioner, build_dataset, condition, diffusion_loss, pick_frames,
                   require_labels)


class ImageModule(nn.Module):
    def __init__(self, unet: UNet2DConditionModel, conditioner):
        super().__init__()
        self.unet, self.conditioner = unet, conditioner

    def forward(self, noisy, timesteps, tokens):
        return self.unet(noisy, timesteps, tokens).sample


class ImageStage(DiffusionStage):
    def __init__(self, config: TrainConfig):
        self.config, m = config, config.model
        self.vae = load_autoencoder(m.autoencoder).requires_grad_(False).eval()
        pretrained = m.unet.get("pretrained")
        # fine-tuning an image export (a new style) or Stable Diffusion (on video frames, as the paper did before
        # adding temporal layers): its UNet, schedule and conditioner; SD's CLIP text encoder stays frozen
        base = load_image_model(pretrained) if pretrained and (is_export(pretrained) or is_stable_diffusion(pretrained)) \
            else None
        if base is not None and is_stable_diffusion(pretrained):
            if m.conditioning != "text":
                raise ValueError(f"model.conditioning is {m.conditioning!r}, but {pretrained} is a text-to-image model")
            base["conditioner"].requires_grad_(False)
        if base is not None:
            unet = base["unet"]
        elif pretrained:
            unet = load_image_unet(pretrained)
        else:
            unet = UNet2DConditionModel(**m.unet)
        if unet.config.in_channels != self.vae.config.latent_channels:
            raise ValueError(f"the UNet takes {unet.config.in_channels} latent channels but the autoencoder makes "
                             f"{self.vae.config.latent_channels}")
        self.scheduler = base["scheduler"] if base is not None else DDPMScheduler(**m.scheduler)
        self.dataset = build_dataset(config)
        require_labels(m.conditioning, self.dataset, "stage image")
        cross = unet.config.cross_attention_dim if m.conditioning != "none" else None
        if base is not None and base["conditioner"] is not None:
            self.conditioner = base["conditioner"]
        else:
            self.conditioner = build_conditioner(m.conditioning, self.dataset, m.text_encoder, cross)
        self.module = ImageModule(unet, self.conditioner)
        self.cfg_dropout = m.cfg_dropout

    def loss(self, model, batch, seed: int):
        k = self.config.data.frames_per_clip
        latents = pick_frames(self.latents_of(batch["x"]), batch["positions"], seed, k).to(self.device)
        keys = [p * k + j for p in batch["positions"] for j in range(k)]  # one generator per frame
        noise, t, drop = self.noise_and_timesteps(latents, keys, seed)
        repeated = {**batch, "captions": [c for c in batch["captions"] for _ in range(k)],
                    "attributes": [a for a in batch["attributes"] for _ in range(k)]}
        tokens = condition(self.conditioner, repeated, drop, self.device)
        noisy = self.scheduler.add_noise(latents, noise, t)
        loss = diffusion_loss(model(noisy, t, tokens), self.scheduler, latents, noise, t)
        return loss, {}

    def export(self, directory: Path) -> None:
        self.module.unet.save_pretrained(directory / "unet")
        self.scheduler.save_pretrained(directory / "scheduler")
        self.vae.save_pretrained(directory / "vae")
        if self.conditioner is not None:
            self.conditioner.save_pretrained(directory / "conditioner")
        index = {"stage": "image", "unet": "unet", "scheduler": "scheduler", "vae": "vae",
                 "conditioning": self.config.model.conditioning,
                 "conditioner": "conditioner" if self.conditioner is not None else None,
                 "latent_size": self.latent_size(), "fps": self.config.data.fps}
        write_index(directory, index)

    def sample(self, directory: Path, step: int) -> None:
        sample_and_write(self, directory, step, video=False)
