"""Stage `autoencoder`: a KL autoencoder trained on frames (the LDM's first stage)."""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import nn

from ...data.io import write_gif
from ...export import load_autoencoder, write_index
from ...inference.outputs import to_uint8
from ...models.frames import vae_scale_factor
from ..config import TrainConfig
from .base import Stage, build_dataset, per_sample, pick_frames


class AutoencoderModule(nn.Module):
    def __init__(self, vae: AutoencoderKL, kl_weight: float):
        super().__init__()
        self.vae, self.kl_weight = vae, kl_weight

    def forward(self, images: torch.Tensor, eps: torch.Tensor):
        posterior = self.vae.encode(images).latent_dist
        z = posterior.mean + posterior.std * eps
        recon = self.vae.decode(z).sample
        rec = F.l1_loss(recon.float(), images.float())
        kl = posterior.kl().mean() / math.prod(images.shape[1:])
        return rec + self.kl_weight * kl, {"l1": rec.detach(), "kl": kl.detach()}


class AutoencoderStage(Stage):
    def __init__(self, config: TrainConfig):
        self.config = config
        if config.model.pretrained:
            if config.model.config:
                raise ValueError("model.config and model.pretrained: give one (pretrained brings its own config)")
            self.vae = load_autoencoder(config.model.pretrained)
        else:
            cfg = dict(config.model.config)
            cfg.setdefault("in_channels", 3)
            cfg.setdefault("out_channels", 3)
            self.vae = AutoencoderKL(**cfg)
        self.module = AutoencoderModule(self.vae, config.model.kl_weight)
        self.dataset = build_dataset(config, need_pixels=True)

    def loss(self, model, batch, seed: int):
        images = pick_frames(batch["x"], batch["positions"], seed, self.config.data.frames_per_clip)
        k = self.config.data.frames_per_clip
        f = vae_scale_factor(self.vae)
        latent_shape = (self.vae.config.latent_channels, images.shape[-2] // f, images.shape[-1] // f)
        eps = per_sample(batch["positions"], seed, 1, lambda g: torch.randn((k, *latent_shape), generator=g))
        return model(images.to(self.device), eps.flatten(0, 1).to(self.device))

    def export(self, directory: Path) -> None:
        """Saves the VAE with a scaling factor that gives its latents unit variance on the data."""
        self.vae.eval()
        with torch.no_grad():
            frames = [self.dataset[i][0].transpose(0, 1) for i in range(min(len(self.dataset), 16))]
            latents = self.vae.encode(torch.cat(frames).to(self.device)).latent_dist.mean
        self.vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
        self.vae.save_pretrained(directory / "vae")
        write_index(directory, {"stage": "autoencoder", "vae": "vae"})

    def sample(self, directory: Path, step: int) -> None:
        self.vae.eval()
        with torch.no_grad():
            clip = self.dataset[0][0]  # (C, T, H, W)
            recon = self.vae.decode(self.vae.encode(clip.transpose(0, 1).to(self.device)).latent_dist.mean).sample
        side_by_side = torch.cat([clip.transpose(0, 1), recon.cpu()], dim=-1)
        write_gif(directory / f"reconstruction-{step:08d}.gif", to_uint8(side_by_side), self.config.data.fps or 8)
        self.vae.train()
